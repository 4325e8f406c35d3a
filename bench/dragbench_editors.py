"""DragBench's real editors: a DragKit method on the diffusers backend (the Python API) or on ComfyUI (the nodes,
in-process), with the per-sample identity LoRA cached in the file the runner names.

Both take the sample as DragBench gives it (picture, prompt, handle/target pixels, editable mask) and return the
edited picture at the source's size with the drag summary. ``options``: the drag node's widgets by name, plus
``steps``, ``inversion_strength``, ``lora_steps`` and ``lora_resolution`` (the API's arguments; the nodes'
defaults otherwise, e.g. 512 px LoRA crops as the release).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dragbench import EditOutcome, Point

log = logging.getLogger(__name__)

RUN_OPTIONS = ("steps", "inversion_strength", "lora_steps", "lora_resolution")


def points_json(image: np.ndarray, handles: list[Point], targets: list[Point]) -> dict:
    h, w = image.shape[:2]
    return {"version": 1, "width": w, "height": h,
            "points": [{"handle": list(map(float, a)), "target": list(map(float, b))} for a, b in zip(handles, targets)]}


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    run = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    return run, {k: v for k, v in options.items() if k not in RUN_OPTIONS}


def _resized(picture, size: tuple[int, int]) -> np.ndarray:
    """The edited picture at the source's (W, H) (the release resizes its output back too)."""
    from PIL import Image

    picture = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    if picture.size != size:
        picture = picture.resize(size, Image.BILINEAR)
    return np.asarray(picture.convert("RGB"))


def diffusers_editor(method: str, model: str | None, options: dict[str, Any]):
    """A DragKit method through ``dragkit.drag_core.api`` on a diffusers SD1.x/2.x folder or checkpoint."""
    from safetensors.torch import load_file

    from dragkit.drag_core.api import DragPipeline, edit
    from dragkit.drag_core.files import write_safetensors

    if not model:
        raise ValueError("--backend diffusers needs --model (a diffusers SD1.5 folder or a single-file checkpoint)")
    pipe = DragPipeline.load(model)
    run, widgets = _split(options)

    def editor(image: np.ndarray, prompt: str, handles: list[Point], targets: list[Point], mask: np.ndarray,
               lora_path: Path) -> EditOutcome:
        cached = lora_path.is_file()
        lora = load_file(str(lora_path)) if cached else "train"
        result = edit(pipe, image, points_json(image, handles, targets), mask, method, prompt, lora=lora,
                      options=widgets, **run)
        if result.lora is not None and not cached:
            write_safetensors(lora_path, result.lora)
        summary = {**result.summary, "seconds_by_stage": result.seconds, "lora_cached": cached}
        return EditOutcome(_resized(result.image, (image.shape[1], image.shape[0])), summary)

    return editor


def comfyui_editor(method: str, model: str | None, options: dict[str, Any]):
    """A DragKit method as its ComfyUI graph, run in-process through the nodes (ComfyUI's checkpoint loader, VAE
    Encode/Decode, DragKit's nodes with their defaults) on an SD1.x/2.x single-file checkpoint."""
    import torch

    import comfyenv
    from comfy_client import widget_defaults

    if not model:
        raise ValueError("--backend comfyui needs --model (an SD1.5 single-file checkpoint)")
    comfyenv.setup()
    import comfy.sd

    from dragkit.drag_core.api import METHODS
    from dragkit.drag_core.sacdrag import DRAG_STEP, SAC_STEP
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.dragnoise_nodes import BottleneckOptimize, SemanticPropagationDenoise
    from dragkit.nodes.gooddrag_nodes import AlternatingDragDenoise
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise
    from dragkit.nodes.lora_nodes import IdentityLoRATrain
    from dragkit.nodes.points_nodes import DragPoints
    from dragkit.nodes.sacdrag_nodes import DenoiseToStep

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    spec = METHODS[method]
    run, widgets = _split(options)
    with torch.inference_mode():
        unet, clip, vae = comfy.sd.load_checkpoint_guess_config(model, output_vae=True, output_clip=True)[:3]
    node = {"dragdiffusion": MotionSupervisionOptimize, "sacdrag": MotionSupervisionOptimize,
            "dragnoise": BottleneckOptimize, "gooddrag": AlternatingDragDenoise}[method]()
    defaults = widget_defaults(type(node))
    unknown = set(widgets) - set(defaults)
    if unknown:
        raise ValueError(f"options {sorted(unknown)} are not widgets of {type(node).__name__}")
    widgets = {**defaults, **widgets}

    def editor(image: np.ndarray, prompt: str, handles: list[Point], targets: list[Point], mask: np.ndarray,
               lora_path: Path) -> EditOutcome:
        from PIL import Image
        from safetensors.torch import load_file

        from dragkit.drag_core.files import write_safetensors
        from dragkit.nodes.comfy_lora import apply_lora, to_kohya

        # SD's VAE needs multiples of 8: resize (as the API does); DragPoints rescales the points to it.
        h8, w8 = image.shape[0] // 8 * 8, image.shape[1] // 8 * 8
        work = image if (h8, w8) == image.shape[:2] else np.asarray(Image.fromarray(image).resize((w8, h8), Image.BICUBIC))
        with torch.inference_mode():
            pixels = torch.from_numpy(work.astype(np.float32) / 255)[None]
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
            model_in, cached = unet, lora_path.is_file()
            lora_steps = run.get("lora_steps", spec.lora_steps)
            if cached:
                model_in = apply_lora(unet, load_file(str(lora_path)))
            elif lora_steps:
                model_in, lora = IdentityLoRATrain.execute(unet, vae, pixels, cond, lora_steps, 16, 5e-4, 4,
                                                           run.get("lora_resolution", 512), 0, "auto", "off", "")
                write_safetensors(lora_path, to_kohya(unet, lora), {})  # kohya keys: either backend reads it
            drag_points, _ = DragPoints.execute(pixels, json.dumps(points_json(image, handles, targets)),
                                                torch.from_numpy(mask.astype(np.float32))[None]).result
            steps = run.get("steps", 50)
            state, _ = DDIMInvert.execute(model_in, {"samples": vae.encode(pixels)}, cond, steps,
                                           run.get("inversion_strength", spec.inversion_strength),
                                           spec.first_step_correction)
            if method == "sacdrag":
                (state,) = DenoiseToStep.execute(model_in, state, DRAG_STEP, True, SAC_STEP, 10)
            result = node.execute(model_in, state, drag_points, **widgets)
            out = result.result[0]
            if method == "dragnoise":
                (out,) = SemanticPropagationDenoise.execute(model_in, out, 0)
            elif method != "gooddrag":
                start = max(0, SAC_STEP - DRAG_STEP) if method == "sacdrag" else 0
                (out,) = ReferenceLatentDenoise.execute(model_in, out, True, start, 10)
            picture = vae.decode(out["samples"])[0].clamp(0, 1).float().cpu().numpy()
        summary = {**result.ui["drag"][0], "lora_cached": cached}
        return EditOutcome(_resized((picture * 255).round().astype(np.uint8), (image.shape[1], image.shape[0])),
                           summary)

    return editor
