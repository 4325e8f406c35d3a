"""Small pure-torch backbones implementing drag_core's protocol, for unit tests."""

from __future__ import annotations

import torch

from dragkit.drag_core.backbone import UNetOutput, UNetRequest
from dragkit.drag_core.schedule import scaled_linear_alphas_cumprod


class SmoothBackbone:
    """ε = a fixed, smooth, timestep-dependent function of z (and the context's mean), so inversion
    behaves like a real well-trained model's (ε varies slowly along the trajectory)."""

    num_decoder_blocks = 4
    num_self_attention_layers = 16

    def __init__(self, seed: int = 0, channels: int = 4) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.05)
        self.conv.requires_grad_(False)
        self.calls: list[tuple[int, tuple[int, ...]]] = []

    def __call__(self, z, timestep, context, request=UNetRequest()):
        self.calls.append((timestep, tuple(z.shape)))
        scale = 0.5 + timestep / 1000
        eps = torch.tanh(self.conv(z) * scale + context.mean())
        return UNetOutput(eps=eps)
