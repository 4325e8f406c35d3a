"""Classifier-free guidance on the backbone protocol (SPEC §1.5: dragging generated images).

With guidance scale s > 1 every UNet call runs the batch [unconditional, conditional] of the same
latents: ε = ε_u + s·(ε_c − ε_u), and the drag's features are the two branches' features concatenated
on channels with weights (1 − c, c), c = s / (2s − 1). Mutual self-attention pairs apply per branch
(unconditional edited ← unconditional source, conditional edited ← conditional source).

The bottleneck (DragNoise, SPEC §2) is per branch too: under guidance a captured middle-block output
is returned as the UNet saw it, [unconditional; conditional] stacked on the batch (2b items), and a
replacement must be given in the same layout, so each branch gets back its own optimized h.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .backbone import Backbone, MutualSelfAttention, UNetOutput, UNetRequest


@dataclass(frozen=True)
class Prompt:
    """A UNet call's text conditioning: the prompt embedding (1 or B, tokens, dim) and, for classifier-free
    guidance, the unconditional embedding and the scale. One value wherever a prompt goes, guided or not."""

    context: torch.Tensor
    uncond_context: torch.Tensor | None = None
    scale: float = 1.0

    @property
    def is_guided(self) -> bool:
        return self.uncond_context is not None and self.scale != 1.0


def as_prompt(prompt: Prompt | torch.Tensor) -> Prompt:
    """A bare embedding is an unguided prompt."""
    return prompt if isinstance(prompt, Prompt) else Prompt(prompt)


def feature_weight(scale: float) -> float:
    """c = s / (2s − 1): the conditional branch's weight in the concatenated drag features."""
    return scale / (2 * scale - 1)


def concat_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    """Stack text embeddings of different token counts (e.g. 77 and 154) on the batch axis by
    repeating each to the least common multiple: attention over a repeated sequence is unchanged."""
    lengths = [c.shape[1] for c in contexts]
    target = math.lcm(*lengths)
    return torch.cat([c.repeat(1, target // c.shape[1], 1) for c in contexts])


def guided(
    backbone: Backbone,
    z: torch.Tensor,
    timestep: int | torch.Tensor,
    prompt: Prompt | torch.Tensor,
    request: UNetRequest = UNetRequest(),
) -> UNetOutput:
    """One UNet evaluation, classifier-free guided when the prompt is (an unconditional embedding, scale ≠ 1)."""
    prompt = as_prompt(prompt)
    context, uncond_context, scale = prompt.context, prompt.uncond_context, prompt.scale
    if not prompt.is_guided:
        return backbone(z, timestep, context, request)
    b = z.shape[0]
    if request.bottleneck is not None and request.bottleneck.shape[0] != 2 * b:
        raise ValueError(
            f"under guidance the bottleneck holds [unconditional; conditional] ({2 * b} items), "
            f"got {request.bottleneck.shape[0]}"
        )
    both = concat_contexts([uncond_context.expand(b, -1, -1), context.expand(b, -1, -1)])
    if request.mutual is not None:
        pairs = request.mutual.pairs + tuple((e + b, s + b) for e, s in request.mutual.pairs)
        request = replace(request, mutual=MutualSelfAttention(request.mutual.layers, pairs))
    out = backbone(torch.cat([z, z]), timestep, both, request)
    eps_u, eps_c = out.eps.chunk(2)
    c = feature_weight(scale)
    features = [torch.cat([(1 - c) * f_u, c * f_c], dim=1) for f_u, f_c in (f.chunk(2) for f in out.features)]
    return UNetOutput(eps=eps_u + scale * (eps_c - eps_u), features=features, bottleneck=out.bottleneck)
