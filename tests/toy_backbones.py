"""Small pure-torch backbones implementing drag_core's protocol, for unit tests."""

from __future__ import annotations

import torch
from torch.nn import functional as nnf

from dragkit.drag_core.backbone import UNetOutput, UNetRequest
from dragkit.drag_core.schedule import DDIMSchedule, scaled_linear_alphas_cumprod
from dragkit.drag_core.state import DiffusionState


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


# A blob on noise, dragged by the translation-equivariant backbone below (DragDiffusion's and GoodDrag's tests).
LATENT = 12  # latent side; the supervision grid is 4× that (48)
BLOB = (4.0, 4.0)  # blob centre in latent cells; grid ≈ 4·4 + 1.5 with align_corners=False upsampling


class ToyBackbone:
    """Implements the backbone protocol with fixed convolutions: ε is a random 3×3 conv of z and every
    requested feature map is [z, blur(z), blur(blur(z))] — translation-equivariant and discriminative
    enough for tracking, with untrained weights."""

    def __init__(self, seed: int = 0, weights_require_grad: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.eps_weight = (torch.randn(4, 4, 3, 3, generator=g) * 0.1).requires_grad_(weights_require_grad)
        k = torch.tensor([1.0, 2.0, 1.0])
        self.blur = ((k[:, None] * k[None]) / 16).expand(4, 1, 3, 3).clone()
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.num_decoder_blocks = 4
        self.num_self_attention_layers = 16
        self.calls = 0

    def __call__(self, z, timestep, context, request=UNetRequest()) -> UNetOutput:
        self.calls += 1
        eps = nnf.conv2d(z, self.eps_weight, padding=1)
        b1 = nnf.conv2d(z, self.blur, padding=1, groups=4)
        b2 = nnf.conv2d(b1, self.blur, padding=1, groups=4)
        return UNetOutput(eps, [torch.cat([z, b1, b2], dim=1) for _ in request.feature_blocks])


def blob_latent(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = 0.1 * torch.randn(1, 4, LATENT, LATENT, generator=g)
    yy, xx = torch.meshgrid(
        torch.arange(LATENT, dtype=torch.float32), torch.arange(LATENT, dtype=torch.float32), indexing="ij"
    )
    z[0, 0] += torch.exp(-((yy - BLOB[0]) ** 2 + (xx - BLOB[1]) ** 2) / 2)
    return z


def centre_of_mass(z: torch.Tensor) -> tuple[float, float]:
    m = (z[0, 0] - 0.2).clamp(min=0)  # the blob, above the background noise
    yy, xx = torch.meshgrid(
        torch.arange(LATENT, dtype=torch.float32), torch.arange(LATENT, dtype=torch.float32), indexing="ij"
    )
    return float((m * yy).sum() / m.sum()), float((m * xx).sum() / m.sum())


def make_state(z: torch.Tensor) -> DiffusionState:
    schedule = DDIMSchedule(scaled_linear_alphas_cumprod())
    return DiffusionState(schedule=schedule, step_index=15, source=z, context=torch.zeros(1, 1, 8))


