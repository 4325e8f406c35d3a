"""The diffusion state that flows between DragKit's nodes (type name ``DRAG_STATE``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .schedule import DDIMSchedule


@dataclass(frozen=True)
class DiffusionState:
    """Immutable: each stage takes one and returns a new one (``dataclasses.replace``).

    Latents are VP latents in the model's own latent space (after ``latent_format.process_in``),
    batch 1, on the intermediate (CPU) device; they live at ``schedule.timesteps[step_index]``.
    """

    schedule: DDIMSchedule
    step_index: int  # the latents live at schedule.timesteps[step_index]
    source: torch.Tensor  # the inverted source latent z_t
    context: torch.Tensor  # the text embedding the source was inverted with, (1, tokens, dim)
    edited: torch.Tensor | None = None  # the dragged latent (None: not edited yet)
    # Generated images (SPEC §1.5): classifier-free guidance for the drag and the denoising.
    uncond_context: torch.Tensor | None = None
    guidance_scale: float = 1.0

    @property
    def timestep(self) -> int:
        return self.schedule.timesteps[self.step_index]

    def with_edit(self, edited: torch.Tensor) -> DiffusionState:
        return replace(self, edited=edited)
