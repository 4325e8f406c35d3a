"""Identity-LoRA speed: seconds per training step on the full-size random SD1.5 and the cache-hit time.

    .venv/bin/python bench/lora_speed.py [--size 256] [--steps 3] [--json out.json]
        [--path merged|low_rank|reference] [--width 384 --crop-encoding per_crop|latent]

Runs the real IdentityLoRATrain node in-process (as ComfyUI does, under inference mode) with SPEC's
settings except the step count and crop size: rank 16, batch 4, AdamW 5e-4. A second call with the
same inputs must be a cache hit (no training); its wall time is reported. The cache lives in a
temporary ComfyUI models folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import comfy_client  # noqa: E402
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.bench.lora")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--path", choices=("merged", "low_rank", "reference"), default="merged",
                        help="merged: DragKit's LoRA (weight wrappers W + scale·up·down; a square image encoded "
                        "once); low_rank: the same with hooks adding scale·up(down(x)); reference: the authors' "
                        "formulation emulated (low-rank layers, every step's crops encoded)")
    parser.add_argument("--width", type=int, help="picture width (default --size: a square picture, whose crops are "
                        "all the same picture); e.g. 384 with --size 256 for a 3:2 picture")
    parser.add_argument("--crop-encoding", choices=("per_crop", "latent"), default="per_crop",
                        help="IdentityLoRATrain's crop_encoding")
    args = parser.parse_args()
    comfyenv.setup()
    import comfy.sd
    import folder_paths

    import make_test_checkpoint
    from dragkit.drag_core.files import write_json
    from dragkit.nodes import comfy_lora, lora_nodes
    from dragkit.nodes.lora_nodes import IdentityLoRATrain

    lora_nodes.TRAINING_PATH = "merged" if args.path == "merged" else "low_rank"
    if args.path == "reference":  # the reference encodes each step's 4 crops, whatever the image
        lora_nodes.posterior_sampler = lambda vae, model: comfy_lora.posterior_sampler(vae, model, reuse=False)

    checkpoint = make_test_checkpoint.make_checkpoint(comfy_client.CACHE / "dragkit-full-sd15-random.safetensors", "full")
    folder_paths.models_dir = tempfile.mkdtemp(prefix="dragkit-lora-bench-")
    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(checkpoint))[:4]
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red disk and a blue square"))
    picture = comfy_client.sample_image(args.size).resize((args.width or args.size, args.size))
    image = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255)[None]
    node = IdentityLoRATrain()
    times = {}
    for run in ("train", "cache hit"):
        started = time.monotonic()
        with torch.inference_mode():
            node.execute(model, vae, image, cond, args.steps, 16, 5e-4, 4, args.size, 0, "auto", "use", "",
                       args.crop_encoding)
        times[run] = time.monotonic() - started
        log.info("%s: %.2f s", run, times[run])
    result = {
        "command": " ".join(sys.argv), "path": args.path, "size": args.size, "width": args.width or args.size,
        "crop_encoding": args.crop_encoding, "steps": args.steps, "batch": 4,
        "rank": 16,
        "train_seconds_total": round(times["train"], 2),
        "seconds_per_step_upper_bound": round(times["train"] / args.steps, 2),
        "cache_hit_seconds": round(times["cache hit"], 2), "threads": torch.get_num_threads(),
    }
    if args.json:
        write_json(args.json, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
