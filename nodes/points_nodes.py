"""DragPoints: handle→target pairs (and the editable mask) placed on an image."""

from __future__ import annotations

import logging

import torch

from ..drag_core.points import DragPoints as Points
from ..drag_core.points import PointsError, RLEMask, parse_points
from .common import CATEGORY, POINTS_TYPE, PointsOnImage, mask_2d, single_image
from .errors import DragKitInputError
from .preview import draw_points, to_pil, ui_images

log = logging.getLogger(__name__)

class DragPoints:
    NODE_ID = "DragKitDragPoints"
    NAME = "DragPoints"
    DESCRIPTION = (
        "Handle → target point pairs on the image, and a painted mask: for the drag methods the region that "
        "may change (the editor's Mask mode, green), for RegionWarp the region to move (the editor calls it "
        "Region, orange, when the points feed a RegionWarp). The points are a versioned JSON text (written by "
        "the editor, or by hand / API: see the README); an optional MASK is combined with the painted mask (union)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "place"
    RETURN_TYPES = (POINTS_TYPE, "MASK")
    RETURN_NAMES = ("drag_points", "mask")
    OUTPUT_TOOLTIPS = (
        "The point pairs, the painted mask and the image, for MotionSupervisionOptimize, BottleneckOptimize or RegionWarp.",
        "The painted mask actually used (all zeros = none: for the drags the whole image may change).",
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
                "mask": ("MASK", {"tooltip": "Combined with the painted mask (union): the region that may change (1), or for RegionWarp the region to move."}),
            },
        }

    def place(self, image, points, mask=None):
        node = self.NAME
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
            editable = torch.maximum(editable, mask_2d(painted, height, width, node))
        if mask is not None:
            editable = torch.maximum(editable, mask_2d(mask, height, width, node))
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
