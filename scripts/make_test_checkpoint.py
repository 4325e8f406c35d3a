"""Generate a random-weight SD1.5-format checkpoint for tests and benchmarks (never committed).

    python scripts/make_test_checkpoint.py --kind mini OUT.safetensors
    python scripts/make_test_checkpoint.py --kind full OUT.safetensors

`full` has SD1.5's exact shapes (UNet 320·[1,2,4,4], VAE, CLIP-L). `mini` keeps SD1.5's block
structure (4 levels, 2 res blocks, 16 self-attention layers, so SPEC's block and layer indices apply)
and ComfyUI still detects it as SD1.5 (model_channels 320, context 768), but every level has 320
channels. Weights: N(0, 0.02), norms 1, biases 0, fp16, from a fixed seed. The file is written
atomically and reused when it already exists.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

import comfyenv
from comfyenv import SD15_UNET

log = logging.getLogger("dragkit.checkpoint")

KINDS = {"full": SD15_UNET, "mini": {**SD15_UNET, "channel_mult": [1, 1, 1, 1]}}
SD_VAE = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}


def _shapes(unet_config: dict) -> dict[str, torch.Size]:
    """Checkpoint keys and shapes, read off ComfyUI's own modules built on the meta device."""
    import comfy.ldm.models.autoencoder
    import comfy.sd1_clip
    import comfy.supported_models

    with torch.device("meta"):
        cfg = comfy.supported_models.SD15(dict(unet_config))
        cfg.set_inference_dtype(torch.float16, None)
        unet = cfg.get_model({}, device="meta").diffusion_model
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=SD_VAE, embed_dim=4)
        clip = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float16)
    shapes = {}
    for prefix, module in (
        ("model.diffusion_model.", unet), ("first_stage_model.", vae), ("cond_stage_model.", clip)
    ):
        for key, value in module.state_dict().items():
            shapes[prefix + key] = value.shape
    return shapes


def make_checkpoint(out: Path, kind: str = "mini", seed: int = 0) -> Path:
    """Write the checkpoint to ``out`` (atomically) unless it already exists."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists():
        return out
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in _shapes(KINDS[kind]).items():
        if key.endswith("position_ids"):
            tensors[key] = torch.arange(shape[-1]).reshape(shape)
        elif key.endswith("bias"):
            tensors[key] = torch.zeros(shape, dtype=torch.float16)
        elif len(shape) == 1:
            tensors[key] = torch.ones(shape, dtype=torch.float16)
        else:
            tensors[key] = (torch.randn(shape, generator=gen) * 0.02).half()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    save_file(tensors, str(tmp))
    os.replace(tmp, out)
    log.info("wrote %s (%s, %.0f MiB)", out, kind, out.stat().st_size / 2**20)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kind", choices=sorted(KINDS), default="mini")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    comfyenv.setup()
    make_checkpoint(args.out, args.kind, args.seed)


if __name__ == "__main__":
    main()
