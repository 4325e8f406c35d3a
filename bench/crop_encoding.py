"""What IdentityLoRATrain's crop_encoding "latent" changes: the latent of a crop against the crop of the latent.

    .venv/bin/python bench/crop_encoding.py [--pictures 8] [--json out.json]

With "per_crop" (the reference) the VAE encodes each crop; with "latent" the picture is encoded once and the crop is
cut from its latent. On the bundled toy model's VAE (trained: SD1.5's architecture, 128 px crops of 192 × 128 toy
scenes), for every crop offset on the latent grid, the posterior means are compared: relative L2 difference
‖μ(crop) − crop(μ)‖ / ‖μ(crop)‖ over the whole crop and over its interior (two latent cells in from each edge),
and the same for the posterior standard deviations. Both modes then sample mean + std · noise, so these are the
differences in the training targets' centres and spreads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.bench.crop_encoding")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    comfyenv.setup()
    from dragkit.drag_core.files import write_json
    from dragkit.drag_core.toy.world import render, sample_scene
    from dragkit.nodes.comfy_lora import vae_moments
    from dragkit.nodes.toy_model import load_toy_model

    _, _, vae = load_toy_model()
    posterior = vae_moments(vae)  # what IdentityLoRATrain encodes with
    rng = np.random.default_rng(20261128)
    size, cells = 128, 16
    whole, inner, spread = [], [], []
    with torch.inference_mode():
        for _ in range(args.pictures):
            # two scenes side by side, the second cut to half its width: a 3:2 picture of toy content
            wide = np.concatenate([render(sample_scene(rng, 128)), render(sample_scene(rng, 128))[:, :64]], axis=1)
            picture = torch.from_numpy(wide).permute(2, 0, 1)[None].float() * 2 - 1  # 1 × 3 × 128 × 192
            mean, std = posterior(picture)
            for left in range(0, picture.shape[-1] - size + 1, 8):
                crop_mean, crop_std = posterior(picture[..., left:left + size])
                window = mean[..., left // 8:left // 8 + cells]
                whole.append(relative(window, crop_mean))
                inner.append(relative(window[..., 2:-2, 2:-2], crop_mean[..., 2:-2, 2:-2]))
                spread.append(relative(std[..., left // 8:left // 8 + cells], crop_std))
    result = {
        "command": " ".join(sys.argv), "vae": "bundled toy model", "picture": "192 x 128 toy scenes",
        "crop": size, "crops": len(whole),
        "mean_rel_diff_whole_median": round(float(np.median(whole)), 4),
        "mean_rel_diff_whole_max": round(float(np.max(whole)), 4),
        "mean_rel_diff_interior_median": round(float(np.median(inner)), 4),
        "std_rel_diff_whole_median": round(float(np.median(spread)), 4),
    }
    if args.json:
        write_json(args.json, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
