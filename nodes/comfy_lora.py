"""The identity LoRA on a ComfyUI MODEL: adapters as weight wrappers on a clone, ComfyUI-native and
kohya key formats, VAE posterior sampling, and the content-hash cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ..drag_core.files import write_safetensors
from ..drag_core.lora import LoRAConfig, LoRADelta
from ..drag_core.lora import posterior_sampler as sample_posterior
from .comfy_unet import latent_in, load_models

log = logging.getLogger(__name__)

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
CACHE_VERSION = "1"
CACHE_LIMIT = 16  # newest entries kept in the on-disk cache


def attention_projections(model) -> list[tuple[str, int, int]]:
    """(key, out, in) of q/k/v/out of every attention module; key = "diffusion_model.<path>"."""
    from comfy.ldm.modules.attention import CrossAttention

    found = []
    for path, module in model.model.diffusion_model.named_modules():
        if isinstance(module, CrossAttention):
            for name in PROJECTIONS:
                linear = module.get_submodule(name)
                found.append((f"diffusion_model.{path}.{name}", linear.out_features, linear.in_features))
    return found


def fresh_deltas(patcher, config: LoRAConfig) -> dict[str, LoRADelta]:
    """A new LoRA delta per projection, drawn from one generator seeded with ``config.seed`` in module order."""
    generator = torch.Generator().manual_seed(config.seed)
    return {key: LoRADelta(in_f, out_f, config.rank, config.scale, generator)
            for key, out_f, in_f in attention_projections(patcher)}


def attach_lora(patcher, config: LoRAConfig) -> dict[str, LoRADelta]:
    """Register a fresh LoRA delta on each projection of ``patcher`` (a clone) as a weight wrapper."""
    deltas = fresh_deltas(patcher, config)
    for key, delta in deltas.items():
        patcher.add_weight_wrapper(f"{key}.weight", delta)
    return deltas


@contextmanager
def low_rank_hooks(patcher, config: LoRAConfig) -> Iterator[dict[str, LoRADelta]]:
    """Fresh LoRA deltas (:func:`fresh_deltas`, as :func:`attach_lora` draws them) applied as the reference applies them:
    each projection's output gains scale·up(down(x)), by a forward hook on the module, for the duration of the
    block. The same function of the weights as the merged W + scale·up·down, but the backward never forms a
    full-size weight gradient. The hooks sit on the modules the clone shares with the input model, so they are
    removed when the block ends, whatever happens."""
    unet = patcher.model.diffusion_model
    deltas, handles = fresh_deltas(patcher, config), []
    try:
        for key, delta in deltas.items():
            module = unet.get_submodule(key[len("diffusion_model."):])
            handles.append(module.register_forward_hook(lambda m, args, out, d=delta: out + d.low_rank(args[0]).to(out.dtype)))
        yield deltas
    finally:
        for handle in handles:
            handle.remove()


def lora_model_dict(deltas: dict[str, LoRADelta], config: LoRAConfig) -> dict[str, torch.Tensor]:
    """The LORA_MODEL value: ComfyUI-native keys, as core SaveLoRA / LoraModelLoader use them."""
    alpha = torch.tensor(config.scale * config.rank)
    sd = {}
    for key, delta in deltas.items():
        sd[f"{key}.lora_up.weight"] = delta.up.detach().float().cpu().clone()
        sd[f"{key}.lora_down.weight"] = delta.down.detach().float().cpu().clone()
        sd[f"{key}.alpha"] = alpha.clone()
    return sd


def apply_lora(model, lora: dict[str, torch.Tensor], strength: float = 1.0):
    """A clone of ``model`` with the LoRA as weight patches, exactly as core LoraModelLoader does."""
    import comfy.sd

    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, strength, 0)
    return patched


def to_kohya(model, lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI-native keys → kohya ``lora_unet_<diffusers path>`` keys (A1111, Forge and ComfyUI's
    LoraLoader all read these)."""
    import comfy.utils

    diffusers = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    to_diffusers = {f"diffusion_model.{v[: -len('.weight')]}": k[: -len(".weight")] for k, v in diffusers.items()
                    if k.endswith(".weight")}
    out = {}
    for key, value in lora.items():
        suffix = next(s for s in (".lora_up.weight", ".lora_down.weight", ".alpha") if key.endswith(s))
        base = key[: -len(suffix)]
        out["lora_unet_" + to_diffusers[base].replace(".", "_") + suffix] = value.contiguous()
    return out


def vae_moments(vae):
    """crops in [−1, 1] → the posterior's (mean, std) in the VAE's own space. The encoder runs in inference mode, as
    ComfyUI runs it (no gradient flows into the VAE); the moments come back as ordinary tensors for the training
    graph. (ComfyUI's VAE.encode returns the posterior mean; SPEC §1.1 samples, so this reads the moments.)"""
    import comfy.model_management

    def moments(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        comfy.model_management.throw_exception_if_processing_interrupted()
        with torch.inference_mode():
            load_models([vae.patcher])
            first_stage = vae.first_stage_model
            x = crops.to(device=vae.device, dtype=vae.vae_dtype)
            out = first_stage.encoder(x)
            if getattr(first_stage, "quant_conv", None) is not None:
                out = first_stage.quant_conv(out)
            mean, logvar = out.float().chunk(2, dim=1)
            std = (0.5 * logvar.clamp(-30.0, 20.0)).exp()
        return mean.clone(), std.clone()

    return moments


def posterior_sampler(vae, model, reuse: bool = True):
    """(crops in [−1, 1], generator) → a *sample* of the VAE posterior in the model's latent space
    (``drag_core.lora.posterior_sampler`` over :func:`vae_moments`: identical crops are encoded once)."""
    return sample_posterior(vae_moments(vae), lambda z: latent_in(model, z), reuse)


def sample_indices(n: int, count: int = 1024) -> torch.Tensor:
    """``count`` evenly spaced indices into n elements, first and last included, in exact integer
    arithmetic (a float32 linspace rounds past the end for tensors of tens of millions of values)."""
    count = min(count, n)
    if count == 1:
        return torch.zeros(1, dtype=torch.long)
    return torch.arange(count, dtype=torch.long) * (n - 1) // (count - 1)


def _fingerprint(hasher, value) -> None:
    """Feed a content fingerprint of nested tensors/numbers/strings into ``hasher``. A tensor counts by
    its shape, dtype and 1,024 evenly spaced values: milliseconds for a 2 GB model (reading every
    byte took seconds), and different for any two checkpoints, fine-tunes or LoRA stacks in practice
    (they change weights everywhere, not in a few isolated entries)."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)
        hasher.update(f"{tuple(value.shape)}{value.dtype}".encode())
        if flat.numel():
            idx = sample_indices(flat.numel()).to(flat.device)
            hasher.update(flat[idx].to(torch.float64).cpu().numpy().tobytes())
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            hasher.update(str(k).encode())
            _fingerprint(hasher, value[k])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _fingerprint(hasher, item)
    else:
        hasher.update(repr(value).encode())


def _digest(*values) -> str:
    hasher = hashlib.sha256()
    for value in values:
        _fingerprint(hasher, value)
    return hasher.hexdigest()[:16]


def _settings(config: LoRAConfig) -> dict:
    """The settings the cache key covers. crop_encoding came later: left out at its default, so the LoRAs cached
    before it existed are still found."""
    settings = dict(config.__dict__)
    if settings["crop_encoding"] == "per_crop":
        del settings["crop_encoding"]
    return settings


def content_hashes(model, vae, image: torch.Tensor, context: torch.Tensor, config: LoRAConfig) -> dict[str, str]:
    """What the LoRA depends on, hashed: the model (weights and the patches on it, e.g. other LoRAs),
    the VAE, the image, the prompt embedding and the settings. The cache key is their combination."""
    # Clones share one torch module and ComfyUI patches weights in place when it loads a clone (e.g.
    # the LoRA-patched model of the previous run): load this model so its own weights are in place.
    load_models([model])
    hashes = {
        "model": _digest(dict(model.model.diffusion_model.state_dict()), model.patches,
                         sorted(model.weight_wrapper_patches)),
        "vae": _digest(dict(vae.first_stage_model.state_dict())),
        "image": hashlib.sha256(image.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16],
        "prompt": hashlib.sha256(context.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16],
        "settings": hashlib.sha256(json.dumps(_settings(config), sort_keys=True, default=str).encode()).hexdigest()[:16],
    }
    hashes["key"] = hashlib.sha256(
        (CACHE_VERSION + json.dumps(hashes, sort_keys=True)).encode()
    ).hexdigest()[:32]
    return hashes


def cache_dir() -> Path:
    """Inside ComfyUI's models folder but outside loras/, so LoraLoader does not list cache files."""
    import folder_paths

    return Path(folder_paths.models_dir) / "dragkit" / "lora_cache"


def lora_digest(lora: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a LoRA's names, dtypes, shapes and bytes: stored with a cache entry, checked when it is read."""
    hasher = hashlib.sha256()
    for key in sorted(lora):
        value = lora[key].detach().cpu().contiguous()
        hasher.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def cache_load(key: str) -> dict[str, torch.Tensor] | None:
    """The cached LoRA, or None: absent, unreadable (e.g. truncated), or its content not what was stored (a
    damaged file loads without error but its digest differs). A bad entry is deleted and retrained, never used."""
    from safetensors import safe_open

    path = cache_dir() / f"{key}.safetensors"
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get("dragkit_content_sha256")
            lora = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001  (whatever the damage, the entry is retrained)
        return _discard(path, f"unreadable ({e})")
    if stored is None:
        return _discard(path, "without a content digest (written by an older DragKit)")
    if lora_digest(lora) != stored:
        return _discard(path, "damaged: its content does not match its digest")
    os.utime(path)  # most recently used
    return lora


def _discard(path: Path, why: str) -> None:
    log.warning("identity LoRA cache entry %s is %s; retraining", path.name, why)
    path.unlink(missing_ok=True)
    return None


def cache_store(key: str, lora: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    folder = cache_dir()
    try:
        write_safetensors(folder / f"{key}.safetensors", lora, {**metadata, "dragkit_content_sha256": lora_digest(lora)})
    except OSError as e:  # the cache only saves time: the trained LoRA is used all the same
        log.warning("identity LoRA: could not write the cache entry in %s (%s); the LoRA is used, not cached",
                    folder, e.strerror or e)
        return
    entries = sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[CACHE_LIMIT:]:
        old.unlink(missing_ok=True)
