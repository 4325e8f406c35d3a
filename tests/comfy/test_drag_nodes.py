"""DragPoints → DDIMInvert → MotionSupervisionOptimize → ReferenceLatentDenoise in-process."""

import copy
import json
import logging

import pytest
import torch


def _points(pairs, width=128, height=128, **extra):
    return json.dumps({"version": 1, "width": width, "height": height,
                       "points": [{"handle": h, "target": t} for h, t in pairs], **extra})


def _nodes():
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise
    from dragkit.nodes.points_nodes import DragPoints

    return DragPoints(), DDIMInvert(), MotionSupervisionOptimize(), ReferenceLatentDenoise()


@pytest.fixture
def image():
    return torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def inverted(tiny_model, comfy):
    _, invert, _, _ = _nodes()
    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        state, _ = invert.execute(tiny_model, latent, comfy.conditioning(comfy.random_context()), 50, 0.7, False)
    return state


def _drag(model, state, drag_points, iterations=6, **kw):
    _, _, optimize, _ = _nodes()
    args = dict(max_iterations=iterations, lr=0.01, lam=0.1, r_m=1, r_p=3, stop_distance=2.0,
                feature_blocks="2", seed=42, precision="auto")
    args.update(kw)
    with torch.inference_mode():  # as ComfyUI runs nodes
        return optimize.execute(model, state, drag_points, **args)


def test_the_drag_chain_edits_the_latent_and_leaves_inputs_untouched(tiny_model, inverted, image):
    place, _, _, denoise = _nodes()
    mask = torch.zeros(1, 128, 128)
    mask[:, 16:96, 16:96] = 1
    with torch.inference_mode():
        drag_points, used_mask = place.execute(image, _points([([40, 40], [70, 52])]), mask).result
    assert torch.equal(used_mask, mask)
    weights = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    options = copy.deepcopy(tiny_model.model_options)
    source = inverted.source.clone()

    out = _drag(tiny_model, inverted, drag_points)
    state, tracked, preview = out.result
    assert out.ui["images"][0]["type"] == "temp"
    assert state.edited is not None and not torch.equal(state.edited, state.source)
    assert torch.equal(state.source, source) and inverted.edited is None  # the input state is unchanged
    assert len(tracked.trajectories) == 1 and len(tracked.trajectories[0]) == 6
    summary = out.ui["drag"][0]  # what API users and the editor widget read
    assert summary["iterations"] == 6 and summary["pairs"] == [{"handle": [40.0, 40.0], "target": [70.0, 52.0]}]
    assert summary["final_handles"] == [list(tracked.trajectories[0][-1])]
    assert summary["final_distance_px"] == pytest.approx(
        ((summary["final_handles"][0][0] - 70) ** 2 + (summary["final_handles"][0][1] - 52) ** 2) ** 0.5, abs=2.5)
    assert preview.shape == (1, 128, 128, 3)
    with torch.inference_mode():
        (latent,) = denoise.execute(tiny_model, state, True, 0, 10)
    assert latent["samples"].shape == (1, 4, 16, 16) and torch.isfinite(latent["samples"]).all()
    assert tiny_model.model_options == options
    assert all(torch.equal(v, weights[k]) for k, v in tiny_model.model.state_dict().items())


def test_the_drag_is_deterministic_on_cpu(tiny_model, inverted, image):
    place, _, _, _ = _nodes()
    with torch.inference_mode():
        drag_points, _ = place.execute(image, _points([([40, 40], [70, 52])])).result
    first = _drag(tiny_model, inverted, drag_points, iterations=4).result[0].edited
    second = _drag(tiny_model, inverted, drag_points, iterations=4).result[0].edited
    assert torch.equal(first, second)


def test_motion_anchor_is_optional_defaults_to_the_reference_and_changes_the_drag(tiny_model, inverted, image):
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.dragnoise_nodes import BottleneckOptimize

    for node in (MotionSupervisionOptimize, BottleneckOptimize):  # API graphs without it still validate
        kind, options = node.INPUT_TYPES()["optional"]["motion_anchor"]
        assert kind == "COMBO" and options["options"] == ["current", "initial"] and options["default"] == "current"
    place, _, _, _ = _nodes()
    with torch.inference_mode():
        drag_points, _ = place.execute(image, _points([([40, 40], [70, 52])])).result
    plain = _drag(tiny_model, inverted, drag_points, iterations=4).result[0].edited
    current = _drag(tiny_model, inverted, drag_points, iterations=4, motion_anchor="current").result[0].edited
    initial = _drag(tiny_model, inverted, drag_points, iterations=4, motion_anchor="initial").result[0].edited
    assert torch.equal(plain, current)
    from dragkit.nodes.errors import DragKitInputError

    with pytest.raises(DragKitInputError, match="MotionSupervisionOptimize: input 'motion_anchor'.*'start'"):
        _drag(tiny_model, inverted, drag_points, iterations=1, motion_anchor="start")
    # The first step is the same (F = F0 and the handle has not moved); later steps pull F0's features.
    assert not torch.equal(plain, initial) and torch.isfinite(initial).all()


def test_bf16_precision_runs_and_stays_close_to_fp32(tiny_model, inverted, image):
    place, _, _, _ = _nodes()
    with torch.inference_mode():
        drag_points, _ = place.execute(image, _points([([40, 40], [70, 52])])).result
    fp32 = _drag(tiny_model, inverted, drag_points, iterations=3, precision="fp32").result[0].edited
    bf16 = _drag(tiny_model, inverted, drag_points, iterations=3, precision="bf16").result[0].edited
    assert torch.isfinite(bf16).all()
    step32, step16 = (fp32 - inverted.source).flatten(), (bf16 - inverted.source).flatten()
    cosine = torch.nn.functional.cosine_similarity(step32, step16, dim=0)
    assert cosine > 0.5, cosine  # the same direction of travel; only rounding differs


def test_points_on_a_differently_sized_image_are_rescaled(image, comfy):
    place, _, _, _ = _nodes()
    with torch.inference_mode():
        drag_points, _ = place.execute(image, _points([([20, 20], [30, 25])], width=64, height=64)).result
    assert drag_points.points.pairs == (((40.0, 40.0), (60.0, 50.0)),)


def test_a_mask_of_another_size_is_resized_and_logged(image, comfy, caplog):
    place, _, _, _ = _nodes()
    small = torch.zeros(1, 32, 32)
    small[:, :16] = 1
    with caplog.at_level(logging.INFO), torch.inference_mode():
        _, mask = place.execute(image, _points([([40, 40], [70, 52])]), small).result
    assert mask.shape == (1, 128, 128) and mask[0, :64].all() and not mask[0, 64:].any()
    assert any("resizing the mask" in r.message for r in caplog.records)


def test_painted_and_input_masks_are_combined(image, comfy):
    from dragkit.drag_core.points import mask_to_rle

    place, _, _, _ = _nodes()
    painted = torch.zeros(128, 128)
    painted[:10] = 1
    given = torch.zeros(1, 128, 128)
    given[:, -10:] = 1
    with torch.inference_mode():
        _, mask = place.execute(image, _points([([40, 40], [70, 52])], mask=mask_to_rle(painted)), given).result
    assert mask.sum() == 2 * 10 * 128


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "no drag points"),
        ("{not json", "not valid JSON"),
        (json.dumps({"version": 2, "width": 128, "height": 128, "points": []}), '"version" must be 1'),
        (_points([]), "non-empty list"),
        (_points([([40, 40], [70, 52]), ([10, 10], [200, 10])]), r"pair 2\) target.*outside"),
        (_points([([40, 40], [40, 40])]), r"pair 1\): handle equals target"),
    ],
)
def test_bad_points_are_clear_node_errors(image, comfy, text, match):
    from dragkit.nodes.errors import DragKitInputError

    place, _, _, _ = _nodes()
    with pytest.raises(DragKitInputError, match="DragKit DragPoints: input 'points': (?s:.*)" + match):
        place.execute(image, text)


def test_bad_drag_settings_are_clear_node_errors(tiny_model, inverted, image):
    from dragkit.nodes.errors import DragKitInputError

    place, _, _, _ = _nodes()
    with torch.inference_mode():
        drag_points, _ = place.execute(image, _points([([40, 40], [70, 52])])).result
    with pytest.raises(DragKitInputError, match="MotionSupervisionOptimize: input 'feature_blocks'"):
        _drag(tiny_model, inverted, drag_points, feature_blocks="third")
    with pytest.raises(DragKitInputError, match="input 'feature_blocks'.*cannot be tapped"):
        _drag(tiny_model, inverted, drag_points, feature_blocks="3")
    with pytest.raises(DragKitInputError, match="DragPoints: input 'image'.*batch of 2"):
        place.execute(torch.rand(2, 128, 128, 3), _points([([40, 40], [70, 52])]))
