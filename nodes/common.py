"""What every DragKit node shares: the types that flow between nodes, conversions between ComfyUI's types and
drag_core's tensors with input checks, and running a core function on the model's device."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.latest import io

from ..drag_core.points import MAX_SIDE
from ..drag_core.points import DragPoints as Points
from ..drag_core.state import DiffusionState
from .comfy_unet import BackboneError, ComfyBackbone, context_dim, latent_in, latent_out
from .errors import DragKitInputError

log = logging.getLogger(__name__)

CATEGORY = "DragKit"
STATE_TYPE = "DRAG_STATE"
POINTS_TYPE = "DRAG_POINTS"
# The pack's own socket types in ComfyUI's node schema (defined once: each io.Custom call makes a new class).
DragState = io.Custom(STATE_TYPE)
DragPointsIO = io.Custom(POINTS_TYPE)
PRECISIONS = ["auto", "fp32", "fp16", "bf16"]


def running_id(node_cls) -> str | None:
    """The node's id in the running graph (hidden UNIQUE_ID: progress text goes there); None when the node's
    execute is called directly, outside a server."""
    hidden = getattr(node_cls, "hidden", None)
    return hidden.unique_id if hidden is not None else None


def check_choices(node_cls, **values: Any) -> None:
    """Each combo value must be one of its options. ComfyUI 0.3.75 checks that for the older schema's combos but
    not for the current schema's io.Combo, so the nodes check it themselves: in validate_inputs (before the graph
    runs) and when execute is called directly (scripts, other nodes). None: not given / linked."""
    for spec in node_cls.define_schema().inputs:
        value = values.get(spec.id)
        if isinstance(spec, io.Combo.Input) and value is not None and value not in spec.options:
            raise DragKitInputError(node_cls.NAME, spec.id,
                                    f"{value!r} is not one of: {', '.join(map(str, spec.options))}.")


def validation_message(check: Callable[[], Any]) -> bool | str:
    """For a node's validate_inputs: True when ``check`` passes, else its DragKitInputError's message (ComfyUI
    refuses the graph with it before anything runs)."""
    try:
        check()
    except DragKitInputError as e:
        return str(e)
    return True


@dataclass(frozen=True)
class PointsOnImage:
    """The DRAG_POINTS value: points (with the editable mask) on the image they were placed on."""

    points: Points  # in pixels of ``image``; ``points.mask`` is the union of painted and input masks
    image: torch.Tensor  # (1, H, W, 3), the background of previews
    # After a drag: each handle's tracked path in pixels, one position per iteration (last = final).
    trajectories: tuple[tuple[tuple[float, float], ...], ...] = ()

    def mask(self) -> torch.Tensor | None:
        """(H, W) 0/1 editable region, or None when nothing is masked."""
        m = self.points.mask_tensor()
        return m if m is not None and bool(m.any()) else None


def check_state(node: str, state, input_name: str = "state") -> None:
    if not isinstance(state, DiffusionState):
        raise DragKitInputError(node, input_name, f"expected a DRAG_STATE, got {type(state).__name__}.")


def check_points(node: str, drag_points, input_name: str = "drag_points") -> None:
    if not isinstance(drag_points, PointsOnImage):
        raise DragKitInputError(node, input_name, f"expected DRAG_POINTS from DragPoints, got {type(drag_points).__name__}.")


def refuse_bottleneck(node: str, state: DiffusionState) -> None:
    """A DragNoise state carries an optimized bottleneck that only SemanticPropagationDenoise uses."""
    if state.bottleneck is not None:
        raise DragKitInputError(
            node, "state", "this state holds a DragNoise bottleneck, which this node would ignore; "
            "denoise it with SemanticPropagationDenoise.",
        )


def backbone_for(node: str, model, inputs: dict[str, str] | None = None, **hooks: Any) -> ComfyBackbone:
    """The model as a drag_core backbone with the ``hooks`` the node needs (see ComfyBackbone). A hook the model
    cannot provide is this node's error on the input that chose it: ``inputs`` maps the backbone's setting names
    to the node's input names (default: feature_blocks → feature_blocks, mutual_start_layer → start_layer)."""
    names = {"feature_blocks": "feature_blocks", "mutual_start_layer": "start_layer", **(inputs or {})}
    try:
        return ComfyBackbone(model, node, **hooks)
    except BackboneError as e:
        raise DragKitInputError(node, names[e.setting], str(e)) from None


def check_same_schedule(node: str, backbone: ComfyBackbone, state: DiffusionState) -> None:
    if len(backbone.alphas_cumprod) != len(state.schedule.alphas_cumprod):
        raise DragKitInputError(node, "model", "its noise schedule differs from the one the state was made with.")


def run_core(backbone: ComfyBackbone, core: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Load the model onto its device and run a drag_core function on it outside ComfyUI's inference mode
    (autograd passes need that; plain passes do not mind)."""
    backbone.load()
    with torch.inference_mode(False):
        return core(*args, **kwargs)


def model_latent_in(model, latent: dict, node: str, input_name: str = "latent") -> torch.Tensor:
    """LATENT → the model's latent space (e.g. × 0.18215 for SD1.5), float32, batch 1."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise DragKitInputError(node, input_name, f"expected an image LATENT (batch, 4, h, w), got {shape}.")
    if samples.shape[1] != 4:
        raise DragKitInputError(
            node, input_name,
            f"the latent has {samples.shape[1]} channels; DragKit needs a 4-channel SD-style latent "
            "(encode the image with an SD1.x/2.x VAE).",
        )
    if samples.shape[0] != 1:
        raise DragKitInputError(
            node, input_name,
            f"got a batch of {samples.shape[0]} latents; DragKit edits one image at a time "
            "(pick one with 'Latent From Batch').",
        )
    if samples.numel() == 0:
        raise DragKitInputError(node, input_name, f"the latent is empty (shape {tuple(samples.shape)}).")
    if not torch.isfinite(samples).all():
        raise DragKitInputError(node, input_name, "the latent contains NaN or infinite values.")
    return latent_in(model, samples.detach().clone().float())


def check_finite(node: str, **values: Any) -> None:
    """FLOAT widget values must be finite: ComfyUI's range check lets NaN through (every comparison with NaN is
    false), and a NaN learning rate or guidance scale would fail deep in torch or return a NaN picture."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise DragKitInputError(node, name, f"must be a finite number, got {value!r}.")


def single_image(image, node: str, input_name: str = "image") -> torch.Tensor:
    """IMAGE (1, H, W, 3|4) → the RGB image; refuses other shapes, batches, empty and non-finite pictures."""
    if (not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4)
            or not image.is_floating_point()):
        got = f"a {image.dtype} tensor of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise DragKitInputError(node, input_name, f"expected an IMAGE (1, H, W, 3) of floats in [0, 1], got {got}.")
    if image.shape[0] != 1:
        raise DragKitInputError(
            node, input_name, f"got a batch of {image.shape[0]} images; DragKit edits one image at a time "
            "(pick one with 'Image From Batch')."
        )
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise DragKitInputError(node, input_name, f"the image is empty ({image.shape[2]}×{image.shape[1]} px).")
    if max(image.shape[1], image.shape[2]) > MAX_SIDE:
        raise DragKitInputError(
            node, input_name, f"the image is {image.shape[2]}×{image.shape[1]} px; DragKit edits pictures up to "
            f"{MAX_SIDE} px a side (SD1.5 works at 512–1024): scale it down first (e.g. 'Upscale Image By' < 1)."
        )
    if not torch.isfinite(image).all():
        raise DragKitInputError(node, input_name, "the image contains NaN or infinite values.")
    return image[..., :3]


def mask_2d(mask: torch.Tensor, height: int, width: int, node: str, input_name: str = "mask") -> torch.Tensor:
    """A MASK as a binary (height, width) float tensor (> 0.5), resized (nearest) to the image when it differs."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or mask.numel() == 0:
        got = f"shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise DragKitInputError(node, input_name, f"expected a non-empty MASK (H, W) or (B, H, W), got {got}.")
    if max(mask.shape[-2:]) > MAX_SIDE:
        raise DragKitInputError(node, input_name, f"the mask is {mask.shape[-1]}×{mask.shape[-2]}, larger than "
                                f"{MAX_SIDE} px a side.")
    m = mask.detach().float().cpu()
    if m.ndim == 3:
        if m.shape[0] > 1:
            log.warning("%s: the mask input is a batch of %d; using the first", node, m.shape[0])
        m = m[0]
    if m.ndim != 2:
        raise DragKitInputError(node, input_name, f"expected a MASK (H, W) or (B, H, W), got shape {tuple(mask.shape)}.")
    if not torch.isfinite(m).all():
        raise DragKitInputError(node, input_name, "the mask contains NaN or infinite values.")
    if tuple(m.shape) != (height, width):
        log.info("%s: mask is %d×%d, the image %d×%d; resizing the mask (nearest)", node, m.shape[1], m.shape[0], width, height)
        m = torch.nn.functional.interpolate(m[None, None], size=(height, width), mode="nearest")[0, 0]
    return (m > 0.5).float()


def model_latent_out(model, z: torch.Tensor) -> dict:
    """The model's latent space → LATENT on ComfyUI's intermediate device."""
    import comfy.model_management

    return {"samples": latent_out(model, z.detach().float()).to(comfy.model_management.intermediate_device())}


def text_context(conditioning, model, node: str, input_name: str = "conditioning") -> torch.Tensor:
    """CONDITIONING → the cross-attention context tensor (1, tokens, dim), finite."""
    first = conditioning[0] if isinstance(conditioning, list) and conditioning else None
    if (not isinstance(first, (list, tuple)) or not first or not isinstance(first[0], torch.Tensor)
            or not first[0].is_floating_point()):
        raise DragKitInputError(node, input_name, "expected a CONDITIONING from a CLIP Text Encode node.")
    if len(conditioning) > 1:
        log.warning("%s: %s has %d entries; only the first is used", node, input_name, len(conditioning))
    context = first[0]
    expected = context_dim(model) or context.shape[-1]
    if context.ndim != 3 or context.shape[-1] != expected or context.numel() == 0:
        raise DragKitInputError(
            node, input_name,
            f"text embedding of shape {tuple(context.shape)} does not fit the model (context dim {expected}); "
            "encode the prompt with the CLIP of the same checkpoint.",
        )
    if not torch.isfinite(context[:1]).all():
        raise DragKitInputError(node, input_name, "the text embedding contains NaN or infinite values.")
    return context[:1].detach().clone().float()


def progress_callback(total: int):
    """A drag_core StepCallback that drives ComfyUI's progress bar and honours interrupts."""
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def callback(done: int, _total: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, _total)

    return callback


def send_text(node_id, text: str) -> None:
    """Show a line of text on the node while it runs (no-op outside a server)."""
    if node_id is None:
        return
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, node_id)
    except (ImportError, AttributeError):
        pass
