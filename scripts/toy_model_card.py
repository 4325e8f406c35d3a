"""Measure the bundled toy model for its model card (docs/TOY_MODEL.md).

    .venv/bin/python scripts/toy_model_card.py [--samples 48] [--cfg 5.0] [--json outputs/toy_card.json]

Everything runs on held-out scenes (seeds the training never used), through ComfyUI's own nodes:
- VAE reconstruction PSNR (VAEEncode → VAEDecode) on rendered scenes;
- text-to-image: core KSampler (ddim, ddim_uniform, 50 steps) from each held-out caption, then for every
  object the caption names, whether the sample shows an object of that colour (the world's own colour
  segmentation finds at least a quarter of its true area) and whether that segment has the named shape
  (``classify_shape``); also the fraction of samples in which every named object is right.
Writes a grid of samples with their captions to docs/images/toy_samples.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.toy_card")
HELD_OUT_SEED = 20261122  # scenes for evaluation; training uses seeds 0.. (scripts/train_toy.py)
MIN_AREA_FRACTION = 0.25


def vae_psnr(vae, images: np.ndarray) -> float:
    with torch.inference_mode():
        x = torch.from_numpy(images)
        out = vae.decode(vae.encode(x)).clamp(0, 1).float()
    mse = float(((out - x) ** 2).mean())
    return 10 * math.log10(1 / mse)


def sample(model, clip, vae, prompt: str, seed: int, cfg: float, size: int) -> np.ndarray:
    import nodes

    with torch.inference_mode():
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
        latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
        (out,) = nodes.KSampler().sample(model, seed, 50, cfg, "ddim", "ddim_uniform", positive, negative, latent)
        return vae.decode(out["samples"])[0].clamp(0, 1).float().numpy()


def check_objects(image: np.ndarray, scene) -> list[dict]:
    from dragkit.drag_core.toy.world import classify_shape, object_mask, segment

    rows = []
    for k, obj in enumerate(scene.objects):
        found = segment(image, obj.colour)
        true_area = float(object_mask(scene, k).sum())
        colour_ok = bool(found.sum() >= MIN_AREA_FRACTION * true_area)
        shape, iou = classify_shape(found)
        rows.append({"colour": obj.colour, "shape": obj.shape, "colour_ok": colour_ok,
                     "shape_ok": colour_ok and shape == obj.shape, "found_shape": shape, "iou": round(iou, 3)})
    return rows


def grid(images: list[np.ndarray], captions: list[str], columns: int = 4) -> Image.Image:
    size = images[0].shape[0]
    label = 30
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (img, text) in enumerate(zip(images, captions)):
        x, y = (k % columns) * size, (k // columns) * (size + label)
        sheet.paste(Image.fromarray((img * 255).round().astype(np.uint8)), (x, y))
        words, line, lines = text.split(), "", []
        for w in words:  # wrap to the tile width (the default bitmap font is ~6 px per character)
            if len(line) + len(w) + 1 > size // 6:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
        draw.text((x + 2, y + size + 1), "\n".join(lines[:3]), fill="black", spacing=0)
    return sheet


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--grid", type=Path, default=REPO / "docs" / "images" / "toy_samples.png")
    args = parser.parse_args()
    comfyenv.setup()
    from dragkit.drag_core.toy.world import caption, make_dataset
    from dragkit.nodes.toy_model import load_toy_model

    with torch.inference_mode():
        model, clip, vae = load_toy_model()
    images, captions, scenes = make_dataset(max(args.samples, 64), seed=HELD_OUT_SEED)
    psnr = vae_psnr(vae, images[:64])
    log.info("VAE reconstruction PSNR on 64 held-out scenes: %.2f dB", psnr)
    samples, objects, all_ok = [], [], []
    for k in range(args.samples):
        img = sample(model, clip, vae, captions[k], seed=k, cfg=args.cfg, size=scenes[k].size)
        rows = check_objects(img, scenes[k])
        samples.append(img)
        objects.extend(rows)
        all_ok.append(all(r["shape_ok"] for r in rows))
        log.info("%2d %s → %s", k, caption(scenes[k]), ", ".join(
            f"{r['colour']} {r['found_shape'] if r['colour_ok'] else '-'}" for r in rows))
    report = {
        "vae_psnr_db": round(psnr, 2),
        "samples": args.samples, "cfg": args.cfg, "sampler": "ddim / ddim_uniform, 50 steps",
        "objects": len(objects),
        "colour_rate": round(float(np.mean([r["colour_ok"] for r in objects])), 3),
        "colour_and_shape_rate": round(float(np.mean([r["shape_ok"] for r in objects])), 3),
        "all_objects_right_rate": round(float(np.mean(all_ok)), 3),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": report, "objects": objects}, indent=1))
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    grid(samples[:16], captions[:16]).save(args.grid)
    log.info("wrote %s", args.grid)


if __name__ == "__main__":
    main()
