"""DragKit without ComfyUI: the Python API for scripts and pipelines, on diffusers + peft.

    from dragkit.drag_core.api import DragPipeline, edit
    pipe = DragPipeline.load("path/to/sd15")            # a diffusers folder or a single-file checkpoint
    result = edit(pipe, "cat.png", points_json, method="gooddrag", prompt="a photo of a cat")
    result.image.save("dragged.png"); print(result.summary["final_distance_px"])

Each method runs the stages its ComfyUI graph runs, with the nodes' defaults: the identity LoRA (peft,
``peft_lora.py``), DDIM inversion, the method's drag and its denoising, all on :class:`DiffusersBackbone`.
diffusers, peft and transformers are imported only here and only when used (``pip install "dragkit[diffusers]"``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .diffusers_backbone import DiffusersBackbone
from .drag_loop import DragConfig, DragResult
from .dragdiffusion import optimize_latent
from .dragnoise import DRAGNOISE_CONFIG, optimize_bottleneck, semantic_propagation
from .gooddrag import INVERSION_STRENGTH as GOODDRAG_INVERSION
from .gooddrag import LORA_STEPS as GOODDRAG_LORA_STEPS
from .gooddrag import GoodDragConfig, alternating_drag_denoise
from .inversion import ddim_invert
from .lora import LoRAConfig, posterior_sampler, train_identity_lora
from .mask import editable_mask_for_latent
from .peft_lora import (
    LoRAFileError,
    attach_identity_lora,
    check_no_other_adapters,
    kohya_state_dict,
    load_kohya_lora,
    remove_identity_lora,
)
from .points import DragPoints, PointsError, RLEMask, grid_points, parse_points, to_pixels
from .precision import resolve_precision
from .reference import EDITED_FROM_SOURCE, denoise_branches
from .sacdrag import DRAG_STEP, SAC_STEP
from .schedule import DDIMSchedule, inversion_step_count, scaled_linear_alphas_cumprod
from .state import DiffusionState

log = logging.getLogger(__name__)

PIXELS_PER_LATENT = 8
MUTUAL_START_LAYER = 10  # ReferenceLatentDenoise's start_layer default


class DragKitError(ValueError):
    """Bad input to the API: the message names the argument and what to do."""


@dataclass(frozen=True)
class Method:
    """A method's stages and the defaults its ComfyUI graph uses."""

    config: Any  # DragConfig / GoodDragConfig: the drag node's widget defaults
    inversion_strength: float
    lora_steps: int  # 0: no identity LoRA
    first_step_correction: bool = False


METHODS: dict[str, Method] = {
    "dragdiffusion": Method(DragConfig(), 0.7, 80),
    "gooddrag": Method(GoodDragConfig(), GOODDRAG_INVERSION, GOODDRAG_LORA_STEPS),
    "dragnoise": Method(DRAGNOISE_CONFIG, 0.7, 80),
    # SPEC §3: full inversion with the sampling-step correction, no LoRA; DenoiseToStep's defaults.
    "sacdrag": Method(DragConfig(), 1.0, 0, first_step_correction=True),
}

# (stage, done, total): stages are "lora", "invert", "drag", "denoise".
Progress = Callable[[str, int, int], None]


def _log_progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 10 == 0:
        log.info("%s %d/%d", stage, done, total)


@dataclass
class DragPipeline:
    """The SD1.x/2.x parts DragKit uses, from a diffusers pipeline."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: Any
    alphas_cumprod: torch.Tensor
    device: torch.device
    prediction_type: str = "epsilon"  # or "v_prediction" (SD2.x at 768 px): the backbone converts it to ε

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None, config: str | Path | None = None,
             ) -> DragPipeline:
        """A diffusers folder (``model_index.json``) or a single-file ``.safetensors``/``.ckpt`` checkpoint (its
        component configs come from ``config``, a diffusers folder of the same family, or diffusers' cache);
        nothing is downloaded. Weights load in float32."""
        from diffusers import StableDiffusionPipeline

        path = Path(path)
        if path.is_dir():
            if not (path / "model_index.json").exists():
                raise DragKitError(f"path: {path} is a folder without model_index.json; give a diffusers SD1.x/2.x "
                                   "pipeline folder or a single-file checkpoint")
            pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False,
                                                           local_files_only=True)
        elif path.is_file() and path.suffix in (".safetensors", ".ckpt"):
            kwargs = {"config": str(config)} if config is not None else {}
            pipe = StableDiffusionPipeline.from_single_file(str(path), local_files_only=True, load_safety_checker=False,
                                                            **kwargs)
        else:
            raise DragKitError(f"path: {path} is neither a diffusers pipeline folder nor a .safetensors/.ckpt file")
        return cls.from_diffusers(pipe, device)

    @classmethod
    def from_diffusers(cls, pipe, device: str | torch.device | None = None) -> DragPipeline:
        """The parts of an already loaded ``StableDiffusionPipeline`` (moved to ``device``, default CUDA, MPS or
        CPU, whichever exists)."""
        prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise DragKitError(f"path: this model predicts {prediction!r}; DragKit takes ε- or v-prediction "
                               "SD1.x/2.x models")
        device = torch.device(device) if device is not None else _default_device()
        alphas = _alphas_cumprod(pipe.scheduler)
        for part in (pipe.unet, pipe.vae, pipe.text_encoder):
            part.to(device)
        return cls(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, alphas, device, prediction)

    def backbone(self) -> DiffusersBackbone:
        return DiffusersBackbone(self.unet, self.alphas_cumprod, self.device, self.prediction_type)

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, 77, dim): the text encoder's last hidden state, as SD1.x samples with."""
        ids = self.tokenizer(prompt, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device))[0].float().cpu()

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] → the posterior mean in the UNet's latent space (as ComfyUI's VAE Encode)."""
        dist = self.vae.encode((pixels * 2 - 1).to(self.device, self.vae.dtype)).latent_dist
        return (dist.mean.float() * self.latent_scale).cpu()

    def posterior_sampler(self) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
        """The identity LoRA's encoder: crops in [−1, 1] → a posterior *sample* (SPEC §1.1)."""

        @torch.no_grad()
        def moments(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            dist = self.vae.encode(crops.to(self.device, self.vae.dtype)).latent_dist
            return dist.mean.float(), dist.std.float()

        return posterior_sampler(moments, lambda z: z * self.latent_scale)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A clean latent → (1, 3, H, W) in [0, 1]."""
        x = self.vae.decode((z / self.latent_scale).to(self.device, self.vae.dtype)).sample
        return ((x.float() + 1) / 2).clamp(0, 1).cpu()


def _alphas_cumprod(scheduler) -> torch.Tensor:
    """ᾱ in float64: recomputed from the config for SD's scaled-linear schedule (the scheduler keeps float32)."""
    config = scheduler.config
    if config.get("beta_schedule") == "scaled_linear" and config.get("trained_betas") is None:
        return scaled_linear_alphas_cumprod(config["beta_start"], config["beta_end"], config["num_train_timesteps"])
    return torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class EditResult:
    image: Any  # PIL.Image: the edited picture, at the (8-px-rounded) size that was edited
    summary: dict[str, Any]  # what the drag node reports in ui["drag"]: distances, final handles, iterations
    lora: dict[str, torch.Tensor] | None = None  # the identity LoRA used (kohya keys), to save or reuse
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


def train_lora(pipe: DragPipeline, pixels: torch.Tensor, context: torch.Tensor, config: LoRAConfig,
               progress: Progress = _log_progress) -> dict[str, torch.Tensor]:
    """Train the identity LoRA on ``pixels`` (1, 3, H, W) in [0, 1] and return it with kohya keys; the UNet is
    left without an adapter."""
    backbone = pipe.backbone()
    with torch.enable_grad():
        parameters = attach_identity_lora(pipe.unet, config)
        try:
            backbone.trainable = tuple(parameters)
            train_identity_lora(lambda z, t, c: backbone(z, t, c).eps, parameters, pipe.posterior_sampler(), pixels,
                                context, pipe.alphas_cumprod, config, pipe.device,
                                lambda done, total: progress("lora", done, total))
            return kohya_state_dict(pipe.unet, config)
        finally:
            remove_identity_lora(pipe.unet)


def edit(
    pipe: DragPipeline,
    image: Any,
    points: str | dict | DragPoints,
    mask: Any = None,
    method: str = "dragdiffusion",
    prompt: str = "",
    *,
    lora: str | Path | dict[str, torch.Tensor] | None = "train",
    lora_steps: int | None = None,
    lora_resolution: int = 512,
    lora_crop_encoding: str = "per_crop",
    steps: int = 50,
    inversion_strength: float | None = None,
    edit_prompt: str | None = None,
    options: dict[str, Any] | None = None,
    progress: Progress = _log_progress,
) -> EditResult:
    """Drag ``image`` (a path, PIL image, or H×W×3 uint8 array) by ``points`` (the DragPoints editor's JSON, as a
    string or dict, or a :class:`DragPoints`) with ``method`` (one of :data:`METHODS`).

    ``mask``: the editable region (H×W array/PIL image, nonzero = editable), combined with the points' own mask.
    ``lora``: "train" (the method's identity LoRA; ``lora_steps`` overrides its step count), None (no LoRA), or a
    kohya LoRA from either backend (a dict or a .safetensors path); ``lora_crop_encoding``: IdentityLoRATrain's
    ``crop_encoding`` ("per_crop", the reference, or "latent"). ``options``: the drag node's widgets by name
    (e.g. ``{"max_iterations": 40, "motion_anchor": "initial"}``). ``edit_prompt``: the training-free drag's
    prompt for the edited branch (``sacdrag`` only). The UNet carries no adapter afterwards.
    """
    if method not in METHODS:
        raise DragKitError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if edit_prompt is not None and method != "sacdrag":
        raise DragKitError(f"edit_prompt: only the training-free drag (method 'sacdrag') takes one, not {method!r}")
    spec = METHODS[method]
    options = dict(options or {})
    # "auto" as in the nodes: fp16 autocast with loss scaling on CUDA (the reference), fp32 elsewhere.
    precision = resolve_precision(options.pop("precision", "auto"), pipe.device)
    config = _configure(spec.config, {**options, "precision": precision})
    if not isinstance(steps, int) or not 1 <= steps <= 1000:
        raise DragKitError(f"steps: must be a whole number in [1, 1000], got {steps!r}")
    if method == "sacdrag" and steps <= DRAG_STEP:
        raise DragKitError(f"steps: the training-free drag drags at step {DRAG_STEP}; give more than {DRAG_STEP} steps")
    strength = spec.inversion_strength if inversion_strength is None else float(inversion_strength)
    if not 0 < strength <= 1:
        raise DragKitError(f"inversion_strength: must be in (0, 1], got {strength}")
    pixels = _pixels(image)
    height, width = pixels.shape[-2:]
    drag_points = _points(points, mask, width, height)
    try:  # before any model work: a bad point costs nothing
        handles, targets = grid_points(drag_points, height, width)
    except PointsError as e:
        raise DragKitError(f"points: {e}") from None
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    context = pipe.encode_prompt(prompt)
    try:
        check_no_other_adapters(pipe.unet)
        used_lora = _lora(pipe, pixels, context, lora, spec, lora_steps, lora_resolution, lora_crop_encoding,
                          precision, progress)
        lap("lora")
        if used_lora is not None:
            load_kohya_lora(pipe.unet, used_lora)
    except LoRAFileError as e:
        raise DragKitError(f"lora: {e}") from None
    try:
        backbone = pipe.backbone()
        z0 = pipe.encode_image(pixels)
        schedule = DDIMSchedule(pipe.alphas_cumprod, steps)
        n = inversion_step_count(steps, strength)
        z_t = ddim_invert(backbone, z0, context, schedule, n, spec.first_step_correction,
                          lambda d, t: progress("invert", d, t))
        state = DiffusionState(schedule, steps - n, z_t.cpu(), context,
                               edit_context=None if edit_prompt is None else pipe.encode_prompt(edit_prompt))
        lap("invert")
        mask_latent = editable_mask_for_latent(drag_points.mask_tensor(), height, width, *z0.shape[-2:])
        result, clean = _run_method(method, backbone, state, handles, targets, mask_latent, config, progress,
                                    (height // 2, width // 2))
        lap("drag+denoise")
        picture = pipe.decode(clean)
        lap("decode")
    finally:
        if used_lora is not None:
            remove_identity_lora(pipe.unet)
    return EditResult(_to_pil(picture), summarize(result, drag_points, height, width), used_lora, seconds)


def _run_method(method: str, backbone: DiffusersBackbone, state: DiffusionState, handles, targets, mask_latent,
                config, progress: Progress, grid_hw: tuple[int, int]) -> tuple[DragResult, torch.Tensor]:
    """The drag and the denoising of ``method``'s graph; returns the drag's result and the clean latent."""
    drag_progress = lambda d, t: progress("drag", d, t)  # noqa: E731
    denoise_progress = lambda d, t: progress("denoise", d, t)  # noqa: E731
    mutual = backbone.mutual(EDITED_FROM_SOURCE, MUTUAL_START_LAYER)
    if method == "gooddrag":
        result = alternating_drag_denoise(backbone, state, handles, targets, mask_latent, config, drag_progress,
                                          grid_hw=grid_hw, mutual=mutual)
        return result, result.latent
    if method == "dragnoise":
        result = optimize_bottleneck(backbone, state, handles, targets, mask_latent, config, drag_progress,
                                     grid_hw=grid_hw)
        return result, semantic_propagation(backbone, replace(state, bottleneck=result.bottleneck), 0,
                                            denoise_progress)
    control_from = state.step_index  # ReferenceLatentDenoise's start_step 0
    if method == "sacdrag":  # DenoiseToStep: [source, edited] to the drag step, control from sac_step
        drag_step = max(DRAG_STEP, state.step_index)
        control_from = max(SAC_STEP, drag_step)
        state = denoise_branches(backbone, state, drag_step, mutual if SAC_STEP < drag_step else None, SAC_STEP,
                                 denoise_progress)
    result = optimize_latent(backbone, state, handles, targets, mask_latent, config, drag_progress, grid_hw=grid_hw)
    out = denoise_branches(backbone, state.with_edit(result.latent), state.schedule.num_steps, mutual,
                           control_from, denoise_progress)
    return result, out.edited_latent


def _configure(defaults, options: dict[str, Any]):
    names = {f.name for f in fields(defaults)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise DragKitError(f"options: {', '.join(unknown)} not known; this method takes {', '.join(sorted(names))}")
    try:
        return replace(defaults, **options)
    except (TypeError, ValueError) as e:
        raise DragKitError(f"options: {e}") from None


def _lora(pipe, pixels, context, lora, spec: Method, lora_steps, resolution, crop_encoding, precision, progress):
    if lora is None:
        return None
    if isinstance(lora, dict):
        return lora
    if isinstance(lora, (str, Path)) and lora != "train":
        from safetensors.torch import load_file

        path = Path(lora)
        if not path.is_file():
            raise DragKitError(f"lora: {path} does not exist (give 'train', None, a dict or a .safetensors file)")
        return load_file(str(path))
    if lora != "train":
        raise DragKitError(f"lora: expected 'train', None, a dict or a path, got {type(lora).__name__}")
    steps = spec.lora_steps if lora_steps is None else lora_steps
    if steps < 1:
        return None
    try:
        config = LoRAConfig(steps=steps, resolution=resolution, precision=precision, crop_encoding=crop_encoding)
    except ValueError as e:
        raise DragKitError(f"lora_steps / lora_resolution / lora_crop_encoding: {e}") from None
    return train_lora(pipe, pixels, context, config, progress)


def _pixels(image: Any) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], H and W rounded down to multiples of 8 by resizing (points are rescaled to it)."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise DragKitError(f"image: {image} does not exist")
        image = Image.open(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.dtype != np.uint8:
        raise DragKitError(f"image: expected an RGB picture (H×W×3 uint8), got {array.dtype} {array.shape}")
    h, w = array.shape[:2]
    if min(h, w) < 64 or max(h, w) > 4096:
        raise DragKitError(f"image: {w}×{h} px; DragKit edits pictures between 64 and 4096 px a side")
    new_h, new_w = h // PIXELS_PER_LATENT * PIXELS_PER_LATENT, w // PIXELS_PER_LATENT * PIXELS_PER_LATENT
    if (new_h, new_w) != (h, w):
        array = np.asarray(Image.fromarray(array[..., :3]).resize((new_w, new_h), Image.BICUBIC))
    return torch.from_numpy(array[..., :3].copy()).permute(2, 0, 1)[None].float() / 255


def _points(points: Any, mask: Any, width: int, height: int) -> DragPoints:
    import json

    try:
        if isinstance(points, dict):
            points = json.dumps(points)
        parsed = points if isinstance(points, DragPoints) else parse_points(str(points))
    except PointsError as e:
        raise DragKitError(f"points: {e}") from None
    if mask is not None:
        m = np.asarray(mask)
        m = m[..., 0] if m.ndim == 3 else m
        if m.ndim != 2:
            raise DragKitError(f"mask: expected an H×W array, got shape {m.shape}")
        painted = torch.from_numpy(m > 0)
        if tuple(painted.shape) != (parsed.height, parsed.width):
            painted = torch.nn.functional.interpolate(painted[None, None].float(), size=(parsed.height, parsed.width),
                                                      mode="nearest")[0, 0] > 0
        own = parsed.mask_tensor()
        union = painted if own is None else (painted | (own > 0))
        parsed = replace(parsed, mask=RLEMask.from_tensor(union.float()))
    return parsed


def summarize(result: DragResult, points: DragPoints, image_h: int, image_w: int) -> dict[str, Any]:
    """The drag node's ``ui["drag"]`` summary (distances in pixels of the edited image; final handles in pixels
    of the image the points were placed on)."""
    scale = torch.tensor([points.width / image_w, points.height / image_h])
    final = to_pixels(result.handles, image_h, image_w) * scale
    return result.summary(points.pairs, points.width, points.height, [list(map(float, p)) for p in final.tolist()])


def _to_pil(pixels: torch.Tensor):
    from PIL import Image

    array = (pixels[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)
