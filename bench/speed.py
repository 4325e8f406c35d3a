"""DragKit speed benchmark: the real nodes in-process on a full-size random-weight SD1.5 checkpoint (CPU).

    .venv/bin/python bench/speed.py [--size 256] [--iterations 8] [--json out.json]

Runs, as ComfyUI would (under ``torch.inference_mode()``): checkpoint load, VAE encode, CLIP encode,
DragPoints, DDIMInvert (50 steps, strength 0.7 → 35 UNet passes), MotionSupervisionOptimize
(``--iterations`` iterations, never stopping early), ReferenceLatentDenoise (reference control on →
35 passes at batch 2) and VAE decode. Per stage: wall seconds, UNet passes, seconds per pass, peak RSS growth.

Then the frozen-weights question (SPEC §1.3): the same optimization iteration, interleaved A B A B …,
  A  DragKit's path: weights frozen during the forward, ``torch.autograd.grad`` w.r.t. z_t only;
  B  the reference's: weights left requiring grad and ``loss.backward()``, so every backward also
     computes (and allocates ``.grad`` for) every UNet weight.
Then DragNoise vs DragDiffusion (SPEC §2: "about half the optimization time"): seconds per optimization
iteration of the real core loops, interleaved runs (``--method-repeats`` × ``--method-iterations``).
Timings are medians; the machine may be shared, so compare ratios from the same run only.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import comfy_client  # noqa: E402
import comfyenv  # noqa: E402

log = logging.getLogger("dragkit.bench")

CHECKPOINTS = {"full": "dragkit-full-sd15-random.safetensors", "mini": comfy_client.MINI_CHECKPOINT}
PROMPT = "a red disk and a blue square"
MiB = 2**20
MEMORY_METHOD = (
    "RSS of this process sampled every 20 ms by a psutil thread; growth = peak during a stage/iteration minus "
    "RSS at its start, with glibc malloc_trim(0) before each stage and before the first iteration of each "
    "variant (timed iterations reuse retained heap, so their growth understates use); saved-for-backward = "
    "unique storages packed by autograd's saved-tensor hooks, weights excluded; weight .grad = their bytes"
)


# ---------------------------------------------------------------------------------------------- measuring


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds in a background thread and keeps the peak
    since the last :meth:`mark`. Spikes shorter than the interval can be missed."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._process.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def rss(self) -> int:
        return self._process.memory_info().rss

    def mark(self) -> int:
        """Reset the peak to the current RSS and return it."""
        rss = self.rss()
        with self._lock:
            self._peak = rss
        return rss

    def peak(self) -> int:
        rss = self.rss()
        with self._lock:
            self._peak = max(self._peak, rss)
            return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def malloc_trim() -> None:
    """Return freed heap memory to the OS (glibc), so RSS growth measures what a stage really touches."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PassCounter:
    """Counts UNet passes by wrapping ``ComfyBackbone.__call__`` (benchmark-only, restored by :meth:`remove`)."""

    def __init__(self, backbone_cls: type) -> None:
        self.passes = 0
        self.items = 0  # batch items through the UNet (a batch-2 pass counts 2)
        self._cls = backbone_cls
        self._original = backbone_cls.__call__
        original = self._original
        counter = self

        def counted(backbone, z, *args, **kwargs):
            counter.passes += 1
            counter.items += int(z.shape[0])
            return original(backbone, z, *args, **kwargs)

        backbone_cls.__call__ = counted

    def remove(self) -> None:
        self._cls.__call__ = self._original


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (all threads); ≈ 2 × wall when it has both cores
    unet_passes: int = 0
    unet_batch_items: int = 0
    iterations: int | None = None  # drag iterations (MotionSupervisionOptimize only)
    rss_start_mib: float = 0.0
    peak_rss_growth_mib: float = 0.0  # peak RSS during the stage minus RSS at its start
    rss_end_growth_mib: float = 0.0  # RSS after the stage minus RSS at its start (retained)
    load_avg_1min: tuple[float, float] = (0.0, 0.0)  # system load before / after: a noise indicator

    @property
    def seconds_per_pass(self) -> float | None:
        return self.seconds / self.unet_passes if self.unet_passes else None

    @property
    def seconds_per_iteration(self) -> float | None:
        return self.seconds / self.iterations if self.iterations else None


@contextlib.contextmanager
def measure(name: str, stages: list[Stage], sampler: RssSampler, counter: PassCounter | None) -> Iterator[Stage]:
    stage = Stage(name)
    passes, items = (counter.passes, counter.items) if counter else (0, 0)
    load_before = os.getloadavg()[0]
    malloc_trim()  # otherwise memory freed by earlier stages is reused without showing as growth
    start_rss = sampler.mark()
    log.info("stage %s …", name)
    t0, c0 = time.perf_counter(), time.process_time()
    yield stage
    stage.seconds = time.perf_counter() - t0
    stage.cpu_seconds = time.process_time() - c0
    stage.rss_start_mib = start_rss / MiB
    stage.peak_rss_growth_mib = (sampler.peak() - start_rss) / MiB
    stage.rss_end_growth_mib = (sampler.rss() - start_rss) / MiB
    stage.load_avg_1min = (load_before, os.getloadavg()[0])
    if counter:
        stage.unet_passes, stage.unet_batch_items = counter.passes - passes, counter.items - items
    stages.append(stage)
    log.info(
        "stage %s: %.2f s, %d UNet passes, peak RSS +%.0f MiB",
        name, stage.seconds, stage.unet_passes, stage.peak_rss_growth_mib,
    )


# ---------------------------------------------------------------------------------------------- pipeline


def points_json(size: int) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """One pair, 30 px apart (handle on the red disk of the sample image, dragged right)."""
    from dragkit.drag_core.points import DragPoints

    handle = (round(0.35 * size), round(0.35 * size))
    target = (handle[0] + 30, handle[1])
    text = DragPoints(((handle, target),), size, size).to_json()
    return text, handle, target


def editable_mask(size: int) -> torch.Tensor:
    """(1, H, W): the editable region around the pair, so the masked regularizer is exercised too."""
    mask = torch.zeros(1, size, size)
    lo, hi = round(0.15 * size), round(0.75 * size)
    mask[:, lo:hi, lo:hi] = 1.0
    return mask


def run_pipeline(args: argparse.Namespace, sampler: RssSampler, counter: PassCounter) -> tuple[list[Stage], dict]:
    import comfy.sd
    import nodes as comfy_nodes

    import make_test_checkpoint
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise
    from dragkit.nodes.points_nodes import DragPoints

    stages: list[Stage] = []
    info: dict = {}
    path = comfy_client.CACHE / CHECKPOINTS[args.kind]
    existed = path.exists()
    with measure("make checkpoint" if not existed else "reuse checkpoint", stages, sampler, None):
        make_test_checkpoint.make_checkpoint(path, args.kind)
    info["checkpoint"] = {"path": str(path.relative_to(REPO)), "kind": args.kind, "generated": not existed,
                          "size_mib": round(path.stat().st_size / MiB)}

    with torch.inference_mode(), measure("load checkpoint", stages, sampler, counter):
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    unet = model.model.diffusion_model
    info["dtypes"] = {
        "unet": str(model.model.get_dtype()).removeprefix("torch."),
        "unet_manual_cast": str(model.model.manual_cast_dtype).removeprefix("torch."),
        "vae": str(vae.vae_dtype).removeprefix("torch."),
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "unet_weights_require_grad_after_load": sorted({bool(p.requires_grad) for p in unet.parameters()}),
    }
    log.info("loaded: %s", info["dtypes"])

    image = comfy_client.sample_image(args.size)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]
    text, handle, target = points_json(args.size)
    info["points"] = {"handle": handle, "target": target, "stop_distance": args.stop_distance}

    with torch.inference_mode():
        with measure("VAE encode", stages, sampler, counter):
            (latent,) = comfy_nodes.VAEEncode().encode(vae, pixels)
        with measure("CLIP text encode", stages, sampler, counter):
            (conditioning,) = comfy_nodes.CLIPTextEncode().encode(clip, PROMPT)
        with measure("DragPoints", stages, sampler, counter):
            drag_points, _ = DragPoints.execute(pixels, text, editable_mask(args.size)).result
        with measure("DDIMInvert (50 steps, 0.7)", stages, sampler, counter):
            state, _ = DDIMInvert.execute(model, latent, conditioning, 50, 0.7, False)
        if args.methods_only:
            info["_run"] = (model, state, drag_points)
            return stages, info
        with measure(f"MotionSupervisionOptimize ({args.iterations} it.)", stages, sampler, counter) as stage:
            edited, tracked, _ = MotionSupervisionOptimize.execute(
                model, state, drag_points, max_iterations=args.iterations, lr=0.01, lam=0.1, r_m=1, r_p=3,
                stop_distance=args.stop_distance, feature_blocks="2", seed=42, precision="auto",
            ).result
            stage.iterations = len(tracked.trajectories[0])
        with measure("ReferenceLatentDenoise (control on)", stages, sampler, counter):
            (out,) = ReferenceLatentDenoise.execute(model, edited, True, 0, 10)
        with measure("VAE decode", stages, sampler, counter):
            (decoded,) = comfy_nodes.VAEDecode().decode(vae, out)
    if stages[-3].iterations != args.iterations:
        log.warning("the drag stopped after %s of %d iterations", stages[-3].iterations, args.iterations)
    info["decoded_shape"] = list(decoded.shape)
    info["_run"] = (model, state, drag_points)
    return stages, info


# ---------------------------------------------------------------------------------------------- frozen vs requires-grad


@dataclass
class Variant:
    """One optimization run (its own z_t, Adam state and tracked handles)."""

    name: str
    z: torch.Tensor
    optimizer: torch.optim.Optimizer
    handles: torch.Tensor
    k: int = 0
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_rss_growth_mib: list[float] = field(default_factory=list)
    grads_allocated: int = 0  # UNet weights that had a .grad after the backward (last iteration)
    weight_grads: list[torch.Tensor | None] = field(default_factory=list)  # B: kept between its iterations
    first: dict = field(default_factory=dict)  # memory of the first (untimed) iteration


class SavedTensorBytes:
    """Bytes autograd saves for backward, counted once per storage, weights excluded (already resident)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.seen: set[int] = set()
        self.bytes = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.exclude and key not in self.seen:
            self.seen.add(key)
            self.bytes += storage.nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


@contextlib.contextmanager
def weights_requiring_grad(unet: torch.nn.Module, v: Variant) -> Iterator[list[torch.nn.Parameter]]:
    """The reference's set-up for one iteration: every UNet weight requires grad, ComfyBackbone's freezing
    is bypassed (it freezes what ``unet.parameters()`` reports as requiring grad, so an instance-level
    ``parameters`` reporting nothing leaves the weights as they are), and the weight gradients of earlier
    iterations are there to accumulate into (the reference never zeroes them). Benchmark only: on exit the
    flags are restored and the gradients parked in ``v.weight_grads`` so the other variant runs without them."""
    params = list(unet.parameters())
    flags = [p.requires_grad for p in params]
    grads = v.weight_grads or [None] * len(params)
    for p, g in zip(params, grads):
        p.requires_grad_(True)
        p.grad = g
    unet.parameters = lambda recurse=True: iter(())  # shadows nn.Module.parameters on this instance
    try:
        yield params
    finally:
        del unet.parameters
        v.weight_grads = [p.grad for p in params]
        for p, flag in zip(params, flags):
            p.grad = None
            p.requires_grad_(flag)


def compare_grad_modes(model, state, drag_points, pairs: int, stop_distance: float, sampler: RssSampler) -> dict:
    """Time one optimization iteration with frozen weights (A) vs weights requiring grad (B), interleaved.

    A is DragKit's own drag loop (``optimize_latent`` → ``drag_loop.drag_loop``), one iteration per call, so any
    change to the loop reaches this figure; its timing includes the loop's few-tensor set-up. B is the reference's
    iteration, emulated on the same backbone (it is not DragKit's code: every weight requires grad and
    ``loss.backward()`` builds their gradients)."""
    from dragkit.drag_core.backbone import UNetRequest
    from dragkit.drag_core.drag_loop import DragConfig
    from dragkit.drag_core.dragdiffusion import optimize_latent
    from dragkit.drag_core.mask import editable_mask_for_latent
    from dragkit.drag_core.motion import interpolate_features, motion_supervision_loss, point_tracking
    from dragkit.drag_core.points import grid_points
    from dragkit.drag_core.schedule import ddim_step
    from dragkit.nodes.comfy_unet import ComfyBackbone, image_size

    backbone = ComfyBackbone(model, "bench", feature_blocks=(2,))
    with torch.inference_mode():  # as the node does
        backbone.load()
    unet = backbone.patcher.model.diffusion_model
    latent_h, latent_w = state.source.shape[-2:]
    image_h, image_w = image_size(state.source)
    grid_hw = (image_h // 2, image_w // 2)
    handles0, targets = grid_points(drag_points.points, image_h, image_w)
    mask = editable_mask_for_latent(drag_points.mask(), image_h, image_w, latent_h, latent_w)
    schedule, t = state.schedule, state.timestep
    alpha_t, alpha_prev = schedule.alpha(t), schedule.alpha(schedule.prev_timestep(state.step_index))
    request = UNetRequest(feature_blocks=(2,))

    with torch.inference_mode(False), torch.enable_grad():
        context = state.context.clone()
        source = state.source.detach().float().clone()
        with torch.no_grad():  # F0, ε0 on the unmodified z_t, shared by both variants
            out0 = backbone(source, t, context, request)
            F0 = interpolate_features(out0.features, grid_hw)
            z_prev_0 = ddim_step(source, out0.eps, alpha_t, alpha_prev)
        weight_storages = {p.untyped_storage().data_ptr() for p in unet.parameters()}

        def new_variant(name: str) -> Variant:
            z = source.clone().requires_grad_(True)
            return Variant(name, z, torch.optim.Adam([z], lr=0.01), handles0.clone())

        one_iteration = DragConfig(max_iterations=1, stop_distance=stop_distance)

        def dragkit_step(v: Variant) -> None:
            """One iteration of DragKit's own loop: forward, loss, gradient w.r.t. z_t only, Adam step."""
            optimize_latent(backbone, state, handles0, targets, mask, one_iteration, grid_hw=grid_hw)
            v.grads_allocated = sum(p.grad is not None for p in unet.parameters())

        def reference_step(v: Variant) -> None:
            """The reference's iteration: forward, tracking, loss, backward through every weight, Adam step."""
            with weights_requiring_grad(unet, v) as params:
                out = backbone(v.z, t, context, request)
                F = interpolate_features(out.features, grid_hw)
                if v.k > 0:
                    v.handles = point_tracking(F0, F.detach(), handles0, v.handles, 3)
                loss = motion_supervision_loss(F, v.handles, targets, 1, stop_distance)
                if mask is not None:
                    z_prev = ddim_step(v.z, out.eps, alpha_t, alpha_prev)
                    loss = loss + 0.1 * ((z_prev - z_prev_0).abs() * (1.0 - mask)).sum()
                loss.backward()  # z_t.grad, and every UNet weight's .grad (accumulated)
                v.grads_allocated = sum(p.grad is not None for p in params)
                v.optimizer.step()
                v.optimizer.zero_grad(set_to_none=True)

        def iteration(v: Variant, saved: SavedTensorBytes | None = None) -> None:
            hooks = (torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack) if saved
                     else contextlib.nullcontext())
            start = sampler.mark()
            t0, c0 = time.perf_counter(), time.process_time()
            with hooks:
                (reference_step if v.name == "B" else dragkit_step)(v)
            v.seconds.append(time.perf_counter() - t0)
            v.cpu_seconds.append(time.process_time() - c0)
            v.peak_rss_growth_mib.append((sampler.peak() - start) / MiB)
            v.k += 1
            log.info("%s iteration %d: %.2f s (CPU %.2f s), peak RSS +%.0f MiB, %d weight grads",
                     v.name, v.k, v.seconds[-1], v.cpu_seconds[-1], v.peak_rss_growth_mib[-1], v.grads_allocated)

        a, b = new_variant("A"), new_variant("B")
        log.info("first iteration of each (untimed; memory: heap trimmed before, saved tensors counted)")
        for v in (a, b):
            malloc_trim()
            saved = SavedTensorBytes(weight_storages)
            iteration(v, saved)
            v.first = {
                "seconds": v.seconds.pop(),
                "cpu_seconds": v.cpu_seconds.pop(),
                "peak_rss_growth_mib": v.peak_rss_growth_mib.pop(),
                "saved_for_backward_mib": saved.bytes / MiB,
                "weight_grad_mib": sum(g.nbytes for g in v.weight_grads if g is not None) / MiB,
            }
        for _ in range(pairs):
            iteration(a)
            iteration(b)
        b.weight_grads = []

    n_tensors = sum(1 for _ in unet.parameters())
    if a.grads_allocated != 0 or b.grads_allocated != n_tensors:
        raise RuntimeError(f"variant check failed: A allocated {a.grads_allocated} weight grads, "
                           f"B {b.grads_allocated} of {n_tensors}")
    ratios = [sb / sa for sa, sb in zip(a.seconds, b.seconds)]
    # A pair is "clean" when both iterations kept every torch thread busy (CPU time ≈ threads × wall):
    # then no other process took a core from it, and its ratio is the least disturbed.
    busy = 0.9 * torch.get_num_threads()
    clean = [i for i in range(pairs) if min(a.cpu_seconds[i] / a.seconds[i], b.cpu_seconds[i] / b.seconds[i]) >= busy]
    result = {
        "iterations_each": pairs,
        "order": "one untimed first iteration of each, then A B A B …",
        "unet_weight_tensors": n_tensors,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "A_frozen": summarize(a),
        "B_requires_grad": summarize(b),
        "ratio_of_medians_B_over_A": statistics.median(b.seconds) / statistics.median(a.seconds),
        "cpu_ratio_of_medians_B_over_A": statistics.median(b.cpu_seconds) / statistics.median(a.cpu_seconds),
        "median_pairwise_ratio_B_over_A": statistics.median(ratios),
        "pairwise_ratios": [round(r, 3) for r in ratios],
        "clean_pair_rule": f"both iterations with CPU s / wall s ≥ {busy:.1f} (0.9 × torch threads)",
        "clean_pairs": clean,
        "clean_median_s_A": statistics.median(a.seconds[i] for i in clean) if clean else None,
        "clean_median_s_B": statistics.median(b.seconds[i] for i in clean) if clean else None,
        "clean_median_pairwise_ratio_B_over_A": statistics.median(ratios[i] for i in clean) if clean else None,
    }
    log.info("frozen vs requires-grad: %s", {k: v for k, v in result.items() if not isinstance(v, dict)})
    return result


def compare_methods(model, state, drag_points, repeats: int, iterations: int, stop_distance: float) -> dict:
    """Seconds per optimization iteration, DragDiffusion (Adam on z_t) vs DragNoise (Adam on the bottleneck h,
    z_t fixed), with the real core loops (optimize_latent / optimize_bottleneck) as the nodes call them.
    Interleaved: repeats × (DragDiffusion run, DragNoise run) of ``iterations`` each; an iteration's time is
    the interval between the loop's progress callbacks. Iteration 0 is reported apart (it also computes F0,
    and for DragNoise follows the no-grad capture pass of h)."""
    from dragkit.drag_core.drag_loop import DragConfig
    from dragkit.drag_core.dragdiffusion import optimize_latent
    from dragkit.drag_core.dragnoise import optimize_bottleneck
    from dragkit.drag_core.mask import editable_mask_for_latent
    from dragkit.drag_core.points import grid_points
    from dragkit.nodes.comfy_unet import ComfyBackbone, image_size

    latent_h, latent_w = state.source.shape[-2:]
    image_h, image_w = image_size(state.source)
    handles, targets = grid_points(drag_points.points, image_h, image_w)
    mask = editable_mask_for_latent(drag_points.mask(), image_h, image_w, latent_h, latent_w)
    config = DragConfig(max_iterations=iterations, stop_distance=stop_distance)
    methods = {
        "DragDiffusion": (optimize_latent, ComfyBackbone(model, "bench", feature_blocks=(2,))),
        "DragNoise": (optimize_bottleneck, ComfyBackbone(model, "bench", feature_blocks=(2,), bottleneck=True)),
    }
    times = {name: {"first": [], "seconds": [], "cpu_seconds": [], "run_medians": []} for name in methods}
    for r in range(repeats):
        for name, (optimize, backbone) in methods.items():
            with torch.inference_mode():  # as the nodes run
                backbone.load()
            marks = [(time.perf_counter(), time.process_time())]

            def mark(done: int, total: int, marks: list = marks) -> None:
                marks.append((time.perf_counter(), time.process_time()))

            optimize(backbone, state, handles, targets, mask, config, grid_hw=(image_h // 2, image_w // 2),
                     callback=mark)
            walls = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
            cpus = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
            if len(walls) != iterations:
                raise RuntimeError(f"{name} stopped after {len(walls)} of {iterations} iterations")
            t = times[name]
            t["first"].append(walls[0])
            t["seconds"] += walls[1:]
            t["cpu_seconds"] += cpus[1:]
            t["run_medians"].append(statistics.median(walls[1:]))
            log.info("repeat %d %s: median %.2f s / iteration (first %.2f s)", r + 1, name, t["run_medians"][-1], walls[0])
    dd, dn = times["DragDiffusion"], times["DragNoise"]
    pairwise = [n / d for d, n in zip(dd["run_medians"], dn["run_medians"])]
    return {
        "repeats": repeats,
        "iterations_per_run": iterations,
        "order": "DragDiffusion run, DragNoise run, repeated; iteration 0 of each run reported apart",
        **{name: {"median_s_per_iteration": statistics.median(t["seconds"]),
                  "median_cpu_s_per_iteration": statistics.median(t["cpu_seconds"]),
                  "min_s": min(t["seconds"]), "max_s": max(t["seconds"]),
                  "median_first_iteration_s": statistics.median(t["first"]),
                  "run_medians": [round(x, 3) for x in t["run_medians"]]} for name, t in times.items()},
        "ratio_of_medians_DragNoise_over_DragDiffusion": statistics.median(dn["seconds"]) / statistics.median(dd["seconds"]),
        "pairwise_ratios": [round(x, 3) for x in pairwise],
    }


def summarize(v: Variant) -> dict:
    return {
        "median_s_per_iteration": statistics.median(v.seconds),
        "min_s": min(v.seconds),
        "max_s": max(v.seconds),
        "seconds": [round(s, 3) for s in v.seconds],
        "median_cpu_s_per_iteration": statistics.median(v.cpu_seconds),
        "cpu_seconds": [round(s, 3) for s in v.cpu_seconds],
        "median_peak_rss_growth_mib": statistics.median(v.peak_rss_growth_mib),
        "max_peak_rss_growth_mib": max(v.peak_rss_growth_mib),
        "weight_grads_allocated": v.grads_allocated,
        "first_iteration": v.first,
    }


# ---------------------------------------------------------------------------------------------- report


def environment() -> dict:
    import comfyui_version

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "comfyui": comfyui_version.__version__,
        "memory_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


def grad_modes_markdown(c: dict) -> list[str]:
    lines: list[str] = []
    a, b = c["A_frozen"], c["B_requires_grad"]
    rows = (("A: DragKit (weights frozen, autograd.grad w.r.t. z_t)", a),
            ("B: reference (weights require grad, loss.backward())", b))
    lines += [
        "",
        f"Optimization iteration, frozen vs requires-grad weights ({c['iterations_each']} timed each, {c['order']}):",
        "",
        "| variant | median s / iteration | min–max s | median CPU s / iteration | weight .grad tensors "
        "| saved for backward MiB | weight .grad MiB (kept) | first-iteration peak RSS growth MiB "
        "| median peak RSS growth MiB (timed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, v in rows:
        first = v["first_iteration"]
        lines.append(
            f"| {label} | {v['median_s_per_iteration']:.2f} | {v['min_s']:.2f}–{v['max_s']:.2f} | "
            f"{v['median_cpu_s_per_iteration']:.2f} | {v['weight_grads_allocated']} | {first['saved_for_backward_mib']:.0f} | {first['weight_grad_mib']:.0f} | "
            f"{first['peak_rss_growth_mib']:.0f} | {v['median_peak_rss_growth_mib']:.0f} |"
        )
    lines += [
        "",
        f"B / A: ratio of medians {c['ratio_of_medians_B_over_A']:.2f}, median of pairwise ratios "
        f"{c['median_pairwise_ratio_B_over_A']:.2f} (pairs: {', '.join(f'{r:.2f}' for r in c['pairwise_ratios'])}); "
        f"CPU-time ratio of medians {c['cpu_ratio_of_medians_B_over_A']:.2f}",
    ]
    if c["clean_pairs"]:
        lines.append(
            f"Clean pairs ({c['clean_pair_rule']}): {len(c['clean_pairs'])} of {c['iterations_each']}, median A "
            f"{c['clean_median_s_A']:.2f} s, B {c['clean_median_s_B']:.2f} s, median ratio "
            f"{c['clean_median_pairwise_ratio_B_over_A']:.2f}"
        )
    else:
        lines.append(f"Clean pairs ({c['clean_pair_rule']}): none; every pair shared the CPU with another process")
    return lines


def markdown(results: dict) -> str:
    def f(x: float | None, digits: int = 2) -> str:
        return "–" if x is None else f"{x:.{digits}f}"

    lines = [
        "| stage | wall s | CPU s | UNet passes (batch items) | s / UNet pass | s / iteration | peak RSS growth MiB "
        "| load avg before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["stages"]:
        passes = f"{s['unet_passes']} ({s['unet_batch_items']})" if s["unet_passes"] else "0"
        lines.append(
            f"| {s['name']} | {f(s['seconds'])} | {f(s['cpu_seconds'])} | {passes} | {f(s['seconds_per_pass'])} | "
            f"{f(s['seconds_per_iteration'])} | {s['peak_rss_growth_mib']:.0f} | "
            f"{s['load_avg_1min'][0]:.1f} → {s['load_avg_1min'][1]:.1f} |"
        )
    if results.get("grad_modes"):
        lines += grad_modes_markdown(results["grad_modes"])
    if "methods" in results:
        m = results["methods"]
        lines += [
            "",
            f"Optimization iteration, DragDiffusion vs DragNoise ({m['repeats']} interleaved runs of "
            f"{m['iterations_per_run']} iterations each; {m['order']}):",
            "",
            "| method | median s / iteration | min–max s | median CPU s / iteration | median first iteration s "
            "| per-run medians s |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name in ("DragDiffusion", "DragNoise"):
            v = m[name]
            lines.append(
                f"| {name} | {v['median_s_per_iteration']:.2f} | {v['min_s']:.2f}–{v['max_s']:.2f} | "
                f"{v['median_cpu_s_per_iteration']:.2f} | {v['median_first_iteration_s']:.2f} | "
                f"{', '.join(f'{x:.2f}' for x in v['run_medians'])} |"
            )
        lines += ["", f"DragNoise / DragDiffusion: ratio of medians {m['ratio_of_medians_DragNoise_over_DragDiffusion']:.2f}"
                  f" (per repeat: {', '.join(f'{r:.2f}' for r in m['pairwise_ratios'])})"]
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="test image side in pixels (multiple of 8)")
    parser.add_argument("--iterations", type=int, default=8, help="drag iterations (node stage and each variant)")
    parser.add_argument("--pairs", type=int, help="timed A/B pairs of the frozen-vs-requires-grad comparison "
                        "(default: --iterations); more pairs help on a busy machine")
    parser.add_argument("--stop-distance", type=float, default=0.1,
                        help="grid cells; the minimum, so the drag never stops early")
    parser.add_argument("--kind", choices=sorted(CHECKPOINTS), default="full",
                        help="checkpoint: full-size SD1.5 (default) or the small 'mini' one for a quick smoke run")
    parser.add_argument("--method-repeats", type=int, default=3,
                        help="interleaved DragDiffusion/DragNoise runs for the per-iteration comparison (0 = skip)")
    parser.add_argument("--method-iterations", type=int, default=6, help="iterations per run of that comparison")
    parser.add_argument("--methods-only", action="store_true",
                        help="stop the pipeline after DDIMInvert and run only the DragDiffusion/DragNoise comparison")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.size % 8 or args.size < 64:
        parser.error("--size must be a multiple of 8, at least 64")
    if args.iterations < 1 or (args.pairs is not None and args.pairs < 1):
        parser.error("--iterations and --pairs must be ≥ 1")

    comfyenv.setup()  # in-process ComfyUI on the CPU, this repo importable as `dragkit`
    import folder_paths

    from dragkit.nodes.comfy_unet import ComfyBackbone

    temp = tempfile.TemporaryDirectory(prefix="dragkit-bench-")
    folder_paths.set_temp_directory(temp.name)  # node previews go here, not into the repo
    env = environment()
    log.info("environment: %s", env)
    sampler = RssSampler(0.02)
    counter = PassCounter(ComfyBackbone)
    try:
        stages, info = run_pipeline(args, sampler, counter)
        model, state, drag_points = info.pop("_run")
        pairs = args.pairs or args.iterations
        grad_modes = (None if args.methods_only else
                      compare_grad_modes(model, state, drag_points, pairs, args.stop_distance, sampler))
        methods = (compare_methods(model, state, drag_points, args.method_repeats, args.method_iterations,
                                   args.stop_distance) if args.method_repeats > 0 else None)
    finally:
        counter.remove()
        sampler.stop()
        temp.cleanup()

    results = {
        "command": "bench/speed.py " + " ".join(sys.argv[1:]),
        "environment": env,
        "memory_method": MEMORY_METHOD,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **info,
        "stages": [{**asdict(s), "seconds_per_pass": s.seconds_per_pass,
                    "seconds_per_iteration": s.seconds_per_iteration} for s in stages],
        **({"grad_modes": grad_modes} if grad_modes else {}),
        **({"methods": methods} if methods else {}),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    table = markdown(results)
    print()
    print(f"{env['date']}, {env['nproc']} CPUs, torch {env['torch']} ({env['torch_threads']} threads), "
          f"ComfyUI {env['comfyui']}; UNet {info['dtypes']['unet']}, {args.size} px, {args.kind} checkpoint")
    print(f"Memory: {results['memory_method']}; process ru_maxrss {results['ru_maxrss_mib']:.0f} MiB")
    print()
    print(table)
    if args.json:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
