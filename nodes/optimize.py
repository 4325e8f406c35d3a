"""What the optimizing nodes (MotionSupervisionOptimize, BottleneckOptimize) share: their widgets, their
checks, and the one sequence that runs a drag_core optimization and returns state, tracked points and preview.

A node supplies its defaults (a DragConfig), its own widgets, the core function and how the result goes into
the state; everything else is here, so the nodes cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from ..drag_core.drag_loop import MOTION_ANCHORS, DragConfig, DragResult
from ..drag_core.mask import editable_mask_for_latent
from ..drag_core.points import PointsError, grid_points, to_pixels
from ..drag_core.precision import resolve_precision
from ..drag_core.state import DiffusionState
from .comfy_unet import ComfyBackbone, image_size
from .common import (
    POINTS_TYPE,
    STATE_TYPE,
    PointsOnImage,
    backbone_for,
    check_finite,
    check_points,
    check_same_schedule,
    check_state,
    progress_callback,
    run_core,
    send_text,
)
from .errors import DragKitInputError
from .preview import draw_points, to_image, to_pil, ui_images

log = logging.getLogger(__name__)

RETURN_TYPES = (STATE_TYPE, POINTS_TYPE, "IMAGE")
RETURN_NAMES = ("state", "tracked_points", "preview")
TRACKED_TOOLTIP = "Final tracked handle positions → targets (pixels)."
PREVIEW_TOOLTIP = "The image with points, mask and the tracked handle trajectories."


def optimizer_inputs(config, state_tooltip: str, own: dict, after_tracking: dict | None = None,
                     anchor: bool = True) -> dict:
    """INPUT_TYPES of an optimizing node, in widget order (saved workflows store widget values by position, so
    the order must not change): model, state, drag_points, the node's ``own`` widgets, the tracking widgets,
    ``after_tracking``, seed and precision; motion_anchor optional (when ``anchor``). ``config``: the node's
    defaults (a DragConfig or GoodDragConfig)."""
    return {
        "required": {
            "model": ("MODEL", {"tooltip": "The model the state was inverted with (LoRA applied)."}),
            "state": (STATE_TYPE, {"tooltip": state_tooltip}),
            "drag_points": (POINTS_TYPE, {"tooltip": "From DragPoints: pairs, editable mask, image."}),
            **own,
            "r_m": ("INT", {"default": config.r_m, "min": 0, "max": 16, "tooltip": "Motion-supervision patch half-size (grid cells)."}),
            "r_p": ("INT", {"default": config.r_p, "min": 0, "max": 32, "tooltip": "Point-tracking search window half-size (grid cells)."}),
            "stop_distance": ("FLOAT", {"default": config.stop_distance, "min": 0.1, "max": 64.0, "step": 0.1, "tooltip": "A handle closer than this to its target (grid cells = 2 px) has arrived."}),
            "feature_blocks": ("STRING", {"default": ",".join(map(str, config.feature_blocks)), "tooltip": "Decoder blocks whose features supervise the drag, comma-separated (2 = third decoder block)."}),
            **(after_tracking or {}),
            "seed": ("INT", {"default": config.seed, "min": 0, "max": 2**31 - 1, "tooltip": "Seed for reproducibility."}),
            "precision": (["auto", "fp32", "fp16", "bf16"], {"default": "auto", "tooltip": "auto: fp16 autocast with loss scaling on CUDA (the reference), fp32 elsewhere."}),
        },
        # Optional, so API graphs and saved workflows from before it existed still validate and run with the
        # reference's behaviour.
        "optional": {} if not anchor else {
            "motion_anchor": (list(MOTION_ANCHORS), {"default": config.motion_anchor, "tooltip": "What each step pulls toward the target. current (the paper): the features now at the tracked handle. initial (DragKit option): the original features around the starting handle, so the object's appearance cannot drift along a long drag."}),
        },
        "hidden": {"unique_id": "UNIQUE_ID"},
    }


def check_anchor(node: str, motion_anchor: str) -> None:
    """ComfyUI's combo validation rejects other values; this catches direct calls (scripts, other nodes)."""
    if motion_anchor not in MOTION_ANCHORS:
        raise DragKitInputError(node, "motion_anchor", f"must be one of {', '.join(MOTION_ANCHORS)}, got {motion_anchor!r}.")


def parse_blocks(text: str, node: str) -> tuple[int, ...]:
    """"2" or "1,2" → (2,) or (1, 2). Each block once: a repeated block would be tapped and interpolated once per
    mention (a workflow's "2,2,…" could ask for thousands of full-resolution feature copies)."""
    text = str(text)
    try:
        blocks = tuple(int(part) for part in text.replace(" ", "").split(",") if part) if len(text) <= 64 else ()
    except ValueError:
        blocks = ()
    if not blocks or len(set(blocks)) != len(blocks):
        shown = repr(text) if len(text) <= 64 else f"{text[:40]!r}… ({len(text)} characters)"
        raise DragKitInputError(node, "feature_blocks",
                                f"expected distinct decoder block numbers like '2' or '1,2', got {shown}.")
    return blocks


def run_optimizer(
    node: str,
    model,
    state,
    drag_points,
    widgets: dict[str, Any],
    defaults: DragConfig,
    optimize: Callable[..., DragResult],
    into_state: Callable[[DiffusionState, DragResult], Any],
    unique_id=None,
    hooks: dict[str, Any] | None = None,
    core_kwargs: Callable[[ComfyBackbone], dict[str, Any]] | None = None,
) -> dict:
    """Check the inputs, run ``optimize`` (a drag_core optimization with optimize_latent's signature, plus
    ``core_kwargs(backbone)``) with ``defaults`` overridden by the node's ``widgets``, and return the node's
    output (``into_state`` makes its first output from the state and the result) with the preview and the
    ``ui["drag"]`` summary. ``hooks``: what the backbone needs beyond the feature blocks."""
    check_state(node, state)
    check_points(node, drag_points)
    check_finite(node, **widgets)
    blocks = parse_blocks(widgets["feature_blocks"], node)
    if "motion_anchor" in widgets:
        check_anchor(node, widgets["motion_anchor"])
    backbone = backbone_for(node, model, feature_blocks=blocks, **(hooks or {}))
    check_same_schedule(node, backbone, state)
    image_h, image_w = image_size(state.source)
    try:
        handles, targets = grid_points(drag_points.points, image_h, image_w)
    except PointsError as e:
        raise DragKitInputError(node, "drag_points", str(e)) from None
    latent_h, latent_w = state.source.shape[-2:]
    mask_latent = editable_mask_for_latent(drag_points.mask(), image_h, image_w, latent_h, latent_w)
    config = replace(defaults, **{**widgets, "feature_blocks": blocks,
                                  "precision": resolve_precision(widgets["precision"], backbone.device)})
    max_iterations = config.max_iterations

    def report(k: int, _handles: torch.Tensor, distance: float) -> None:
        send_text(unique_id, f"iteration {k + 1}/{max_iterations}: mean handle→target distance {2 * distance:.1f} px")

    result = run_core(backbone, optimize, backbone, state, handles, targets, mask_latent, config,
                      progress_callback(max(max_iterations, 1)), on_iteration=report, grid_hw=(image_h // 2, image_w // 2),
                      **(core_kwargs(backbone) if core_kwargs else {}))
    if result.skipped_steps:
        log.warning("%s: %d of %d steps were skipped (non-finite values)", node, len(result.skipped_steps), result.iterations)
    log.info("%s: %d iterations, %d UNet passes, reached=%s, mean distance %.1f px", node, result.iterations,
             result.unet_passes, result.reached, 2 * result.final_distance)
    return drag_outputs(into_state(state, result), drag_points, result, image_h, image_w)


def drag_summary(result: DragResult, tracked: PointsOnImage) -> dict:
    """The machine-readable summary an optimizing node puts in ``ui["drag"]``: it reaches API users through
    /history and the DragPoints editor through the "executed" event (final tracked handles, in the pixels
    of the image the points were placed on)."""
    points = tracked.points
    final = [list(path[-1]) if path else None for path in tracked.trajectories]
    return result.summary(points.pairs, points.width, points.height, final)


def drag_outputs(out_state: Any, drag_points: PointsOnImage, result: DragResult, image_h: int,
                 image_w: int) -> dict:
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
