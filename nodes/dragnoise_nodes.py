"""DragNoise (SPEC §2) as two nodes: BottleneckOptimize (diffusion semantic optimization) and
SemanticPropagationDenoise (diffusion semantic propagation).

The graph: … → DDIMInvert (0.7) → BottleneckOptimize → SemanticPropagationDenoise → VAE Decode.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..drag_core.dragnoise import DRAGNOISE_CONFIG, PAPER_END_STEP, optimize_bottleneck, semantic_propagation
from ..drag_core.mask import editable_mask_for_latent
from ..drag_core.points import PointsError, grid_points
from .comfy_unet import ComfyBackbone
from .common import CATEGORY, STATE_TYPE, model_latent_out, progress_callback, resolve_precision, send_text
from .drag_nodes import anchor_inputs, check_anchor, drag_outputs, parse_blocks, seed_precision_inputs, tracking_inputs
from .errors import DragKitInputError
from .inversion_nodes import check_state
from .points_nodes import POINTS_TYPE, PointsOnImage

log = logging.getLogger(__name__)


def _same_schedule(node: str, backbone: ComfyBackbone, state) -> None:
    if len(backbone.alphas_cumprod) != len(state.schedule.alphas_cumprod):
        raise DragKitInputError(node, "model", "its noise schedule differs from the one the state was made with.")


class BottleneckOptimize:
    DESCRIPTION = (
        "DragNoise's drag (SPEC §2): optimizes the UNet bottleneck h (the middle-block output at the state's "
        "timestep, t = 681 by default) with the latent z_t fixed, so the features at the handles move toward the "
        "targets. Same motion supervision, point tracking, masked regularizer and stop rule as "
        "MotionSupervisionOptimize; gradients run through the decoder only (about half the time per iteration). "
        "Denoise the result with SemanticPropagationDenoise."
    )
    CATEGORY = CATEGORY
    FUNCTION = "optimize"
    RETURN_TYPES = (STATE_TYPE, POINTS_TYPE, "IMAGE")
    RETURN_NAMES = ("state", "tracked_points", "preview")
    OUTPUT_TOOLTIPS = (
        "The state with the optimized bottleneck (z_t unchanged), for SemanticPropagationDenoise.",
        "Final tracked handle positions → targets (pixels).",
        "The image with points, mask and the tracked handle trajectories.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        c = DRAGNOISE_CONFIG
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model the state was inverted with (LoRA applied)."}),
                "state": (STATE_TYPE, {"tooltip": "From DDIMInvert (or DDIMSample for a generated image)."}),
                "drag_points": (POINTS_TYPE, {"tooltip": "From DragPoints: pairs, editable mask, image."}),
                "max_iterations": ("INT", {"default": c.max_iterations, "min": 0, "max": 2000, "tooltip": "At most this many optimization steps (DragNoise's demo: 60; its benchmark run: 80)."}),
                "lr": ("FLOAT", {"default": c.lr, "min": 1e-5, "max": 1.0, "step": 0.001, "tooltip": "Adam learning rate on the bottleneck h (demo 0.01; benchmark run 0.02)."}),
                "lam": ("FLOAT", {"default": c.lam, "min": 0.0, "max": 100.0, "step": 0.01, "tooltip": "λ of the masked regularizer (sum over the latent outside the mask; demo 0.1, benchmark run 0.2)."}),
                **tracking_inputs(c),
                "mask_term_without_mask": ("BOOLEAN", {"default": c.mask_term_without_mask, "tooltip": "Off (default, DragDiffusion's rule): without a painted mask the λ term is skipped. On: the released DragNoise code's behaviour, which adds it anyway and so holds the whole image."}),
                **seed_precision_inputs(c),
            },
            **anchor_inputs(c),
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def optimize(self, model, state, drag_points, max_iterations, lr, lam, r_m, r_p, stop_distance,
                 feature_blocks, mask_term_without_mask, seed, precision, motion_anchor="current", unique_id=None):
        node = "BottleneckOptimize"
        check_state(node, state)
        if not isinstance(drag_points, PointsOnImage):
            raise DragKitInputError(node, "drag_points", f"expected DRAG_POINTS from DragPoints, got {type(drag_points).__name__}.")
        if state.bottleneck is not None:
            log.info("%s: the state already holds an optimized bottleneck; starting again from z_t", node)
        blocks = parse_blocks(feature_blocks, node)
        check_anchor(node, motion_anchor)
        backbone = ComfyBackbone(model, node, feature_blocks=blocks, bottleneck=True)
        _same_schedule(node, backbone, state)
        latent_h, latent_w = state.source.shape[-2:]
        image_h, image_w = 8 * latent_h, 8 * latent_w  # the VAE's pixel grid for this latent
        try:
            handles, targets = grid_points(drag_points.points, image_h, image_w)
        except PointsError as e:
            raise DragKitInputError(node, "drag_points", str(e)) from None
        config = replace(
            DRAGNOISE_CONFIG, feature_blocks=blocks, r_m=r_m, r_p=r_p, lam=lam, lr=lr, max_iterations=max_iterations,
            stop_distance=stop_distance, mask_term_without_mask=mask_term_without_mask, seed=seed,
            precision=resolve_precision(precision, backbone.device), motion_anchor=motion_anchor,
        )
        backbone.load()
        result = optimize_bottleneck(
            backbone, state, handles, targets,
            editable_mask_for_latent(drag_points.mask(), image_h, image_w, latent_h, latent_w),
            config, progress_callback(max(max_iterations, 1)), grid_hw=(image_h // 2, image_w // 2),
            on_iteration=lambda k, _h, d: send_text(
                unique_id, f"iteration {k + 1}/{max_iterations}: mean handle→target distance {2 * d:.1f} px"),
        )
        log.info(
            "%s: %d iterations, %d UNet passes (1 capture + forward+backward per iteration), reached=%s, "
            "mean distance %.1f px", node, result.iterations, result.unet_passes, result.reached, 2 * result.final_distance,
        )
        return drag_outputs(replace(state, bottleneck=result.bottleneck), drag_points, result, image_h, image_w)


class SemanticPropagationDenoise:
    DESCRIPTION = (
        "DragNoise's denoising (SPEC §2): denoises the state's latent to a clean LATENT with DDIM, replacing the "
        "UNet's middle-block output with the optimized bottleneck on every step whose index (in the full "
        "schedule) is below steps − end_step; later steps run normally. No mutual self-attention; one latent."
    )
    CATEGORY = CATEGORY
    FUNCTION = "denoise"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The edited latent; decode it with VAE Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The same model the state was inverted and optimized with."}),
                "state": (STATE_TYPE, {"tooltip": "From BottleneckOptimize."}),
                "end_step": ("INT", {
                    "default": 0, "min": 0, "max": 1000,
                    "tooltip": "Stop replacing the bottleneck for the last end_step steps of the schedule. 0 (default) "
                    f"= replace through the last step, as DragNoise's released code; {PAPER_END_STEP} = the paper's "
                    "t′ = 10, which leaves the last steps free to restore detail.",
                }),
            }
        }

    def denoise(self, model, state, end_step):
        node = "SemanticPropagationDenoise"
        check_state(node, state)
        if state.bottleneck is None:
            raise DragKitInputError(
                node, "state", "the state holds no optimized bottleneck; connect BottleneckOptimize's state output.")
        steps = state.schedule.num_steps
        if not 0 <= end_step <= steps:
            raise DragKitInputError(node, "end_step", f"must be in [0, {steps}] for a {steps}-step schedule, got {end_step}.")
        backbone = ComfyBackbone(model, node, bottleneck=True)
        _same_schedule(node, backbone, state)
        total = steps - state.step_index
        backbone.load()
        with torch.inference_mode(False):
            out = semantic_propagation(backbone, state, end_step, progress_callback(max(total, 1)))
        log.info("%s: %d UNet passes (one latent), bottleneck replaced on %d of them", node, total,
                 max(0, steps - end_step - state.step_index))
        return (model_latent_out(model, out),)
