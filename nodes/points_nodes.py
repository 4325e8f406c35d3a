"""DragPoints: handle→target pairs (and the editable mask) placed on an image."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..drag_core.points import DragPoints as Points
from ..drag_core.points import PointsError, RLEMask, parse_points
from .common import CATEGORY, single_image
from .errors import DragKitInputError
from .preview import draw_points, to_pil, ui_images

log = logging.getLogger(__name__)

POINTS_TYPE = "DRAG_POINTS"


@dataclass(frozen=True)
class PointsOnImage:
    """The DRAG_POINTS value: points (with the editable mask) on the image they were placed on."""

    points: Points  # in pixels of ``image``; ``points.mask`` is the union of painted and input masks
    image: torch.Tensor  # (1, H, W, 3), the background of previews
    # After a drag: each handle's tracked path in pixels, one position per iteration (last = final).
    trajectories: tuple[tuple[tuple[float, float], ...], ...] = ()

    def mask(self) -> torch.Tensor | None:
        """(H, W) 0/1 editable region, or None when nothing is masked."""
        m = self.points.mask_tensor()
        return m if m is not None and bool(m.any()) else None


def _mask_2d(mask: torch.Tensor, height: int, width: int, node: str) -> torch.Tensor:
    m = mask.detach().float().cpu()
    if m.ndim == 3:
        if m.shape[0] > 1:
            log.warning("%s: the mask input is a batch of %d; using the first", node, m.shape[0])
        m = m[0]
    if m.ndim != 2:
        raise DragKitInputError(node, "mask", f"expected a MASK (H, W) or (B, H, W), got shape {tuple(mask.shape)}.")
    if not torch.isfinite(m).all():
        raise DragKitInputError(node, "mask", "the mask contains NaN or infinite values.")
    if tuple(m.shape) != (height, width):
        log.info("%s: mask is %d×%d, the image %d×%d; resizing the mask (nearest)", node, m.shape[1], m.shape[0], width, height)
        m = torch.nn.functional.interpolate(m[None, None], size=(height, width), mode="nearest")[0, 0]
    return (m > 0.5).float()


class DragPoints:
    DESCRIPTION = (
        "Handle → target point pairs on the image, and the region that may change. The points are a "
        "versioned JSON text (written by the editor, or by hand / API: see the README); an optional "
        "MASK (e.g. from ComfyUI's mask editor, 1 = editable) is combined with the painted mask (union)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "place"
    RETURN_TYPES = (POINTS_TYPE, "MASK")
    RETURN_NAMES = ("drag_points", "mask")
    OUTPUT_TOOLTIPS = (
        "The point pairs, the editable mask and the image, for MotionSupervisionOptimize.",
        "The editable region actually used (all zeros = no mask: the whole image may change).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The image the points are placed on."}),
                "points": ("STRING", {
                    "multiline": True, "default": "",
                    "tooltip": 'JSON: {"version": 1, "width": W, "height": H, "points": [{"handle": [x, y], '
                    '"target": [x, y]}, …]} in image pixels; optional "mask" (run-length encoded).',
                }),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Editable region (1 = may change), combined with the painted mask."}),
            },
        }

    def place(self, image, points, mask=None):
        node = "DragPoints"
        image = single_image(image, node)
        height, width = int(image.shape[1]), int(image.shape[2])
        if not str(points).strip():
            raise DragKitInputError(node, "points", "no drag points: place at least one handle → target pair.")
        try:
            parsed = parse_points(points)
        except PointsError as e:
            raise DragKitInputError(node, "points", str(e)) from None
        if (parsed.width, parsed.height) != (width, height):
            log.info("%s: points were placed on %d×%d, the image is %d×%d; rescaling them", node,
                     parsed.width, parsed.height, width, height)
        try:
            placed = parsed.rescaled(width, height)
        except PointsError as e:
            raise DragKitInputError(node, "points", str(e)) from None

        editable = torch.zeros(height, width)
        painted = parsed.mask_tensor()
        if painted is not None:
            editable = torch.maximum(editable, _mask_2d(painted, height, width, node))
        if mask is not None:
            editable = torch.maximum(editable, _mask_2d(mask, height, width, node))
        if not bool(editable.any()):
            log.info("%s: no editable mask; the whole image may change (the regularizer is off)", node)
        value = PointsOnImage(
            Points(placed.pairs, width, height, RLEMask.from_tensor(editable)),
            image.detach().cpu().clone(),
        )
        picture = to_pil(image)
        ui = ui_images(draw_points(picture, list(placed.pairs), editable))
        # The plain image, for the editor's background when the image does not come from a LoadImage.
        ui["dragkit_background"] = ui_images(picture)["images"]
        return {"ui": ui, "result": (value, editable[None])}
