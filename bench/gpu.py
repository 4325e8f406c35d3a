"""DragKit's GPU check: every method's graph through the real nodes, in-process, on a CUDA device, timed per stage.

    python bench/gpu.py [--out DIR] [--tests]        # on a machine with a CUDA GPU (about 5 min on an H100/H200)
    python bench/gpu.py --cpu-smoke [--out DIR]      # the same script at toy sizes on the CPU (a test in make test)

On a full-size random-weight SD1.5 checkpoint (SD1.5's exact shapes, generated on the spot: nothing is
downloaded) at 512 px, as ComfyUI would run them (under ``torch.inference_mode()``, the model on ComfyUI's torch
device, outputs on its intermediate device):
- DragDiffusion: IdentityLoRATrain (80 steps, batch 4, 512 px, precision auto = fp16 with loss scaling on CUDA),
  VAE encode, DDIMInvert (50 steps, 0.7), MotionSupervisionOptimize (80 iterations: a stop distance of 0.1 grid
  cells, so that every iteration runs unless a handle lands exactly on its target), ReferenceLatentDenoise, VAE decode; then a re-drag (new points: only the
  drag, the denoise and the decode run again, as ComfyUI's cache would have it);
- DragNoise (BottleneckOptimize 60 + SemanticPropagationDenoise), the training-free drag (DDIMInvert 1.0 +
  DenoiseToStep + MotionSupervisionOptimize + ReferenceLatentDenoise) and GoodDrag (DDIMInvert 0.75 +
  AlternatingDragDenoise), on the LoRA-patched model; Inpaint4Drag (RegionWarp, then what ComfyUI's own
  inpainting graph runs: VAE Encode + Set Latent Noise Mask + KSampler 20 steps + VAE Decode) on the plain model.
Per stage: seconds (CUDA-synchronised), peak CUDA memory (allocated, from a reset at the stage's start), UNet
passes (a counting hook on the UNet; a batch of two counts once), and steps the fp16 loss scaler skipped.
Writes ``gpu.json`` and ``gpu.md`` (the table for docs/BENCHMARKS.md) into ``--out``; ``--tests`` then runs the GPU
tests (``pytest -m cuda tests/cuda``) and saves their output beside them.

The device machine starts bare (torch, numpy, transformers, safetensors, … but no ComfyUI): ``bench/gpu_bundle.py``
packs what it lacks (a trimmed ComfyUI tree and a few pure-Python wheels) into ``.gpu/``, and
``bench/gpu_run.sh`` unpacks it there and runs this script.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.gpu")

PROMPT = "a red disk and a blue square"


@dataclass(frozen=True)
class Sizes:
    checkpoint: str  # make_test_checkpoint kind
    image: int  # pixels a side
    lora_steps: int
    lora_batch: int
    steps: int  # DDIM steps of the schedule
    iterations: int  # MotionSupervisionOptimize
    dragnoise_iterations: int
    gooddrag: dict = field(default_factory=dict)  # AlternatingDragDenoise widget changes
    inpaint_steps: int = 20  # Inpaint4Drag's inpainting (core KSampler)


FULL = Sizes("full", 512, 80, 4, 50, 80, 60)
SMOKE = Sizes("mini", 64, 2, 1, 12, 2, 2, {"drag_end_step": 1, "track_per_step": 1}, 2)


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    peak_mib: float | None = None  # CUDA only
    unet_passes: int = 0
    skipped_steps: int = 0
    note: str = ""
    error: str = ""  # a failed stage: the exception, its last frames, and any tensors autograd cannot use


class Meter:
    """Times stages, counts UNet passes and fp16-skipped steps, reads CUDA's peak memory. A stage that raises is
    recorded as failed and the run goes on (a GPU minute is too dear to lose the other graphs to one bug); with
    ``partial`` set, the stages so far are written there after each one, so a run cut short still reports."""

    def __init__(self, device: torch.device, partial: Path | None = None) -> None:
        self.device = device
        self.partial = partial
        self.suspects: list[torch.nn.Module] = []  # modules whose tensors a failure report inspects
        self.stages: list[Stage] = []
        self._passes = 0
        self._skipped = 0

    def count_passes(self, unet: torch.nn.Module) -> None:
        unet.register_forward_pre_hook(lambda module, args: setattr(self, "_passes", self._passes + 1))

    def skipped(self, count: int) -> None:
        self._skipped += count

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str, note: str = ""):
        self._sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        passes, skipped = self._passes, self._skipped
        started = time.perf_counter()
        error = ""
        try:
            yield
        except Exception as e:  # noqa: BLE001  (recorded in the report; the next graphs still run)
            error = self._describe(e)
            log.error("%s FAILED: %s", name, error)
        self._sync()
        record = Stage(name, time.perf_counter() - started, None, self._passes - passes, self._skipped - skipped, note,
                       error)
        if self.device.type == "cuda":
            record.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.stages.append(record)
        log.info("%-44s %8.2f s  %5d passes%s", name, record.seconds, record.unet_passes,
                 f"  peak {record.peak_mib:.0f} MiB" if record.peak_mib is not None else "")
        if self.partial is not None:
            self.partial.write_text(json.dumps([asdict(s) for s in self.stages], indent=1))

    def _describe(self, e: Exception) -> str:
        frames = traceback.extract_tb(e.__traceback__)[-4:]
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
        from dragkit.nodes.comfy_unet import usable_by_autograd

        unusable = [f"{type(m).__name__}.{k}{' (inference)' if t.is_inference() else ' (no version counter)'}"
                    for root in self.suspects for m in root.modules() for k, t in vars(m).items()
                    if isinstance(t, torch.Tensor) and not usable_by_autograd(t)]
        unusable += [f"{type(m).__name__}.{k}" for root in self.suspects for m in root.modules()
                     for k, t in [*m._parameters.items(), *m._buffers.items()]
                     if t is not None and not usable_by_autograd(t)]
        return (f"{type(e).__name__}: {e} [at {where}]"
                + (f" [tensors autograd cannot use: {', '.join(unusable[:12])}, … {len(unusable)} in all]"
                   if unusable else ""))


class _SkippedSteps(logging.Handler):
    """Counts the LoRA trainer's "step skipped" warnings (the node reports no count of its own)."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(logging.WARNING)
        self.meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        if "step skipped" in record.getMessage():
            self.meter.skipped(1)


def _points(size: int, shift: float) -> str:
    c = size / 2
    return json.dumps({"version": 1, "width": size, "height": size,
                       "points": [{"handle": [c - size / 8, c], "target": [c - size / 8 + shift, c + shift / 2]}]})


def _disk(size: int) -> torch.Tensor:
    """The region RegionWarp moves: a disk around the first handle of ``_points`` (a MASK, 1 × H × W)."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = size / 2
    return (((x - (c - size / 8)) ** 2 + (y - c) ** 2) <= (size / 6) ** 2).float()[None]


def run(sizes: Sizes, device: torch.device, partial: Path | None = None) -> dict:
    """Every graph once (and the re-drag); returns the report."""
    meter = Meter(device, partial)
    counter = _SkippedSteps(meter)
    logging.getLogger("dragkit").addHandler(counter)
    try:
        return _run(sizes, device, meter)
    finally:
        logging.getLogger("dragkit").removeHandler(counter)


def _run(sizes: Sizes, device: torch.device, meter: Meter) -> dict:
    import comfy.model_management
    import comfy.sd

    import make_test_checkpoint
    from comfy_client import CACHE
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.dragnoise_nodes import BottleneckOptimize, SemanticPropagationDenoise
    from dragkit.nodes.gooddrag_nodes import AlternatingDragDenoise
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise
    from dragkit.nodes.lora_nodes import IdentityLoRATrain
    from dragkit.nodes.points_nodes import DragPoints
    from dragkit.nodes.sacdrag_nodes import DenoiseToStep

    path = CACHE / f"dragkit-{sizes.checkpoint}-sd15-random.safetensors"
    with meter.stage("make the random checkpoint", sizes.checkpoint):
        make_test_checkpoint.make_checkpoint(path, sizes.checkpoint)
    with torch.inference_mode():
        with meter.stage("load checkpoint"):
            model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)[:3]
        meter.count_passes(model.model.diffusion_model)
        meter.suspects.append(model.model)
        lora_model = model  # the graphs below run on the plain model if the LoRA fails
        state = good_state = at_drag = None
        generator = torch.Generator().manual_seed(0)
        image = torch.rand(1, sizes.image, sizes.image, 3, generator=generator)
        with meter.stage("CLIP encode"):
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
        with meter.stage("IdentityLoRATrain", f"{sizes.lora_steps} steps × batch {sizes.lora_batch}, auto"):
            lora_model, _ = IdentityLoRATrain.execute(model, vae, image, cond, sizes.lora_steps, 16, 5e-4,
                                                      sizes.lora_batch, sizes.image, 0, "auto", "off", "")
        drag_points, _ = DragPoints.execute(image, _points(sizes.image, sizes.image / 8)).result
        with meter.stage("VAE encode"):
            latent = {"samples": vae.encode(image)}

        def drag_and_denoise(label: str, state, points) -> None:
            note = f"{sizes.iterations} iterations"
            with meter.stage(f"{label}: MotionSupervisionOptimize", note):
                out = MotionSupervisionOptimize.execute(
                    lora_model, state, points, sizes.iterations, 0.01, 0.1, 1, 3, 0.1, "2", 42, "auto")
                meter.skipped(out.ui["drag"][0]["skipped_steps"])
            with meter.stage(f"{label}: ReferenceLatentDenoise"):
                (edited,) = ReferenceLatentDenoise.execute(lora_model, out.result[0], True, 0, 10)
            with meter.stage(f"{label}: VAE decode"):
                vae.decode(edited["samples"])

        with meter.stage("DDIMInvert (0.7)"):
            state, _ = DDIMInvert.execute(lora_model, latent, cond, sizes.steps, 0.7, False)
        drag_and_denoise("DragDiffusion", state, drag_points)
        redrag_points, _ = DragPoints.execute(image, _points(sizes.image, -sizes.image / 10)).result
        drag_and_denoise("re-drag (new points)", state, redrag_points)

        with meter.stage("DragNoise: BottleneckOptimize", f"{sizes.dragnoise_iterations} iterations"):
            out = BottleneckOptimize.execute(lora_model, state, drag_points, sizes.dragnoise_iterations, 0.01, 0.1,
                                                1, 3, 0.1, "2", False, 42, "auto")
        with meter.stage("DragNoise: SemanticPropagationDenoise"):
            SemanticPropagationDenoise.execute(lora_model, out.result[0], 0)

        with meter.stage("training-free: DDIMInvert (1.0) + DenoiseToStep"):
            full, _ = DDIMInvert.execute(model, latent, cond, sizes.steps, 1.0, True)
            drag_step = min(10, sizes.steps - 1)
            (at_drag,) = DenoiseToStep.execute(model, full, drag_step, True, drag_step, 10)
        with meter.stage("training-free: drag + ReferenceLatentDenoise", f"{sizes.iterations} iterations"):
            out = MotionSupervisionOptimize.execute(model, at_drag, drag_points, sizes.iterations, 0.01, 0.1, 1, 3,
                                                       0.1, "2", 42, "auto")
            ReferenceLatentDenoise.execute(model, out.result[0], True, 0, 10)

        from comfy_client import gooddrag_inputs
        from dragkit.drag_core.gooddrag import INVERSION_STRENGTH

        with meter.stage("GoodDrag: DDIMInvert (0.75)"):
            good_state, _ = DDIMInvert.execute(lora_model, latent, cond, sizes.steps, INVERSION_STRENGTH, False)
        with meter.stage("GoodDrag: AlternatingDragDenoise"):
            out = AlternatingDragDenoise.execute(lora_model, good_state, drag_points, **gooddrag_inputs(**sizes.gooddrag))
            meter.skipped(out.ui["drag"][0]["skipped_steps"])

        import comfy.sample

        from dragkit.nodes.warp_nodes import RegionWarp

        with meter.stage("Inpaint4Drag: RegionWarp"):
            warped, inpaint_mask, _ = RegionWarp.execute(image, drag_points, 5, "inverse_distance", "nearest", "fill",
                                                        _disk(sizes.image)).result
        with meter.stage("Inpaint4Drag: inpaint + VAE decode", f"KSampler euler {sizes.inpaint_steps} steps, cfg 5"):
            # What VAE Encode → Set Latent Noise Mask → KSampler (denoise 1.0) → VAE Decode run, without importing
            # ComfyUI's `nodes` (it pulls in PyAV, 35 MiB the GPU machine lacks).
            negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
            warped_latent = vae.encode(warped)
            noise = comfy.sample.prepare_noise(warped_latent, 0)
            inpainted = comfy.sample.sample(model, noise, sizes.inpaint_steps, 5.0, "euler", "normal", cond, negative,
                                            warped_latent, denoise=1.0, noise_mask=inpaint_mask.reshape(
                                                -1, 1, *inpaint_mask.shape[-2:]), seed=0)
            vae.decode(inpainted)
    comfy.model_management.soft_empty_cache()
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "python": platform.python_version(), "sizes": asdict(sizes),
        "stages": [asdict(s) for s in meter.stages],
        "total_seconds": sum(s.seconds for s in meter.stages),
    }


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']}; torch {report['torch']}; {report['sizes']['image']} px, "
             f"checkpoint `{report['sizes']['checkpoint']}`; total {report['total_seconds']:.1f} s", "",
             "| stage | seconds | peak CUDA memory (MiB) | UNet passes | fp16 steps skipped | settings |",
             "|---|---|---|---|---|---|"]
    for s in report["stages"]:
        peak = "–" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
        note = f"**FAILED**: {s['error']}" if s.get("error") else s["note"]
        lines.append(f"| {s['name']} | {s['seconds']:.2f} | {peak} | {s['unet_passes']} | {s['skipped_steps']} | "
                     f"{note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU: rehearse the script")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu")
    parser.add_argument("--tests", action="store_true", help="then run the GPU tests (pytest -m cuda tests/cuda)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.cpu_smoke and not torch.cuda.is_available():
        log.error("no CUDA device: run on a GPU machine, or rehearse with --cpu-smoke")
        return 2
    comfyenv.setup(cpu=args.cpu_smoke)
    if args.cpu_smoke:  # rehearse what a GPU machine does at every load: move the weights
        comfyenv.emulate_device_moves()
    import comfy.model_management

    device = comfy.model_management.get_torch_device()
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(SMOKE if args.cpu_smoke else FULL, device, args.out / "gpu.partial.json")
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))
    failed = [s["name"] for s in report["stages"] if s["error"]]
    if failed:
        log.error("failed stages: %s", "; ".join(failed))
    code = 1 if failed else 0
    if args.tests:
        import subprocess

        test = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", str(REPO / "tests" / "cuda"), "-q",
                               "-p", "no:cacheprovider"], cwd=REPO / "tests", capture_output=True, text=True)
        (args.out / "cuda-tests.txt").write_text(test.stdout + test.stderr)
        log.info("GPU tests: exit %d\n%s", test.returncode, test.stdout[-2000:])
        code = code or test.returncode
    return code


if __name__ == "__main__":
    sys.exit(main())
