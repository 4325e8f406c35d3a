"""The toy model's classes and training script end to end at a token size: train, save, load, run."""

import argparse
import json
import sys

import pytest
import torch
from safetensors.torch import load_file


@pytest.mark.slow
def test_a_short_training_run_saves_a_model_that_loads_and_runs(comfy, tmp_path, monkeypatch):
    import train_toy
    from dragkit.nodes.comfy_unet import ComfyBackbone
    from dragkit.nodes.toy_model import IMAGE_SIZE, TOY_VAE_GROUP_CHANNELS, load_toy_model

    vae_model, vae_report = train_toy.train_vae(steps=2, batch=2, seed=0)
    model, clip, used, report = train_toy.train_diffusion(vae_model, steps=2, batch=4, dataset_size=8, seed=0)
    path = tmp_path / "toy.safetensors"
    train_toy.save(path, vae_model, model, clip, used, {"vae": vae_report, "diffusion": report})
    assert path.stat().st_size < 25e6 and path.with_suffix(".json").exists()

    with torch.inference_mode():
        model, clip, vae = load_toy_model(path)
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red disk on a grey background"))
        latent = vae.encode(torch.rand(1, IMAGE_SIZE, IMAGE_SIZE, 3))
        image = vae.decode(latent)
    assert cond[0][0].shape == (1, 77, 128) and torch.isfinite(cond[0][0]).all()
    assert latent.shape == (1, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8) and image.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    norms = [m for m in vae.first_stage_model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups == TOY_VAE_GROUP_CHANNELS for m in norms)
    backbone = ComfyBackbone(model, "Test", feature_blocks=(2,), mutual_start_layer=10)
    assert backbone.num_self_attention_layers == 16 and backbone.layout.decoder_taps[2] == 9  # SD1.5's indices

    # Stage 3: fine-tune that file's UNet with skip dropout; its VAE and text encoder are kept.
    tuned = tmp_path / "tuned.safetensors"
    args = argparse.Namespace(finetune_from=path, out=tuned, unet_steps=2, unet_batch=4, dataset=8, seed=0,
                              unet_lr=4e-4, skip_dropout=0.5, skip_dropout_below=9, device="cpu", seconds=None)
    train_toy.finetune(args)
    before, after = load_file(str(path)), load_file(str(tuned))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("unet."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("unet."))
    info = json.loads(tuned.with_suffix(".json").read_text())
    assert info["finetune"]["skip_dropout"] == 0.5 and info["diffusion"] == report

    # --vae-from (what the GPU machine runs): a new UNet on that file's VAE, the text encoder seeded as before.
    fresh = tmp_path / "fresh.safetensors"
    monkeypatch.setattr(sys, "argv", ["train_toy.py", "--vae-from", str(path), "--unet-steps", "2", "--unet-batch",
                                      "4", "--dataset", "8", "--out", str(fresh)])
    train_toy.main()
    after = load_file(str(fresh))
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("unet."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("unet."))
    info = json.loads(fresh.with_suffix(".json").read_text())
    assert info["vae"]["source"] == "toy.safetensors" and info["diffusion"]["device"] == "cpu"


def test_zero_residual_branches_make_every_vae_block_the_identity(comfy):
    from comfy.ldm.models.autoencoder import AutoencoderKL

    import train_toy
    from dragkit.nodes.toy_model import vae_config

    vae_model = AutoencoderKL(**vae_config()["params"])
    train_toy.reset_parameters(vae_model, 0)
    train_toy.zero_residual_branches(vae_model)
    mid = vae_model.decoder.mid  # a res block and an attention block, 64 channels each
    x = torch.randn(1, 64, 4, 4)
    with torch.no_grad():
        assert torch.equal(mid.block_1(x), x)
        assert torch.equal(mid.attn_1(x), x)
        reset = AutoencoderKL(**vae_config()["params"])
        train_toy.reset_parameters(reset, 0)
        assert not torch.equal(reset.decoder.mid.block_1(x), x)  # without it, the block is not the identity


def test_skip_dropout_zeroes_the_deep_skips_of_the_drawn_samples_only(comfy):
    import train_toy

    dropout = train_toy.SkipDropout(0.5, torch.Generator().manual_seed(0), below=9)
    dropout.new_step(64)
    dropped = dropout.keep.flatten() == 0
    assert 16 < int(dropped.sum()) < 48  # about half of the samples
    h, hsp = torch.randn(64, 8, 4, 4), torch.randn(64, 8, 4, 4) + 5
    for block in (0, 8):
        h_out, hsp_out = dropout(h, hsp, {"block": ("output", block)})
        assert h_out is h
        assert (hsp_out[dropped] == 0).all() and torch.equal(hsp_out[~dropped], hsp[~dropped])
    assert dropout(h, hsp, {"block": ("output", 9)})[1] is hsp  # full-resolution skips are never dropped


def test_training_without_skip_dropout_draws_nothing_for_it(comfy, monkeypatch):
    # Run 2's weights are reproducible from the default command only if the off switch leaves the RNG stream alone.
    import train_toy

    def never(self, batch):
        raise AssertionError("SkipDropout drew random numbers with skip dropout off")

    monkeypatch.setattr(train_toy.SkipDropout, "new_step", never)
    vae_model, _ = train_toy.train_vae(steps=1, batch=2, seed=0)
    train_toy.train_diffusion(vae_model, steps=1, batch=2, dataset_size=4, seed=0)
    with pytest.raises(AssertionError, match="drew random numbers"):
        train_toy.train_diffusion(vae_model, steps=1, batch=2, dataset_size=4, seed=0, skip_dropout=0.5)


def test_a_missing_or_damaged_toy_model_file_is_a_clear_error_from_the_loader(comfy, tmp_path, monkeypatch):
    from dragkit.nodes import toy_model
    from dragkit.nodes.errors import DragKitNodeError

    monkeypatch.setattr(toy_model, "TOY_WEIGHTS", tmp_path / "dragkit_toy.safetensors")
    with pytest.raises(DragKitNodeError, match=r"ToyModelLoader: the bundled toy model is missing .*train_toy\.py"):
        toy_model.ToyModelLoader.execute()
    (tmp_path / "dragkit_toy.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")  # not the model
    with pytest.raises(DragKitNodeError, match=r"ToyModelLoader: the bundled toy model .* cannot be read"):
        toy_model.ToyModelLoader.execute()


@pytest.mark.slow
def test_a_time_budget_sets_the_step_count_and_precomputed_captions_train_alike(comfy):
    """--seconds: after steps 10–40 are timed, the run keeps the steps that fit (at least 41); the captions
    encoded once up front (the GPU path) give the same losses as encoding them step by step."""
    import train_toy
    from dragkit.nodes.toy_model import load_toy_model

    vae = load_toy_model()[2].first_stage_model.float()
    *_, budgeted = train_toy.train_diffusion(vae, steps=100, batch=2, dataset_size=8, seed=0, seconds=1e-3)
    assert budgeted["steps"] == 41
    *_, step_by_step = train_toy.train_diffusion(vae, 3, 2, 8, 0, precompute_contexts=False)
    *_, precomputed = train_toy.train_diffusion(vae, 3, 2, 8, 0, precompute_contexts=True)
    assert precomputed["final_loss"] == pytest.approx(step_by_step["final_loss"], rel=1e-4)
