"""MotionSupervisionOptimize: DragDiffusion's latent optimization (SPEC §1.3) as a node."""

from __future__ import annotations

from ..drag_core.drag_loop import DragConfig
from ..drag_core.dragdiffusion import optimize_latent
from .common import CATEGORY
from .optimize import PREVIEW_TOOLTIP, RETURN_NAMES, RETURN_TYPES, TRACKED_TOOLTIP, optimizer_inputs, run_optimizer


class MotionSupervisionOptimize:
    NODE_ID = "DragKitMotionSupervisionOptimize"
    NAME = "MotionSupervisionOptimize"
    DESCRIPTION = (
        "DragDiffusion's drag: optimizes the inverted latent z_t so the UNet features at the handles move "
        "toward the targets (motion supervision), tracking the handles after every step, with a masked "
        "regularizer keeping the region outside the mask unchanged. Stops when every handle is within "
        "stop_distance grid cells of its target."
    )
    CATEGORY = CATEGORY
    FUNCTION = "optimize"
    RETURN_TYPES = RETURN_TYPES
    RETURN_NAMES = RETURN_NAMES
    OUTPUT_TOOLTIPS = ("The state with the dragged latent, for ReferenceLatentDenoise.", TRACKED_TOOLTIP, PREVIEW_TOOLTIP)

    @classmethod
    def INPUT_TYPES(cls):
        c = DragConfig()
        return optimizer_inputs(c, "From DDIMInvert.", {
            "max_iterations": ("INT", {"default": c.max_iterations, "min": 0, "max": 2000, "tooltip": "At most this many optimization steps (n_pix_step)."}),
            "lr": ("FLOAT", {"default": c.lr, "min": 1e-5, "max": 1.0, "step": 0.001, "tooltip": "Adam learning rate on the latent."}),
            "lam": ("FLOAT", {"default": c.lam, "min": 0.0, "max": 100.0, "step": 0.01, "tooltip": "λ of the masked regularizer (sum over the latent outside the mask)."}),
        })

    def optimize(self, model, state, drag_points, max_iterations, lr, lam, r_m, r_p, stop_distance,
                 feature_blocks, seed, precision, motion_anchor="current", unique_id=None):
        widgets = dict(max_iterations=max_iterations, lr=lr, lam=lam, r_m=r_m, r_p=r_p, stop_distance=stop_distance,
                       feature_blocks=feature_blocks, seed=seed, precision=precision, motion_anchor=motion_anchor)
        return run_optimizer(self.NAME, model, state, drag_points, widgets, DragConfig(), optimize_latent,
                             lambda state, result: state.with_edit(result.latent), unique_id)
