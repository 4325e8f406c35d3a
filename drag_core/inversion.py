"""DDIM inversion (SPEC §0.2) and plain DDIM denoising on the backbone protocol."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .backbone import Backbone, StepCallback, UNetRequest, no_callback
from .guidance import Prompt, guided
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
    z = z0.to(backbone.device)  # ε comes back on the UNet's device; the latent may arrive from ComfyUI's CPU
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


# What one denoising step asks of the UNet beyond ε, by the step's index in the full schedule: which attention
# control, which bottleneck. Each method builds its own (reference.mutual_from, dragnoise.bottleneck_until).
StepRequest = Callable[[int], UNetRequest]


def plain_steps(index: int) -> UNetRequest:
    """Nothing beyond ε on any step."""
    return UNetRequest()


@torch.no_grad()
def ddim_denoise(
    backbone: Backbone,
    z: torch.Tensor,
    prompt: Prompt | torch.Tensor,
    schedule: DDIMSchedule,
    steps: int | range,
    per_step: StepRequest = plain_steps,
    callback: StepCallback = no_callback,
) -> torch.Tensor:
    """Denoise ``z`` with DDIM over the schedule indices ``steps`` (a range; an int i = from i to the end).

    ``z`` lives at ``timesteps[steps.start]``; after the last index it lives at the next timestep, or is clean
    (ᾱ = 1) when the range runs to the end. ``prompt``: one embedding (unguided), or a :class:`Prompt` —
    every step is then classifier-free guided when it is (mutual pairs apply per branch); its context is one
    prompt or one per batch item. ``per_step(i)`` says what step i asks of the UNet beyond ε.
    """
    steps = range(steps, schedule.num_steps) if isinstance(steps, int) else steps
    if steps.step != 1 or not 0 <= steps.start <= steps.stop <= schedule.num_steps:
        raise ValueError(f"bad step range [{steps.start}, {steps.stop}) for {schedule.num_steps} steps")
    timesteps = schedule.timesteps
    z = z.to(backbone.device)
    for k, i in enumerate(steps):
        t = timesteps[i]
        eps = guided(backbone, z, t, prompt, per_step(i)).eps
        z = ddim_step(z, eps, schedule.alpha(t), schedule.alpha(schedule.prev_timestep(i)))
        callback(k + 1, len(steps))
    return z
