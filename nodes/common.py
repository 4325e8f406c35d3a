"""Conversions between ComfyUI's types and drag_core's tensors, with input checks."""

from __future__ import annotations

import logging

import torch

from .errors import DragKitInputError

log = logging.getLogger(__name__)

CATEGORY = "DragKit"
STATE_TYPE = "DRAG_STATE"


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
    if not torch.isfinite(samples).all():
        raise DragKitInputError(node, input_name, "the latent contains NaN or infinite values.")
    return model.model.process_latent_in(samples.detach().clone().float())


def single_image(image, node: str, input_name: str = "image") -> torch.Tensor:
    """IMAGE (1, H, W, 3|4) → the RGB image; refuses other shapes and batches, saying what to do."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise DragKitInputError(node, input_name, "expected an IMAGE.")
    if image.shape[0] != 1:
        raise DragKitInputError(
            node, input_name, f"got a batch of {image.shape[0]} images; DragKit edits one image at a time "
            "(pick one with 'Image From Batch')."
        )
    return image[..., :3]


def mask_2d(mask: torch.Tensor, height: int, width: int, node: str, input_name: str = "mask") -> torch.Tensor:
    """A MASK as a binary (height, width) float tensor (> 0.5), resized (nearest) to the image when it differs."""
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

    return {"samples": model.model.process_latent_out(z.detach().float()).to(comfy.model_management.intermediate_device())}


def text_context(conditioning, model, node: str, input_name: str = "conditioning") -> torch.Tensor:
    """CONDITIONING → the cross-attention context tensor (1, tokens, dim)."""
    if not isinstance(conditioning, list) or not conditioning or not isinstance(conditioning[0][0], torch.Tensor):
        raise DragKitInputError(node, input_name, "expected a CONDITIONING from a CLIP Text Encode node.")
    if len(conditioning) > 1:
        log.warning("%s: %s has %d entries; only the first is used", node, input_name, len(conditioning))
    context = conditioning[0][0]
    expected = model.model.model_config.unet_config.get("context_dim") or context.shape[-1]
    if context.ndim != 3 or context.shape[-1] != expected:
        raise DragKitInputError(
            node, input_name,
            f"text embedding of shape {tuple(context.shape)} does not fit the model (context dim {expected}); "
            "encode the prompt with the CLIP of the same checkpoint.",
        )
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


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto': the reference's fp16 autocast + loss scaling on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def send_text(node_id, text: str) -> None:
    """Show a line of text on the node while it runs (no-op outside a server)."""
    if node_id is None:
        return
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, node_id)
    except (ImportError, AttributeError):
        pass
