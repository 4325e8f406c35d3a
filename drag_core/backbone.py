"""The backbone protocol: the one interface every method is written against (DESIGN §1).

A backbone runs the ε-prediction UNet on VP latents at an integer timestep and, on request, returns
decoder features, captures or replaces the bottleneck, and runs mutual self-attention between batch
items. ``nodes/comfy_unet.py`` implements it with ComfyUI's patch hooks; tests implement it with tiny
torch modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class MutualSelfAttention:
    """MasaCtrl-style control: in the self-attention layers listed in ``layers`` (transformer-block
    indices in forward order: SD1.5 has 16, the last two decoder stages are 10–15), the queries of
    batch item ``edited`` attend to the keys and values of batch item ``source`` only."""

    layers: frozenset[int]
    pairs: tuple[tuple[int, int], ...]  # (edited index, source index)


@dataclass(frozen=True)
class UNetRequest:
    """What one UNet call should do beyond predicting ε."""

    feature_blocks: tuple[int, ...] = ()  # decoder blocks (diffusers up_blocks index) to return
    capture_bottleneck: bool = False  # return the middle-block output
    bottleneck: torch.Tensor | None = None  # replace the middle-block output with this
    mutual: MutualSelfAttention | None = None


@dataclass
class UNetOutput:
    eps: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)  # one per requested block, in order
    bottleneck: torch.Tensor | None = None


class Backbone(Protocol):
    """An ε-prediction UNet with SD1.x/2.x block structure."""

    alphas_cumprod: torch.Tensor  # (num_train_timesteps,) float64
    device: torch.device
    num_decoder_blocks: int  # diffusers' len(up_blocks): 4 for SD1.5
    num_self_attention_layers: int  # transformer blocks in forward order: 16 for SD1.5

    def __call__(
        self, z: torch.Tensor, timestep: int | torch.Tensor, context: torch.Tensor, request: UNetRequest = UNetRequest()
    ) -> UNetOutput:
        """``z``: (B, C, h, w) VP latent; ``timestep``: one integer timestep, or (B,) of them;
        ``context``: (B or 1, tokens, dim) text embedding."""
        ...


# Called once per step of a long loop with (done, total); nodes use it for the progress bar and to
# raise on the user's interrupt.
StepCallback = Callable[[int, int], None]


def no_callback(done: int, total: int) -> None:
    return None
