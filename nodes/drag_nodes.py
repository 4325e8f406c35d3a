"""MotionSupervisionOptimize: DragDiffusion's latent optimization (SPEC §1.3) as a node."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..drag_core.dragdiffusion import MOTION_ANCHORS, DragConfig, optimize_latent, to_pixels
from ..drag_core.mask import editable_mask_for_latent
from ..drag_core.points import PointsError, grid_points
from ..drag_core.state import DiffusionState
from .comfy_unet import ComfyBackbone
from .common import CATEGORY, STATE_TYPE, progress_callback, resolve_precision, send_text
from .errors import DragKitInputError
from .points_nodes import POINTS_TYPE, PointsOnImage
from .preview import draw_points, to_image, to_pil, ui_images

log = logging.getLogger(__name__)


def tracking_inputs(config) -> dict:
    """The motion-supervision and point-tracking widgets shared by both optimizing nodes, in widget order
    (saved workflows store widget values by position, so the order must not change)."""
    return {
        "r_m": ("INT", {"default": config.r_m, "min": 0, "max": 16, "tooltip": "Motion-supervision patch half-size (grid cells)."}),
        "r_p": ("INT", {"default": config.r_p, "min": 0, "max": 32, "tooltip": "Point-tracking search window half-size (grid cells)."}),
        "stop_distance": ("FLOAT", {"default": config.stop_distance, "min": 0.1, "max": 64.0, "step": 0.1, "tooltip": "A handle closer than this to its target (grid cells = 2 px) has arrived."}),
        "feature_blocks": ("STRING", {"default": ",".join(map(str, config.feature_blocks)), "tooltip": "Decoder blocks whose features supervise the drag, comma-separated (2 = third decoder block)."}),
    }


def seed_precision_inputs(config) -> dict:
    """The last two widgets of both optimizing nodes."""
    return {
        "seed": ("INT", {"default": config.seed, "min": 0, "max": 2**31 - 1, "tooltip": "Seed for reproducibility."}),
        "precision": (["auto", "fp32", "fp16", "bf16"], {"default": "auto", "tooltip": "auto: fp16 autocast with loss scaling on CUDA (the reference), fp32 elsewhere."}),
    }


def anchor_inputs(config) -> dict:
    """Optional widgets of both optimizing nodes. Optional, so API graphs and saved workflows from before
    they existed still validate and run with the reference's behaviour."""
    return {
        "optional": {
            "motion_anchor": (list(MOTION_ANCHORS), {"default": config.motion_anchor, "tooltip": "What each step pulls toward the target. current (the paper): the features now at the tracked handle. initial (DragKit option): the original features around the starting handle, so the object's appearance cannot drift along a long drag."}),
        },
    }


def check_anchor(node: str, motion_anchor: str) -> None:
    """ComfyUI's combo validation rejects other values; this catches direct calls (scripts, other nodes)."""
    if motion_anchor not in MOTION_ANCHORS:
        raise DragKitInputError(node, "motion_anchor", f"must be one of {', '.join(MOTION_ANCHORS)}, got {motion_anchor!r}.")


def parse_blocks(text: str, node: str) -> tuple[int, ...]:
    try:
        blocks = tuple(int(part) for part in str(text).replace(" ", "").split(",") if part)
    except ValueError:
        blocks = ()
    if not blocks:
        raise DragKitInputError(node, "feature_blocks", f"expected decoder block numbers like '2' or '1,2', got {text!r}.")
    return blocks


def drag_summary(result, tracked: PointsOnImage) -> dict:
    """The machine-readable summary an optimizing node puts in ``ui["drag"]``: it reaches API users through
    /history and the DragPoints editor through the "executed" event (final tracked handles, in the pixels
    of the image the points were placed on)."""
    return {
        "iterations": result.iterations, "steps": result.steps, "unet_passes": result.unet_passes,
        "reached": result.reached, "skipped_steps": len(result.skipped_steps),
        "initial_distance_px": 2 * result.distances[0] if result.distances else None,
        "final_distance_px": 2 * result.final_distance,
        "width": tracked.points.width, "height": tracked.points.height,
        "pairs": [{"handle": list(h), "target": list(t)} for h, t in tracked.points.pairs],
        "final_handles": [list(path[-1]) if path else None for path in tracked.trajectories],
    }


def drag_outputs(out_state: DiffusionState, drag_points: PointsOnImage, result, image_h: int, image_w: int) -> dict:
    """What an optimizing node returns: (out_state, tracked points, preview) plus the preview picture and the
    ``drag_summary`` in its UI output. Trajectories go from the latent's grid to the pixels of the image the
    points were placed on."""
    points = drag_points.points
    scale = torch.tensor([points.width / image_w, points.height / image_h])
    paths = tuple(
        tuple(tuple((to_pixels(step[i : i + 1], image_h, image_w)[0] * scale).tolist()) for step in result.trajectory)
        for i in range(len(points.pairs))
    )
    tracked = replace(drag_points, trajectories=paths)
    picture = draw_points(to_pil(drag_points.image), list(points.pairs), drag_points.mask(), [list(p) for p in paths])
    ui = ui_images(picture)
    ui["drag"] = [drag_summary(result, tracked)]
    return {"ui": ui, "result": (out_state, tracked, to_image(picture))}


class MotionSupervisionOptimize:
    DESCRIPTION = (
        "DragDiffusion's drag: optimizes the inverted latent z_t so the UNet features at the handles move "
        "toward the targets (motion supervision), tracking the handles after every step, with a masked "
        "regularizer keeping the region outside the mask unchanged. Stops when every handle is within "
        "stop_distance grid cells of its target."
    )
    CATEGORY = CATEGORY
    FUNCTION = "optimize"
    RETURN_TYPES = (STATE_TYPE, POINTS_TYPE, "IMAGE")
    RETURN_NAMES = ("state", "tracked_points", "preview")
    OUTPUT_TOOLTIPS = (
        "The state with the dragged latent, for ReferenceLatentDenoise.",
        "Final tracked handle positions → targets (pixels).",
        "The image with points, mask and the tracked handle trajectories.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model the state was inverted with (LoRA applied)."}),
                "state": (STATE_TYPE, {"tooltip": "From DDIMInvert."}),
                "drag_points": (POINTS_TYPE, {"tooltip": "From DragPoints: pairs, editable mask, image."}),
                "max_iterations": ("INT", {"default": 80, "min": 0, "max": 2000, "tooltip": "At most this many optimization steps (n_pix_step)."}),
                "lr": ("FLOAT", {"default": 0.01, "min": 1e-5, "max": 1.0, "step": 0.001, "tooltip": "Adam learning rate on the latent."}),
                "lam": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 100.0, "step": 0.01, "tooltip": "λ of the masked regularizer (sum over the latent outside the mask)."}),
                **tracking_inputs(DragConfig()),
                **seed_precision_inputs(DragConfig()),
            },
            **anchor_inputs(DragConfig()),
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def optimize(self, model, state, drag_points, max_iterations, lr, lam, r_m, r_p, stop_distance,
                 feature_blocks, seed, precision, motion_anchor="current", unique_id=None):
        node = "MotionSupervisionOptimize"
        if not isinstance(state, DiffusionState):
            raise DragKitInputError(node, "state", f"expected a DRAG_STATE from DDIMInvert, got {type(state).__name__}.")
        if not isinstance(drag_points, PointsOnImage):
            raise DragKitInputError(node, "drag_points", f"expected DRAG_POINTS from DragPoints, got {type(drag_points).__name__}.")
        blocks = parse_blocks(feature_blocks, node)
        check_anchor(node, motion_anchor)
        backbone = ComfyBackbone(model, node, feature_blocks=blocks)
        latent_h, latent_w = state.source.shape[-2:]
        image_h, image_w = 8 * latent_h, 8 * latent_w  # the VAE's pixel grid for this latent
        points = drag_points.points
        try:
            handles, targets = grid_points(points, image_h, image_w)
        except PointsError as e:
            raise DragKitInputError(node, "drag_points", str(e)) from None
        mask_latent = editable_mask_for_latent(drag_points.mask(), image_h, image_w, latent_h, latent_w)
        config = DragConfig(
            feature_blocks=blocks, r_m=r_m, r_p=r_p, lam=lam, lr=lr, max_iterations=max_iterations,
            stop_distance=stop_distance, seed=seed, precision=resolve_precision(precision, backbone.device),
            motion_anchor=motion_anchor,
        )
        backbone.load()

        def report(k: int, _handles: torch.Tensor, distance: float) -> None:
            send_text(unique_id, f"iteration {k + 1}/{max_iterations}: mean handle→target distance {2 * distance:.1f} px")

        result = optimize_latent(
            backbone, state, handles, targets, mask_latent, config, progress_callback(max(max_iterations, 1)),
            on_iteration=report, grid_hw=(image_h // 2, image_w // 2),
        )
        if result.skipped_steps:
            log.warning("%s: %d of %d steps were skipped (non-finite values)", node, len(result.skipped_steps), result.iterations)
        log.info(
            "%s: %d iterations, %d UNet passes (forward+backward), reached=%s, mean distance %.1f px",
            node, result.iterations, result.unet_passes, result.reached, 2 * result.final_distance,
        )
        return drag_outputs(state.with_edit(result.latent), drag_points, result, image_h, image_w)
