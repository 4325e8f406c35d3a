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

# How each step's crops become latents. "per_crop" (the reference): every crop is encoded by the VAE. "latent"
# (DragKit option, for pictures that are not square at the crop size): the resized picture is encoded once and the
# crops are cut from its latent. It changes the training distribution slightly: crop offsets on the latent grid
# (multiples of 8 px), each crop's latent sees the picture beyond the crop's edges (the encoder's receptive field),
# and up to 7 px at the bottom/right edge are never used (docs/BENCHMARKS.md measures it).
CROP_ENCODINGS = ("per_crop", "latent")
LATENT_FACTOR = 8  # pixels per latent cell (SD's VAE)
# Every step's latents are encoded before training (so the VAE and the UNet never share the device): steps ×
# batch × 4 × (resolution/8)² floats. SPEC's 80 × 4 at 512 px hold 21 MB; the widgets' maxima would hold
# hundreds of GB, so the product is capped before anything is encoded.
MAX_LATENT_BYTES = 2 * 2**30


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
    crop_encoding: str = "per_crop"  # CROP_ENCODINGS: "per_crop" (the reference) or "latent" (DragKit option)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be ≥ 1, got {self.rank}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be ≥ 1, got {self.steps}, {self.batch_size}")
        if self.lr <= 0 or self.resolution < 8:
            raise ValueError(f"lr must be > 0 and resolution ≥ 8, got {self.lr}, {self.resolution}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.crop_encoding not in CROP_ENCODINGS:
            raise ValueError(f"crop_encoding must be one of {CROP_ENCODINGS}, got {self.crop_encoding!r}")
        if self.latent_bytes > MAX_LATENT_BYTES:
            raise ValueError(
                f"steps × batch_size × resolution: {self.steps} × {self.batch_size} crops at {self.resolution} px "
                f"would hold {self.latent_bytes / 2**30:.1f} GiB of encoded latents, more than "
                f"{MAX_LATENT_BYTES // 2**30} GiB; lower them (SPEC: 80 × 4 at 512 px, 21 MB)")
        if self.crop_encoding == "latent" and self.resolution % LATENT_FACTOR:
            raise ValueError(f"crop_encoding 'latent' needs a resolution divisible by {LATENT_FACTOR}, got {self.resolution}")

    @property
    def latent_bytes(self) -> int:
        """The memory the pre-encoded latents of all steps take (float32, 4 channels)."""
        cells = -(-self.resolution // LATENT_FACTOR)
        return self.steps * self.batch_size * 4 * cells * cells * 4

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


def resize_shorter_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """One image (1, 3, H, W) in [0, 1] with its shorter side resized to ``size`` (bilinear; antialiased when
    shrinking), in [−1, 1]."""
    _, _, h, w = image.shape
    factor = size / min(h, w)
    if factor > 1:
        log.info("identity LoRA: image %d×%d is smaller than the %d px crops; upscaling it", w, h, size)
    new_h, new_w = max(size, round(h * factor)), max(size, round(w * factor))
    resized = F.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=factor < 1)
    return resized.clamp(0, 1) * 2 - 1


def random_crops(picture: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random size × size crops of ``picture`` (1, C, H, W), offsets uniform, as (count, C, size, size)."""
    _, _, h, w = picture.shape
    crops = []
    for _ in range(count):
        top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        crops.append(picture[:, :, top : top + size, left : left + size])
    return torch.cat(crops)


def random_square_crops(image: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` independent augmentations of one image (1, 3, H, W) in [0, 1]: shorter side resized
    to ``size``, then a random size × size crop; returned in [−1, 1] as (count, 3, size, size)."""
    return random_crops(resize_shorter_side(image, size), size, count, generator)


def latent_square_crops(encode: EncodeFunction, image: torch.Tensor, size: int, count: int,
                        generator: torch.Generator) -> torch.Tensor:
    """``crop_encoding`` "latent": the resized picture (trimmed to whole latent cells) encoded as a batch of
    ``count`` identical pictures — one VAE pass, which posterior_sampler keeps for the next steps — with
    independent posterior noise, then a random crop of each sample on the latent grid."""
    resized = resize_shorter_side(image, size)
    h, w = (side // LATENT_FACTOR * LATENT_FACTOR for side in resized.shape[-2:])
    samples = encode(resized[:, :, :h, :w].expand(count, -1, -1, -1), generator)
    cells = size // LATENT_FACTOR
    return torch.cat([random_crops(sample[None], cells, 1, generator) for sample in samples])


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
        if config.crop_encoding == "latent":
            latents = [latent_square_crops(encode, image, config.resolution, config.batch_size, generator).float().cpu()
                       for _ in range(config.steps)]
        else:
            latents = [encode(random_square_crops(image, config.resolution, config.batch_size, generator),
                              generator).float().cpu() for _ in range(config.steps)]
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
