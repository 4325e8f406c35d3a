"""Probe: how fast does the toy VAE learn at a given top-level width? (docs/TOY_MODEL.md, "Known problem")

    .venv/bin/python scripts/toy_vae_probe.py --ch 32 --steps 400    # then --ch 64

A deterministic autoencoder (the posterior mean, no sampling) on 64 px toy scenes, batch 8, AdamW lr 1e-3,
one thread; logs the loss and the PSNR on 32 held-out scenes every 100 steps.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.toy_vae_probe")


def batch(rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
    from dragkit.drag_core.toy.world import render, sample_scene

    images = np.stack([render(sample_scene(rng, size)) for _ in range(n)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() * 2 - 1


def save_grid(originals: torch.Tensor, recons: torch.Tensor, path: Path) -> None:
    from PIL import Image

    rows = [torch.cat(list(t), dim=2) for t in (originals, recons)]  # (3, H, 8W) each
    grid = ((torch.cat(rows, dim=1) + 1) * 127.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ch-mult", default="1,1,2,2", help="comma-separated channel multipliers per level")
    parser.add_argument("--res-blocks", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--group-channels", type=int, default=0,
                        help="channels per GroupNorm group (0: ComfyUI's fixed 32 groups)")
    parser.add_argument("--zero-init", action="store_true",
                        help="start every residual branch (res-block conv2, attention proj_out) at zero")
    parser.add_argument("--loss", choices=("l1+mse", "mse"), default="l1+mse")
    parser.add_argument("--save", type=Path, help="write held-out originals over reconstructions to this PNG")
    parser.add_argument("--every", type=int, default=100, help="evaluate every N steps")
    args = parser.parse_args()
    comfyenv.setup()
    torch.set_num_threads(1)
    from comfy.ldm.models.autoencoder import AutoencoderKL

    import train_toy
    from dragkit.nodes.toy_model import regroup_vae_norms, vae_config

    params = dict(vae_config()["params"])
    params["ddconfig"] = dict(params["ddconfig"], ch=args.ch, resolution=args.size, num_res_blocks=args.res_blocks,
                              ch_mult=[int(m) for m in args.ch_mult.split(",")])
    vae = AutoencoderKL(**params)
    train_toy.reset_parameters(vae, 0)
    if args.zero_init:
        train_toy.zero_residual_branches(vae)
    if args.group_channels:
        regroup_vae_norms(vae, args.group_channels)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(0)
    held_out = batch(np.random.default_rng(7), 32, args.size)
    started = time.monotonic()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        x = batch(rng, args.batch, args.size)
        mean, _ = train_toy.vae_moments(vae, x)
        recon = train_toy.vae_decode(vae, mean)
        loss = F.mse_loss(recon, x) if args.loss == "mse" else F.l1_loss(recon, x) + 0.5 * F.mse_loss(recon, x)
        loss = loss + 1e-4 * mean.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.every == args.every - 1:
            with torch.no_grad():
                m, _ = train_toy.vae_moments(vae, held_out)
                recon = train_toy.vae_decode(vae, m).clamp(-1, 1)
                psnr = 10 * math.log10(1 / F.mse_loss((recon + 1) / 2, (held_out + 1) / 2).item())
            if args.save:
                save_grid(held_out[:8], recon[:8], args.save)
            log.info("ch %d x%s step %d loss %.4f PSNR %.2f dB (%.0f s)", args.ch, args.ch_mult, step + 1, loss.item(), psnr,
                     time.monotonic() - started)


if __name__ == "__main__":
    main()
