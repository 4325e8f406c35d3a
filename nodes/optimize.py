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
from comfy_api.latest import io

from ..drag_core.drag_loop import MOTION_ANCHORS, DragConfig, DragResult
from ..drag_core.mask import editable_mask_for_latent
from ..drag_core.points import PointsError, grid_points, to_pixels
from ..drag_core.precision import resolve_precision
from ..drag_core.state import DiffusionState
from .comfy_unet import ComfyBackbone, image_size
from .common import (
    CATEGORY,
    PRECISIONS,
    DragPointsIO,
    DragState,
    PointsOnImage,
    backbone_for,
    check_choices,
    check_finite,
    check_points,
    check_same_schedule,
    check_state,
    progress_callback,
    run_core,
    send_text,
    validation_message,
)
from .errors import DragKitInputError
from .preview import draw_points, to_image, to_pil, ui_images

log = logging.getLogger(__name__)

TRACKED_TOOLTIP = "Final tracked handle positions → targets (pixels)."
PREVIEW_TOOLTIP = "The image with points, mask and the tracked handle trajectories."


def drag_outputs_schema(first: io.Output) -> list[io.Output]:
    """An optimizing node's outputs: its own first one, then tracked_points and preview."""
    return [first, DragPointsIO.Output(display_name="tracked_points", tooltip=TRACKED_TOOLTIP),
            io.Image.Output(display_name="preview", tooltip=PREVIEW_TOOLTIP)]


def optimizer_inputs(config, state_tooltip: str, own: list[io.Input], after_tracking: list[io.Input] = (),
                     anchor: bool = True) -> list[io.Input]:
    """The inputs of an optimizing node, in widget order (saved workflows store widget values by position, so
    the order must not change): model, state, drag_points, the node's ``own`` widgets, the tracking widgets,
    ``after_tracking``, seed and precision; motion_anchor optional (when ``anchor``). ``config``: the node's
    defaults (a DragConfig or GoodDragConfig)."""
    inputs = [
        io.Model.Input("model", tooltip="The model the state was inverted with (LoRA applied)."),
        DragState.Input("state", tooltip=state_tooltip),
        DragPointsIO.Input("drag_points", tooltip="From DragPoints: pairs, editable mask, image."),
        *own,
        io.Int.Input("r_m", default=config.r_m, min=0, max=16, tooltip="Motion-supervision patch half-size (grid cells)."),
        io.Int.Input("r_p", default=config.r_p, min=0, max=32, tooltip="Point-tracking search window half-size (grid cells)."),
        io.Float.Input("stop_distance", default=config.stop_distance, min=0.1, max=64.0, step=0.1, tooltip="A handle closer than this to its target (grid cells = 2 px) has arrived."),
        io.String.Input("feature_blocks", default=",".join(map(str, config.feature_blocks)), tooltip="Decoder blocks whose features supervise the drag, comma-separated (2 = third decoder block)."),
        *after_tracking,
        io.Int.Input("seed", default=config.seed, min=0, max=2**31 - 1, tooltip="Seed for reproducibility."),
        io.Combo.Input("precision", options=PRECISIONS, default="auto", tooltip="auto: fp16 autocast with loss scaling on CUDA (the reference), fp32 elsewhere."),
    ]
    if anchor:
        # Optional, so API graphs and saved workflows from before it existed still validate and run with the
        # reference's behaviour.
        inputs.append(io.Combo.Input("motion_anchor", options=list(MOTION_ANCHORS), default=config.motion_anchor, optional=True, tooltip="What each step pulls toward the target. current (the paper): the features now at the tracked handle. initial (DragKit option): the original features around the starting handle, so the object's appearance cannot drift along a long drag."))
    return inputs


def optimizer_schema(node_cls, description: str, inputs: list[io.Input], first_output: io.Output) -> io.Schema:
    """The schema of an optimizing node (its id, name and description from the class)."""
    return io.Schema(
        node_id=node_cls.NODE_ID, display_name=getattr(node_cls, "DISPLAY_NAME", node_cls.NAME), category=CATEGORY,
        description=description, inputs=inputs, outputs=drag_outputs_schema(first_output),
        hidden=[io.Hidden.unique_id],
    )


def check_widgets(node_cls, feature_blocks: str | None, **choices: Any) -> None:
    """What an optimizing node can judge from its widgets alone: feature_blocks and the combos (``choices``).
    None: linked from another node, checked when the node runs."""
    check_choices(node_cls, **choices)
    if feature_blocks is not None:
        parse_blocks(feature_blocks, node_cls.NAME)


def validate_widgets(node_cls, feature_blocks: str | None, **choices: Any) -> bool | str:
    """validate_inputs of the optimizing nodes: check_widgets before the graph runs (a 400 naming the input)."""
    return validation_message(lambda: check_widgets(node_cls, feature_blocks, **choices))


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
) -> io.NodeOutput:
    """Check the inputs, run ``optimize`` (a drag_core optimization with optimize_latent's signature, plus
    ``core_kwargs(backbone)``) with ``defaults`` overridden by the node's ``widgets``, and return the node's
    output (``into_state`` makes its first output from the state and the result) with the preview and the
    ``ui["drag"]`` summary. ``hooks``: what the backbone needs beyond the feature blocks."""
    check_state(node, state)
    check_points(node, drag_points)
    check_finite(node, **widgets)
    blocks = parse_blocks(widgets["feature_blocks"], node)
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
                 image_w: int) -> io.NodeOutput:
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
    return io.NodeOutput(out_state, tracked, to_image(picture), ui=ui)
