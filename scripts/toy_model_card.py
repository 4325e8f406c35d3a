"""Measure the bundled toy model for its model card (docs/TOY_MODEL.md).

    .venv/bin/python scripts/toy_model_card.py [--samples 48] [--cfg 5.0] [--json outputs/toy_card.json]

Everything runs on held-out scenes (seeds the training never used), through ComfyUI's own nodes:
- VAE reconstruction PSNR (VAEEncode → VAEDecode) on rendered scenes;
- text-to-image: core KSampler (ddim, ddim_uniform, 50 steps) from each held-out caption, then for every
  object the caption names, whether the sample shows an object of that colour (the world's own colour
  segmentation finds at least a quarter of its true area) and whether that segment has the named shape
  (``classify_shape``); also the fraction of samples in which every named object is right;
- how much the decoder reads the bottleneck (what DragNoise optimizes): at t = 681 on noised held-out scenes,
  the relative change of the third decoder block's features and of ε when the middle-block output is zeroed.
Writes a grid of samples with their captions to docs/images/toy_samples.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
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


def bottleneck_dependence(model, clip, vae, images: np.ndarray, captions: list[str], t: int = 681, scale: int = 1) -> dict:
    """Mean relative change ‖Δ‖ / ‖·‖ of the third decoder block's features and of ε when the middle-block
    output h is replaced by zeros, at timestep ``t`` (DragNoise's), over the given scenes (upsampled
    ``scale`` × bilinearly: the bottleneck grows with the picture)."""
    from dragkit.drag_core.backbone import UNetRequest
    from dragkit.nodes.comfy_unet import ComfyBackbone

    backbone = ComfyBackbone(model, "toy_model_card", feature_blocks=(2,), bottleneck=True)
    backbone.load()
    a = float(backbone.alphas_cumprod[t])
    gen = torch.Generator().manual_seed(HELD_OUT_SEED)
    features, eps = [], []
    with torch.inference_mode():
        for image, text in zip(images, captions):
            x = torch.from_numpy(image)[None]
            if scale > 1:
                x = torch.nn.functional.interpolate(x.movedim(-1, 1), scale_factor=scale, mode="bilinear").movedim(1, -1)
            z0 = vae.encode(x).float()
            z_t = a**0.5 * z0 + (1 - a) ** 0.5 * torch.randn(z0.shape, generator=gen)
            context = clip.encode_from_tokens_scheduled(clip.tokenize(text))[0][0].float()
            base = backbone(z_t, t, context, UNetRequest((2,), capture_bottleneck=True))
            zeroed = backbone(z_t, t, context, UNetRequest((2,), bottleneck=torch.zeros_like(base.bottleneck)))
            features.append(float((zeroed.features[0] - base.features[0]).norm() / base.features[0].norm()))
            eps.append(float((zeroed.eps - base.eps).norm() / base.eps.norm()))
    return {"timestep": t, "scenes": len(features), "size": images.shape[1] * scale,
            "bottleneck": list(base.bottleneck.shape[-2:]), "features_block2": round(float(np.mean(features)), 4),
            "eps": round(float(np.mean(eps)), 4)}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path, help="a toy model file other than the bundled one")
    parser.add_argument("--grid", type=Path, default=REPO / "docs" / "images" / "toy_samples.png")
    args = parser.parse_args()
    comfyenv.setup()
    from dragkit.drag_core.toy.world import caption, make_dataset
    from dragkit.nodes.toy_model import TOY_WEIGHTS, load_toy_model

    with torch.inference_mode():
        model, clip, vae = load_toy_model(args.model or TOY_WEIGHTS)
    images, captions, scenes = make_dataset(max(args.samples, 64), seed=HELD_OUT_SEED)
    psnr = vae_psnr(vae, images[:64])
    log.info("VAE reconstruction PSNR on 64 held-out scenes: %.2f dB", psnr)
    dependence = [bottleneck_dependence(model, clip, vae, images[:16], captions[:16], scale=k) for k in (1, 2, 4)]
    for d in dependence:
        log.info("%d px: zeroing the %s bottleneck changes block-2 features by %.2f %%, ε by %.2f %%",
                 d["size"], d["bottleneck"], 100 * d["features_block2"], 100 * d["eps"])
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
        "bottleneck_dependence": dependence,
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
