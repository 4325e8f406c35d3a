"""DDIM inversion (SPEC §0.2) and plain DDIM denoising on the backbone protocol."""

from __future__ import annotations

import logging

import torch

from .backbone import Backbone, MutualSelfAttention, StepCallback, UNetRequest, no_callback
from .guidance import guided
from .schedule import DDIMSchedule, ddim_step

log = logging.getLogger(__name__)


@torch.no_grad()
def ddim_invert(
    backbone: Backbone,
    z0: torch.Tensor,
    context: torch.Tensor,
    schedule: DDIMSchedule,
    num_inverted: int,
    first_step_correction: bool = False,
    callback: StepCallback = no_callback,
) -> torch.Tensor:
    """Invert the clean VP latent ``z0`` by ``num_inverted`` DDIM steps (no CFG).

    Walks the timesteps upward (1, 21, 41, …): each step evaluates the UNet on the current latent at
    the *target* timestep and applies the inverse update from the previous timestep. As in the
    reference, the clean latent is treated as living at ᾱ_0 = alphas_cumprod[0] ≈ 0.99915;
    ``first_step_correction`` instead treats it as exactly clean (ᾱ = 1), the exact inverse of the
    last denoising step of :func:`ddim_denoise`, which ends at ᾱ = 1.
    Returns the latent at ``schedule.timesteps[num_steps - num_inverted]``.
    """
    if not 1 <= num_inverted <= schedule.num_steps:
        raise ValueError(f"num_inverted must be in [1, {schedule.num_steps}], got {num_inverted}")
    ascending = schedule.timesteps[::-1]
    z = z0
    for i in range(num_inverted):
        t_next = ascending[i]
        t_cur = t_next - schedule.stride
        if t_cur >= 0:
            alpha_cur = schedule.alpha(t_cur)
        else:
            alpha_cur = 1.0 if first_step_correction else schedule.alpha(0)
        eps = backbone(z, t_next, context).eps
        z = ddim_step(z, eps, alpha_cur, schedule.alpha(t_next))
        callback(i + 1, num_inverted)
    return z


@torch.no_grad()
def ddim_denoise(
    backbone: Backbone,
    z: torch.Tensor,
    context: torch.Tensor,
    schedule: DDIMSchedule,
    start_index: int,
    end_index: int | None = None,
    mutual: MutualSelfAttention | None = None,
    mutual_from_index: int = 0,
    callback: StepCallback = no_callback,
    uncond_context: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    bottleneck: torch.Tensor | None = None,
    bottleneck_until_index: int = 0,
) -> torch.Tensor:
    """Denoise ``z`` (living at ``timesteps[start_index]``) through steps start_index … end_index−1.

    ``mutual`` enables mutual self-attention on the steps whose schedule index is at least
    ``mutual_from_index``. Without ``end_index`` the latent comes out clean (ᾱ = 1). With
    ``uncond_context`` and ``guidance_scale`` > 1 every step is classifier-free guided (mutual pairs
    then apply per branch). ``context`` is (1 or B, tokens, dim): one prompt, or one per batch item.
    ``bottleneck`` replaces the middle-block output on the steps whose schedule index is below
    ``bottleneck_until_index`` (DragNoise's semantic propagation, SPEC §2).
    """
    end_index = schedule.num_steps if end_index is None else end_index
    if not 0 <= start_index <= end_index <= schedule.num_steps:
        raise ValueError(f"bad step range [{start_index}, {end_index}) for {schedule.num_steps} steps")
    timesteps = schedule.timesteps
    total = end_index - start_index
    for k, i in enumerate(range(start_index, end_index)):
        t = timesteps[i]
        request = UNetRequest(
            mutual=mutual if (mutual is not None and i >= mutual_from_index) else None,
            bottleneck=bottleneck if i < bottleneck_until_index else None,
        )
        eps = guided(backbone, z, t, context, uncond_context, guidance_scale, request).eps
        z = ddim_step(z, eps, schedule.alpha(t), schedule.alpha(schedule.prev_timestep(i)))
        callback(k + 1, total)
    return z
