"""RegionWarp: Inpaint4Drag's region warp (drag_core/region_warp.py) as a node; ComfyUI's own nodes inpaint."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ..drag_core.points import PointsError
from ..drag_core.region_warp import MOTIONS, REVEALED, SAMPLINGS, WarpError, region_warp
from .common import CATEGORY, DragPointsIO, check_choices, check_points, mask_2d, single_image, validation_message
from .errors import DragKitInputError
from .preview import draw_warp, to_image, to_pil, ui_images

log = logging.getLogger(__name__)

# WarpError.field → the input that holds it.
_INPUT = {"image": "image", "region": "drag_points", "pairs": "drag_points"}


class RegionWarp(io.ComfyNode):
    NODE_ID = "DragKitRegionWarp"
    NAME = "RegionWarp"
    DISPLAY_NAME = "RegionWarp (Inpaint4Drag)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description=(
                "Inpaint4Drag's region warp: moves the painted region of the image along the handle → target pairs "
                "in pixel space (no model, no training, a fraction of a second) and outputs the mask of the pixels "
                "the move revealed. Fill them with ComfyUI's inpainting: VAE Encode → Set Latent Noise Mask → "
                "KSampler (denoise 1.0) → VAE Decode → ImageCompositeMasked (destination = the warped image, mask = "
                "inpaint_mask), or InpaintModelConditioning with an inpainting checkpoint. In DragPoints, paint the "
                "region to move (the editor's Region mode), roughly around the object."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The picture to edit (the one the points were placed on)."),
                DragPointsIO.Input("drag_points", tooltip="From DragPoints: the pairs, and the painted mask = the region to move (every handle must lie on it)."),
                io.Int.Input("inpaint_dilation", default=5, min=0, max=64, tooltip="k: the revealed pixels are dilated by a k × k square and a k px seam along the moved outline is inpainted too (the reference's 5, for ~512 px pictures; 0 = only the revealed pixels)."),
                io.Combo.Input("motion", options=list(MOTIONS), default=MOTIONS[0], tooltip="inverse_distance (the reference): each pixel moves by the distance-weighted mean of the nearest handles' moves. similarity (DragKit option): one rotation + scale + shift per region, fitted to its pairs — for turning or resizing with 2–3 pairs."),
                io.Combo.Input("sampling", options=list(SAMPLINGS), default=SAMPLINGS[0], tooltip="nearest (the reference): copy whole pixels. bilinear: interpolate at the exact position (smoother for turns and scales)."),
                io.Combo.Input("revealed", options=list(REVEALED), default=REVEALED[0], tooltip="What the warped image shows where the region was. keep (the reference): the old content (the inpainting replaces it). fill (DragKit option): a smooth guess from the surrounding background, so an inpainting that starts from the warped image (Set Latent Noise Mask) is not pulled back toward the old object."),
                io.Mask.Input("region", optional=True, tooltip="Another region to move (e.g. a segmentation), combined with the painted one (union)."),
            ],
            outputs=[
                io.Image.Output(display_name="warped_image", tooltip=(
                    "The image with the region pasted at its targets; everything else is unchanged, including "
                    "(revealed = keep) the old content where the region was (the inpainting replaces it).")),
                io.Mask.Output(display_name="inpaint_mask", tooltip="1 = pixels to inpaint: the revealed ones, dilated, and a seam along the moved region's outline."),
                io.Image.Output(display_name="preview", tooltip="The warped image with the pixels to inpaint hatched and the pairs drawn."),
            ],
        )

    @classmethod
    def validate_inputs(cls, motion=None, sampling=None, revealed=None) -> bool | str:
        return validation_message(lambda: check_choices(cls, motion=motion, sampling=sampling, revealed=revealed))

    @classmethod
    def execute(cls, image, drag_points, inpaint_dilation, motion, sampling, revealed="keep",
                region=None) -> io.NodeOutput:
        import comfy.model_management

        node = cls.NAME
        picture = single_image(image, node)
        height, width = int(picture.shape[1]), int(picture.shape[2])
        check_points(node, drag_points)
        try:
            points = drag_points.points.rescaled(width, height)
        except PointsError as e:  # a pair that collapses on the new pixel grid
            raise DragKitInputError(node, "drag_points", str(e)) from None
        painted = drag_points.mask()
        area = torch.zeros(height, width)
        if painted is not None:
            area = torch.maximum(area, mask_2d(painted, height, width, node, "drag_points"))
        if region is not None:
            area = torch.maximum(area, mask_2d(region, height, width, node, "region"))

        device = comfy.model_management.get_torch_device()
        try:
            result = region_warp(picture[0].to(device), area.to(device), points.pairs, inpaint_dilation=inpaint_dilation,
                                 motion=motion, sampling=sampling, revealed=revealed)
        except WarpError as e:
            name = _INPUT.get(e.field, e.field)
            unpainted = e.field == "region" and not bool(area.any())
            hint = " (paint it in DragPoints' Region mode, or connect a region MASK)" if unpainted else ""
            raise DragKitInputError(node, name, f"{e}{hint}") from None
        out = comfy.model_management.intermediate_device()
        warped = result.image[None].to(out)
        mask = result.inpaint_mask.float()[None].to(out)
        log.info("%s: moved %d px into %d px, %d px to inpaint", node, int(result.source_region.sum()),
                 int(result.moved_region.sum()), int(result.inpaint_mask.sum()))
        preview = draw_warp(to_pil(warped), mask, list(points.pairs))
        ui = ui_images(preview)
        ui["drag"] = [{
            "method": "region_warp", "width": drag_points.points.width, "height": drag_points.points.height,
            "pairs": [{"handle": list(h), "target": list(t)} for h, t in drag_points.points.pairs],
            # The content under each handle is pasted at its target.
            "final_handles": [list(t) for _, t in drag_points.points.pairs],
            "moved_pixels": int(result.moved_region.sum()), "inpaint_pixels": int(result.inpaint_mask.sum()),
        }]
        return io.NodeOutput(warped, mask, to_image(preview), ui=ui)
