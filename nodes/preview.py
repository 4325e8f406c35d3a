"""Preview pictures for the nodes: points, arrows, tracked trajectories and the editable mask."""

from __future__ import annotations

import os
import uuid

import numpy as np
import torch
from PIL import Image, ImageDraw

HANDLE = (230, 40, 40)
TARGET = (40, 90, 230)
TRACK = (255, 200, 0)
EDITABLE = (60, 200, 90)  # the editor's colours: green = may change, orange = the region to move (RegionWarp)
REGION = (245, 150, 30)


def to_pil(image: torch.Tensor) -> Image.Image:
    """ComfyUI IMAGE (B, H, W, 3) in [0, 1] → the first picture as PIL."""
    array = (image[0].detach().float().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def to_image(picture: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]


def draw_points(
    background: Image.Image,
    pairs: list[tuple[tuple[float, float], tuple[float, float]]],
    mask: torch.Tensor | None = None,
    trajectories: list[list[tuple[float, float]]] | None = None,
    tint: tuple[int, int, int] = EDITABLE,
) -> Image.Image:
    """Handles red, targets blue, arrows between them, tracked paths yellow, mask tinted (green: may change)."""
    picture = background.convert("RGB")
    if mask is not None and bool(mask.any()):
        m = (mask.detach().float().cpu().reshape(mask.shape[-2:]) > 0).numpy()
        shaded = np.asarray(picture, dtype=np.float32)
        shaded[m] = shaded[m] * 0.6 + np.array(tint, dtype=np.float32) * 0.4
        picture = Image.fromarray(shaded.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    radius = max(2, round(min(picture.size) / 80))
    for path in trajectories or []:
        if len(path) > 1:
            draw.line(path, fill=TRACK, width=max(1, radius // 2))
    for handle, target in pairs:
        draw.line([handle, target], fill=(255, 255, 255), width=max(1, radius // 2))
        for point, colour in ((handle, HANDLE), (target, TARGET)):
            x, y = point
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    for path in trajectories or []:
        if path:
            x, y = path[-1]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=TRACK, width=2)
    return picture


def ui_images(picture: Image.Image) -> dict:
    """Save a preview into ComfyUI's temp folder; the returned dict goes into the node's "ui"."""
    import folder_paths

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    name = f"dragkit_{uuid.uuid4().hex[:12]}.png"
    picture.save(os.path.join(folder, name), compress_level=1)
    return {"images": [{"filename": name, "subfolder": "", "type": "temp"}]}


def draw_warp(
    warped: Image.Image,
    inpaint_mask: torch.Tensor,
    pairs: list[tuple[tuple[float, float], tuple[float, float]]],
) -> Image.Image:
    """The warped picture with the pixels left to inpaint hatched (white with black lines every 8 px, as
    the reference's preview) and the pairs' arrows."""
    picture = np.asarray(warped.convert("RGB"), dtype=np.uint8).copy()
    m = (inpaint_mask.detach().cpu().reshape(inpaint_mask.shape[-2:]) > 0).numpy()
    rows, cols = np.indices(m.shape)
    hatch = np.where(((rows % 8 == 0) | (cols % 8 == 0))[..., None], 0, 255).astype(np.uint8)
    picture[m] = np.broadcast_to(hatch, picture.shape)[m]
    return draw_points(Image.fromarray(picture), pairs)
