"""AlternatingDragDenoise: GoodDrag's alternating drag and denoising (drag_core/gooddrag.py) as one node."""

from __future__ import annotations

from ..drag_core.gooddrag import GoodDragConfig, alternating_drag_denoise
from ..drag_core.reference import EDITED_FROM_SOURCE
from .common import CATEGORY, POINTS_TYPE, check_state, model_latent_out, refuse_bottleneck
from .optimize import PREVIEW_TOOLTIP, TRACKED_TOOLTIP, optimizer_inputs, run_optimizer


class AlternatingDragDenoise:
    NODE_ID = "DragKitAlternatingDragDenoise"
    NAME = "AlternatingDragDenoise"
    DISPLAY_NAME = "AlternatingDragDenoise (GoodDrag)"
    DESCRIPTION = (
        "GoodDrag: instead of the whole drag at one timestep, a few motion-supervision steps at each of the first "
        "drag_end_step denoising steps, each followed by a denoising step that repairs what the drag disturbed. "
        "Supervision pulls the original features of the starting handle (information-preserving), so the "
        "object's appearance does not drift along a long drag. After the drag phase the rest is denoised with "
        "reference control (mutual self-attention to the source) and the node returns the clean LATENT for "
        "VAE Decode. Use it after DDIMInvert (strength 0.75) or DDIMSample; r_m and r_p are GoodDrag's r_1 and r_2."
    )
    CATEGORY = CATEGORY
    FUNCTION = "drag"
    RETURN_TYPES = ("LATENT", POINTS_TYPE, "IMAGE")
    RETURN_NAMES = ("latent", "tracked_points", "preview")
    OUTPUT_TOOLTIPS = ("The edited image's latent, denoised to the end: decode it with VAE Decode.", TRACKED_TOOLTIP,
                       PREVIEW_TOOLTIP)

    @classmethod
    def INPUT_TYPES(cls):
        c = GoodDragConfig()
        return optimizer_inputs(c, "From DDIMInvert (GoodDrag inverts at strength 0.75) or DDIMSample.", {
            "drag_end_step": ("INT", {"default": c.drag_end_step, "min": 0, "max": 50, "tooltip": "How many denoising steps, from the inverted one, carry drag iterations (0 = no drag: plain reference-controlled denoising)."}),
            "track_per_step": ("INT", {"default": c.track_per_step, "min": 0, "max": 100, "tooltip": "Point trackings per denoising step; each follows drag_per_track motion-supervision steps."}),
            "drag_per_track": ("INT", {"default": c.drag_per_track, "min": 1, "max": 100, "tooltip": "Motion-supervision (Adam) steps between two trackings."}),
            "lr": ("FLOAT", {"default": c.lr, "min": 1e-5, "max": 1.0, "step": 0.001, "tooltip": "Adam learning rate on the latent (a fresh Adam at every denoising step)."}),
            "lam": ("FLOAT", {"default": c.lam, "min": 0.0, "max": 100.0, "step": 0.01, "tooltip": "λ: keeps the region outside the mask on the unedited image's denoising trajectory."}),
            "beta": ("FLOAT", {"default": c.beta, "min": 0.1, "max": 64.0, "step": 0.1, "tooltip": "β: how far along the drag (grid cells = 2 px) each step pulls the features, at most the remaining distance."}),
        }, {
            "max_track_no_change": ("INT", {"default": c.max_track_no_change, "min": 0, "max": 1000, "tooltip": "Stop dragging after this many trackings in a row that moved no handle (counted across steps)."}),
            "drag_loss_threshold": ("FLOAT", {"default": c.drag_loss_threshold, "min": 0.0, "max": 1000.0, "step": 0.1, "tooltip": "Also track as soon as the drag loss falls to this × (2·r_m)² (0 = only every drag_per_track steps)."}),
            "start_layer": ("INT", {"default": 10, "min": 0, "max": 64, "tooltip": "After the drag phase: first self-attention layer under reference control (SD1.5 has 16)."}),
        }, anchor=False) | {"optional": {
            "control_during_drag": ("BOOLEAN", {"default": c.control_during_drag, "tooltip": "Off (GoodDrag's release): the denoising steps between drags run free, so the denoiser repairs each small drag. On (DragKit option): they already attend to the source (reference control from start_layer), which holds colours and background during the drag phase."}),
        }}

    def drag(self, model, state, drag_points, drag_end_step, track_per_step, drag_per_track, lr, lam, beta, r_m, r_p,
             stop_distance, feature_blocks, max_track_no_change, drag_loss_threshold, start_layer, seed, precision,
             control_during_drag=False, unique_id=None):
        check_state(self.NAME, state)
        refuse_bottleneck(self.NAME, state)
        widgets = dict(drag_end_step=drag_end_step, track_per_step=track_per_step, drag_per_track=drag_per_track,
                       lr=lr, lam=lam, beta=beta, r_m=r_m, r_p=r_p, stop_distance=stop_distance,
                       feature_blocks=feature_blocks, max_track_no_change=max_track_no_change,
                       drag_loss_threshold=drag_loss_threshold, seed=seed, precision=precision,
                       control_during_drag=bool(control_during_drag))
        return run_optimizer(self.NAME, model, state, drag_points, widgets, GoodDragConfig(), alternating_drag_denoise,
                             lambda state, result: model_latent_out(model, result.latent), unique_id,
                             hooks={"mutual_start_layer": start_layer},
                             core_kwargs=lambda backbone: {"mutual": backbone.mutual(EDITED_FROM_SOURCE)})
