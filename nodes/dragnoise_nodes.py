"""DragNoise (SPEC §2) as two nodes: BottleneckOptimize (diffusion semantic optimization) and
SemanticPropagationDenoise (diffusion semantic propagation).

The graph: … → DDIMInvert (0.7) → BottleneckOptimize → SemanticPropagationDenoise → VAE Decode.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from comfy_api.latest import io

from ..drag_core.dragnoise import DRAGNOISE_CONFIG, PAPER_END_STEP, optimize_bottleneck, semantic_propagation
from .common import (
    CATEGORY,
    DragState,
    backbone_for,
    check_choices,
    check_same_schedule,
    check_state,
    model_latent_out,
    progress_callback,
    run_core,
    running_id,
)
from .errors import DragKitInputError
from .optimize import optimizer_inputs, optimizer_schema, run_optimizer, validate_widgets

log = logging.getLogger(__name__)


class BottleneckOptimize(io.ComfyNode):
    NODE_ID = "DragKitBottleneckOptimize"
    NAME = "BottleneckOptimize"
    DISPLAY_NAME = "BottleneckOptimize (DragNoise)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        c = DRAGNOISE_CONFIG
        return optimizer_schema(
            cls,
            "DragNoise's drag (SPEC §2): optimizes the UNet bottleneck h (the middle-block output at the state's "
            "timestep, t = 681 by default) with the latent z_t fixed, so the features at the handles move toward the "
            "targets. Same motion supervision, point tracking, masked regularizer and stop rule as "
            "MotionSupervisionOptimize; gradients run through the decoder only (about half the time per iteration). "
            "Denoise the result with SemanticPropagationDenoise.",
            optimizer_inputs(c, "From DDIMInvert (or DDIMSample for a generated image).", [
                io.Int.Input("max_iterations", default=c.max_iterations, min=0, max=2000, tooltip="At most this many optimization steps (DragNoise's demo: 60; its benchmark run: 80)."),
                io.Float.Input("lr", default=c.lr, min=1e-5, max=1.0, step=0.001, tooltip="Adam learning rate on the bottleneck h (demo 0.01; benchmark run 0.02)."),
                io.Float.Input("lam", default=c.lam, min=0.0, max=100.0, step=0.01, tooltip="λ of the masked regularizer (sum over the latent outside the mask; demo 0.1, benchmark run 0.2)."),
            ], after_tracking=[
                io.Boolean.Input("mask_term_without_mask", default=c.mask_term_without_mask, tooltip="Off (default, DragDiffusion's rule): without a painted mask the λ term is skipped. On: the released DragNoise code's behaviour, which adds it anyway and so holds the whole image."),
            ]),
            DragState.Output(display_name="state", tooltip="The state with the optimized bottleneck (z_t unchanged), for SemanticPropagationDenoise."),
        )

    @classmethod
    def validate_inputs(cls, feature_blocks=None, precision=None, motion_anchor=None) -> bool | str:
        return validate_widgets(cls, feature_blocks, precision=precision, motion_anchor=motion_anchor)

    @classmethod
    def execute(cls, model, state, drag_points, max_iterations, lr, lam, r_m, r_p, stop_distance, feature_blocks,
                mask_term_without_mask, seed, precision, motion_anchor="current") -> io.NodeOutput:
        check_choices(cls, precision=precision, motion_anchor=motion_anchor)
        if getattr(state, "bottleneck", None) is not None:
            log.info("%s: the state already holds an optimized bottleneck; starting again from z_t", cls.NAME)
        widgets = dict(max_iterations=max_iterations, lr=lr, lam=lam, r_m=r_m, r_p=r_p, stop_distance=stop_distance,
                       feature_blocks=feature_blocks, mask_term_without_mask=mask_term_without_mask, seed=seed,
                       precision=precision, motion_anchor=motion_anchor)
        return run_optimizer(cls.NAME, model, state, drag_points, widgets, DRAGNOISE_CONFIG, optimize_bottleneck,
                             lambda state, result: replace(state, bottleneck=result.bottleneck), running_id(cls),
                             hooks={"bottleneck": True})


class SemanticPropagationDenoise(io.ComfyNode):
    NODE_ID = "DragKitSemanticPropagationDenoise"
    NAME = "SemanticPropagationDenoise"
    DISPLAY_NAME = "SemanticPropagationDenoise (DragNoise)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description=(
                "DragNoise's denoising (SPEC §2): denoises the state's latent to a clean LATENT with DDIM, replacing "
                "the UNet's middle-block output with the optimized bottleneck on every step whose index (in the full "
                "schedule) is below steps − end_step; later steps run normally. No mutual self-attention; one latent."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The same model the state was inverted and optimized with."),
                DragState.Input("state", tooltip="From BottleneckOptimize."),
                io.Int.Input("end_step", default=0, min=0, max=1000, tooltip=(
                    "Stop replacing the bottleneck for the last end_step steps of the schedule. 0 (default) "
                    f"= replace through the last step, as DragNoise's released code; {PAPER_END_STEP} = the paper's "
                    "t′ = 10, which leaves the last steps free to restore detail.")),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The edited latent; decode it with VAE Decode.")],
        )

    @classmethod
    def execute(cls, model, state, end_step) -> io.NodeOutput:
        node = cls.NAME
        check_state(node, state)
        if state.bottleneck is None:
            raise DragKitInputError(
                node, "state", "the state holds no optimized bottleneck; connect BottleneckOptimize's state output.")
        steps = state.schedule.num_steps
        if not 0 <= end_step <= steps:
            raise DragKitInputError(node, "end_step", f"must be in [0, {steps}] for a {steps}-step schedule, got {end_step}.")
        backbone = backbone_for(node, model, bottleneck=True)
        check_same_schedule(node, backbone, state)
        total = steps - state.step_index
        out = run_core(backbone, semantic_propagation, backbone, state, end_step, progress_callback(max(total, 1)))
        log.info("%s: %d UNet passes (one latent), bottleneck replaced on %d of them", node, total,
                 max(0, steps - end_step - state.step_index))
        return io.NodeOutput(model_latent_out(model, out))
