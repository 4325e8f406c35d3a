"""The training-free drag with self-attention control (SPEC §3; Lim, Jo, Lee): point and prompt
editing together, no LoRA.

The method is a graph of DragKit's stages:

1. z_T: DDIM-invert the image all the way (``inversion_strength`` 1.0, with the sampling-step
   correction, SPEC §0.2), or, for a generated image, seed noise with classifier-free guidance.
2. :func:`denoise_branches` to the drag step: the batch [source, edited] from z_T (z_T' = z_T), the
   source branch on the source prompt, the edited branch on the edit prompt, and from ``sac_step``
   on, in the self-attention layers from ``sac_layer`` on, the edited branch's queries attend to the
   source branch's keys and values (MasaCtrl's mutual self-attention, as SPEC §1.4).
3. The drag at that step: DragDiffusion's latent optimization of the edited branch
   (:func:`~drag_core.dragdiffusion.optimize_latent`, same loss and stop rule) on its prompt.
4. Denoise both branches to the end with the same control and decode the edited branch.

Defaults (the paper's comparison setup): 50 steps, ``sac_step`` 10, ``drag_step`` 10, ``sac_layer``
10 (MasaCtrl's and SPEC §1.4's layer; §3 names no other).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .backbone import Backbone, MutualSelfAttention, StepCallback, no_callback
from .inversion import ddim_denoise
from .state import DiffusionState

SAC_STEP = 10
DRAG_STEP = 10
SAC_LAYER = 10


def branches_identical(state: DiffusionState) -> bool:
    """True when the edited branch stays equal to the source branch: same latent and same prompt.
    Mutual self-attention then changes nothing (attending to an identical item's keys and values is
    plain self-attention)."""
    same_prompt = state.edit_context is None or (
        state.edit_context.shape == state.context.shape and torch.equal(state.edit_context, state.context)
    )
    return state.edited is None and same_prompt


@torch.no_grad()
def denoise_branches(
    backbone: Backbone,
    state: DiffusionState,
    end_index: int,
    mutual: MutualSelfAttention | None = None,
    mutual_from_index: int = 0,
    callback: StepCallback = no_callback,
) -> DiffusionState:
    """Denoise the state's [source, edited] from ``state.step_index`` to schedule index ``end_index``
    and return the state there (SPEC §3, step 2).

    ``mutual`` (pairs ((1, 0),): edited ← source) acts on the steps whose schedule index is at least
    ``mutual_from_index``. The edited branch uses ``state.edited_context``, and its latent starts as
    ``state.edited_latent``. While the two branches are identical (same latent, same prompt), only one
    is computed and the state keeps ``edited`` = None (= the source).
    """
    if not state.step_index <= end_index <= state.schedule.num_steps:
        raise ValueError(
            f"end_index {end_index} must lie in [{state.step_index}, {state.schedule.num_steps}] "
            f"(the state is at step {state.step_index})"
        )
    common = dict(
        schedule=state.schedule, start_index=state.step_index, end_index=end_index, callback=callback,
        uncond_context=state.uncond_context, guidance_scale=state.guidance_scale,
    )
    if branches_identical(state):
        z = ddim_denoise(backbone, state.source, state.context, **common)
        return replace(state, step_index=end_index, source=z.cpu(), edited=None)
    z = torch.cat([state.source, state.edited_latent])
    out = ddim_denoise(
        backbone, z, state.branch_contexts(), mutual=mutual, mutual_from_index=mutual_from_index, **common
    )
    return replace(state, step_index=end_index, source=out[:1].cpu(), edited=out[1:].cpu())
