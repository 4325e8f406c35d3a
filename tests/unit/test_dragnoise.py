"""DragNoise (SPEC §2) on a tiny backbone with a replaceable bottleneck."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from torch.nn import functional as nnf

from dragkit.drag_core.backbone import UNetOutput, UNetRequest
from dragkit.drag_core.drag_loop import DragConfig
from dragkit.drag_core.dragnoise import DRAGNOISE_CONFIG, PAPER_END_STEP, optimize_bottleneck, semantic_propagation
from dragkit.drag_core.guidance import Prompt, guided
from dragkit.drag_core.schedule import DDIMSchedule, scaled_linear_alphas_cumprod
from dragkit.drag_core.state import DiffusionState

LATENT = 12
HANDLE = torch.tensor([[17.0, 17.0]])
TARGET = torch.tensor([[17.0, 27.0]])  # 10 grid cells to the right


@dataclass
class Call:
    timestep: int
    batch: int
    grad_enabled: bool
    z_requires_grad: bool
    capture: bool
    replaced: torch.Tensor | None  # the bottleneck given for replacement


class BottleneckBackbone:
    """An "encoder" h = z + prompt bias (the bottleneck, capturable and replaceable), a "decoder"
    d = h + 0.1·z (the skip connection from z) whose [d, blur d, blur² d] are the features, and
    ε = a fixed 3×3 conv of d. Records every call."""

    num_decoder_blocks = 4
    num_self_attention_layers = 16

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.eps_weight = torch.randn(4, 4, 3, 3, generator=g) * 0.1
        k = torch.tensor([1.0, 2.0, 1.0])
        self.blur = ((k[:, None] * k[None]) / 16).expand(4, 1, 3, 3).clone()
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.calls: list[Call] = []

    def __call__(self, z, timestep, context, request=UNetRequest()) -> UNetOutput:
        self.calls.append(Call(int(timestep), z.shape[0], torch.is_grad_enabled(), z.requires_grad,
                               request.capture_bottleneck, request.bottleneck))
        h = z + context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        captured = h if request.capture_bottleneck else None
        if request.bottleneck is not None:
            h = request.bottleneck
        d = h + 0.1 * z
        b1 = nnf.conv2d(d, self.blur, padding=1, groups=4)
        b2 = nnf.conv2d(b1, self.blur, padding=1, groups=4)
        eps = nnf.conv2d(d, self.eps_weight, padding=1)
        return UNetOutput(eps, [torch.cat([d, b1, b2], dim=1) for _ in request.feature_blocks], captured)


def blob_latent() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    z = 0.1 * torch.randn(1, 4, LATENT, LATENT, generator=g)
    yy, xx = torch.meshgrid(torch.arange(LATENT, dtype=torch.float32), torch.arange(LATENT, dtype=torch.float32),
                            indexing="ij")
    z[0, 0] += torch.exp(-((yy - 4.0) ** 2 + (xx - 4.0) ** 2) / 2)
    return z


def column_of_mass(x: torch.Tensor) -> float:
    m = (x[0, 0] - 0.4).clamp(min=0)
    cols = torch.arange(LATENT, dtype=torch.float32)
    return float((m.sum(dim=0) * cols).sum() / m.sum())


def make_state(z: torch.Tensor, steps: int = 50, step_index: int = 15, **kw) -> DiffusionState:
    schedule = DDIMSchedule(scaled_linear_alphas_cumprod(), steps)
    return DiffusionState(**{"schedule": schedule, "step_index": step_index, "source": z,
                             "context": torch.zeros(1, 1, 8), **kw})


def test_defaults_are_the_released_demo_s():
    c = DRAGNOISE_CONFIG
    assert (c.max_iterations, c.lam, c.lr, c.mask_term_without_mask) == (60, 0.1, 0.01, False)
    assert (c.r_m, c.r_p, c.stop_distance, c.feature_blocks) == (1, 3, 2.0, (2,))
    assert PAPER_END_STEP == 10


def test_the_drag_moves_the_bottleneck_and_leaves_z_t_bitwise_unchanged():
    z = blob_latent()
    state = make_state(z)
    backbone = BottleneckBackbone()
    result = optimize_bottleneck(backbone, state, HANDLE, TARGET, None, DRAGNOISE_CONFIG)
    assert result.reached and result.final_distance < 2.0
    assert torch.equal(state.source, blob_latent()) and torch.equal(result.latent, blob_latent())
    # The object moved right in h (the captured h is z: the prompt bias is 0 here): its column of mass
    # shifted by more than a latent cell.
    assert column_of_mass(result.bottleneck) - column_of_mass(z) > 1.0
    assert result.bottleneck.shape == z.shape and not result.bottleneck.requires_grad


def test_gradients_reach_h_and_never_z_t():
    backbone = BottleneckBackbone()
    result = optimize_bottleneck(backbone, make_state(blob_latent()), HANDLE, TARGET, None,
                                 replace(DRAGNOISE_CONFIG, max_iterations=4, stop_distance=0.5))
    capture, *loop = backbone.calls
    # The first forward captures h, without gradients and without replacing anything.
    assert capture.capture and capture.replaced is None and not capture.grad_enabled
    assert len(loop) == 4 and result.unet_passes == 5 and result.steps == 4
    for call in loop:  # then every iteration runs the fixed z_t with h replaced by the optimized leaf
        assert call.grad_enabled and not call.z_requires_grad
        assert call.replaced is not None and call.replaced.requires_grad and call.replaced.is_leaf
        assert call.timestep == 681 and call.batch == 1


def test_mask_term_switch_without_a_mask():
    base = replace(DRAGNOISE_CONFIG, max_iterations=5, stop_distance=0.5)
    run = lambda config, mask=None: optimize_bottleneck(  # noqa: E731
        BottleneckBackbone(), make_state(blob_latent()), HANDLE, TARGET, mask, config).bottleneck
    off = run(base)
    # Off (DragDiffusion's rule): no term at all, exactly as λ = 0.
    assert torch.equal(off, run(replace(base, lam=0.0)))
    # On (the released code): the term with an all-zero mask, i.e. everything regularized.
    on = run(replace(base, mask_term_without_mask=True))
    assert torch.equal(on, run(base, torch.zeros(1, 1, LATENT, LATENT)))
    assert not torch.equal(on, off)


@pytest.mark.parametrize("steps, step_index, end_step", [(50, 15, 0), (50, 15, PAPER_END_STEP), (20, 6, 5), (50, 15, 40)])
def test_semantic_propagation_replaces_h_exactly_below_steps_minus_end_step(steps, step_index, end_step):
    h = torch.randn(1, 4, LATENT, LATENT)
    state = make_state(blob_latent(), steps, step_index, bottleneck=h)
    backbone = BottleneckBackbone()
    semantic_propagation(backbone, state, end_step)
    timesteps = state.schedule.timesteps
    assert [c.timestep for c in backbone.calls] == timesteps[step_index:]
    replaced = [i for i, c in zip(range(step_index, steps), backbone.calls) if c.replaced is not None]
    assert replaced == list(range(step_index, steps - end_step))
    assert all(c.replaced is h for c in backbone.calls if c.replaced is not None)
    assert all(c.batch == 1 for c in backbone.calls)  # one latent, not a duplicated batch


def test_semantic_propagation_needs_a_bottleneck_and_a_valid_end_step():
    with pytest.raises(ValueError, match="no optimized bottleneck"):
        semantic_propagation(BottleneckBackbone(), make_state(blob_latent()))
    with pytest.raises(ValueError, match="end_step"):
        semantic_propagation(BottleneckBackbone(), make_state(blob_latent(), bottleneck=blob_latent()), 51)


def test_under_guidance_each_branch_keeps_its_own_bottleneck():
    z = blob_latent()
    cond, uncond = torch.full((1, 1, 8), 0.5), torch.zeros(1, 1, 8)
    backbone = BottleneckBackbone()
    captured = guided(backbone, z, 681, Prompt(cond, uncond, 7.5), UNetRequest(capture_bottleneck=True)).bottleneck
    plain_u = backbone(z, 681, uncond, UNetRequest(capture_bottleneck=True)).bottleneck
    plain_c = backbone(z, 681, cond, UNetRequest(capture_bottleneck=True)).bottleneck
    assert torch.equal(captured, torch.cat([plain_u, plain_c]))  # [unconditional; conditional]
    with pytest.raises(ValueError, match="unconditional; conditional"):
        guided(backbone, z, 681, Prompt(cond, uncond, 7.5), UNetRequest(bottleneck=plain_c))

    state = make_state(z, context=cond, uncond_context=uncond, guidance_scale=7.5)
    backbone = BottleneckBackbone()
    result = optimize_bottleneck(backbone, state, HANDLE, TARGET, None, replace(DRAGNOISE_CONFIG, max_iterations=3))
    assert result.bottleneck.shape[0] == 2 and all(c.batch == 2 for c in backbone.calls)
    assert not torch.equal(result.bottleneck[0], result.bottleneck[1])
    backbone = BottleneckBackbone()
    semantic_propagation(backbone, replace(state, bottleneck=result.bottleneck), 0)
    assert all(c.batch == 2 and c.replaced.shape[0] == 2 for c in backbone.calls)


def test_dragdiffusion_config_is_unchanged_by_the_switch():
    assert DragConfig().mask_term_without_mask is False and DragConfig().max_iterations == 80
