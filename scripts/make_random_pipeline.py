"""Write a random-weight SD1.5-shaped diffusers pipeline folder (no downloads): for the Python API's example, the
diffusers backend's tests, and trying DragKit's API without model weights.

    python scripts/make_random_pipeline.py OUT_DIR [--size tiny|full] [--seed 0]

``tiny``: SD1.5's block structure (4 levels, 2 res blocks, attention in the first three, 16 self-attention
layers, 768-wide text context) at 32–64 channels, a narrow VAE (8 px per latent cell) and a 2-layer text encoder: a 64 px edit runs in
seconds on a CPU. ``full``: SD1.5's real sizes (3.4 GB of float32 weights). The tokenizer is byte-level with no
merges (every character a token), written here, so nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import torch

log = logging.getLogger("make_random_pipeline")

SIZES = {
    "tiny": {"unet": (32, 64, 64, 64), "vae": (32, 32, 64, 64), "text_layers": 2, "text_heads": 4},
    "full": {"unet": (320, 640, 1280, 1280), "vae": (128, 256, 512, 512), "text_layers": 12, "text_heads": 12},
}


def unet_config(size: str = "tiny") -> dict:
    """UNet2DConditionModel arguments with SD1.5's block structure (4 levels, 2 res blocks, attention in the first
    three, 16 self-attention layers, 8 heads, 768-wide context) at ``size``'s channels."""
    return {
        "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": SIZES[size]["unet"],
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 768, "attention_head_dim": 8,
    }


def _byte_vocabulary() -> dict[str, int]:
    """CLIP's byte-to-character table: each byte a token, alone and word-final ("</w>"), then the two specials."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    symbols = [chars[b] for b in range(256)]
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def write_tokenizer(folder: Path) -> int:
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = _byte_vocabulary()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    return len(vocab)


def make_pipeline(out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Build the random pipeline and save it to ``out`` (created; an existing complete folder is kept)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if (out / "model_index.json").exists():
        return out
    dims = SIZES[size]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(size))
    with torch.no_grad():  # diffusers zero-initialises the output conv: give ε some signal
        unet.conv_out.weight.normal_(0, 0.02)
    levels = len(dims["vae"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=dims["vae"], layers_per_block=2 if size == "full" else 1,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
    )
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    vocab_size = write_tokenizer(staging / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(staging / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=768, intermediate_size=3072 if size == "full" else 1024,
        num_hidden_layers=dims["text_layers"], num_attention_heads=dims["text_heads"], max_position_embeddings=77,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(staging)
    staging.rename(out)  # the folder appears complete or not at all
    log.info("random %s SD1.5-shaped pipeline written to %s", size, out)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_pipeline(args.out, args.size, args.seed)


if __name__ == "__main__":
    main()
