"""IdentityLoRATrain: DragDiffusion's identity-preserving LoRA, cached, saved and reused like any LoRA."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time

import torch
from comfy_api.latest import io

from ..drag_core.files import write_safetensors
from ..drag_core.lora import CROP_ENCODINGS, LoRAConfig, lora_parameter_count, train_identity_lora
from ..drag_core.precision import resolve_precision
from .comfy_lora import (
    apply_lora,
    attach_lora,
    attention_projections,
    cache_load,
    cache_store,
    content_hashes,
    lora_model_dict,
    low_rank_hooks,
    posterior_sampler,
    to_kohya,
)
from .comfy_unet import ComfyBackbone
from .common import (
    CATEGORY,
    PRECISIONS,
    backbone_for,
    check_choices,
    check_finite,
    progress_callback,
    running_id,
    send_text,
    single_image,
    text_context,
    validation_message,
)
from .errors import DragKitInputError, DragKitNodeError

log = logging.getLogger(__name__)

# How the LoRA acts while it trains: "merged" patches W + scale·up·down as a weight wrapper; "low_rank" adds
# scale·up(down(x)) to each projection's output (the reference's formulation: no full-size weight gradient). The
# same function and factors (tested); on this 2-core CPU the low-rank form was no faster (docs/BENCHMARKS.md), so
# the merged one stays. bench/lora_speed.py --path measures both.
TRAINING_PATH = "merged"

_SAFE_NAME = re.compile(r"^[\w\-. ]+$")


def check_widgets(node_cls, save_name: str | None, **choices) -> None:
    """The combos (``choices``), and save_name: empty (do not save) or a plain file name, so nothing can be written
    outside models/loras. None: linked from another node, checked when the node runs."""
    check_choices(node_cls, **choices)
    if save_name and not _SAFE_NAME.match(str(save_name)):
        raise DragKitInputError(node_cls.NAME, "save_name",
                                f"{save_name!r}: use letters, digits, spaces, '-', '_' and '.' only.")


class IdentityLoRATrain(io.ComfyNode):
    NODE_ID = "DragKitIdentityLoRATrain"
    NAME = "IdentityLoRATrain"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category=CATEGORY,
            description=(
                "Trains DragDiffusion's identity-preserving LoRA on the one input image (SPEC §1.1): rank-16 LoRA on "
                "the q/k/v/out projections of every attention layer, 80 AdamW steps on batches of 4 random crops, "
                "ε-MSE. The same model, VAE, image, prompt and settings reuse the cached LoRA without training. "
                "Outputs the model with the LoRA applied (a patched clone, like LoraLoader) and the LoRA itself."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The SD1.x/2.x model to adapt to the image."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE (crops are encoded with it)."),
                io.Image.Input("image", tooltip="The image to be edited (batch of one)."),
                io.Conditioning.Input("conditioning", tooltip="The same prompt conditioning as the edit."),
                io.Int.Input("steps", default=80, min=1, max=10000, tooltip="Training steps."),
                io.Int.Input("rank", default=16, min=1, max=256, tooltip="LoRA rank (alpha = rank)."),
                io.Float.Input("lr", default=5e-4, min=1e-7, max=1.0, step=1e-5, tooltip="AdamW learning rate."),
                io.Int.Input("batch_size", default=4, min=1, max=64, tooltip="Random crops per step."),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=8, tooltip="Crop size: the shorter side is resized to this (512 for SD1.5)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                io.Combo.Input("precision", options=PRECISIONS, default="auto", tooltip="auto: fp16 mixed precision with loss scaling on CUDA (the reference), fp32 elsewhere."),
                io.Combo.Input("cache", options=["use", "refresh", "off"], default="use", tooltip="use: reuse a LoRA trained before on the same model, VAE, image, prompt and settings; refresh: retrain and overwrite; off: always train, store nothing."),
                io.String.Input("save_name", default="", tooltip="If set, also save the LoRA as models/loras/<name>.safetensors (kohya keys: LoraLoader, A1111 and Forge load it)."),
                io.Combo.Input("crop_encoding", options=list(CROP_ENCODINGS), default=CROP_ENCODINGS[0], optional=True, tooltip="per_crop (the reference): the VAE encodes every crop (320 for 80 steps × 4; a square picture at the crop size is encoded once, since all its crops are the same). latent (DragKit option, for pictures that are not square): the picture is encoded once and the crops are cut from its latent — much less VAE work, a slightly different training set (crop offsets on the 8 px latent grid; each crop's latent sees past its edges)."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The input model with the identity LoRA applied (the input model is left untouched)."),
                io.LoraModel.Output(display_name="lora", tooltip="The LoRA weights (ComfyUI-native keys): core Save LoRA / Load LoRA Model accept them."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, save_name=None, precision=None, cache=None, crop_encoding=None) -> bool | str:
        """The combos and the save name (a plain file name) are checked before the LoRA trains for minutes."""
        return validation_message(lambda: check_widgets(cls, save_name, precision=precision, cache=cache,
                                                        crop_encoding=crop_encoding))

    @classmethod
    def execute(cls, model, vae, image, conditioning, steps, rank, lr, batch_size, resolution, seed, precision,
                cache, save_name, crop_encoding=CROP_ENCODINGS[0]) -> io.NodeOutput:
        node = cls.NAME
        unique_id = running_id(cls)
        if not isinstance(steps, int) or steps < 1:
            raise DragKitInputError(node, "steps", f"must be ≥ 1, got {steps!r}.")
        if not isinstance(rank, int) or rank < 1:
            raise DragKitInputError(node, "rank", f"must be ≥ 1, got {rank!r}.")
        check_finite(node, lr=lr)
        image = single_image(image, node)
        check_widgets(cls, save_name, precision=precision, cache=cache, crop_encoding=crop_encoding)
        backbone = backbone_for(node, model)  # validates the model
        context = text_context(conditioning, model, node)
        try:
            config = LoRAConfig(rank=rank, lr=lr, steps=steps, batch_size=batch_size, resolution=resolution, seed=seed,
                                precision=resolve_precision(precision, backbone.device), crop_encoding=crop_encoding)
        except ValueError as e:  # e.g. the latents of steps × batch_size crops beyond MAX_LATENT_BYTES
            # LoRAConfig's messages start with the setting at fault
            name = next((n for n in ("rank", "lr", "resolution", "crop_encoding") if str(e).startswith(n)), "steps")
            raise DragKitInputError(node, name, str(e)) from None
        pixels = image.detach().float().cpu().movedim(-1, 1).clone()

        started = time.monotonic()
        hashes = content_hashes(model, vae, pixels, context, config)
        key = hashes["key"] if cache != "off" else None
        lora = cache_load(key) if cache == "use" else None
        metadata = cls._metadata(config, hashes)
        if lora is not None:
            log.info("%s: cache hit %s (%.2f s): no training", node, key, time.monotonic() - started)
            send_text(unique_id, "identity LoRA: reused from cache")
        else:
            lora = cls._train(backbone, model, vae, pixels, context, config, unique_id)
            if key is not None:
                cache_store(key, lora, metadata)
        if save_name:
            cls._save(model, lora, save_name, metadata)
        return io.NodeOutput(apply_lora(model, lora), lora)

    @staticmethod
    def _train(backbone: ComfyBackbone, model, vae, pixels, context, config: LoRAConfig, unique_id):
        node = IdentityLoRATrain.NAME
        patcher = backbone.patcher  # already a clone of the input model
        shapes = [(o, i) for _, o, i in attention_projections(model)]
        def adapters():  # made inside the block below: LoRA factors must not be inference tensors
            if TRAINING_PATH == "low_rank":
                return low_rank_hooks(patcher, config)
            return contextlib.nullcontext(attach_lora(patcher, config))

        # ComfyUI runs nodes in inference mode
        with torch.inference_mode(False), torch.enable_grad(), adapters() as deltas:
            parameters = [p for d in deltas.values() for p in d.parameters()]
            log.info("%s: %d adapted projections, %d LoRA parameters, %d steps × batch %d at %d px (%s)", node,
                     len(deltas), lora_parameter_count(shapes, config.rank), config.steps, config.batch_size,
                     config.resolution, config.precision)
            loaded = []

            def eps_model(z, t, ctx):
                if not loaded:  # after the crops are encoded: VAE and UNet need not share the device
                    backbone.load()
                    for p in parameters:
                        p.data = p.data.to(backbone.device)
                    loaded.append(True)
                return backbone(z, t, ctx).eps

            def report(step: int, loss: float) -> None:
                send_text(unique_id, f"identity LoRA step {step + 1}/{config.steps}: loss {loss:.4f}")

            started = time.monotonic()
            result = train_identity_lora(
                eps_model, parameters, posterior_sampler(vae, model), pixels.clone(), context.clone(),
                backbone.alphas_cumprod, config, backbone.device, progress_callback(config.steps), report,
            )
        seconds = time.monotonic() - started
        log.info("%s: trained in %.1f s (%.2f s/step), %d UNet passes, loss %.4f → %.4f%s", node, seconds,
                 seconds / config.steps, config.steps, result.losses[0], result.losses[-1],
                 f", {len(result.skipped_steps)} steps skipped" if result.skipped_steps else "")
        return lora_model_dict(deltas, config)

    @staticmethod
    def _metadata(config: LoRAConfig, hashes: dict[str, str]) -> dict[str, str]:
        return {
            "dragkit_kind": "identity LoRA (DragDiffusion, SPEC §1.1)",
            "dragkit_settings": json.dumps(config.__dict__, default=str),
            **{f"dragkit_{name}_hash": value for name, value in hashes.items()},
            "ss_network_dim": str(config.rank),
            "ss_network_alpha": str(config.scale * config.rank),
        }

    @staticmethod
    def _save(model, lora, save_name: str, metadata: dict[str, str]) -> None:
        from pathlib import Path

        import folder_paths

        name = save_name if save_name.endswith(".safetensors") else f"{save_name}.safetensors"
        path = Path(folder_paths.get_folder_paths("loras")[0]) / name
        try:
            write_safetensors(path, to_kohya(model, lora), metadata)
        except OSError as e:  # a full disk, a read-only folder: atomic_write has left nothing behind
            raise DragKitNodeError(IdentityLoRATrain.NAME, f"could not save the LoRA as {path} ({e.strerror or e}); "
                                   "nothing was written. Free disk space or make the folder writable, or clear "
                                   "save_name to skip saving.") from None
        log.info("IdentityLoRATrain: saved %s", path)
