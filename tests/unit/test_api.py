"""The Python API and CLI on a random-weight diffusers pipeline written by scripts/make_random_pipeline.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the Python API needs `pip install diffusers peft`")

POINTS = {"version": 1, "width": 64, "height": 64, "points": [{"handle": [20, 24], "target": [30, 28]}]}
QUICK = {"lora_steps": 2, "lora_resolution": 64, "steps": 10}


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    import make_random_pipeline

    return make_random_pipeline.make_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd15")


@pytest.fixture(scope="module")
def pipe(pipeline_dir):
    from dragkit.drag_core.api import DragPipeline

    return DragPipeline.load(pipeline_dir, device="cpu")


def _picture() -> np.ndarray:
    image = np.full((64, 64, 3), 200, np.uint8)
    image[16:32, 14:30] = (200, 40, 40)
    return image


def _weights(unet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in unet.state_dict().items()}


def test_dragdiffusion_edit_reports_like_the_node_and_leaves_the_model_as_it_was(pipe):
    from dragkit.drag_core.peft_lora import projection_paths

    before = _weights(pipe.unet)
    from dragkit.drag_core.api import edit

    result = edit(pipe, _picture(), POINTS, method="dragdiffusion", prompt="a red square",
                  options={"max_iterations": 3}, **QUICK)
    assert result.image.size == (64, 64)
    summary = result.summary
    assert summary["iterations"] >= 1 and summary["width"] == 64
    assert summary["pairs"] == [{"handle": [20.0, 24.0], "target": [30.0, 28.0]}]
    assert len(summary["final_handles"]) == 1 and summary["initial_distance_px"] == pytest.approx(np.hypot(10, 4), abs=1.5)
    assert set(result.seconds) == {"lora", "invert", "drag+denoise", "decode"}
    assert len(result.lora) == 3 * len(projection_paths(pipe.unet))
    # The adapter is gone and the weights are the ones loaded.
    assert all(type(pipe.unet.get_submodule(p)) is torch.nn.Linear for p in projection_paths(pipe.unet))
    after = _weights(pipe.unet)
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)

    # Reusing the returned LoRA (what DragBench's per-sample cache does) gives the same picture without training.
    again = edit(pipe, _picture(), POINTS, method="dragdiffusion", prompt="a red square", lora=result.lora,
                 options={"max_iterations": 3}, steps=10)
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))
    assert again.seconds["lora"] < result.seconds["lora"]


@pytest.mark.parametrize("method, options", [
    ("gooddrag", {"drag_end_step": 2, "track_per_step": 2}),
    ("dragnoise", {"max_iterations": 3}),
])
def test_the_other_methods_run_through_the_api(pipe, method, options):
    from dragkit.drag_core.api import edit

    mask = np.zeros((64, 64), bool)
    mask[8:48, 8:48] = True
    result = edit(pipe, _picture(), json.dumps(POINTS), mask, method=method, lora=None, options=options, steps=10)
    assert result.image.size == (64, 64) and result.lora is None
    assert result.summary["iterations"] >= 1


def test_the_training_free_drag_takes_an_edit_prompt_and_stages_like_its_graph(pipe):
    from dragkit.drag_core.api import edit

    seen = []
    result = edit(pipe, _picture(), POINTS, method="sacdrag", prompt="a red square", edit_prompt="a big red square",
                  options={"max_iterations": 2}, steps=12, progress=lambda stage, done, total: seen.append(stage))
    assert result.lora is None and "lora" not in seen  # no identity LoRA
    # Full inversion (12 steps), the denoise to the drag step (10), the drag, then the last 2 steps.
    assert seen.count("invert") == 12 and seen.count("denoise") == 10 + 2 and 1 <= seen.count("drag") <= 2


def test_a_picture_not_a_multiple_of_8_is_resized_and_the_points_follow(pipe):
    from dragkit.drag_core.api import edit

    image = np.full((70, 67, 3), 128, np.uint8)
    points = {"version": 1, "width": 67, "height": 70, "points": [{"handle": [10, 10], "target": [20, 12]}]}
    result = edit(pipe, image, points, lora=None, options={"max_iterations": 1}, steps=5)
    assert result.image.size == (64, 64)
    assert result.summary["width"] == 67  # final handles stay in the pixels the points were placed on


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "dragnothing"}, "method: 'dragnothing' is not one of"),
    ({"options": {"max_iteration": 3}}, "options: max_iteration not known"),
    ({"options": {"lr": -1.0}}, "options: "),
    ({"options": {"precision": "fp64"}}, "options: precision must be one of"),
    ({"points": "{not json"}, "points: "),
    ({"points": {**POINTS, "points": [{"handle": [90, 10], "target": [10, 10]}]}}, "points: "),
    ({"image": np.zeros((16, 16, 3), np.uint8)}, "image: 16×16 px"),
    ({"image": np.zeros((64, 64), np.float32)}, "image: expected an RGB picture"),
    ({"lora": "/nonexistent/lora.safetensors"}, "lora: /nonexistent/lora.safetensors does not exist"),
    ({"inversion_strength": 1.5}, "inversion_strength: must be in"),
    ({"edit_prompt": "a cat"}, "edit_prompt: only the training-free drag"),
    ({"steps": 5000}, "steps: must be a whole number in"),
    ({"lora": "train", "lora_resolution": 4}, "lora_steps / lora_resolution / lora_crop_encoding: lr must be > 0 and resolution"),
    ({"lora": "train", "lora_crop_encoding": "pixels"}, "lora_crop_encoding: crop_encoding must be one of"),
    ({"lora": {"lora_unet_foo.alpha": torch.tensor(1.0)}}, "lora: the LoRA names 'lora_unet_foo.alpha'"),
    ({"method": "sacdrag", "steps": 10}, "steps: the training-free drag drags at step 10"),
])
def test_bad_input_is_a_clear_error(pipe, kwargs, message):
    from dragkit.drag_core.api import DragKitError, edit

    args = {"image": _picture(), "points": POINTS, "lora": None, "steps": 5, **kwargs}
    with pytest.raises(DragKitError, match=message.replace("(", r"\(")):
        edit(pipe, **args)


def test_a_unet_with_the_users_own_adapters_is_refused_not_stripped(pipeline_dir):
    from peft import LoraConfig, inject_adapter_in_model

    from dragkit.drag_core.api import DragKitError, DragPipeline, edit

    pipe = DragPipeline.load(pipeline_dir, device="cpu")
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["to_q"]), pipe.unet, adapter_name="style")
    with pytest.raises(DragKitError, match=r"lora: the UNet already carries peft adapters \['style'\]"):
        edit(pipe, _picture(), POINTS, steps=5)
    assert sum(1 for m in pipe.unet.modules() if hasattr(m, "lora_A") and "style" in m.lora_A) == 32


def test_a_v_prediction_model_is_converted_to_epsilon(pipeline_dir):
    """ε = √ᾱ·v + √(1−ᾱ)·z_t: the backbone of a v-prediction pipeline hands the methods ε, and an edit runs."""
    from diffusers import StableDiffusionPipeline

    from dragkit.drag_core.api import DragKitError, DragPipeline, edit

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True)
    pipe.scheduler.register_to_config(prediction_type="v_prediction")
    drag_pipe = DragPipeline.from_diffusers(pipe, device="cpu")
    backbone = drag_pipe.backbone()
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    context = drag_pipe.encode_prompt("a red square")
    with torch.no_grad():
        v = pipe.unet(z, torch.tensor([681, 301]), encoder_hidden_states=context.expand(2, -1, -1)).sample
    alpha = drag_pipe.alphas_cumprod[[681, 301]].float().reshape(-1, 1, 1, 1)
    with torch.no_grad():
        eps = backbone(z, torch.tensor([681, 301]), context).eps
    torch.testing.assert_close(eps, alpha.sqrt() * v + (1 - alpha).sqrt() * z)
    assert edit(drag_pipe, _picture(), POINTS, lora=None, options={"max_iterations": 1}, steps=5).image.size == (64, 64)
    pipe.scheduler.register_to_config(prediction_type="sample")
    with pytest.raises(DragKitError, match="predicts 'sample'"):
        DragPipeline.from_diffusers(pipe, device="cpu")


def test_load_refuses_what_is_not_a_pipeline(tmp_path):
    from dragkit.drag_core.api import DragKitError, DragPipeline

    with pytest.raises(DragKitError, match="without model_index.json"):
        DragPipeline.load(tmp_path)
    with pytest.raises(DragKitError, match="neither a diffusers pipeline folder"):
        DragPipeline.load(tmp_path / "model.bin")


def test_cli_writes_picture_summary_and_lora(pipeline_dir, tmp_path, capsys):
    from PIL import Image

    from dragkit.drag_core.cli import main

    Image.fromarray(_picture()).save(tmp_path / "in.png")
    (tmp_path / "points.json").write_text(json.dumps(POINTS))
    out = tmp_path / "out" / "dragged.png"
    code = main(["--model", str(pipeline_dir), "--image", str(tmp_path / "in.png"), "--points",
                 str(tmp_path / "points.json"), "--out", str(out), "--lora-steps", "1", "--lora-resolution", "64",
                 "--steps", "5", "--option", "max_iterations=2", "--option", "motion_anchor=initial",
                 "--save-lora", str(tmp_path / "lora.safetensors"), "--device", "cpu"])
    assert code == 0
    assert Image.open(out).size == (64, 64)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["method"] == "dragdiffusion" and summary["iterations"] <= 2
    assert json.loads(capsys.readouterr().out)["final_distance_px"] == summary["final_distance_px"]
    assert (tmp_path / "lora.safetensors").stat().st_size > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["dragged.json", "dragged.png"]  # no temp files left

    code = main(["--model", str(pipeline_dir), "--image", str(tmp_path / "in.png"), "--points", "{}",
                 "--out", str(tmp_path / "bad.png"), "--lora", "none"])
    assert code == 2 and not (tmp_path / "bad.png").exists()
