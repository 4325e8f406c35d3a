"""Probe: how fast does the toy VAE learn at a given top-level width? (docs/TOY_MODEL.md, "Known problem")

    .venv/bin/python scripts/toy_vae_probe.py --ch 32 --steps 400    # then --ch 64

A deterministic autoencoder (the posterior mean, no sampling) on 64 px toy scenes, batch 8, AdamW lr 1e-3,
one thread; logs the loss and the PSNR on 32 held-out scenes every 100 steps.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.toy_vae_probe")


def batch(rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
    from dragkit.drag_core.toy.world import render, sample_scene

    images = np.stack([render(sample_scene(rng, size)) for _ in range(n)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() * 2 - 1


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    comfyenv.setup()
    torch.set_num_threads(1)
    from comfy.ldm.models.autoencoder import AutoencoderKL

    import train_toy
    from dragkit.nodes.toy_model import vae_config

    params = dict(vae_config()["params"])
    params["ddconfig"] = dict(params["ddconfig"], ch=args.ch, resolution=args.size)
    vae = AutoencoderKL(**params)
    train_toy.reset_parameters(vae, 0)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    held_out = batch(np.random.default_rng(7), 32, args.size)
    started = time.monotonic()
    for step in range(args.steps):
        x = batch(rng, 8, args.size)
        mean, _ = train_toy.vae_moments(vae, x)
        recon = train_toy.vae_decode(vae, mean)
        loss = F.l1_loss(recon, x) + 0.5 * F.mse_loss(recon, x) + 1e-4 * mean.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 99:
            with torch.no_grad():
                m, _ = train_toy.vae_moments(vae, held_out)
                recon = train_toy.vae_decode(vae, m).clamp(-1, 1)
                psnr = 10 * math.log10(1 / F.mse_loss((recon + 1) / 2, (held_out + 1) / 2).item())
            log.info("ch %d step %d loss %.4f PSNR %.2f dB (%.0f s)", args.ch, step + 1, loss.item(), psnr,
                     time.monotonic() - started)


if __name__ == "__main__":
    main()
