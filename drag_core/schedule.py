"""The DDIM schedule of SD1.x/2.x (SPEC §0.1) in the VP form used by the papers' code.

Latents here are "VP latents" z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε. ComfyUI's samplers work in sigma space
x = z·√(1+σ²) with ᾱ = 1/(1+σ²); :func:`vp_to_sigma_space` converts between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TRAIN_TIMESTEPS = 1000


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085, beta_end: float = 0.012, num_train_timesteps: int = TRAIN_TIMESTEPS
) -> torch.Tensor:
    """ᾱ of SD1.5's "scaled_linear" beta schedule (float64)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def leading_timesteps(num_steps: int, num_train_timesteps: int = TRAIN_TIMESTEPS) -> list[int]:
    """Diffusers' "leading" spacing with steps_offset 1, descending: 50 steps → 981, 961, …, 21, 1."""
    if num_steps < 1 or num_steps > num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {num_steps}")
    stride = num_train_timesteps // num_steps
    return [i * stride + 1 for i in range(num_steps)][::-1]


def inversion_step_count(num_steps: int, inversion_strength: float) -> int:
    """n = round(strength · steps), Python's round-half-to-even as in the reference (0.75·50 → 38)."""
    if not 0.0 < inversion_strength <= 1.0:
        raise ValueError(f"inversion_strength must be in (0, 1], got {inversion_strength}")
    n = round(inversion_strength * num_steps)
    return max(1, min(num_steps, n))


@dataclass(frozen=True)
class DDIMSchedule:
    """A deterministic (η = 0) DDIM schedule over ``alphas_cumprod`` with ``num_steps`` steps.

    Index i of :attr:`timesteps` is denoising step i; the latent *before* step i lives at
    ``timesteps[i]``; after the last step it is clean (ᾱ = 1, ComfyUI's σ = 0; SPEC §0.1 allows
    either this or the reference's ᾱ_0 ≈ 0.99915 for that final step).
    """

    alphas_cumprod: torch.Tensor  # (num_train_timesteps,), float64
    num_steps: int = 50

    @property
    def timesteps(self) -> list[int]:
        return leading_timesteps(self.num_steps, len(self.alphas_cumprod))

    @property
    def stride(self) -> int:
        return len(self.alphas_cumprod) // self.num_steps

    def alpha(self, t: int | None) -> float:
        """ᾱ_t; ``None`` means the clean end of the chain (ᾱ = 1)."""
        return 1.0 if t is None else float(self.alphas_cumprod[t])

    def start_index(self, inversion_strength: float) -> int:
        """Denoising step index at which an inversion of this strength leaves the latent."""
        return self.num_steps - inversion_step_count(self.num_steps, inversion_strength)

    def prev_timestep(self, index: int) -> int | None:
        """Timestep the latent reaches after denoising step ``index`` (None = clean)."""
        return self.timesteps[index + 1] if index + 1 < self.num_steps else None


def ddim_step(z: torch.Tensor, eps: torch.Tensor, alpha_t: float, alpha_next: float) -> torch.Tensor:
    """One η = 0 DDIM update from ᾱ_t to ᾱ_next (either direction: denoising or inversion).

    x0 = (z − √(1−ᾱ_t)·ε)/√ᾱ_t ;  z_next = √ᾱ_next·x0 + √(1−ᾱ_next)·ε
    """
    x0 = (z - (1.0 - alpha_t) ** 0.5 * eps) / alpha_t**0.5
    return alpha_next**0.5 * x0 + (1.0 - alpha_next) ** 0.5 * eps


def sigma_of(alpha: float) -> float:
    """ComfyUI's σ for a given ᾱ: σ = √((1−ᾱ)/ᾱ)."""
    return ((1.0 - alpha) / alpha) ** 0.5


def vp_to_sigma_space(z: torch.Tensor, alpha: float) -> torch.Tensor:
    """x = z·√(1+σ²) = z/√ᾱ."""
    return z / alpha**0.5


def sigma_space_to_vp(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x * alpha**0.5
