"""DDIMInvert and ReferenceLatentDenoise: into the noise and back out, with reference control."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ..drag_core.guidance import Prompt
from ..drag_core.inversion import ddim_denoise, ddim_invert
from ..drag_core.reference import EDITED_FROM_SOURCE, branches_identical, denoise_branches
from ..drag_core.schedule import DDIMSchedule, inversion_step_count
from ..drag_core.state import DiffusionState
from .comfy_unet import PIXELS_PER_LATENT, latent_channels
from .common import (
    CATEGORY,
    DragState,
    backbone_for,
    check_finite,
    check_same_schedule,
    check_state,
    model_latent_in,
    model_latent_out,
    progress_callback,
    refuse_bottleneck,
    run_core,
    text_context,
)
from .errors import DragKitInputError

log = logging.getLogger(__name__)


def check_schedule(node: str, steps, strength_name: str, strength) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise DragKitInputError(node, "steps", f"must be a whole number ≥ 1, got {steps!r}.")
    if not 0.0 < float(strength) <= 1.0:
        raise DragKitInputError(node, strength_name, f"must be in (0, 1], got {strength!r}.")


class DDIMInvert(io.ComfyNode):
    NODE_ID = "DragKitDDIMInvert"
    NAME = "DDIMInvert"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category=CATEGORY,
            description=(
                "DDIM-inverts an encoded image part of the way into the noise (SPEC §0.2), no CFG, with the "
                "model's patches (e.g. the identity LoRA) active. The state carries the inverted latent to "
                "the drag and denoise nodes; noisy_latent continues in core KSamplerAdvanced (add_noise off, "
                "ddim_uniform, start_at_step = steps − round(strength·steps))."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x/2.x model (with the identity LoRA applied, if any)."),
                io.Latent.Input("latent", tooltip="The VAE-encoded input image (batch of one)."),
                io.Conditioning.Input("conditioning", tooltip="The prompt describing the image (positive)."),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="DDIM steps of the full schedule."),
                io.Float.Input("inversion_strength", default=0.7, min=0.01, max=1.0, step=0.01,
                               tooltip="Fraction of the steps to invert: 0.7 of 50 → 35 steps → t = 681 (the papers' default)."),
                io.Boolean.Input("first_step_correction", default=False, tooltip=(
                    "Off: the reference's convention (the image is taken as ᾱ_0 ≈ 0.99915). On: the image "
                    "is taken as exactly clean, the exact inverse of the final denoising step.")),
            ],
            outputs=[
                DragState.Output(display_name="state", tooltip="Inverted latent, schedule and prompt, for MotionSupervisionOptimize / ReferenceLatentDenoise."),
                io.Latent.Output(display_name="noisy_latent", tooltip="The same latent in ComfyUI's sampler convention (σ-scaled), for KSamplerAdvanced with add_noise off."),
            ],
        )

    @classmethod
    def execute(cls, model, latent, conditioning, steps, inversion_strength, first_step_correction) -> io.NodeOutput:
        node = cls.NAME
        check_schedule(node, steps, "inversion_strength", inversion_strength)
        backbone = backbone_for(node, model)
        z0 = model_latent_in(model, latent, node)
        context = text_context(conditioning, model, node)
        schedule = DDIMSchedule(backbone.alphas_cumprod, steps)
        n = inversion_step_count(steps, float(inversion_strength))
        z_t = run_core(backbone, ddim_invert, backbone, z0, context, schedule, n, first_step_correction,
                       progress_callback(n))
        state = DiffusionState(schedule, steps - n, z_t.cpu(), context.cpu())
        log.info("%s: %d UNet passes, latent now at t = %d", node, n, state.timestep)
        noisy = z_t / schedule.alpha(state.timestep) ** 0.5  # ComfyUI samplers start from x = z·√(1+σ²)
        return io.NodeOutput(state, model_latent_out(model, noisy))


class ReferenceLatentDenoise(io.ComfyNode):
    NODE_ID = "DragKitReferenceLatentDenoise"
    NAME = "ReferenceLatentDenoise"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category=CATEGORY,
            description=(
                "Denoises the state's latent to a clean LATENT with DDIM (no CFG). With reference control on "
                "and an edited latent (or an edit prompt) in the state, the batch [source, edited] is denoised and "
                "the edited branch's self-attention queries attend to the source branch's keys and values from "
                "start_layer on (SPEC §1.4), keeping identity and background. The edited branch uses the state's "
                "edit prompt when DenoiseToStep set one."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The same model the state was inverted with."),
                DragState.Input("state", tooltip="From DDIMInvert, MotionSupervisionOptimize or DenoiseToStep."),
                io.Boolean.Input("reference_control", default=True, tooltip="Mutual self-attention to the source branch (only when the state has an edited latent)."),
                io.Int.Input("start_step", default=0, min=0, max=1000, tooltip="Denoising steps (counted from where this chain starts) before the control begins."),
                io.Int.Input("start_layer", default=10, min=0, max=64, tooltip="First self-attention layer under control (SD1.5 has 16; 10 = last two decoder stages)."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The denoised (edited) latent; decode it with VAE Decode.")],
        )

    @classmethod
    def execute(cls, model, state, reference_control, start_step, start_layer) -> io.NodeOutput:
        node = cls.NAME
        check_state(node, state)
        refuse_bottleneck(node, state)
        # Two branches when the edited one differs: a dragged latent, or an edit prompt (SPEC §3).
        edited = not branches_identical(state)
        controlled = reference_control and edited
        if reference_control and not edited:
            log.info("%s: the state holds no edited latent; denoising the source alone", node)
        backbone = backbone_for(node, model, mutual_start_layer=start_layer if controlled else None)
        check_same_schedule(node, backbone, state)
        schedule = state.schedule
        total = schedule.num_steps - state.step_index
        if controlled:  # SPEC §1.4: [source, edited], the edited branch attending to the source
            out = run_core(backbone, denoise_branches, backbone, state, schedule.num_steps,
                           backbone.mutual(EDITED_FROM_SOURCE), state.step_index + start_step,
                           progress_callback(total)).edited_latent
        else:
            out = run_core(backbone, ddim_denoise, backbone, state.edited_latent, state.edited_prompt, schedule,
                           state.step_index, callback=progress_callback(total))
        log.info("%s: %d UNet passes (batch %d)", node, total, 2 if controlled else 1)
        return io.NodeOutput(model_latent_out(model, out[-1:]))


class DDIMSample(io.ComfyNode):
    NODE_ID = "DragKitDDIMSample"
    NAME = "DDIMSample"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category=CATEGORY,
            description=(
                "Generates an image from seed noise with DDIM and classifier-free guidance, stopping where the drag "
                "happens (SPEC §1.5: dragging a generated image). The state keeps the guidance: the drag and "
                "ReferenceLatentDenoise then run guided too. Denoise the state without a drag to see the image."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x/2.x model."),
                io.Conditioning.Input("positive", tooltip="The prompt of the image."),
                io.Conditioning.Input("negative", tooltip="The unconditional / negative prompt (usually empty)."),
                io.Int.Input("seed", default=42, min=0, max=2**63 - 1, tooltip="Seed of the initial noise."),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="DDIM steps of the full schedule."),
                io.Float.Input("cfg", default=7.5, min=1.0, max=30.0, step=0.1, tooltip="Guidance scale."),
                io.Float.Input("strength", default=0.7, min=0.01, max=1.0, step=0.01,
                               tooltip="Where the drag happens, as for inversion: 0.7 of 50 steps → stop at t = 681."),
                io.Int.Input("width", default=512, min=64, max=4096, step=8),
                io.Int.Input("height", default=512, min=64, max=4096, step=8),
            ],
            outputs=[DragState.Output(display_name="state", tooltip="The partly denoised latent with both prompts and the guidance scale.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, seed, steps, cfg, strength, width, height) -> io.NodeOutput:
        node = cls.NAME
        check_finite(node, cfg=cfg)
        check_schedule(node, steps, "strength", strength)
        if width % PIXELS_PER_LATENT or height % PIXELS_PER_LATENT:
            raise DragKitInputError(
                node, "width", f"width and height must be multiples of {PIXELS_PER_LATENT}, got {width}×{height}.")
        backbone = backbone_for(node, model)
        context = text_context(positive, model, node, "positive")
        uncond = text_context(negative, model, node, "negative")
        schedule = DDIMSchedule(backbone.alphas_cumprod, steps)
        stop = steps - inversion_step_count(steps, float(strength))
        shape = (1, latent_channels(model), height // PIXELS_PER_LATENT, width // PIXELS_PER_LATENT)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        z = run_core(backbone, ddim_denoise, backbone, noise, Prompt(context, uncond, float(cfg)), schedule,
                     range(0, stop), callback=progress_callback(max(stop, 1)))
        log.info("%s: %d guided steps (%d UNet passes at batch 2), latent at t = %d", node, stop, stop,
                 schedule.timesteps[stop])
        return io.NodeOutput(DiffusionState(schedule, stop, z.cpu(), context.cpu(), uncond_context=uncond.cpu(),
                                            guidance_scale=float(cfg)))
