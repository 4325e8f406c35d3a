"""The diffusion state that flows between DragKit's nodes (type name ``DRAG_STATE``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .guidance import Prompt, concat_contexts
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
    edited: torch.Tensor | None = None  # the dragged latent (None: not edited yet, i.e. equal to source)
    # Generated images (SPEC §1.5): classifier-free guidance for the drag and the denoising.
    uncond_context: torch.Tensor | None = None
    guidance_scale: float = 1.0
    # The training-free drag (SPEC §3): the edited branch's prompt (None: the source prompt).
    edit_context: torch.Tensor | None = None
    # DragNoise (SPEC §2): the optimized middle-block output h at this state's timestep, for semantic
    # propagation; under CFG it is [unconditional; conditional] stacked on the batch (see guidance.py).
    bottleneck: torch.Tensor | None = None

    @property
    def timestep(self) -> int:
        return self.schedule.timesteps[self.step_index]

    @property
    def edited_latent(self) -> torch.Tensor:
        """The edited branch's latent: the dragged one, or the source while nothing is edited."""
        return self.source if self.edited is None else self.edited

    @property
    def edited_context(self) -> torch.Tensor:
        """The edited branch's prompt: the edit prompt, or the source prompt."""
        return self.context if self.edit_context is None else self.edit_context

    def branch_contexts(self) -> torch.Tensor:
        """Prompts of the batch [source, edited], (2, tokens, dim)."""
        return concat_contexts([self.context, self.edited_context])

    @property
    def source_prompt(self) -> Prompt:
        """The source branch's prompt with the state's guidance."""
        return Prompt(self.context, self.uncond_context, self.guidance_scale)

    @property
    def edited_prompt(self) -> Prompt:
        """The edited branch's prompt with the state's guidance."""
        return Prompt(self.edited_context, self.uncond_context, self.guidance_scale)

    @property
    def branch_prompt(self) -> Prompt:
        """The batch [source, edited]'s prompts with the state's guidance."""
        return Prompt(self.branch_contexts(), self.uncond_context, self.guidance_scale)

    def with_edit(self, edited: torch.Tensor) -> DiffusionState:
        return replace(self, edited=edited)
