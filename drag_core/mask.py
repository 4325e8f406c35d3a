"""The editable-region mask at latent resolution (SPEC §0.4)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def editable_mask_for_latent(
    mask: torch.Tensor | None, image_h: int, image_w: int, latent_h: int, latent_w: int
) -> torch.Tensor | None:
    """The mask M_latent of the regularizer, (1, 1, latent_h, latent_w) float 0/1, or None for "no mask".

    ``mask`` is (H, W), (1, H, W) or (1, 1, H, W), 1 = editable. As in the reference it is binarized
    (> 0), nearest-resized to the supervision grid (⌊H/2⌋, ⌊W/2⌋) and then nearest-resized again to
    the latent size; the two-stage sampling picks different pixels than one resize would. A mask of
    another size than the image is first nearest-resized to the image. None, or a mask that is empty
    at latent resolution (the reference tests the resized mask), means "no mask".
    """
    if mask is None:
        return None
    if mask.dim() == 2:
        m = mask[None, None]
    elif mask.dim() in (3, 4) and all(s == 1 for s in mask.shape[:-2]):
        m = mask.reshape(1, 1, *mask.shape[-2:])
    else:
        raise ValueError(f"mask: expected shape (H, W), (1, H, W) or (1, 1, H, W), got {tuple(mask.shape)}")
    m = (m > 0).to(torch.float32)
    if tuple(m.shape[-2:]) != (image_h, image_w):
        log.info(
            "mask is %d×%d but the image is %d×%d; resizing the mask (nearest)",
            m.shape[-1],
            m.shape[-2],
            image_w,
            image_h,
        )
        m = F.interpolate(m, size=(image_h, image_w), mode="nearest")
    m = F.interpolate(m, size=(image_h // 2, image_w // 2), mode="nearest")
    m = F.interpolate(m, size=(latent_h, latent_w), mode="nearest")
    if not bool(m.any()):
        return None
    return m
