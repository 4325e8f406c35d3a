"""The bundled toy model: a tiny SD1.5-structured latent diffusion model of the procedural toy world,
built from ComfyUI's own classes (UNet, AutoencoderKL VAE, SD1 CLIP text encoder + tokenizer), so
the very same graphs run on it as on a real SD1.5 checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import torch
from comfy_api.latest import io

from .errors import DragKitNodeError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
TOY_WEIGHTS = REPO / "models" / "toy" / "dragkit_toy.safetensors"
IMAGE_SIZE = 128

# SD1.5's UNet structure (4 levels, 2 res blocks, attention in the first three levels: the third
# decoder block and self-attention layers 10–15 exist as in SD1.5) at a fraction of the width.
TOY_UNET = {
    "use_checkpoint": False, "image_size": IMAGE_SIZE // 8, "in_channels": 4, "out_channels": 4,
    "model_channels": 32, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 2, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
    "use_linear_in_transformer": False, "context_dim": 128, "num_heads": -1, "num_head_channels": 16,
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
TOY_VAE = {
    "double_z": True, "z_channels": 4, "resolution": IMAGE_SIZE, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}
# ComfyUI's Normalize is GroupNorm with 32 groups: at 32 channels that is a per-channel instance norm,
# which erases the absolute colour of flat regions (a channel that is constant over the image becomes 0).
# The toy VAE keeps ComfyUI's classes and weights' shapes but uses groups of 8 channels, as SD's own VAE
# has at least 4 channels in every group (docs/TOY_MODEL.md, "VAE").
TOY_VAE_GROUP_CHANNELS = 8
TOY_TEXT = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": 128, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 512, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 4, "num_hidden_layers": 3, "pad_token_id": 1,
    "projection_dim": 128, "torch_dtype": "float32", "vocab_size": 49408,
}
TOKEN_EMBEDDING = "clip_l.transformer.text_model.embeddings.token_embedding.weight"


def build_unet(dtype: torch.dtype = torch.float32):
    """The toy UNet as a ComfyUI MODEL (ModelPatcher), uninitialised (comfy.ops leaves weights empty)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    cfg = comfy.supported_models.SD15(dict(TOY_UNET))
    cfg.set_inference_dtype(dtype, None)
    model = cfg.get_model({})
    device = comfy.model_management.get_torch_device()
    offload = comfy.model_management.unet_offload_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=offload)


def vae_config() -> dict:
    return {"params": {"ddconfig": dict(TOY_VAE), "embed_dim": 4}}


def regroup_vae_norms(vae_model: torch.nn.Module, channels_per_group: int = TOY_VAE_GROUP_CHANNELS) -> None:
    """Set every GroupNorm of the toy VAE to ``channels_per_group`` channels a group (no weight changes)."""
    for m in vae_model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.num_groups = m.num_channels // channels_per_group


def build_clip(state_dict: dict[str, torch.Tensor] | None = None):
    """ComfyUI's SD1 CLIP (SD1 tokenizer bundled with ComfyUI) with a small text transformer."""
    import comfy.sd
    import comfy.sd1_clip

    target = SimpleNamespace(
        params={"clip_model": comfy.sd1_clip.SDClipModel, "textmodel_json_config": dict(TOY_TEXT),
                "return_projected_pooled": False},
        clip=comfy.sd1_clip.SD1ClipModel,
        tokenizer=comfy.sd1_clip.SD1Tokenizer,
    )
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    if state_dict is not None:
        missing, _ = clip.load_sd(state_dict, full_model=True)
        if missing:
            raise RuntimeError(f"toy model file is missing text-encoder weights: {missing[:5]}")
    return clip


def sparse_token_embedding(weight: torch.Tensor, used: torch.Tensor) -> dict[str, torch.Tensor]:
    """Only the rows of tokens the toy captions use are stored; the others are zero at load time."""
    return {"toy.token_ids": used.to(torch.int64), "toy.token_rows": weight[used]}


def load_toy_model(path: Path = TOY_WEIGHTS):
    """(MODEL, CLIP, VAE) from the bundled file."""
    import comfy.sd
    from safetensors.torch import load_file

    if not path.exists():
        raise FileNotFoundError(f"the toy model is not at {path}; train it with scripts/train_toy.py")
    sd = load_file(str(path))
    unet_sd = {k[len("unet."):]: v for k, v in sd.items() if k.startswith("unet.")}
    vae_sd = {k[len("vae."):]: v for k, v in sd.items() if k.startswith("vae.")}
    clip_sd = {k[len("clip."):]: v for k, v in sd.items() if k.startswith("clip.")}
    embedding = torch.zeros(TOY_TEXT["vocab_size"], TOY_TEXT["hidden_size"], dtype=sd["toy.token_rows"].dtype)
    embedding[sd["toy.token_ids"]] = sd["toy.token_rows"]
    clip_sd[TOKEN_EMBEDDING] = embedding
    model = build_unet()
    model.model.diffusion_model.load_state_dict(unet_sd, strict=True)
    if not all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()):
        raise RuntimeError(f"{path} holds NaN or infinite weights")
    clip = build_clip(clip_sd)
    vae = comfy.sd.VAE(sd=vae_sd, config=vae_config())
    regroup_vae_norms(vae.first_stage_model)
    return model, clip, vae


class ToyModelLoader(io.ComfyNode):
    NODE_ID = "DragKitToyModelLoader"
    NAME = "ToyModelLoader"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.NAME, category="DragKit",
            description=(
                "Loads DragKit's bundled toy model (MODEL, CLIP, VAE): a tiny text-to-image latent diffusion model "
                "of simple coloured shapes on plain or gradient backgrounds, with SD1.5's block structure, trained "
                "on a CPU. It lets every DragKit graph run and really edit on any machine, with nothing to "
                "download. Prompts look like 'a red disk and a blue square on a grey background'; images are 128 px."
            ),
            inputs=[],
            outputs=[
                io.Model.Output(tooltip="The toy UNet (SD1.5 block structure)."),
                io.Clip.Output(tooltip="The toy text encoder (SD1 tokenizer)."),
                io.Vae.Output(tooltip="The toy VAE (8× downscale, 4 latent channels)."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls) -> tuple[int, int] | None:
        """The weights file's size and time: a retrained toy model (scripts/train_toy.py) is loaded again
        instead of the copy ComfyUI cached."""
        try:
            stat = TOY_WEIGHTS.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    @classmethod
    def execute(cls) -> io.NodeOutput:
        try:
            return io.NodeOutput(*load_toy_model(TOY_WEIGHTS))
        except FileNotFoundError:
            raise DragKitNodeError(cls.NAME, f"the bundled toy model is missing ({TOY_WEIGHTS}): reinstall DragKit "
                                   "(the file ships with the pack) or train it: python scripts/train_toy.py") from None
        except Exception as e:  # noqa: BLE001  (a damaged file: the loader says which and what to do)
            raise DragKitNodeError(cls.NAME, f"the bundled toy model {TOY_WEIGHTS} cannot be read ({e}): "
                                   "reinstall DragKit or train it again: python scripts/train_toy.py") from None
