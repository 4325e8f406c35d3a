"""AlternatingDragDenoise (GoodDrag) in-process on the tiny SD1.5-shaped model: the chain from DDIMInvert or
DDIMSample to a LATENT, inputs untouched, zero drag iterations = ReferenceLatentDenoise bitwise, clear errors."""

import copy
from dataclasses import replace

import pytest
import torch

from dragkit.drag_core.points import DragPoints as Points

PAIR = (((40, 40), (70, 52)),)


def _widgets(**kw):
    args = dict(drag_end_step=2, track_per_step=2, drag_per_track=2, lr=0.02, lam=0.1, beta=4.0, r_m=4, r_p=12,
                stop_distance=2.0, feature_blocks="2", max_track_no_change=5, drag_loss_threshold=0.0, start_layer=10,
                seed=42, precision="auto")
    args.update(kw)
    return args


def _drag(model, state, drag_points, **kw):
    from dragkit.nodes.gooddrag_nodes import AlternatingDragDenoise

    with torch.inference_mode():  # as ComfyUI runs nodes
        return AlternatingDragDenoise.execute(model, state, drag_points, **_widgets(**kw))


@pytest.fixture
def drag_points(comfy):
    from dragkit.nodes.points_nodes import DragPoints

    mask = torch.zeros(1, 128, 128)
    mask[:, 16:96, 16:96] = 1
    image = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return DragPoints.execute(image, Points(PAIR, 128, 128).to_json(), mask).result[0]


@pytest.fixture
def inverted(tiny_model, comfy):
    from dragkit.nodes.inversion_nodes import DDIMInvert

    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        return DDIMInvert.execute(tiny_model, latent, comfy.conditioning(comfy.random_context()), 50, 0.75, False)[0]


def test_the_node_drags_and_denoises_to_a_latent_and_leaves_its_inputs_untouched(tiny_model, inverted, drag_points):
    weights = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    options = copy.deepcopy(tiny_model.model_options)
    source = inverted.source.clone()
    out = _drag(tiny_model, inverted, drag_points)
    latent, tracked, preview = out.result
    assert latent["samples"].shape == (1, 4, 16, 16) and torch.isfinite(latent["samples"]).all()
    summary = out.ui["drag"][0]  # what API users and the editor widget read
    assert summary["iterations"] == len(tracked.trajectories[0]) and 1 <= summary["iterations"] <= 8
    assert summary["final_handles"] == [list(tracked.trajectories[0][-1])]
    assert out.ui["images"][0]["type"] == "temp" and preview.shape == (1, 128, 128, 3)
    assert torch.equal(inverted.source, source) and inverted.edited is None
    assert tiny_model.model_options == options
    assert all(torch.equal(v, weights[k]) for k, v in tiny_model.model.state_dict().items())
    # The drag changed the picture: not what the same chain gives without drag iterations.
    undragged = _drag(tiny_model, inverted, drag_points, drag_end_step=0).result[0]
    assert not torch.allclose(latent["samples"], undragged["samples"])
    # Deterministic on the CPU.
    assert torch.equal(_drag(tiny_model, inverted, drag_points).result[0]["samples"], latent["samples"])


@pytest.mark.parametrize("edited", [False, True])
def test_zero_drag_iterations_equal_reference_latent_denoise_bitwise(tiny_model, inverted, drag_points, edited):
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise

    state = inverted
    if edited:  # an already dragged state: both branches, the edited one under mutual self-attention
        noise = torch.randn(state.source.shape, generator=torch.Generator().manual_seed(5))
        state = state.with_edit(state.source + 0.1 * noise)
    with torch.inference_mode():
        (expected,) = ReferenceLatentDenoise.execute(tiny_model, state, True, 0, 10)
    for no_drag in (dict(drag_end_step=0), dict(track_per_step=0)):
        latent = _drag(tiny_model, state, drag_points, **no_drag).result[0]
        assert torch.equal(latent["samples"], expected["samples"])
    if edited:  # and the control is on: without it the result differs
        with torch.inference_mode():
            (plain,) = ReferenceLatentDenoise.execute(tiny_model, state, False, 0, 10)
        assert not torch.equal(plain["samples"], expected["samples"])


def test_a_generated_image_is_dragged_with_guidance(tiny_model, comfy, drag_points):
    from dragkit.nodes.inversion_nodes import DDIMSample

    cond, uncond = comfy.conditioning(comfy.random_context(1)), comfy.conditioning(comfy.random_context(2))
    with torch.inference_mode():
        state = DDIMSample.execute(tiny_model, cond, uncond, 42, 20, 7.5, 0.75, 128, 128)[0]
    assert state.guidance_scale == 7.5
    latent = _drag(tiny_model, state, drag_points).result[0]
    undragged = _drag(tiny_model, state, drag_points, drag_end_step=0).result[0]
    assert torch.isfinite(latent["samples"]).all() and not torch.allclose(latent["samples"], undragged["samples"])


def test_bad_inputs_are_clear_node_errors(tiny_model, inverted, drag_points):
    from dragkit.nodes.errors import DragKitInputError

    with pytest.raises(DragKitInputError, match="AlternatingDragDenoise: input 'feature_blocks'"):
        _drag(tiny_model, inverted, drag_points, feature_blocks="third")
    with pytest.raises(DragKitInputError, match="AlternatingDragDenoise: input 'start_layer'"):
        _drag(tiny_model, inverted, drag_points, start_layer=40)
    with pytest.raises(DragKitInputError, match="AlternatingDragDenoise: input 'state'"):
        _drag(tiny_model, "not a state", drag_points)
    with pytest.raises(DragKitInputError, match="AlternatingDragDenoise: input 'state'.*bottleneck"):
        _drag(tiny_model, replace(inverted, bottleneck=torch.zeros(1, 8, 2, 2)), drag_points)
    with pytest.raises(DragKitInputError, match="AlternatingDragDenoise: input 'drag_points'"):
        _drag(tiny_model, inverted, "no points")


def test_the_node_is_registered_with_tooltips_and_the_editor_knows_it():
    from pathlib import Path

    from dragkit.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    node = NODE_CLASS_MAPPINGS["DragKitAlternatingDragDenoise"]
    assert "GoodDrag" in NODE_DISPLAY_NAME_MAPPINGS["DragKitAlternatingDragDenoise"]
    required = node.INPUT_TYPES()["required"]
    assert all("tooltip" in spec[1] for spec in required.values())
    optional = node.INPUT_TYPES()["optional"]
    assert "motion_anchor" not in optional  # always the initial features
    assert optional["control_during_drag"][1]["default"] is False  # the option; API graphs without it validate
    assert required["drag_end_step"][1]["default"] == 7 and required["lr"][1]["default"] == 0.02
    editor = (Path(__file__).parents[2] / "web" / "dragpoints.js").read_text()
    assert '"DragKitAlternatingDragDenoise"' in editor.split("const OPTIMIZERS")[1].split("\n")[0]


def test_an_interrupt_stops_the_drag(tiny_model, inverted, drag_points):
    import comfy.model_management as mm

    calls = []
    real = mm.throw_exception_if_processing_interrupted

    def interrupt_on_the_third_progress():
        calls.append(1)
        if len(calls) == 3:
            mm.interrupt_current_processing(True)
        real()

    mm.throw_exception_if_processing_interrupted = interrupt_on_the_third_progress
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _drag(tiny_model, inverted, drag_points)
    finally:
        mm.throw_exception_if_processing_interrupted = real
        mm.interrupt_current_processing(False)
    assert len(calls) == 3  # it stopped at the progress report that saw the flag
