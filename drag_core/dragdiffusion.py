"""DragDiffusion's latent optimization (SPEC §1.3): move handles to targets by optimizing z_t.

Reads next to SPEC §1.3. The LoRA (§1.1), inversion (§1.2) and reference-latent denoising (§1.4,
``reference.py``) are separate stages; this module only turns an inverted state plus points into an
edited z_t, by running the shared drag loop (``drag_loop.py``) with z_t as the variable.
"""

from __future__ import annotations

import torch

from .backbone import Backbone, StepCallback, no_callback
from .drag_loop import DragConfig, DragResult, DragVariable, IterationCallback, UNetStep, run_drag
from .state import DiffusionState


def optimize_latent(
    backbone: Backbone,
    state: DiffusionState,
    handles: torch.Tensor,
    targets: torch.Tensor,
    mask_latent: torch.Tensor | None,
    config: DragConfig = DragConfig(),
    callback: StepCallback = no_callback,
    on_iteration: IterationCallback | None = None,
    grid_hw: tuple[int, int] | None = None,
) -> DragResult:
    """Optimize z_t so the features at the handles move to the targets (SPEC §1.3); arguments as
    :func:`~drag_core.drag_loop.run_drag`.

    z_t is the state's edited latent: the inverted source, or the edited branch of a training-free
    drag (SPEC §3), evaluated with that branch's prompt.
    ``callback(k + 1, max_iterations)`` runs after every iteration (progress, interrupts; may raise);
    ``on_iteration(k, handles, mean distance)`` runs after the tracking of every iteration.

    A state with ``guidance_scale`` > 1 (a generated image, SPEC §1.5) runs each forward on the batch
    [unconditional, conditional]: ε is CFG-combined and the features are concatenated with weights
    (1 − c, c), c = s/(2s − 1) (see :mod:`drag_core.guidance`).

    One UNet forward per iteration. The forward of iteration 0 (on the unmodified z_t) also provides
    F0 and ε0: the reference computes them in a separate no-grad pass on the same z_t, which gives the
    same values, so this saves one pass and a run that has already reached its targets costs one pass.
    """

    def latent_variable(step: UNetStep, z_t: torch.Tensor) -> DragVariable:
        return DragVariable(initial=z_t, forward=step, z_t=lambda z: z)

    result, z_t = run_drag(
        backbone, state, handles, targets, mask_latent, config, latent_variable, callback, on_iteration, grid_hw
    )
    result.latent = z_t
    return result
