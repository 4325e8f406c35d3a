"""The identity LoRA (SPEC §1.1) on a diffusers UNet through peft, in DragKit's kohya file format.

The adapters are peft's ``LoraLayer`` on to_q / to_k / to_v / to_out.0 of every attention module, rank r,
alpha = r (scale 1), as the ComfyUI backend's weight wrappers (``nodes/comfy_lora.py``) and the reference. The
initialisation is drawn exactly as the ComfyUI backend draws it — down ~ N(0, 1/r²) from one seeded generator, in
ComfyUI's module order (input, middle, output blocks = diffusers' down, mid, up blocks; attn1 before attn2; q, k, v,
out), up = 0 — so both backends start from the same factors and train on the same data with the same AdamW.

Files use kohya's keys, ``lora_unet_<diffusers module path, dots as underscores>.lora_down.weight`` / ``.lora_up
.weight`` / ``.alpha``: what the ComfyUI node saves and what ComfyUI's LoraLoader, A1111 and Forge read, so a LoRA
trained in either backend loads in the other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from .lora import LoRAConfig

log = logging.getLogger(__name__)

ADAPTER = "dragkit_identity"
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
KOHYA_PREFIX = "lora_unet_"
_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")


class LoRAFileError(ValueError):
    """A LoRA file that does not fit this UNet, or a UNet that already carries other peft adapters."""


def check_no_other_adapters(unet: torch.nn.Module) -> None:
    """DragKit adds and removes its adapter on the projections themselves; adapters the user loaded (e.g. with
    ``pipe.load_lora_weights``) on the same layers would be removed with it, so they are refused instead."""
    names = {name for m in unet.modules() if hasattr(m, "lora_A") for name in m.lora_A.keys()} - {ADAPTER}
    if names:
        raise LoRAFileError(f"the UNet already carries peft adapters {sorted(names)}; fuse them into the weights "
                            "(pipe.fuse_lora()) and unload them (pipe.unload_lora_weights()) before a DragKit edit")


def attention_paths(unet: torch.nn.Module) -> Iterator[str]:
    """Module paths of every attention module in ComfyUI's order (see the module docstring)."""
    stages = [*(f"down_blocks.{i}" for i in range(len(unet.down_blocks))), "mid_block",
              *(f"up_blocks.{i}" for i in range(len(unet.up_blocks)))]
    for stage in stages:
        for a, attention in enumerate(getattr(unet.get_submodule(stage), "attentions", None) or []):
            for b, _ in enumerate(attention.transformer_blocks):
                for attn in ("attn1", "attn2"):
                    yield f"{stage}.attentions.{a}.transformer_blocks.{b}.{attn}"


def projection_paths(unet: torch.nn.Module) -> list[str]:
    return [f"{path}.{name}" for path in attention_paths(unet) for name in PROJECTIONS]


def kohya_key(path: str) -> str:
    return KOHYA_PREFIX + path.replace(".", "_")


def _lora_layer(unet: torch.nn.Module, path: str):
    layer = unet.get_submodule(path)
    if not hasattr(layer, "lora_A") or ADAPTER not in layer.lora_A:
        raise RuntimeError(f"{path} carries no {ADAPTER!r} adapter")
    return layer


def attach_identity_lora(unet: torch.nn.Module, config: LoRAConfig) -> list[torch.nn.Parameter]:
    """Inject a fresh identity LoRA into ``unet`` (peft) and return its factors (down, up per projection, in
    ComfyUI's order). The base weights are not changed; :func:`remove_identity_lora` takes the adapter out."""
    from peft import LoraConfig, inject_adapter_in_model

    check_no_other_adapters(unet)
    if ADAPTER in getattr(unet, "peft_config", {}):
        remove_identity_lora(unet)
    peft_config = LoraConfig(r=config.rank, lora_alpha=config.scale * config.rank, lora_dropout=0.0,
                             target_modules=list(PROJECTIONS), init_lora_weights="gaussian")
    inject_adapter_in_model(peft_config, unet, adapter_name=ADAPTER)
    generator = torch.Generator().manual_seed(config.seed)
    parameters = []
    with torch.no_grad():
        for path in projection_paths(unet):
            layer = _lora_layer(unet, path)
            down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            down.copy_(torch.randn(down.shape, generator=generator) / config.rank)
            up.zero_()
            parameters += [down, up]
    for p in parameters:
        p.requires_grad_(True)
    return parameters


def lora_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The attached identity LoRA's factors, in :func:`attach_identity_lora`'s order."""
    out = []
    for path in projection_paths(unet):
        layer = _lora_layer(unet, path)
        out += [layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight]
    return out


def remove_identity_lora(unet: torch.nn.Module) -> None:
    """Take the identity adapter out again: every wrapped projection goes back to its own ``nn.Linear``."""
    for path in projection_paths(unet):
        layer = unet.get_submodule(path)
        base = getattr(layer, "base_layer", None)
        if base is not None:
            parent, _, name = path.rpartition(".")
            setattr(unet.get_submodule(parent), name, base)
    if hasattr(unet, "peft_config"):
        unet.peft_config.pop(ADAPTER, None)
        if not unet.peft_config:
            del unet.peft_config
    if hasattr(unet, "_hf_peft_config_loaded"):
        unet._hf_peft_config_loaded = bool(getattr(unet, "peft_config", None))


def kohya_state_dict(unet: torch.nn.Module, config: LoRAConfig) -> dict[str, torch.Tensor]:
    """The attached LoRA under kohya keys (float32, CPU)."""
    alpha = torch.tensor(float(config.scale * config.rank))
    sd = {}
    for path in projection_paths(unet):
        layer = _lora_layer(unet, path)
        key = kohya_key(path)
        sd[f"{key}.lora_down.weight"] = layer.lora_A[ADAPTER].weight.detach().float().cpu().clone()
        sd[f"{key}.lora_up.weight"] = layer.lora_B[ADAPTER].weight.detach().float().cpu().clone()
        sd[f"{key}.alpha"] = alpha.clone()
    return sd


def load_kohya_lora(unet: torch.nn.Module, lora: dict[str, torch.Tensor], strength: float = 1.0) -> None:
    """Attach a kohya-format identity LoRA (from either backend) to ``unet`` as the peft adapter.

    Every projection the file names must exist with the file's shapes, and one rank and alpha must hold for
    all of them (DragKit's LoRAs are uniform); anything else is a :class:`LoRAFileError` saying what differs."""
    from peft import LoraConfig, inject_adapter_in_model

    check_no_other_adapters(unet)
    by_key = {kohya_key(p): p for p in projection_paths(unet)}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        base = key[: -len(suffix)] if suffix else None
        if base not in by_key:
            raise LoRAFileError(f"the LoRA names {key!r}, which is not a q/k/v/out projection of this UNet")
        groups.setdefault(base, {})[suffix] = value
    if not groups:
        raise LoRAFileError("the LoRA file holds no UNet attention weights")
    ranks = {int(g[".lora_down.weight"].shape[0]) for g in groups.values() if ".lora_down.weight" in g}
    alphas = {float(g[".alpha"]) for g in groups.values() if ".alpha" in g}
    if len(ranks) != 1 or len(alphas) > 1 or any(len(g) < 2 for g in groups.values()):
        raise LoRAFileError(f"expected one rank and alpha for every projection with down and up weights; got ranks "
                            f"{sorted(ranks)}, alphas {sorted(alphas)}")
    rank = ranks.pop()
    alpha = alphas.pop() if alphas else float(rank)
    if ADAPTER in getattr(unet, "peft_config", {}):
        remove_identity_lora(unet)
    peft_config = LoraConfig(r=rank, lora_alpha=alpha * strength, lora_dropout=0.0,
                             target_modules=[by_key[k] for k in groups])
    inject_adapter_in_model(peft_config, unet, adapter_name=ADAPTER)
    with torch.no_grad():
        for base, group in groups.items():
            layer = _lora_layer(unet, by_key[base])
            down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if group[".lora_down.weight"].shape != down.shape or group[".lora_up.weight"].shape != up.shape:
                raise LoRAFileError(f"{base}: the LoRA's shapes {tuple(group['.lora_down.weight'].shape)} / "
                                    f"{tuple(group['.lora_up.weight'].shape)} do not fit {tuple(down.shape)} / {tuple(up.shape)}")
            down.copy_(group[".lora_down.weight"])
            up.copy_(group[".lora_up.weight"])
            down.requires_grad_(False)
            up.requires_grad_(False)
    log.info("identity LoRA: %d projections, rank %d, alpha %g, strength %g", len(groups), rank, alpha, strength)
