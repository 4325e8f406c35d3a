"""DragNoise in-process: BottleneckOptimize and SemanticPropagationDenoise on ComfyUI's real UNet."""

import copy
from dataclasses import replace

import pytest
import torch

from dragkit.drag_core.points import DragPoints

POINTS = DragPoints((((40, 40), (70, 52)),), 128, 128).to_json()
STEPS = 20  # a 20-step schedule: strength 0.7 → 14 inverted steps, the state at index 6


@pytest.fixture
def inverted(tiny_model, comfy):
    from dragkit.nodes.inversion_nodes import DDIMInvert

    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        state, _ = DDIMInvert.execute(tiny_model, latent, comfy.conditioning(comfy.random_context()), STEPS, 0.7, False)
    return state


@pytest.fixture
def drag_points(comfy):
    from dragkit.nodes.points_nodes import DragPoints

    image = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return DragPoints.execute(image, POINTS).result[0]


def _optimize(model, state, drag_points, iterations=3, **kw):
    from dragkit.nodes.dragnoise_nodes import BottleneckOptimize

    args = dict(max_iterations=iterations, lr=0.01, lam=0.1, r_m=1, r_p=3, stop_distance=2.0, feature_blocks="2",
                mask_term_without_mask=False, seed=42, precision="auto")
    args.update(kw)
    with torch.inference_mode():
        return BottleneckOptimize.execute(model, state, drag_points, **args)


def _propagate(model, state, end_step=0):
    from dragkit.nodes.dragnoise_nodes import SemanticPropagationDenoise

    with torch.inference_mode():
        return SemanticPropagationDenoise.execute(model, state, end_step)[0]


def test_the_node_optimizes_h_and_leaves_z_t_and_the_model_bitwise_unchanged(tiny_model, inverted, drag_points):
    weights = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    options = copy.deepcopy(tiny_model.model_options)
    source = inverted.source.clone()
    out = _optimize(tiny_model, inverted, drag_points)
    state, tracked, preview = out.result
    assert torch.equal(state.source, source) and torch.equal(inverted.source, source)
    assert state.edited is None and inverted.bottleneck is None
    assert state.bottleneck.shape == (1, 64, 2, 2)  # the tiny UNet's middle-block output at a 16×16 latent
    summary = out.ui["drag"][0]
    assert summary["iterations"] == 3 and summary["unet_passes"] == 4  # one capture pass + one per iteration
    assert len(tracked.trajectories[0]) == 3 and preview.shape == (1, 128, 128, 3)
    assert tiny_model.model_options == options
    assert all(torch.equal(v, weights[k]) for k, v in tiny_model.model.state_dict().items())


def test_motion_anchor_reaches_the_bottleneck_drag(tiny_model, inverted, drag_points):
    plain = _optimize(tiny_model, inverted, drag_points, iterations=4).result[0].bottleneck
    initial = _optimize(tiny_model, inverted, drag_points, iterations=4, motion_anchor="initial").result[0].bottleneck
    assert torch.isfinite(initial).all() and not torch.equal(plain, initial)
    from dragkit.nodes.errors import DragKitInputError

    with pytest.raises(DragKitInputError, match="BottleneckOptimize: input 'motion_anchor'.*'start'"):
        _optimize(tiny_model, inverted, drag_points, iterations=1, motion_anchor="start")


def test_gradients_reach_h_through_the_real_decoder_and_never_z_t(tiny_model, comfy, inverted, drag_points):
    from dragkit.drag_core.dragnoise import DRAGNOISE_CONFIG, optimize_bottleneck
    from dragkit.drag_core.points import grid_points
    from dragkit.nodes.comfy_unet import ComfyBackbone

    backbone = ComfyBackbone(tiny_model, "Test", feature_blocks=(2,), bottleneck=True)
    backbone.load()
    seen = []
    original = backbone.__call__

    def spy(z, t, context, request):
        out = original(z, t, context, request)
        seen.append((z.requires_grad, request.bottleneck, out.bottleneck))
        return out

    handles, targets = grid_points(drag_points.points, 128, 128)
    with torch.inference_mode():
        result = optimize_bottleneck(spy_backbone(backbone, spy), inverted, handles, targets, None,
                                     replace(DRAGNOISE_CONFIG, max_iterations=3, stop_distance=0.5))
    (_, none, h0), *loop = seen
    assert none is None and h0 is not None  # the first forward only captures h
    assert all(not z_grad and h.requires_grad and h.is_leaf for z_grad, h, _ in loop)
    assert result.steps == 3 and not torch.equal(result.bottleneck, h0.cpu())  # Adam moved h
    assert torch.equal(result.latent, inverted.source)


def spy_backbone(backbone, call):
    """The backbone with its call routed through ``call`` (attributes shared)."""

    class Spied:
        def __getattr__(self, name):
            return getattr(backbone, name)

        def __call__(self, *args):
            return call(*args)

    return Spied()


@pytest.mark.parametrize("end_step", [0, 3, STEPS])
def test_the_bottleneck_is_replaced_at_output_0_exactly_on_the_intended_steps(tiny_model, inverted, end_step):
    from dragkit.drag_core.dragnoise import semantic_propagation
    from dragkit.nodes.comfy_unet import ComfyBackbone

    h = torch.randn(1, 64, 2, 2, generator=torch.Generator().manual_seed(7))
    backbone = ComfyBackbone(tiny_model, "Test", bottleneck=True)
    seen = []  # (σ, output block index, the h that block receives)

    def spy(x, hsp, transformer_options):  # registered after DragKit's patch, so it sees the replaced h
        seen.append((float(transformer_options["sigmas"][0]), transformer_options["block"][1], x.clone()))
        return x, hsp

    backbone.patcher.set_model_output_block_patch(spy)
    backbone.load()
    with torch.no_grad():
        semantic_propagation(backbone, replace(inverted, bottleneck=h), end_step)
    sigmas = sorted({s for s, _, _ in seen}, reverse=True)
    assert len(sigmas) == STEPS - inverted.step_index  # one UNet pass per remaining step
    for index, sigma in zip(range(inverted.step_index, STEPS), sigmas):
        blocks = {b: x for s, b, x in seen if s == sigma}
        assert sorted(blocks) == list(range(12)) and all(x.shape[0] == 1 for x in blocks.values())  # one latent
        assert torch.equal(blocks[0], h) == (index < STEPS - end_step), index
        assert not any(torch.equal(x, h) for b, x in blocks.items() if b > 0)  # and nowhere else


def test_propagation_without_replacement_is_plain_ddim_and_with_it_differs(tiny_model, inverted, drag_points):
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise

    state = _optimize(tiny_model, inverted, drag_points).result[0]
    with torch.inference_mode():
        (plain,) = ReferenceLatentDenoise.execute(tiny_model, inverted, False, 0, 10)
    torch.testing.assert_close(_propagate(tiny_model, state, STEPS)["samples"], plain["samples"])
    released = _propagate(tiny_model, state, 0)["samples"]
    paper = _propagate(tiny_model, state, 10)["samples"]
    assert not torch.allclose(released, plain["samples"]) and not torch.allclose(paper, released)


def test_dragnoise_on_a_generated_image_keeps_one_bottleneck_per_branch(tiny_model, comfy, drag_points):
    from dragkit.nodes.inversion_nodes import DDIMSample

    cond, uncond = comfy.conditioning(comfy.random_context(1)), comfy.conditioning(comfy.random_context(2))
    with torch.inference_mode():
        (state,) = DDIMSample.execute(tiny_model, cond, uncond, 42, STEPS, 7.5, 0.7, 128, 128)
    edited = _optimize(tiny_model, state, drag_points, iterations=2).result[0]
    assert edited.bottleneck.shape == (2, 64, 2, 2) and edited.guidance_scale == 7.5  # [unconditional; conditional]
    assert torch.isfinite(_propagate(tiny_model, edited)["samples"]).all()


def test_states_meet_the_right_denoiser(tiny_model, inverted, drag_points):
    from dragkit.nodes.errors import DragKitInputError
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise

    with pytest.raises(DragKitInputError, match="SemanticPropagationDenoise: input 'state'.*BottleneckOptimize"):
        _propagate(tiny_model, inverted)
    state = replace(inverted, bottleneck=torch.zeros(1, 64, 2, 2))
    with pytest.raises(DragKitInputError, match="ReferenceLatentDenoise: input 'state'.*SemanticPropagationDenoise"):
        with torch.inference_mode():
            ReferenceLatentDenoise.execute(tiny_model, state, True, 0, 10)
    with pytest.raises(DragKitInputError, match="input 'end_step'"):
        _propagate(tiny_model, state, STEPS + 1)
    with pytest.raises(DragKitInputError, match="BottleneckOptimize: input 'drag_points'"):
        _optimize(tiny_model, inverted, "not points")
