"""The identity-preserving LoRA of DragDiffusion (SPEC §1.1), in plain torch.

A rank-r LoRA on the q/k/v/out projections of every attention module, trained for a few dozen
steps on random square crops of the one input image with the ordinary ε-prediction loss, so that
inversion and the drag keep the image's identity and style.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .backbone import StepCallback, no_callback
from .precision import PRECISIONS, LossScaler, autocast_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoRAConfig:
    """Defaults are the reference's (SPEC §1.6)."""

    rank: int = 16
    alpha: float | None = None  # None: alpha = rank (scale 1)
    lr: float = 5e-4
    steps: int = 80
    batch_size: int = 4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    resolution: int = 512  # crops are resolution × resolution (SD1.5's native size)
    seed: int = 0
    precision: str = "fp32"  # "fp16" (with loss scaling, the reference on GPU), "bf16" or "fp32"

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be ≥ 1, got {self.rank}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be ≥ 1, got {self.steps}, {self.batch_size}")
        if self.lr <= 0 or self.resolution < 8:
            raise ValueError(f"lr must be > 0 and resolution ≥ 8, got {self.lr}, {self.resolution}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def scale(self) -> float:
        return (self.rank if self.alpha is None else self.alpha) / self.rank


class LoRADelta(torch.nn.Module):
    """W ↦ W + scale·(up @ down) for one linear weight (out, in); down ~ N(0, 1/rank), up = 0, so
    training starts from the unchanged model."""

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float, generator: torch.Generator) -> None:
        super().__init__()
        self.down = torch.nn.Parameter(torch.randn(rank, in_features, generator=generator) / rank)
        self.up = torch.nn.Parameter(torch.zeros(out_features, rank))
        self.scale = scale

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        delta = (self.up @ self.down) * self.scale
        return weight + delta.to(device=weight.device, dtype=weight.dtype)

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        """scale·up(down(x)): the delta's contribution to a projection's output, as the reference computes it."""
        return F.linear(F.linear(x, self.down.to(x.device, x.dtype)), self.up.to(x.device, x.dtype)) * self.scale


def lora_parameter_count(shapes: Sequence[tuple[int, int]], rank: int) -> int:
    """rank · (in + out) for every adapted (out, in) weight."""
    return sum(rank * (out_f + in_f) for out_f, in_f in shapes)


def random_square_crops(image: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` independent augmentations of one image (1, 3, H, W) in [0, 1]: shorter side resized
    to ``size``, then a random size × size crop; returned in [−1, 1] as (count, 3, size, size)."""
    _, _, h, w = image.shape
    factor = size / min(h, w)
    if factor > 1:
        log.info("identity LoRA: image %d×%d is smaller than the %d px crops; upscaling it", w, h, size)
    new_h, new_w = max(size, round(h * factor)), max(size, round(w * factor))
    resized = F.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=factor < 1)
    crops = []
    for _ in range(count):
        top = int(torch.randint(0, new_h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, new_w - size + 1, (1,), generator=generator))
        crops.append(resized[:, :, top : top + size, left : left + size])
    return torch.cat(crops).clamp(0, 1) * 2 - 1


# (noisy latents, per-item timesteps, context) → ε prediction of the model with the LoRA active
EpsFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (batch of crops in [−1, 1], generator) → a sample of the VAE posterior × the latent scale
EncodeFunction = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# batch of crops in [−1, 1] → the VAE posterior's (mean, std), each (B, C, h, w), in the VAE's own space
MomentsFunction = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def posterior_sampler(moments: MomentsFunction, to_latent: Callable[[torch.Tensor], torch.Tensor],
                      reuse: bool = True) -> EncodeFunction:
    """The LoRA's encoder from a backend's VAE ``moments`` and its latent scaling ``to_latent``: mean + std·noise
    (SPEC §1.1 samples the posterior), noise drawn from the training generator as (batch, C, h, w).

    A batch of identical crops is encoded once, and the last such picture's moments are kept for the next batch
    equal to it. Every crop of a square image is the whole picture resized to the crop size, so an 80-step LoRA
    on a square image encodes one picture instead of 320: the same posterior, sampled with the same noise, so the
    same training distribution (only the encoder's batch-size rounding differs). Other images are encoded batch
    by batch as before. ``reuse`` False encodes every batch (the reference's cost, for benchmarks)."""
    last: list[torch.Tensor] = []  # [crop, mean, std] of the last identical batch

    def encode(crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        first = crops[:1]
        identical = reuse and bool((crops == first).all())
        if identical and last and torch.equal(last[0], first):
            mean, std = last[1], last[2]
        elif identical:
            mean, std = moments(first)
            last[:] = [first.clone(), mean, std]
        else:
            mean, std = moments(crops)
        noise = torch.randn((crops.shape[0], *mean.shape[1:]), generator=generator).to(mean.device)
        return to_latent((mean.float() + std.float() * noise).cpu())

    return encode


@dataclass
class LoRATrainResult:
    losses: list[float] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)


def train_identity_lora(
    eps_model: EpsFunction,
    parameters: Sequence[torch.nn.Parameter],
    encode: EncodeFunction,
    image: torch.Tensor,
    context: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    config: LoRAConfig,
    device: torch.device,
    callback: StepCallback = no_callback,
    on_step: Callable[[int, float], None] | None = None,
) -> LoRATrainResult:
    """AdamW on ``parameters`` (the LoRA factors): each step a batch of fresh random crops, encoded
    (a posterior *sample*), noised at uniform integer timesteps in [0, T), ε-MSE (mean).

    All crops are encoded first, so the VAE and the UNet are never needed on the device at the same
    time (the latents are tiny: 80 × 4 × 4 × 64 × 64 floats at 512 px)."""
    generator = torch.Generator().manual_seed(config.seed)
    image = image.detach().float().cpu()
    with torch.no_grad():
        latents = [
            encode(random_square_crops(image, config.resolution, config.batch_size, generator), generator).float().cpu()
            for _ in range(config.steps)
        ]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    scaler = LossScaler(config.precision == "fp16")
    autocast = autocast_for(device, config.precision)
    alphas = alphas_cumprod.to(torch.float64)
    result = LoRATrainResult()
    context = context.detach().to(device)
    for step in range(config.steps):
        z0 = latents[step].to(device)
        t = torch.randint(0, len(alphas), (config.batch_size,), generator=generator)
        noise = torch.randn(z0.shape, generator=generator).to(device)
        a = alphas[t].float().to(device).reshape(-1, 1, 1, 1)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        with autocast():
            eps = eps_model(z_t, t, context)
        loss = F.mse_loss(eps.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        (loss * scaler.scale).backward()
        grads = [p.grad for p in parameters if p.grad is not None]
        finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads)
        if finite:
            for g in grads:
                g.div_(scaler.scale)
            optimizer.step()
        scaler.update(finite)
        if not finite:
            result.skipped_steps.append(step)
            log.warning("identity LoRA: non-finite loss or gradient at step %d; step skipped", step)
        value = float(loss.detach())
        result.losses.append(value if math.isfinite(value) else math.nan)
        if on_step is not None:
            on_step(step, value)
        callback(step + 1, config.steps)
    return result
