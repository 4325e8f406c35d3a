"""DragBench's metrics: mean distance (MD, DIFT correspondences) and image fidelity (IF = 1 − LPIPS).

    .venv/bin/python bench/dragbench_eval.py --data DragBench --results runs/dd --sd21 models/stable-diffusion-2-1
                                             [--no-lpips] [--no-md] [--json out.json] [--categories a,b]
                                             [--limit N] [--device cuda] [--dtype float32] [--dift-prompt sample]

What DragDiffusion's release computes (``drag_bench_evaluation/run_eval_point_matching.py``,
``run_eval_similarity.py`` and ``dift_sd.py``, the latter credited to DIFT's ``src/models/dift_sd.py``), and this
module reproduces:

**MD.** For each sample the dragged image is resized to the source's size (PIL bilinear) and both pictures are
featurized at that size (DragBench's pictures are 512 px wide; nothing is resized to a fixed resolution) by
DIFT's ``SDFeaturizer`` on Stable Diffusion 2.1 with the sample's own prompt, ``t = 261``, ``up_ft_index = 1``,
``ensemble_size = 8``. Each feature map is upsampled bilinearly (``F.interpolate``, ``align_corners=False``) to
H×W. For each handle, its feature vector at the handle's pixel of the source map is compared by cosine
similarity with every pixel of the dragged image's map; the argmax is where the handle went. Its distance is the
Euclidean distance in pixels of the source image between that pixel and the target. MD is the mean over every
pair of the whole benchmark (pooled: a sample with three drags counts three times).

**DIFT's features** (``SDFeaturizer.forward``): the picture in [−1, 1] is repeated ``ensemble_size`` times; the
VAE encodes the batch, *sampling* its latent distribution, times the VAE's scaling factor; noise is added at step
``t`` as the DDIM scheduler's ``add_noise`` does (√ᾱ_t·x + √(1−ᾱ_t)·ε, SD-2.1's scaled-linear ᾱ); the UNet runs
on the batch at ``t`` with the prompt's CLIP embedding (no classifier-free guidance) and the output of
``up_blocks[up_ft_index]`` (after its upsampler) is kept, averaged over the batch. For SD-2.1 block 1 has 1280
channels at 1/16 of the picture's size.

**IF.** Source and (resized) dragged image in [−1, 1], each bilinearly resized to 224×224 (``F.interpolate``),
scored by ``lpips.LPIPS(net='alex')``; IF = 1 − the mean LPIPS over samples. (The release also prints a CLIP
image similarity; it is not part of MD/IF and not computed here.)

Departures, all deliberate and listed in the report's ``protocol``:

- Randomness: the release seeds once per results folder (``seed_everything(42)``) and draws noise in
  ``os.listdir`` order, so a sample's score depends on which samples ran before it. Here every featurizer call
  starts its own generator at ``seed`` (42): scores are reproducible per sample and the same for any subset.
- Points are rounded to whole pixels before indexing (the release indexes with the clicks as stored, which are
  already integers in DragBench).
- ``--dift-prompt empty`` featurizes with the empty prompt instead of the sample's (as some later papers'
  evaluators do); the default is the release's.
- Reported besides the release's numbers: MD per sample and per category, the mean of the per-category MDs
  (the figure the DragDiffusion paper's per-category tables average to), the mean drag length (what a matcher
  that finds every handle where it was would score for the do-nothing result), and each edit's seconds and
  peak memory from the runner's ``results.json``.

The featurizer and the LPIPS function are pluggable (``evaluate(..., featurizer, lpips_fn)``): a featurizer is
``f(image: H×W×3 uint8, prompt) -> (1, C, h, w) tensor``; an LPIPS function ``g(a, b) -> float`` on (1, 3, 224,
224) tensors in [−1, 1]. Nothing is ever downloaded: SD-2.1 loads from a local folder and LPIPS only when the
``lpips`` package and torchvision's AlexNet weights are already on the machine.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dragbench import (
    RESULTS_JSON,
    DragBenchError,
    DragBenchSample,
    atomic_write_json,
    load_results,
    read_image,
    read_sample,
    result_path,
    sample_dirs,
)

log = logging.getLogger("dragkit.dragbench_eval")

DIFT_T = 261
DIFT_UP_FT_INDEX = 1
DIFT_ENSEMBLE = 8
DIFT_SEED = 42
LPIPS_SIZE = 224
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"  # what torchvision's alexnet(IMAGENET1K_V1) loads; LPIPS builds on it
SD21_PARTS = ("unet/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer",
              "scheduler/scheduler_config.json")

Featurizer = Callable[[np.ndarray, str], torch.Tensor]
LpipsFn = Callable[[torch.Tensor, torch.Tensor], float]


def sd_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """ᾱ of Stable Diffusion's scaled-linear schedule (SD-2.1's scheduler config), in float32 as diffusers has it."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


class _Captured(Exception):
    """Raised by the forward hook once the wanted block has run: the rest of the UNet is not needed."""


class DiftFeaturizer:
    """DIFT features of a diffusers ``UNet2DConditionModel`` + ``AutoencoderKL`` (any size; SD-2.1 for DragBench).

    ``text_embedding`` (1, 77, D) is used for every prompt unless ``encode_prompt(prompt) -> (1, 77, D)`` is
    given. Calling it on an H×W×3 uint8 picture returns the (1, C, h, w) float32 output of
    ``unet.up_blocks[up_ft_index]`` averaged over ``ensemble_size`` noisy copies (module docstring).
    """

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, text_embedding: torch.Tensor | None = None, *,
                 encode_prompt: Callable[[str], torch.Tensor] | None = None, t: int = DIFT_T,
                 up_ft_index: int = DIFT_UP_FT_INDEX, ensemble_size: int = DIFT_ENSEMBLE,
                 alphas_cumprod: torch.Tensor | None = None, seed: int = DIFT_SEED,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        if text_embedding is None and encode_prompt is None:
            raise ValueError("DiftFeaturizer needs a text_embedding or an encode_prompt function")
        if not hasattr(unet, "up_blocks") or not 0 <= up_ft_index < len(unet.up_blocks):
            count = len(getattr(unet, "up_blocks", ()))
            raise ValueError(f"up_ft_index {up_ft_index} is not an up block of this UNet (it has {count})")
        alphas_cumprod = sd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod.float().cpu()
        if not 0 <= t < len(alphas_cumprod):
            raise ValueError(f"t = {t} is outside the schedule's {len(alphas_cumprod)} steps")
        if ensemble_size < 1:
            raise ValueError(f"ensemble_size must be ≥ 1, got {ensemble_size}")
        parameter = next(unet.parameters())
        self.unet, self.vae = unet, vae
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = dtype or parameter.dtype
        self.text_embedding, self.encode_prompt = text_embedding, encode_prompt
        self.t, self.up_ft_index, self.ensemble_size, self.seed = t, up_ft_index, ensemble_size, seed
        self.alpha_bar = float(alphas_cumprod[t])
        self._embeddings: dict[str, torch.Tensor] = {}

    def describe(self) -> dict[str, Any]:
        return {"features": "DIFT", "t": self.t, "up_ft_index": self.up_ft_index, "ensemble_size": self.ensemble_size,
                "seed": self.seed, "prompt": "sample" if self.encode_prompt else "fixed embedding",
                "dtype": str(self.dtype).replace("torch.", "")}

    def _embedding(self, prompt: str) -> torch.Tensor:
        if self.encode_prompt is None:
            return self.text_embedding
        if prompt not in self._embeddings:
            if len(self._embeddings) > 64:
                self._embeddings.clear()
            self._embeddings[prompt] = self.encode_prompt(prompt)
        return self._embeddings[prompt]

    @torch.no_grad()
    def __call__(self, image: np.ndarray, prompt: str = "") -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        x = x.to(self.device, self.dtype).repeat(self.ensemble_size, 1, 1, 1)
        # A fresh generator per call: the same picture always gets the same latent samples and noise.
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        latents = self.vae.encode(x).latent_dist.sample(generator=generator) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        noisy = math.sqrt(self.alpha_bar) * latents + math.sqrt(1.0 - self.alpha_bar) * noise
        context = self._embedding(prompt).to(self.device, self.dtype)
        context = context.expand(self.ensemble_size, *context.shape[1:])
        timestep = torch.full((self.ensemble_size,), self.t, dtype=torch.long, device=self.device)
        captured: list[torch.Tensor] = []

        def keep(module: torch.nn.Module, args: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _Captured

        handle = self.unet.up_blocks[self.up_ft_index].register_forward_hook(keep)
        try:
            self.unet(noisy, timestep, encoder_hidden_states=context)
        except _Captured:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"up_blocks[{self.up_ft_index}] did not run in the UNet's forward pass")
        return captured[0].float().mean(dim=0, keepdim=True)


def _sd21_missing_message(folder: Path, missing: list[str]) -> str:
    return (
        f"SD-2.1 weights not found in {folder} (missing: {', '.join(missing)}). MD uses DIFT features of "
        f"Stable Diffusion 2.1 in diffusers' folder layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/). "
        f"On a machine with network, download the diffusers folder of stabilityai/stable-diffusion-2-1 (or a mirror "
        f"with the same files), e.g. `huggingface-cli download stabilityai/stable-diffusion-2-1 --local-dir "
        f"{folder.name} --include '*.json' '*.txt' unet/diffusion_pytorch_model.safetensors "
        f"vae/diffusion_pytorch_model.safetensors text_encoder/model.safetensors`, and copy it to {folder}; or pass "
        f"--no-md for IF alone (docs/DRAGBENCH.md). Nothing is downloaded by this script.")


def load_sd21_featurizer(folder: Path, *, device: str = "cuda", dtype: torch.dtype = torch.float32,
                         prompt_mode: str = "sample", **kwargs: Any) -> DiftFeaturizer:
    """DIFT on SD-2.1 from a local diffusers folder; ``prompt_mode`` "sample" (the release) or "empty"."""
    folder = Path(folder)
    missing = [part for part in SD21_PARTS if not (folder / part).exists()]
    if missing:
        raise FileNotFoundError(_sd21_missing_message(folder, missing))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub; make sure none is asked
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    # Loaded as stored, then cast: the dtype keyword's name differs between library versions.
    common = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **common)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **common)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **common)
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **common)
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler", **common)
    vae.decoder = None  # only the encoder is used; frees its memory as DIFT does
    for module in (unet, vae, text_encoder):
        module.to(device, dtype).eval().requires_grad_(False)

    @torch.no_grad()
    def encode(prompt: str) -> torch.Tensor:
        # diffusers' encode_prompt without guidance: padded to 77 tokens, the text encoder's last hidden state.
        tokens = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                           return_tensors="pt")
        attention = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask",
                                                                False) else None
        return text_encoder(tokens.input_ids.to(device), attention_mask=attention)[0]

    if prompt_mode not in ("sample", "empty"):
        raise ValueError(f"prompt_mode must be 'sample' or 'empty', got {prompt_mode!r}")
    featurizer = DiftFeaturizer(
        unet, vae, encode("") if prompt_mode == "empty" else None,
        encode_prompt=encode if prompt_mode == "sample" else None,
        alphas_cumprod=scheduler.alphas_cumprod, device=device, dtype=dtype, **kwargs)
    log.info("DIFT featurizer: SD-2.1 from %s on %s (%s), prompt %s", folder, device, dtype, prompt_mode)
    return featurizer


def load_lpips_alex(device: str = "cpu") -> LpipsFn:
    """``lpips.LPIPS(net='alex')`` as an LPIPS function, only if the package and AlexNet's weights are local."""
    try:
        import lpips
    except ImportError:
        raise RuntimeError(
            "IF needs the lpips package (`pip install lpips`, which ships LPIPS's own linear weights); "
            "or pass --no-lpips") from None
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(
            f"LPIPS(net='alex') builds on torchvision's ImageNet AlexNet, whose weights are not at {weights}; copy "
            f"{ALEXNET_WEIGHTS} there (https://download.pytorch.org/models/{ALEXNET_WEIGHTS}, fetched on a machine "
            f"with network) or pass --no-lpips. Nothing is downloaded by this script.")
    model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    @torch.no_grad()
    def lpips_alex(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(model(a.to(device), b.to(device)).mean())

    return lpips_alex


# ---------------------------------------------------------------------------------------------------------- metrics


def _resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def match_handles(source_features: torch.Tensor, dragged_features: torch.Tensor,
                  handles: list[tuple[float, float]], height: int, width: int) -> list[tuple[int, int]]:
    """Where each handle's source feature is most similar (cosine) in the dragged image: (x, y) pixels.

    Both maps are upsampled bilinearly to height×width first, as the release does.
    """
    src = F.interpolate(source_features.float(), (height, width), mode="bilinear")[0]
    vectors = torch.stack([src[:, _pixel(y, height), _pixel(x, width)] for x, y in handles])  # (N, C)
    del src
    dst = F.interpolate(dragged_features.float().to(vectors.device), (height, width), mode="bilinear")[0]
    dst = F.normalize(dst, dim=0, eps=1e-8)
    similarity = torch.einsum("nc,chw->nhw", F.normalize(vectors, dim=1, eps=1e-8), dst)
    flat = similarity.reshape(len(handles), -1).argmax(dim=1).tolist()  # first maximum, as numpy's argmax
    return [(int(i % width), int(i // width)) for i in flat]


def _pixel(v: float, size: int) -> int:
    return min(max(int(round(v)), 0), size - 1)


def mean_distance(source: np.ndarray, dragged: np.ndarray, prompt: str, handles: list[tuple[float, float]],
                  targets: list[tuple[float, float]], featurizer: Featurizer) -> tuple[list[float], list[tuple[int, int]]]:
    """Per pair: the distance (source pixels) from the target to where DIFT finds the handle in ``dragged``."""
    height, width = source.shape[:2]
    dragged = _resize_to(dragged, height, width)
    matched = match_handles(featurizer(source, prompt), featurizer(dragged, prompt), handles, height, width)
    distances = [math.hypot(mx - tx, my - ty) for (mx, my), (tx, ty) in zip(matched, targets)]
    return distances, matched


def _lpips_input(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return F.interpolate(x, (LPIPS_SIZE, LPIPS_SIZE), mode="bilinear")


def lpips_distance(source: np.ndarray, dragged: np.ndarray, lpips_fn: LpipsFn) -> float:
    """LPIPS between the source and the dragged image (resized to the source, then both to 224×224)."""
    dragged = _resize_to(dragged, *source.shape[:2])
    return float(lpips_fn(_lpips_input(source), _lpips_input(dragged)))


# -------------------------------------------------------------------------------------------------------- evaluation


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _aggregate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    distances = [d for e in entries for d in e.get("md", [])]
    memory = [e["memory"]["bytes"] for e in entries if (e.get("memory") or {}).get("bytes") is not None]
    return {
        "samples": len(entries),
        "pairs": sum(e["pairs"] for e in entries),
        "md": _mean(distances),  # pooled over pairs, as the release
        "md_sample_mean": _mean([e["md_mean"] for e in entries if "md_mean" in e]),
        "drag_length": _mean([d for e in entries for d in e["drag_lengths"]]),
        "if": _mean([e["if"] for e in entries if "if" in e]),
        "lpips": _mean([e["lpips"] for e in entries if "lpips" in e]),
        "seconds": _mean([e["seconds"] for e in entries if e.get("seconds") is not None]),
        "seconds_total": sum(e["seconds"] for e in entries if e.get("seconds") is not None),
        "peak_memory_bytes": max(memory) if memory else None,
        "memory_kinds": sorted({e["memory"]["kind"] for e in entries if e.get("memory")}),
    }


def evaluate_sample(sample: DragBenchSample, dragged: np.ndarray, featurizer: Featurizer | None,
                    lpips_fn: LpipsFn | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "category": sample.category, "sample": sample.name, "pairs": sample.pairs,
        "drag_lengths": [math.hypot(tx - hx, ty - hy) for (hx, hy), (tx, ty) in zip(sample.handles, sample.targets)],
    }
    if featurizer is not None:
        distances, matched = mean_distance(sample.image, dragged, sample.prompt, list(sample.handles),
                                           list(sample.targets), featurizer)
        entry.update(md=distances, md_mean=statistics.fmean(distances), matched=[list(m) for m in matched])
    if lpips_fn is not None:
        value = lpips_distance(sample.image, dragged, lpips_fn)
        entry.update(lpips=value, **{"if": 1.0 - value})
    return entry


def evaluate(data_dir: Path, result_dir: Path, featurizer: Featurizer | None, lpips_fn: LpipsFn | None, *,
             categories: list[str] | None = None, limit: int | None = None) -> dict[str, Any]:
    """MD and IF of the results in ``result_dir`` (DragBench's layout) against ``data_dir``; see the docstring.

    ``featurizer`` or ``lpips_fn`` None leaves that metric out. Samples without a result are listed in
    ``missing`` and left out of the means (the release would stop at the first one).
    """
    result_dir = Path(result_dir)
    run_record = load_results(result_dir) if (result_dir / RESULTS_JSON).is_file() else None
    records = run_record["samples"] if run_record else {}
    entries: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for category, folder in sample_dirs(data_dir, categories, limit):
        key = f"{category}/{folder.name}"
        path = result_path(result_dir, category, folder.name)
        if not path.is_file():
            missing.append(key)
            continue
        sample = read_sample(folder, category)
        entry = evaluate_sample(sample, read_image(path), featurizer, lpips_fn)
        record = records.get(key, {})
        entry.update(seconds=record.get("seconds"), memory=record.get("memory"))
        entries[key] = entry
        log.info("%s: MD %s, IF %s", key, _fmt(entry.get("md_mean"), ".1f"), _fmt(entry.get("if"), ".3f"))
    if missing:
        log.warning("%d sample(s) have no %s in %s: %s", len(missing), "dragged_image.png", result_dir,
                    ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    by_category = {c: _aggregate([e for e in entries.values() if e["category"] == c])
                   for c in sorted({e["category"] for e in entries.values()})}
    overall = _aggregate(list(entries.values()))
    overall["md_category_mean"] = _mean([c["md"] for c in by_category.values() if c["md"] is not None])
    describe = getattr(featurizer, "describe", None)
    return {
        "data": str(data_dir), "results": str(result_dir),
        "protocol": {
            "md": None if featurizer is None else {
                **(describe() if callable(describe) else {"features": type(featurizer).__name__}),
                "resolution": "source image (dragged image resized to it, PIL bilinear)",
                "match": "argmax of cosine similarity over the whole dragged image, features upsampled bilinearly",
                "distance": "Euclidean, pixels of the source image", "mean": "over all pairs (pooled)"},
            "if": None if lpips_fn is None else {
                "lpips": getattr(lpips_fn, "__name__", type(lpips_fn).__name__),
                "input": f"[-1, 1], bilinear to {LPIPS_SIZE}×{LPIPS_SIZE}", "if": "1 - mean LPIPS over samples"},
        },
        "runs": run_record["runs"] if run_record else None,
        "mean": overall, "categories": by_category, "samples": entries, "missing": missing,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: every category, then the whole set."""
    lines = ["| set | samples | drags | drag length (px) | MD (px) ↓ | IF ↑ | s / edit | peak memory |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(name: str, agg: dict[str, Any]) -> str:
        memory = agg["peak_memory_bytes"]
        size = "—" if memory is None else (f"{memory / 2**30:.2f} GiB" if memory >= 2**30 else f"{memory / 2**20:.0f} MiB")
        mem = size if memory is None else f"{size} ({'/'.join(agg['memory_kinds'])})"
        return (f"| {name} | {agg['samples']} | {agg['pairs']} | {_fmt(agg['drag_length'], '.1f')} | "
                f"{_fmt(agg['md'], '.2f')} | {_fmt(agg['if'], '.3f')} | {_fmt(agg['seconds'], '.2f')} | {mem} |")

    lines += [row(name, agg) for name, agg in report["categories"].items()]
    lines.append(row("**all**", report["mean"]))
    notes = [f"MD averaged over the categories: {_fmt(report['mean']['md_category_mean'], '.2f')} px."]
    if report["missing"]:
        notes.append(f"{len(report['missing'])} sample(s) without a result are left out.")
    return "\n".join(lines) + "\n\n" + " ".join(notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the extracted DragBench folder")
    parser.add_argument("--results", type=Path, required=True, help="a results folder in DragBench's layout")
    parser.add_argument("--sd21", type=Path, help="local diffusers folder of stabilityai/stable-diffusion-2-1 (MD)")
    parser.add_argument("--no-md", action="store_true", help="skip MD (no SD-2.1 needed)")
    parser.add_argument("--no-lpips", action="store_true", help="skip IF (no lpips package needed)")
    parser.add_argument("--json", type=Path, help="where to write the report (default: <results>/dragbench_eval.json)")
    parser.add_argument("--categories", help="comma-separated category folders (default: all)")
    parser.add_argument("--limit", type=int, help="only the first N samples (sorted order)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="DIFT's precision (the release: float32)")
    parser.add_argument("--dift-prompt", choices=("sample", "empty"), default="sample",
                        help="featurize with the sample's prompt (the release) or the empty prompt")
    parser.add_argument("--ensemble", type=int, default=DIFT_ENSEMBLE)
    parser.add_argument("--t", type=int, default=DIFT_T)
    parser.add_argument("--seed", type=int, default=DIFT_SEED)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    if args.sd21 is None and not args.no_md:
        parser.error("--sd21 DIR (a local SD-2.1 diffusers folder) is needed for MD; or pass --no-md")
    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    try:
        featurizer = None if args.no_md else load_sd21_featurizer(
            args.sd21, device=args.device, dtype=getattr(torch, args.dtype), prompt_mode=args.dift_prompt,
            ensemble_size=args.ensemble, t=args.t, seed=args.seed)
        lpips_fn = None if args.no_lpips else load_lpips_alex(args.device)
        report = evaluate(args.data, args.results, featurizer, lpips_fn, categories=categories, limit=args.limit)
    except (FileNotFoundError, RuntimeError, DragBenchError) as e:
        log.error("%s", e)
        return 2
    out = args.json or args.results / "dragbench_eval.json"
    atomic_write_json(out, report)
    print(markdown(report))
    print(f"\nreport: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
