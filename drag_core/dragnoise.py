"""DragNoise (SPEC §2): drag by optimizing the UNet bottleneck h instead of the latent z_t.

Reads next to SPEC §2. Same inversion (t = 681), features, points, tracking, loss form and stop rule
as DragDiffusion; the loop is the shared one (:func:`~drag_core.drag_loop.drag_loop`).
What differs:

1. *Diffusion semantic optimization*: h = the middle-block output at the state's timestep, captured
   by one forward on z_t. Each iteration runs the UNet on the fixed z_t with the middle-block output
   replaced by h (the encoder path and the skip connections come from z_t), so gradients flow only
   through the decoder into h. z_t never changes.
2. *Diffusion semantic propagation*: denoise z_t with h replacing the middle-block output at every
   step whose schedule index is below ``steps − end_step``, one latent (the released code denoises a
   batch of two identical latents, which only doubles the cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .backbone import Backbone, StepCallback, UNetRequest, no_callback
from .drag_loop import DragConfig, DragResult, DragVariable, IterationCallback, UNetStep, run_drag
from .inversion import StepRequest, ddim_denoise
from .state import DiffusionState

# The released demo's defaults (SPEC §2). Its benchmark run used 80 iterations, λ 0.2, lr 0.02.
DRAGNOISE_CONFIG = DragConfig(max_iterations=60, lam=0.1, lr=0.01)
# The paper stops propagating at t′ = 10 "to enhance detail"; the release (and the default) never stops.
PAPER_END_STEP = 10


@dataclass
class BottleneckResult(DragResult):
    bottleneck: torch.Tensor | None = None  # the optimized h, detached, on the CPU, float32


def optimize_bottleneck(
    backbone: Backbone,
    state: DiffusionState,
    handles: torch.Tensor,
    targets: torch.Tensor,
    mask_latent: torch.Tensor | None,
    config: DragConfig = DRAGNOISE_CONFIG,
    callback: StepCallback = no_callback,
    on_iteration: IterationCallback | None = None,
    grid_hw: tuple[int, int] | None = None,
) -> BottleneckResult:
    """Optimize the bottleneck h at the state's timestep with z_t fixed (SPEC §2); arguments as
    :func:`~drag_core.dragdiffusion.optimize_latent`.

    Returns ``latent`` = z_t (the state's edited latent, unchanged) and ``bottleneck`` = the optimized
    h. One extra UNet pass (no gradient) captures the initial h; under classifier-free guidance h
    holds both branches, [unconditional; conditional], and each branch keeps its own. With
    ``config.mask_term_without_mask`` and no mask, the λ term regularizes the whole latent (the released
    code's behaviour: an all-zero mask).
    """

    def bottleneck_variable(step: UNetStep, z_t: torch.Tensor) -> DragVariable:
        with torch.no_grad():
            h = step(z_t, UNetRequest(capture_bottleneck=True)).bottleneck
        if h is None:
            raise RuntimeError("the backbone did not return the bottleneck it was asked to capture")
        # z_t never requires grad, so autograd records only the decoder path from h.
        return DragVariable(initial=h, forward=lambda x: step(z_t, UNetRequest(bottleneck=x)), z_t=lambda x: z_t,
                            unet_passes=1)

    if mask_latent is None and config.mask_term_without_mask:
        mask_latent = torch.zeros((1, 1, *state.source.shape[-2:]))
    result, h = run_drag(
        backbone, state, handles, targets, mask_latent, config, bottleneck_variable, callback, on_iteration, grid_hw
    )
    return BottleneckResult(**vars(result) | {"latent": state.edited_latent, "bottleneck": h})


def propagation_until_index(num_steps: int, end_step: int) -> int:
    """Steps with schedule index below this get the optimized h: ``num_steps − end_step``."""
    if not 0 <= end_step <= num_steps:
        raise ValueError(f"end_step must be in [0, {num_steps}], got {end_step}")
    return num_steps - end_step


def bottleneck_until(h: torch.Tensor, until_index: int) -> StepRequest:
    """Per-step requests: replace the middle-block output with ``h`` on the steps with index < ``until_index``."""

    def request(index: int) -> UNetRequest:
        return UNetRequest(bottleneck=h if index < until_index else None)

    return request


@torch.no_grad()
def semantic_propagation(
    backbone: Backbone,
    state: DiffusionState,
    end_step: int = 0,
    callback: StepCallback = no_callback,
) -> torch.Tensor:
    """Denoise the state's latent to clean, replacing the middle-block output with the optimized h on
    every step whose schedule index i < ``schedule.num_steps − end_step`` (SPEC §2). No mutual
    self-attention. Guided like the drag when the state is (a generated image)."""
    if state.bottleneck is None:
        raise ValueError("the state holds no optimized bottleneck (run the DragNoise optimization first)")
    schedule = state.schedule
    until = propagation_until_index(schedule.num_steps, end_step)
    return ddim_denoise(backbone, state.edited_latent, state.edited_prompt, schedule, state.step_index,
                        bottleneck_until(state.bottleneck, until), callback)
