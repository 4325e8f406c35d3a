"""AlternatingDragDenoise: GoodDrag's alternating drag and denoising (drag_core/gooddrag.py) as one node."""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_core.gooddrag import GoodDragConfig, alternating_drag_denoise
from ..drag_core.reference import EDITED_FROM_SOURCE
from .common import check_choices, check_state, model_latent_out, refuse_bottleneck, running_id
from .optimize import optimizer_inputs, optimizer_schema, run_optimizer, validate_widgets


class AlternatingDragDenoise(io.ComfyNode):
    NODE_ID = "DragKitAlternatingDragDenoise"
    NAME = "AlternatingDragDenoise"
    DISPLAY_NAME = "AlternatingDragDenoise (GoodDrag)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        c = GoodDragConfig()
        inputs = optimizer_inputs(c, "From DDIMInvert (GoodDrag inverts at strength 0.75) or DDIMSample.", [
            io.Int.Input("drag_end_step", default=c.drag_end_step, min=0, max=50, tooltip="How many denoising steps, from the inverted one, carry drag iterations (0 = no drag: plain reference-controlled denoising)."),
            io.Int.Input("track_per_step", default=c.track_per_step, min=0, max=100, tooltip="Point trackings per denoising step; each follows drag_per_track motion-supervision steps."),
            io.Int.Input("drag_per_track", default=c.drag_per_track, min=1, max=100, tooltip="Motion-supervision (Adam) steps between two trackings."),
            io.Float.Input("lr", default=c.lr, min=1e-5, max=1.0, step=0.001, tooltip="Adam learning rate on the latent (a fresh Adam at every denoising step)."),
            io.Float.Input("lam", default=c.lam, min=0.0, max=100.0, step=0.01, tooltip="λ: keeps the region outside the mask on the unedited image's denoising trajectory."),
            io.Float.Input("beta", default=c.beta, min=0.1, max=64.0, step=0.1, tooltip="β: how far along the drag (grid cells = 2 px) each step pulls the features, at most the remaining distance."),
        ], [
            io.Int.Input("max_track_no_change", default=c.max_track_no_change, min=0, max=1000, tooltip="Stop dragging after this many trackings in a row that moved no handle (counted across steps)."),
            io.Float.Input("drag_loss_threshold", default=c.drag_loss_threshold, min=0.0, max=1000.0, step=0.1, tooltip="Also track as soon as the drag loss falls to this × (2·r_m)² (0 = only every drag_per_track steps)."),
            io.Int.Input("start_layer", default=10, min=0, max=64, tooltip="After the drag phase: first self-attention layer under reference control (SD1.5 has 16)."),
        ], anchor=False)
        inputs.append(io.Boolean.Input("control_during_drag", default=c.control_during_drag, optional=True, tooltip="Off (GoodDrag's release): the denoising steps between drags run free, so the denoiser repairs each small drag. On (DragKit option): they already attend to the source (reference control from start_layer), which holds colours and background during the drag phase."))
        return optimizer_schema(
            cls,
            "GoodDrag: instead of the whole drag at one timestep, a few motion-supervision steps at each of the first "
            "drag_end_step denoising steps, each followed by a denoising step that repairs what the drag disturbed. "
            "Supervision pulls the original features of the starting handle (information-preserving), so the "
            "object's appearance does not drift along a long drag. After the drag phase the rest is denoised with "
            "reference control (mutual self-attention to the source) and the node returns the clean LATENT for "
            "VAE Decode. Use it after DDIMInvert (strength 0.75) or DDIMSample; r_m and r_p are GoodDrag's r_1 and r_2.",
            inputs,
            io.Latent.Output(display_name="latent", tooltip="The edited image's latent, denoised to the end: decode it with VAE Decode."),
        )

    @classmethod
    def validate_inputs(cls, feature_blocks=None, precision=None) -> bool | str:
        return validate_widgets(cls, feature_blocks, precision=precision)

    @classmethod
    def execute(cls, model, state, drag_points, drag_end_step, track_per_step, drag_per_track, lr, lam, beta, r_m, r_p,
                stop_distance, feature_blocks, max_track_no_change, drag_loss_threshold, start_layer, seed, precision,
                control_during_drag=False) -> io.NodeOutput:
        check_choices(cls, precision=precision)
        check_state(cls.NAME, state)
        refuse_bottleneck(cls.NAME, state)
        widgets = dict(drag_end_step=drag_end_step, track_per_step=track_per_step, drag_per_track=drag_per_track,
                       lr=lr, lam=lam, beta=beta, r_m=r_m, r_p=r_p, stop_distance=stop_distance,
                       feature_blocks=feature_blocks, max_track_no_change=max_track_no_change,
                       drag_loss_threshold=drag_loss_threshold, seed=seed, precision=precision,
                       control_during_drag=bool(control_during_drag))
        return run_optimizer(cls.NAME, model, state, drag_points, widgets, GoodDragConfig(), alternating_drag_denoise,
                             lambda state, result: model_latent_out(model, result.latent), running_id(cls),
                             hooks={"mutual_start_layer": start_layer},
                             core_kwargs=lambda backbone: {"mutual": backbone.mutual(EDITED_FROM_SOURCE)})
