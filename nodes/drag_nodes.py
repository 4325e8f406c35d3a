"""MotionSupervisionOptimize: DragDiffusion's latent optimization (SPEC §1.3) as a node."""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_core.drag_loop import DragConfig
from ..drag_core.dragdiffusion import optimize_latent
from .common import DragState, check_choices, running_id
from .optimize import optimizer_inputs, optimizer_schema, run_optimizer, validate_widgets


class MotionSupervisionOptimize(io.ComfyNode):
    NODE_ID = "DragKitMotionSupervisionOptimize"
    NAME = "MotionSupervisionOptimize"

    @classmethod
    def define_schema(cls) -> io.Schema:
        c = DragConfig()
        return optimizer_schema(
            cls,
            "DragDiffusion's drag: optimizes the inverted latent z_t so the UNet features at the handles move toward "
            "the targets (motion supervision), tracking the handles after every step, with a masked regularizer "
            "keeping the region outside the mask unchanged. Stops when every handle is within stop_distance grid "
            "cells of its target.",
            optimizer_inputs(c, "From DDIMInvert.", [
                io.Int.Input("max_iterations", default=c.max_iterations, min=0, max=2000, tooltip="At most this many optimization steps (n_pix_step)."),
                io.Float.Input("lr", default=c.lr, min=1e-5, max=1.0, step=0.001, tooltip="Adam learning rate on the latent."),
                io.Float.Input("lam", default=c.lam, min=0.0, max=100.0, step=0.01, tooltip="λ of the masked regularizer (sum over the latent outside the mask)."),
            ]),
            DragState.Output(display_name="state", tooltip="The state with the dragged latent, for ReferenceLatentDenoise."),
        )

    @classmethod
    def validate_inputs(cls, feature_blocks=None, precision=None, motion_anchor=None) -> bool | str:
        return validate_widgets(cls, feature_blocks, precision=precision, motion_anchor=motion_anchor)

    @classmethod
    def execute(cls, model, state, drag_points, max_iterations, lr, lam, r_m, r_p, stop_distance, feature_blocks,
                seed, precision, motion_anchor="current") -> io.NodeOutput:
        check_choices(cls, precision=precision, motion_anchor=motion_anchor)
        widgets = dict(max_iterations=max_iterations, lr=lr, lam=lam, r_m=r_m, r_p=r_p, stop_distance=stop_distance,
                       feature_blocks=feature_blocks, seed=seed, precision=precision, motion_anchor=motion_anchor)
        return run_optimizer(cls.NAME, model, state, drag_points, widgets, DragConfig(), optimize_latent,
                             lambda state, result: state.with_edit(result.latent), running_id(cls))
