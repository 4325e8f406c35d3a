"""ToyBench: drag methods on fixed toy-world edit cases, scored against the rendered true edit.

    .venv/bin/python bench/toybench.py [--set translate|deform] [--cases 50] [--case-seed 1234]
                                       [--methods do_nothing,copy_paste,vae_roundtrip,dragdiffusion,dragnoise,sacdrag,gooddrag,warp,warp_inpaint]
                                       [--lora-steps 80] [--lr 0.01] [--max-iterations 80] [--stop-distance 2]
                                       [--motion-anchor current] [--r-m 1] [--inversion-strength 0.7]
                                       [--inpaint-dilation 5] [--motion inverse_distance] [--sampling nearest]
                                       [--revealed keep] [--gooddrag r_m=2,r_p=6,beta=2]
                                       [--json out.json]

Runs DragKit's real nodes in-process (as ComfyUI runs them, under inference mode) on the bundled toy
model. Reports per method: MD (px, centroid of the dragged object vs where the true edit puts it),
MD as a fraction of the mean drag distance, success rate (MD ≤ 3 px), background PSNR (outside the
editable mask, vs the source), ground-truth PSNR (vs the true edit) and seconds per edit. Reference rows:
do_nothing (the source), copy_paste (the generator's true edit) and vae_roundtrip (the source through the
toy VAE alone: the best background any latent method can keep).

Sets: ``translate`` (the fixed 50 cases of ``bench_cases``; ``--case-seed`` draws another 50) and ``deform``
(25 turns and scalings given by 2–3 pairs, ``deform_cases``; MD there is the mean distance between the handles,
mapped by the object's fitted pose, and their targets). ``warp`` is RegionWarp alone (the revealed pixels keep
the old content); ``warp_inpaint`` adds the toy model's own inpainting through core nodes (VAE Encode → Set
Latent Noise Mask → KSampler, 20 euler steps, cfg 1, the background-only caption → VAE Decode →
ImageCompositeMasked). Both take the case's rough region (the object at its source dilated by 3 px).
``gooddrag`` is GoodDrag with AlternatingDragDenoise's defaults (``--gooddrag`` changes its widgets), the LoRA of
DragDiffusion's row and DDIMInvert at GoodDrag's 0.75.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))  # comfyenv: ComfyUI in-process
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.toybench")


@dataclass(frozen=True)
class DragSettings:
    """DragDiffusion's defaults (SPEC §1.6), with the LoRA sized for the 128 px toy world."""

    lora_steps: int = 80
    lora_batch: int = 4
    lora_resolution: int = 128
    inversion_strength: float = 0.7
    max_iterations: int = 80
    start_layer: int = 10
    lr: float = 0.01  # Adam's learning rate in all three drags (each node's default)
    stop_distance: float = 2.0  # grid cells
    motion_anchor: str = "current"
    r_m: int = 1
    inpaint_dilation: int = 5  # RegionWarp's
    motion: str = "inverse_distance"  # RegionWarp's
    sampling: str = "nearest"  # RegionWarp's
    revealed: str = "keep"  # RegionWarp's
    gooddrag: tuple[tuple[str, float], ...] = ()  # AlternatingDragDenoise widgets changed from its defaults

    def label(self, method: str) -> str:
        """The method's row name, with the settings that differ from the nodes' defaults."""
        keys = WARP_KEYS if method in WARP_METHODS else DRAG_KEYS if method in DRAG_METHODS else ()
        changed = [f"{k}={getattr(self, k):g}" if isinstance(getattr(self, k), float) else f"{k}={getattr(self, k)}"
                   for k in keys
                   if getattr(self, k) != getattr(DragSettings, k) and (k, method) != ("max_iterations", "dragnoise")]
        if method == "gooddrag":
            changed = [f"{k}={v:g}" for k, v in self.gooddrag]
        return f"{method} ({', '.join(changed)})" if changed else method


DRAG_METHODS = ("dragdiffusion", "dragnoise", "sacdrag")
WARP_METHODS = ("warp", "warp_inpaint")
DRAG_KEYS = ("lr", "max_iterations", "stop_distance", "motion_anchor", "r_m", "inversion_strength")
WARP_KEYS = ("inpaint_dilation", "motion", "sampling", "revealed")
# The reference's inpaint_dilation (5 px) is set for ~512 px pictures; the toy world is 128 px: 5 · 128/512 ≈ 1.
WARP_TOY_SCALED = DragSettings(inpaint_dilation=1)
# What `make demo` and the toy warp workflow use (comfy_client.toy_warp_graph): that, with DragKit's revealed fill.
WARP_TOY = DragSettings(inpaint_dilation=1, revealed="fill")
# ToyBench's second set of 50 translation cases (issue 14), picked once before any warp setting was tried.
FRESH_CASE_SEED = 2026

# SPEC's drag defaults are set for 512 px pictures; the toy world is 128 px. TOY_SCALED changes two node widgets:
# stop_distance 2 → 1 grid cell (2 cells = 4 px: 40 % of a short toy drag, more than ToyBench's 3 px success
# radius) and max_iterations 80 → 160 (long toy drags stop early). Measured on all 50 cases (docs/BENCHMARKS.md)
# it is not better on average: long drags get further, short ones and the objects' colours do worse. The CI slice
# uses it; chosen on cases 0–9, which include the slice's cases.
TOY_SCALED = DragSettings(max_iterations=160, stop_distance=1.0)

# The CI slice for the training-free drag and DragNoise (tests/comfy/test_toybench_slice_methods.py): their node
# defaults, without an identity LoRA (the training-free drag has none; it keeps DragNoise's slice short).
SLICE_SETTINGS = DragSettings(lora_steps=0)


# What the CI slice asserts of one scored case (issue 5: "moved at least half way to the target in the right
# direction, and the background outside the mask stayed within a stated PSNR").
SLICE_MIN_PROGRESS = 0.5
# Per-case background floor. Issue 5's 30 dB is a target for ToyBench's mean; per case the toy VAE's round trip
# alone keeps between 23.5 and 37.6 dB over the 50 cases, so a per-case floor must sit lower.
SLICE_MIN_BACKGROUND_PSNR = 25.0


def slice_failures(row: dict) -> list[str]:
    """The CI slice's criteria that a scored case (``bench_cases.score``) misses; empty = it passes."""
    failed = []
    if not row["found"]:
        failed.append("the dragged object vanished (colour segment not found)")
    if row["progress"] < SLICE_MIN_PROGRESS:
        failed.append(f"moved {row['progress']:.0%} of the way, less than {SLICE_MIN_PROGRESS:.0%}")
    if row["md"] >= row["initial_distance"]:  # overshooting counts as progress, but must end nearer than it began
        failed.append(f"ended {row['md']:.1f} px from the true position, no nearer than the {row['initial_distance']:.1f} px drag")
    if row["background_psnr"] < SLICE_MIN_BACKGROUND_PSNR:
        failed.append(f"background {row['background_psnr']:.1f} dB < {SLICE_MIN_BACKGROUND_PSNR} dB")
    return failed


def load_models(path: Path | None = None):
    """(MODEL, CLIP, VAE) of the bundled toy model, or of another toy model file."""
    comfyenv.setup()
    from dragkit.nodes.toy_model import TOY_WEIGHTS, load_toy_model

    with torch.inference_mode():
        return load_toy_model(path or TOY_WEIGHTS)


def prepare(models, case, settings: DragSettings, lora: bool = True, strength: float | None = None,
            first_step_correction: bool = False):
    """The stages every method shares: the case's picture and caption, the identity LoRA (when ``lora`` and
    ``settings.lora_steps``), DragPoints, VAE Encode and DDIMInvert. Returns (model, vae, state, drag_points).
    Call under ``torch.inference_mode()``."""
    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import caption, render
    from dragkit.nodes.inversion_nodes import DDIMInvert
    from dragkit.nodes.lora_nodes import IdentityLoRATrain
    from dragkit.nodes.points_nodes import DragPoints

    model, clip, vae = models
    image = torch.from_numpy(render(case.scene))[None]
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(caption(case.scene)))
    if lora and settings.lora_steps:
        model, _ = IdentityLoRATrain.execute(
            model, vae, image, cond, settings.lora_steps, 16, 5e-4, settings.lora_batch,
            settings.lora_resolution, 0, "auto", "off", "",
        )
    drag_points, _ = DragPoints.execute(image, bench_cases.case_points(case).to_json()).result
    latent = {"samples": vae.encode(image)}
    strength = settings.inversion_strength if strength is None else strength
    state, _ = DDIMInvert.execute(model, latent, cond, 50, strength, first_step_correction)
    return model, vae, state, drag_points


def drag(node, model, state, drag_points, settings: DragSettings, iterations: int | None = None):
    """Run an optimizing node (MotionSupervisionOptimize or BottleneckOptimize) with its defaults except for
    the settings' lr, r_m, stop distance and motion anchor; returns (state, tracked points, preview)."""
    from dragkit.nodes.dragnoise_nodes import BottleneckOptimize

    args = dict(max_iterations=settings.max_iterations if iterations is None else iterations, lr=settings.lr, lam=0.1,
                r_m=settings.r_m, r_p=3, stop_distance=settings.stop_distance, feature_blocks="2", seed=42,
                precision="auto", motion_anchor=settings.motion_anchor)
    if isinstance(node, BottleneckOptimize):
        args["mask_term_without_mask"] = False
    return node.execute(model, state, drag_points, **args).result


def vae_roundtrip(models, case) -> np.ndarray:
    """Reference row: the source through VAEEncode → VAEDecode and nothing else. No latent-space method can
    keep the background better than this, so it is the real ceiling of background and GT PSNR."""
    from dragkit.drag_core.toy.world import render

    _, _, vae = models
    with torch.inference_mode():
        image = torch.from_numpy(render(case.scene))[None]
        return vae.decode(vae.encode(image))[0].clamp(0, 1).float().cpu().numpy()


def dragdiffusion(models, case, settings: DragSettings = DragSettings()) -> np.ndarray:
    """LoadImage → IdentityLoRATrain → DragPoints → VAEEncode → DDIMInvert → MotionSupervisionOptimize →
    ReferenceLatentDenoise → VAEDecode, with the nodes' defaults."""
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise

    with torch.inference_mode():
        model, vae, state, drag_points = prepare(models, case, settings)
        state, _, _ = drag(MotionSupervisionOptimize(), model, state, drag_points, settings)
        (edited,) = ReferenceLatentDenoise.execute(model, state, True, 0, settings.start_layer)
        return vae.decode(edited["samples"])[0].clamp(0, 1).float().cpu().numpy()


def dragnoise(models, case, settings: DragSettings = DragSettings(), iterations: int = 60, end_step: int = 0) -> np.ndarray:
    """DragNoise (SPEC §2) with the nodes' defaults: the same LoRA and inversion as DragDiffusion, then
    BottleneckOptimize (60 iterations) → SemanticPropagationDenoise (end_step 0, the release) → VAEDecode."""
    from dragkit.nodes.dragnoise_nodes import BottleneckOptimize, SemanticPropagationDenoise

    with torch.inference_mode():
        model, vae, state, drag_points = prepare(models, case, settings)
        state, _, _ = drag(BottleneckOptimize(), model, state, drag_points, settings, iterations)
        (edited,) = SemanticPropagationDenoise.execute(model, state, end_step)
        return vae.decode(edited["samples"])[0].clamp(0, 1).float().cpu().numpy()


def sacdrag(models, case, settings: DragSettings = DragSettings(), drag_step: int = 10, sac_step: int = 10) -> np.ndarray:
    """The training-free self-attention drag (SPEC §3) with the nodes' defaults: no LoRA, DDIMInvert at
    strength 1.0 with the first-step correction, DenoiseToStep (drag step 10, control from step 10, layer 10,
    no edit prompt) → MotionSupervisionOptimize → ReferenceLatentDenoise → VAEDecode."""
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise
    from dragkit.nodes.sacdrag_nodes import DenoiseToStep

    with torch.inference_mode():
        model, vae, state, drag_points = prepare(models, case, settings, lora=False, strength=1.0,
                                                 first_step_correction=True)
        (state,) = DenoiseToStep.execute(model, state, drag_step, True, sac_step, settings.start_layer)
        state, _, _ = drag(MotionSupervisionOptimize(), model, state, drag_points, settings)
        (edited,) = ReferenceLatentDenoise.execute(model, state, True, max(0, sac_step - drag_step),
                                                     settings.start_layer)
        return vae.decode(edited["samples"])[0].clamp(0, 1).float().cpu().numpy()


def gooddrag(models, case, settings: DragSettings = DragSettings()) -> np.ndarray:
    """GoodDrag with the node's defaults (or ``settings.gooddrag``'s changes): the same LoRA as DragDiffusion's row,
    DDIMInvert at GoodDrag's strength 0.75 → AlternatingDragDenoise → VAEDecode."""
    from comfy_client import gooddrag_inputs
    from dragkit.drag_core.gooddrag import INVERSION_STRENGTH
    from dragkit.nodes.gooddrag_nodes import AlternatingDragDenoise

    with torch.inference_mode():
        model, vae, state, drag_points = prepare(models, case, settings, strength=INVERSION_STRENGTH)
        widgets = gooddrag_inputs(**dict(settings.gooddrag))
        (edited, _, _) = AlternatingDragDenoise.execute(model, state, drag_points, **widgets).result
        return vae.decode(edited["samples"])[0].clamp(0, 1).float().cpu().numpy()


def region_warp(case, settings: DragSettings = DragSettings()):
    """DragPoints (the case's rough region as the painted mask) → RegionWarp; returns its (warped, inpaint mask)."""
    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import render
    from dragkit.nodes.points_nodes import DragPoints
    from dragkit.nodes.warp_nodes import RegionWarp

    image = torch.from_numpy(render(case.scene))[None]
    drag_points, _ = DragPoints.execute(image, bench_cases.case_points(case, region=True).to_json()).result
    warped, mask, _ = RegionWarp.execute(image, drag_points, settings.inpaint_dilation, settings.motion,
                                        settings.sampling, settings.revealed).result
    return warped, mask


def warp(models, case, settings: DragSettings = DragSettings()) -> np.ndarray:
    """RegionWarp alone: the region pasted at its target, the revealed pixels left as they were."""
    with torch.inference_mode():
        warped, _ = region_warp(case, settings)
        return warped[0].float().cpu().numpy()


def warp_inpaint(models, case, settings: DragSettings = DragSettings()) -> np.ndarray:
    """RegionWarp, then the toy model's own inpainting of its mask through core nodes (20 euler steps, cfg 1,
    the background-only caption), composited so that every pixel outside the mask stays the warped one."""
    import nodes
    from comfy_extras.nodes_mask import ImageCompositeMasked

    from dragkit.drag_core.toy.world import background_caption

    model, clip, vae = models
    with torch.inference_mode():
        warped, mask = region_warp(case, settings)
        (positive,) = nodes.CLIPTextEncode().encode(clip, background_caption(case.scene))
        (negative,) = nodes.CLIPTextEncode().encode(clip, "")
        (latent,) = nodes.VAEEncode().encode(vae, warped)
        (latent,) = nodes.SetLatentNoiseMask().set_mask(latent, mask)
        (latent,) = nodes.KSampler().sample(model, 0, 20, 1.0, "euler", "normal", positive, negative, latent, 1.0)
        (decoded,) = nodes.VAEDecode().decode(vae, latent)
        (edited,) = ImageCompositeMasked().composite(warped, decoded, 0, 0, False, mask)
        return edited[0].clamp(0, 1).float().cpu().numpy()


METHODS = {
    "dragdiffusion": dragdiffusion, "dragnoise": dragnoise, "sacdrag": sacdrag, "gooddrag": gooddrag,
    "warp": warp, "warp_inpaint": warp_inpaint,
}


def make_set(name: str, count: int | None = None, seed: int | None = None) -> list:
    """ToyBench's cases: ``translate`` (default 50, seed 1234) or ``deform`` (default 25, seed 4321)."""
    from dragkit.drag_core.toy import bench_cases, deform_cases

    if name == "translate":
        return bench_cases.make_cases(count or 50, **({} if seed is None else {"seed": seed}))
    if name == "deform":
        return deform_cases.make_deform_cases(count or 25, **({} if seed is None else {"seed": seed}))
    raise SystemExit(f"unknown case set {name!r}: translate or deform")


def score(case, result) -> dict:
    from dragkit.drag_core.toy import bench_cases, deform_cases

    if isinstance(case, deform_cases.DeformCase):
        return deform_cases.score(case, result)
    return bench_cases.score(case, result)


def run(methods: list[str], count: int | None, settings: DragSettings, model: Path | None = None,
        case_set: str = "translate", case_seed: int | None = None) -> dict:
    comfyenv.setup()
    from dragkit.drag_core.toy import bench_cases

    cases = make_set(case_set, count, case_seed)
    models = load_models(model) if any(m not in ("do_nothing", "copy_paste", "warp") for m in methods) else None
    table = {}
    for method in methods:
        rows, seconds = [], []
        for case in cases:
            started = time.monotonic()
            if method == "do_nothing":
                result = bench_cases.do_nothing(case)
            elif method == "copy_paste":
                result = bench_cases.copy_paste(case)
            elif method == "vae_roundtrip":
                result = vae_roundtrip(models, case)
            elif method in METHODS:
                result = METHODS[method](models, case, settings)
            else:
                raise SystemExit(f"unknown method {method!r}")
            seconds.append(time.monotonic() - started)
            rows.append(score(case, result))
            log.info("%s case %d: md %.1f px (drag %.1f px), bg PSNR %.1f dB", method, case.id, rows[-1]["md"],
                     rows[-1]["initial_distance"], rows[-1]["background_psnr"])
        summary = bench_cases.summarize(rows)
        summary["seconds_per_edit"] = statistics.median(seconds)
        table[method] = {"summary": summary, "rows": rows}
    return table


def markdown(table: dict) -> str:
    lines = ["| method | cases | MD (px) | MD / drag | success | found | background PSNR (dB) | GT PSNR (dB) | s / edit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, entry in table.items():
        s = entry["summary"]
        found = round(s["found_rate"] * s["n"])
        lines.append(f"| {method} | {int(s['n'])} | {s['md']:.2f} | {s['md_fraction']:.1%} | {s['success_rate']:.0%} | "
                     f"{found}/{int(s['n'])} | {s['background_psnr']:.1f} | {s['gt_psnr']:.1f} | "
                     f"{s['seconds_per_edit']:.2f} |")
    return "\n".join(lines)


def parse_changes(text: str) -> tuple[tuple[str, float], ...]:
    """"r_m=1,beta=1" → (("r_m", 1), ("beta", 1.0)): whole numbers as int (the INT widgets), others float."""
    changes = []
    for part in filter(None, text.replace(" ", "").split(",")):
        key, _, value = part.partition("=")
        number = float(value)
        changes.append((key, int(number) if number.is_integer() and "." not in value else number))
    return tuple(changes)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="case_set", choices=("translate", "deform"), default="translate")
    parser.add_argument("--cases", type=int, help="how many cases (default: 50 translate, 25 deform)")
    parser.add_argument("--case-seed", type=int, help=f"draw other cases (the fresh translation set: {FRESH_CASE_SEED})")
    parser.add_argument("--methods", default="do_nothing,copy_paste,dragdiffusion")
    parser.add_argument("--lora-steps", type=int, default=80)
    parser.add_argument("--lr", type=float, default=DragSettings.lr, help="the drags' Adam learning rate")
    parser.add_argument("--max-iterations", type=int, default=DragSettings.max_iterations,
                        help="DragDiffusion's and the training-free drag's (DragNoise keeps its 60)")
    parser.add_argument("--stop-distance", type=float, default=DragSettings.stop_distance, help="grid cells")
    parser.add_argument("--motion-anchor", choices=("current", "initial"), default=DragSettings.motion_anchor)
    parser.add_argument("--r-m", type=int, default=DragSettings.r_m, help="motion-supervision patch half-size")
    parser.add_argument("--inversion-strength", type=float, default=DragSettings.inversion_strength,
                        help="DragDiffusion's and DragNoise's (the training-free drag inverts fully)")
    parser.add_argument("--inpaint-dilation", type=int, default=DragSettings.inpaint_dilation,
                        help="RegionWarp's k (the toy-scaled value is 1)")
    parser.add_argument("--motion", choices=("inverse_distance", "similarity"), default=DragSettings.motion)
    parser.add_argument("--sampling", choices=("nearest", "bilinear"), default=DragSettings.sampling)
    parser.add_argument("--revealed", choices=("keep", "fill"), default=DragSettings.revealed)
    parser.add_argument("--gooddrag", default="", metavar="K=V,...",
                        help="AlternatingDragDenoise widgets to change, e.g. r_m=1,r_p=3,beta=1")
    parser.add_argument("--model", type=Path, help="a toy model file other than the bundled one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = DragSettings(lora_steps=args.lora_steps, lr=args.lr, max_iterations=args.max_iterations,
                            stop_distance=args.stop_distance, motion_anchor=args.motion_anchor, r_m=args.r_m,
                            inversion_strength=args.inversion_strength, inpaint_dilation=args.inpaint_dilation,
                            motion=args.motion, sampling=args.sampling, revealed=args.revealed,
                            gooddrag=parse_changes(args.gooddrag))
    table = {}
    for method in args.methods.split(","):  # one method at a time, so a long run keeps what it finished
        rows = run([method], args.cases, settings, args.model, args.case_set, args.case_seed)
        table.update({settings.label(m): row for m, row in rows.items()})
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(table, indent=1, default=float))
    print(markdown(table))


if __name__ == "__main__":
    main()
