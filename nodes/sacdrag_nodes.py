"""DenoiseToStep: the stage the training-free drag (SPEC §3) adds to DragKit's nodes.

The graph: VAE Encode → DDIMInvert (strength 1.0, first_step_correction on) — or DDIMSample
(strength 1.0) for a generated image — → DenoiseToStep (drag_step, edit prompt, self-attention
control) → MotionSupervisionOptimize → ReferenceLatentDenoise (start_step 0, start_layer = sac_layer)
→ VAE Decode. No LoRA.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from comfy_api.latest import io

from ..drag_core.reference import EDITED_FROM_SOURCE, branches_identical, denoise_branches
from ..drag_core.sacdrag import DRAG_STEP, SAC_LAYER, SAC_STEP
from .common import (
    CATEGORY,
    DragState,
    backbone_for,
    check_same_schedule,
    check_state,
    progress_callback,
    refuse_bottleneck,
    run_core,
    text_context,
)
from .errors import DragKitInputError

log = logging.getLogger(__name__)


class DenoiseToStep(io.ComfyNode):
    NODE_ID = "DragKitDenoiseToStep"
    NAME = "DenoiseToStep"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category=CATEGORY,
            description=(
                "Denoises the state's source and edited branches with DDIM up to drag_step and returns the state "
                "there, for a drag (the training-free self-attention drag, SPEC §3). The edited branch runs on the "
                "edit prompt when one is connected; with self-attention control on, from sac_step on, its "
                "self-attention in layers sac_layer… attends to the source branch's keys and values (keeps identity "
                "and style). Guided like the state (a generated image from DDIMSample)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x/2.x model (no LoRA needed)."),
                DragState.Input("state", tooltip="From DDIMInvert with inversion_strength 1.0 (z_T), or DDIMSample with "
                                "strength 1.0 (seed noise)."),
                io.Int.Input("drag_step", default=DRAG_STEP, min=0, max=1000, tooltip=(
                    "Stop here: the number of denoising steps of the full schedule done before the drag "
                    "(the paper's drag update step; 10 of 50 → t = 781). Smaller = earlier, noisier, larger changes.")),
                io.Boolean.Input("self_attention_control", default=True,
                                 tooltip="Mutual self-attention: the edited branch attends to the source branch's keys/values."),
                io.Int.Input("sac_step", default=SAC_STEP, min=0, max=1000, tooltip=(
                    "Index in the full schedule of the first step under control (the paper's self-attention "
                    "control step). Larger = the edit prompt shapes the structure more.")),
                io.Int.Input("sac_layer", default=SAC_LAYER, min=0, max=64, tooltip=(
                    "First self-attention layer under control (SD1.5 has 16; 10 = the last two decoder stages). "
                    "Use the same value as start_layer in ReferenceLatentDenoise.")),
                io.Conditioning.Input("edit_conditioning", optional=True, tooltip=(
                    "The edit prompt for the edited branch (default: the state's source prompt). Kept in "
                    "the state, so ReferenceLatentDenoise continues on it.")),
            ],
            outputs=[DragState.Output(display_name="state", tooltip="Both branches at step drag_step (and the edit prompt), for MotionSupervisionOptimize.")],
        )

    @classmethod
    def execute(cls, model, state, drag_step, self_attention_control, sac_step, sac_layer,
                edit_conditioning=None) -> io.NodeOutput:
        node = cls.NAME
        check_state(node, state)
        refuse_bottleneck(node, state)
        steps = state.schedule.num_steps
        if not state.step_index <= drag_step <= steps:
            raise DragKitInputError(
                node, "drag_step",
                f"must lie between the state's step ({state.step_index}) and the schedule's {steps} steps, got "
                f"{drag_step}; for a training-free drag invert with inversion_strength 1.0.",
            )
        if edit_conditioning is not None:
            state = replace(state, edit_context=text_context(edit_conditioning, model, node, "edit_conditioning"))
        controlled = self_attention_control and sac_step < drag_step and not branches_identical(state)
        backbone = backbone_for(node, model, {"mutual_start_layer": "sac_layer"},
                                mutual_start_layer=sac_layer if self_attention_control else None)
        check_same_schedule(node, backbone, state)
        total = drag_step - state.step_index
        out = run_core(backbone, denoise_branches, backbone, state, drag_step,
                       backbone.mutual(EDITED_FROM_SOURCE) if controlled else None, sac_step,
                       progress_callback(max(total, 1)))
        log.info("%s: %d steps at batch %d, now at t = %d (mutual self-attention %s)", node, total,
                 1 if out.edited is None else 2, out.timestep, f"from step {sac_step}" if controlled else "off")
        return io.NodeOutput(out)
