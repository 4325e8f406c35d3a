"""Mixed precision shared by the optimization loops (drag and LoRA training)."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "fp16", "bf16")


class LossScaler:
    """Dynamic loss scaling for fp16 (as torch's GradScaler: start 2¹⁶, halve on overflow, double
    after 2000 clean steps). A step whose scaled gradient overflows is skipped, never applied."""

    def __init__(self, enabled: bool, scale: float = 2.0**16, growth_interval: int = 2000) -> None:
        self.enabled = enabled
        self.scale = scale if enabled else 1.0
        self.growth_interval = growth_interval
        self._clean = 0

    def update(self, finite: bool) -> None:
        if not self.enabled:
            return
        if finite:
            self._clean += 1
            if self._clean == self.growth_interval:
                self.scale, self._clean = self.scale * 2, 0
        else:
            self.scale, self._clean = self.scale / 2, 0


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto': the reference's fp16 autocast + loss scaling on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def autocast_for(device: torch.device, precision: str):
    """A context factory: mixed precision for the UNet forward, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)
