"""DragPoints: handle→target pairs (and the editable mask) placed on an image."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ..drag_core.points import DragPoints as Points
from ..drag_core.points import PointsError, RLEMask, parse_points
from .common import CATEGORY, DragPointsIO, PointsOnImage, mask_2d, single_image, validation_message
from .errors import DragKitInputError
from .preview import draw_points, to_pil, ui_images

log = logging.getLogger(__name__)


def parse_node_points(node: str, points: str) -> Points:
    """The points widget's JSON, parsed and checked (limits included: drag_core.points)."""
    if not str(points).strip():
        raise DragKitInputError(node, "points", "no drag points: place at least one handle → target pair.")
    try:
        return parse_points(points)
    except PointsError as e:
        raise DragKitInputError(node, "points", str(e)) from None


class DragPoints(io.ComfyNode):
    NODE_ID = "DragKitDragPoints"
    NAME = "DragPoints"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category=CATEGORY,
            description=(
                "Handle → target point pairs on the image, and a painted mask: for the drag methods the region that "
                "may change (the editor's Mask mode, green), for RegionWarp the region to move (the editor calls it "
                "Region, orange, when the points feed a RegionWarp). The points are a versioned JSON text (written "
                "by the editor, or by hand / API: see the README); an optional MASK is combined with the painted "
                "mask (union)."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The image the points are placed on."),
                io.String.Input("points", multiline=True, default="", tooltip=(
                    'JSON: {"version": 1, "width": W, "height": H, "points": [{"handle": [x, y], '
                    '"target": [x, y]}, …]} in image pixels; optional "mask" (run-length encoded).')),
                io.Mask.Input("mask", optional=True, tooltip="Combined with the painted mask (union): the region that may change (1), or for RegionWarp the region to move."),
            ],
            outputs=[
                DragPointsIO.Output(display_name="drag_points", tooltip="The point pairs, the painted mask and the image, for MotionSupervisionOptimize, BottleneckOptimize or RegionWarp."),
                io.Mask.Output(display_name="mask", tooltip="The painted mask actually used (all zeros = none: for the drags the whole image may change)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, points=None) -> bool | str:
        """A malformed or oversized points text is refused before the graph runs (a 400 with the reason for API
        clients, the node outlined in the UI), not after the LoRA has trained."""
        if points is None:  # linked from another node: parsed when the node runs
            return True
        return validation_message(lambda: parse_node_points(cls.NAME, points))

    @classmethod
    def execute(cls, image, points, mask=None) -> io.NodeOutput:
        node = cls.NAME
        image = single_image(image, node)
        height, width = int(image.shape[1]), int(image.shape[2])
        parsed = parse_node_points(node, points)
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
        return io.NodeOutput(value, editable[None], ui=ui)
