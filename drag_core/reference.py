"""Reference-latent control (SPEC §1.4): denoise [source, edited] with mutual self-attention.

The edited branch's self-attention queries, in the controlled layers, attend to the source branch's keys
and values only (MasaCtrl's mutual self-attention); the source branch is denoised as it would be alone, and
cross-attention is never touched. DragDiffusion's last stage (ReferenceLatentDenoise) and the training-free
drag's denoising around its drag (DenoiseToStep, SPEC §3) are both this function over different step ranges.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .backbone import Backbone, MutualSelfAttention, StepCallback, UNetRequest, no_callback
from .inversion import StepRequest, ddim_denoise
from .state import DiffusionState

EDITED_FROM_SOURCE = ((1, 0),)  # mutual pairs (edited index, source index) of the batch [source, edited]


def mutual_from(mutual: MutualSelfAttention | None, first_index: int) -> StepRequest:
    """Per-step requests: ``mutual`` on every step whose schedule index is at least ``first_index``."""

    def request(index: int) -> UNetRequest:
        return UNetRequest(mutual=mutual if (mutual is not None and index >= first_index) else None)

    return request


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
    and return the state there.

    ``mutual`` (pairs ``EDITED_FROM_SOURCE``) acts on the steps whose schedule index is at least
    ``mutual_from_index``. The edited branch uses ``state.edited_context``, and its latent starts as
    ``state.edited_latent``. While the two branches are identical (same latent, same prompt), only one
    is computed and the state keeps ``edited`` = None (= the source). Guided like the state.
    """
    if not state.step_index <= end_index <= state.schedule.num_steps:
        raise ValueError(
            f"end_index {end_index} must lie in [{state.step_index}, {state.schedule.num_steps}] "
            f"(the state is at step {state.step_index})"
        )
    steps = range(state.step_index, end_index)
    if branches_identical(state):
        z = ddim_denoise(backbone, state.source, state.source_prompt, state.schedule, steps, callback=callback)
        return replace(state, step_index=end_index, source=z.cpu(), edited=None)
    z = torch.cat([state.source, state.edited_latent])
    out = ddim_denoise(backbone, z, state.branch_prompt, state.schedule, steps, mutual_from(mutual, mutual_from_index),
                       callback)
    return replace(state, step_index=end_index, source=out[:1].cpu(), edited=out[1:].cpu())
