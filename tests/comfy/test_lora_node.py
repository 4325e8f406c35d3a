"""IdentityLoRATrain in-process on the random "mini" SD1.5 checkpoint."""

import copy
import time
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def mini(mini_checkpoint, comfy):
    import comfy.sd

    with torch.inference_mode():  # as CheckpointLoaderSimple runs inside ComfyUI's executor
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(mini_checkpoint))[:4]
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red disk and a blue square"))
    return SimpleNamespace(model=model, clip=clip, vae=vae, cond=cond)


@pytest.fixture
def comfy_folders(tmp_path, comfy):
    """ComfyUI's models and loras folders in a temporary directory."""
    import folder_paths

    saved_dir, saved_loras = folder_paths.models_dir, folder_paths.folder_names_and_paths["loras"]
    folder_paths.models_dir = str(tmp_path / "models")
    folder_paths.folder_names_and_paths["loras"] = ([str(tmp_path / "models" / "loras")], {".safetensors"})
    yield tmp_path / "models"
    folder_paths.models_dir, folder_paths.folder_names_and_paths["loras"] = saved_dir, saved_loras


IMAGE = torch.rand(1, 72, 64, 3, generator=torch.Generator().manual_seed(0))


def _train(mini, **kw):
    from dragkit.nodes.lora_nodes import IdentityLoRATrain

    image = kw.pop("image", IMAGE)
    args = dict(steps=2, rank=16, lr=5e-4, batch_size=2, resolution=64, seed=0, precision="auto", cache="off",
                save_name="")
    args.update(kw)
    with torch.inference_mode():
        return IdentityLoRATrain.execute(mini.model, mini.vae, image, mini.cond, **args)


def test_full_sd15_shapes_give_3188736_parameters_without_allocating(comfy):
    import comfy.supported_models

    from dragkit.drag_core.lora import lora_parameter_count
    from dragkit.nodes.comfy_lora import attention_projections
    from make_test_checkpoint import SD15_UNET

    with torch.device("meta"):
        cfg = comfy.supported_models.SD15(dict(SD15_UNET))
        base = cfg.get_model({}, device="meta")
    projections = attention_projections(SimpleNamespace(model=base))
    assert len(projections) == 128  # 32 attention modules (16 self, 16 cross) × q, k, v, out
    assert lora_parameter_count([(o, i) for _, o, i in projections], 16) == 3_188_736


@pytest.mark.slow
def test_training_adapts_exactly_the_attention_projections_and_leaves_the_model(mini, comfy_folders):
    from dragkit.nodes.comfy_lora import attention_projections

    weights = {k: v.clone() for k, v in mini.model.model.diffusion_model.state_dict().items()}
    options = copy.deepcopy(mini.model.model_options)
    patched, lora = _train(mini)
    keys = {k.rsplit(".lora_", 1)[0] for k in lora if ".lora_" in k}
    assert keys == {key for key, _, _ in attention_projections(mini.model)}
    ups = [v for k, v in lora.items() if k.endswith("lora_up.weight")]
    assert len(ups) == 128 and all(u.abs().sum() > 0 for u in ups)  # every adapter got a gradient step
    assert all(torch.equal(v, weights[k]) for k, v in mini.model.model.diffusion_model.state_dict().items())
    assert mini.model.model_options == options and not mini.model.patches  # the input model is untouched
    assert patched is not mini.model and len(patched.patches) == 128


@pytest.mark.slow
def test_saved_lora_loads_in_core_loraloader_and_matches_the_patched_model(mini, comfy_folders):
    import nodes as comfy_nodes
    from safetensors import safe_open

    from dragkit.nodes.comfy_unet import ComfyBackbone

    patched, lora = _train(mini, save_name="dragkit_identity_test")
    path = comfy_folders / "loras" / "dragkit_identity_test.safetensors"
    with safe_open(str(path), "pt") as f:
        assert all(k.startswith("lora_unet_") for k in f.keys())
        meta = f.metadata()
    assert meta["dragkit_image_hash"] and meta["dragkit_model_hash"] and meta["ss_network_dim"] == "16"
    with torch.inference_mode():
        loaded, _ = comfy_nodes.LoraLoader().load_lora(mini.model, mini.clip, path.name, 1.0, 0.0)
    assert len(loaded.patches) == 128  # every key was recognised ("lora key not loaded" otherwise)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = mini.cond[0][0]
    outs = []
    for model in (patched, loaded):
        backbone = ComfyBackbone(model, "Test")
        backbone.load()
        with torch.no_grad():
            outs.append(backbone(z, 681, ctx).eps)
    plain = ComfyBackbone(mini.model, "Test")
    plain.load()
    with torch.no_grad():
        base = plain(z, 681, ctx).eps
    assert not torch.allclose(outs[0], base)  # the LoRA changes the output …
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)  # … identically from file


@pytest.mark.slow
def test_same_inputs_hit_the_cache_and_other_settings_retrain(mini, comfy_folders, monkeypatch):
    from dragkit.nodes.lora_nodes import IdentityLoRATrain

    started = time.monotonic()
    _, first = _train(mini, cache="use")
    trained_seconds = time.monotonic() - started
    assert len(list((comfy_folders / "dragkit" / "lora_cache").glob("*.safetensors"))) == 1

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained although the cache had this LoRA")

    real_train = IdentityLoRATrain._train
    monkeypatch.setattr(IdentityLoRATrain, "_train", staticmethod(must_not_train))
    started = time.monotonic()
    _, again = _train(mini, cache="use")
    hit_seconds = time.monotonic() - started
    assert all(torch.equal(again[k], first[k]) for k in first)
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(IdentityLoRATrain, "_train", staticmethod(counting))
    _train(mini, cache="use", seed=1)  # other settings
    _train(mini, cache="use", image=IMAGE.flip(1))  # another image
    _train(mini, cache="refresh")  # asked to retrain
    assert len(calls) == 3
    print(f"identity LoRA: trained in {trained_seconds:.2f} s, cache hit in {hit_seconds:.2f} s")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"image": torch.rand(2, 64, 64, 3)}, "input 'image'.*batch of 2"),
        ({"steps": 0}, "input 'steps'"),
        ({"rank": 0}, "input 'rank'"),
        ({"save_name": "../escape"}, "input 'save_name'"),
    ],
)
def test_bad_input_is_a_clear_error(mini, comfy_folders, change, match):
    from dragkit.nodes.errors import DragKitInputError

    with pytest.raises(DragKitInputError, match="DragKit IdentityLoRATrain: " + match):
        _train(mini, **change)


@pytest.mark.parametrize("n", [1, 2, 1000, 29_491_200, 2**31 + 7])
def test_fingerprint_samples_stay_inside_large_tensors(comfy, n):
    from dragkit.nodes.comfy_lora import sample_indices

    idx = sample_indices(n)
    assert idx[0] == 0 and idx[-1] == n - 1 and len(idx) == min(n, 1024)
    assert bool((idx[1:] >= idx[:-1]).all())


@pytest.mark.slow
def test_training_lowers_the_epsilon_loss_on_a_fixed_batch(mini, comfy_folders):
    from dragkit.drag_core.schedule import scaled_linear_alphas_cumprod
    from dragkit.nodes.comfy_unet import ComfyBackbone

    gen = torch.Generator().manual_seed(11)
    with torch.inference_mode():
        z0 = mini.vae.encode(IMAGE[:, :64, :64]) * 0.18215
    z0 = z0.expand(4, -1, -1, -1)
    t = torch.tensor([100, 300, 500, 700])
    noise = torch.randn(z0.shape, generator=gen)
    a = scaled_linear_alphas_cumprod()[t].float().reshape(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise

    def loss(model) -> float:
        backbone = ComfyBackbone(model, "Test")
        backbone.load()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(backbone(z_t, t, mini.cond[0][0]).eps, noise).item()

    before = loss(mini.model)
    patched, _ = _train(mini, steps=6, lr=2e-3, batch_size=4)
    after = loss(patched)
    assert after < before, (before, after)


@pytest.mark.slow
def test_the_training_adapters_do_not_linger_on_the_input_model(mini, comfy_folders):
    from dragkit.drag_core.lora import LoRADelta
    from dragkit.nodes.comfy_unet import ComfyBackbone

    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))

    def eps():
        backbone = ComfyBackbone(mini.model, "Test")
        backbone.load()
        with torch.no_grad():
            return backbone(z, 481, mini.cond[0][0]).eps

    before = eps()
    _train(mini)
    after = eps()
    lingering = [m for m in mini.model.model.modules() for f in getattr(m, "weight_function", []) if isinstance(f, LoRADelta)]
    assert not lingering
    assert torch.equal(before, after)


@pytest.mark.slow
@pytest.mark.parametrize("image", [IMAGE, torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))],
                         ids=["non-square", "square"])
def test_the_low_rank_path_trains_the_same_lora_as_the_merged_path_and_leaves_no_hook(mini, comfy_folders,
                                                                                     monkeypatch, image):
    """scale·up(down(x)) added to each projection's output is the merged W + scale·up·down applied to x: the same
    losses and the same trained factors (fp32 rounding apart), and no hook stays on the input model's modules."""
    from dragkit.nodes import lora_nodes

    runs = {}
    for path in ("merged", "low_rank"):
        monkeypatch.setattr(lora_nodes, "TRAINING_PATH", path)
        runs[path] = _train(mini, image=image, steps=3, lr=1e-2)[1]
    merged, low_rank = runs["merged"], runs["low_rank"]
    assert merged.keys() == low_rank.keys()
    ups = [k for k in merged if k.endswith("lora_up.weight")]
    assert max(float(merged[k].abs().max()) for k in ups) > 1e-3  # training moved the factors
    worst = max(float((merged[k] - low_rank[k]).abs().max()) for k in merged)
    assert worst < 0.3 * 1e-2  # well under one Adam step (lr 1e-2) anywhere
    assert not any(m._forward_hooks for m in mini.model.model.diffusion_model.modules())


def test_a_damaged_truncated_or_unverifiable_cache_entry_is_retrained_never_loaded(comfy_folders, caplog):
    """A cache entry carries a digest of its content: a file that still loads but holds other bytes is caught."""
    from dragkit.drag_core.files import write_safetensors
    from dragkit.nodes.comfy_lora import cache_dir, cache_load, cache_store

    lora = {"diffusion_model.x.lora_up.weight": torch.randn(8, 2), "diffusion_model.x.alpha": torch.tensor(2.0)}
    cache_store("k", lora, {"dragkit_kind": "test"})
    path = cache_dir() / "k.safetensors"
    assert all(torch.equal(cache_load("k")[key], lora[key]) for key in lora)

    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one bit of a weight: the file still parses
    path.write_bytes(bytes(data))
    assert cache_load("k") is None and not path.exists()
    cache_store("k", lora, {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated (a killed copy)
    assert cache_load("k") is None and not path.exists()
    write_safetensors(path, lora, {})  # no digest: an entry from before digests existed
    assert cache_load("k") is None and not path.exists()
    reasons = [r.getMessage() for r in caplog.records if "retraining" in r.getMessage()]
    assert [("damaged" in m, "unreadable" in m, "digest" in m) for m in reasons] == [
        (True, False, True), (False, True, False), (False, False, True)]


def test_a_save_that_fails_midway_leaves_no_file_and_says_what_to_do(mini, comfy_folders, monkeypatch):
    """A full disk while saving: a clear error naming the node, nothing in loras/ (not even a temporary file)."""
    import errno

    import safetensors.torch

    from dragkit.nodes.errors import DragKitNodeError

    def disk_fills(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_fills)
    with pytest.raises(DragKitNodeError, match=r"IdentityLoRATrain: could not save the LoRA as .*mine\.safetensors "
                       r"\(No space left on device\); nothing was written"):
        _train(mini, steps=1, save_name="mine", cache="use")
    loras = comfy_folders / "loras"
    assert not loras.exists() or list(loras.iterdir()) == []
    cache = comfy_folders / "dragkit" / "lora_cache"  # the cache write failed too: a warning, nothing left
    assert not cache.exists() or list(cache.iterdir()) == []
