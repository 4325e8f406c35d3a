"""GoodDrag (Zhang et al., ICLR 2025): alternating drag and denoising (AlDD) with information-preserving
motion supervision, on DragKit's shared drag pieces and denoiser.

SPEC-style section (written from the paper and its released code, repository zewei-Zhang/GoodDrag:
``pipeline.py``, ``bench_gooddrag.py``, ``gooddrag_ui.py``; the defaults are those of ``bench_gooddrag.py``,
the script behind the paper's DragBench figures):

G.1 Pipeline. Identity LoRA (DragDiffusion's, §1.1: rank 16, lr 5e-4, batch 4; **70** steps) → DDIM inversion
    at strength **0.75** of 50 steps (38 steps, from t = 741) → alternating drag and denoising → decode.
G.2 Reference trajectory. Denoise the unedited z_t for ``drag_end_step`` + 1 steps (no control), keeping at
    each step i its features F0_i (decoder block up_blocks[2], upsampled to the ½-resolution grid, SPEC §0.3)
    and its next latent z⁰_{i+1}.
G.3 AlDD. For each of the first ``drag_end_step`` = **7** denoising steps i: optimize the edited latent z_i
    (fresh Adam, lr **0.02**), then take one DDIM step of the batch [source, edited] *without* mutual
    self-attention. From the first step without a drag to the end: mutual self-attention from layer **10**
    on every step (MasaCtrl start_step 0, as DragDiffusion's §1.4).
G.4 The drag at step i. Point tracking (SPEC §0.5, L1, window half-size r_2 = **12**) against F0_i at the
    *initial* handles:
    - once on the first forward of the step;
    - then after every ``drag_per_track`` = **3** motion-supervision steps (or as soon as the drag loss is
      ≤ ``drag_loss_threshold``·(2r_1)², threshold **0** = never), on the features of the last forward — the
      ones that step's gradient came from; ``track_per_step`` = **10** such trackings end the step's drag
      (so at most 30 Adam steps per denoising step, 210 in all).
    The handles carry over from step to step.
G.5 Loss (information-preserving motion supervision). For every pair farther than 2 grid cells from its
    target: (2r_1)²·mean|F0_i[Ω(h_i⁰)] − F[Ω(h_i) + d_i]|, r_1 = **4**, F bilinear at the shifted patch,
    d_i = unit(t_i − h_i)·min(β, ‖t_i − h_i‖), β = **4** grid cells; plus λ·Σ|DDIM(z_i, ε) − z⁰_{i+1}|·(1 − M),
    λ = **0.1** (the UI's default is 0.2), against the *unedited trajectory's* next latent.
G.6 Stop. The drag phase ends for good when every handle is within 2 grid cells of its target (checked
    after the first tracking of a step and after every tracking but a step's last), or when
    ``max_track_no_change`` = **5** trackings in a row (counted across steps) moved no handle (UI: 10).
G.7 Generated images: as DragDiffusion (§1.5), every forward classifier-free guided like the state.

Where DragKit differs from the release, and why: patch positions outside the grid are dropped (the release
slices past the edge and fails); no mask = no λ term, as DragDiffusion here (the release regularizes
everything then); the source branch of a drag step is the reference trajectory's z⁰_{i+1} (the release
recomputes it in the batch: the same values); fp32 unless the precision option asks for autocast; a drag
phase with no iterations (``drag_end_step`` or ``track_per_step`` 0) is skipped entirely, so the method is
then exactly reference-controlled denoising (§1.4).

DragKit option (off by default): ``control_during_drag`` puts the reference control on the drag phase's
denoising steps too (measured on ToyBench, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from .backbone import Backbone, MutualSelfAttention, StepCallback, UNetRequest, no_callback
from .drag_loop import (
    AdamStep,
    DragProblem,
    DragResult,
    IterationCallback,
    UNetStep,
    drag_context,
    drag_problem,
    edited_prompt_on,
    record_iteration,
)
from .guidance import guided
from .inversion import ddim_denoise
from .motion import all_reached, distances, interpolate_features, motion_supervision_loss, point_tracking
from .precision import PRECISIONS
from .reference import denoise_branches
from .schedule import ddim_step
from .state import DiffusionState

log = logging.getLogger(__name__)

INVERSION_STRENGTH = 0.75  # G.1: DDIMInvert's strength in GoodDrag's graphs
LORA_STEPS = 70  # G.1: IdentityLoRATrain's steps in GoodDrag's graphs


@dataclass(frozen=True)
class GoodDragConfig:
    """Defaults are the release's benchmark settings (module docstring, G.1–G.6)."""

    drag_end_step: int = 7  # denoising steps (from the inverted one) that carry a drag
    track_per_step: int = 10  # point trackings per drag step
    drag_per_track: int = 3  # motion-supervision (Adam) steps between trackings
    drag_loss_threshold: float = 0.0  # also track once the drag loss ≤ this·(2r_1)²
    max_track_no_change: int = 5  # early stop after this many trackings in a row that moved no handle
    r_m: int = 4  # r_1: motion-supervision patch half-size (grid cells)
    r_p: int = 12  # r_2: point-tracking window half-size
    beta: float = 4.0  # β: the supervision's shift along the drag, min(β, distance) grid cells
    lam: float = 0.1
    lr: float = 0.02
    feature_blocks: tuple[int, ...] = (2,)
    stop_distance: float = 2.0
    seed: int = 42
    precision: str = "fp32"
    # DragKit option: reference control (the ``mutual`` given to the method) also on the denoising steps of the
    # drag phase; the release leaves them uncontrolled, so that the denoiser repairs the drag freely.
    control_during_drag: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.feature_blocks:
            raise ValueError("feature_blocks must name at least one decoder block")
        if min(self.drag_end_step, self.track_per_step, self.max_track_no_change, self.r_m, self.r_p) < 0:
            raise ValueError("drag_end_step, track_per_step, max_track_no_change, r_m and r_p must be ≥ 0")
        if self.drag_per_track < 1:
            raise ValueError(f"drag_per_track must be ≥ 1, got {self.drag_per_track}")
        if self.lam < 0 or self.lr <= 0 or self.beta <= 0 or self.stop_distance <= 0:
            raise ValueError(f"need lam ≥ 0, lr > 0, beta > 0, stop_distance > 0; got {self.lam}, {self.lr}, "
                             f"{self.beta}, {self.stop_distance}")

    @property
    def drags(self) -> bool:
        """False when the settings leave no drag iteration (the method is then plain controlled denoising)."""
        return self.drag_end_step > 0 and self.track_per_step > 0

    @property
    def max_iterations(self) -> int:
        """The most Adam steps the drag phase can take."""
        return self.drag_end_step * self.track_per_step * self.drag_per_track if self.drags else 0


@dataclass
class GoodDragResult(DragResult):
    """DragResult over the whole drag phase (``latent`` is the edited branch, denoised to the end)."""

    drag_steps: int = 0  # denoising steps that carried a drag
    trackings: int = 0  # point trackings after motion supervision (the first tracking of a step not counted)
    early_stopped: bool = False  # ended by max_track_no_change
    state: DiffusionState | None = None  # the final (clean) state: source and edited branch


@dataclass
class _Tracks:
    """What carries over from one drag step to the next (G.4, G.6)."""

    handles: torch.Tensor
    no_change: int = 0
    dragging: bool = True


def alternating_drag_denoise(
    backbone: Backbone,
    state: DiffusionState,
    handles: torch.Tensor,
    targets: torch.Tensor,
    mask_latent: torch.Tensor | None,
    config: GoodDragConfig = GoodDragConfig(),
    callback: StepCallback = no_callback,
    on_iteration: IterationCallback | None = None,
    grid_hw: tuple[int, int] | None = None,
    mutual: MutualSelfAttention | None = None,
) -> GoodDragResult:
    """GoodDrag from an inverted (or sampled) state to the end of its schedule (G.3); arguments as
    :func:`~drag_core.drag_loop.run_drag`. ``mutual``: the control used once the drag phase is over (pairs
    ``reference.EDITED_FROM_SOURCE``; None = none). ``callback(done, total)`` counts Adam steps and then
    denoising steps (progress, interrupts; may raise); ``on_iteration(k, handles, distance)`` runs after every
    forward of the drag phase."""
    schedule, start = state.schedule, state.step_index
    drag_end = min(start + config.drag_end_step, schedule.num_steps) if config.drags else start
    total = config.max_iterations + schedule.num_steps - start
    with drag_context(backbone.device, config.seed):
        problem = drag_problem(state, handles, targets, mask_latent, grid_hw, backbone.device)
        tracks = _Tracks(problem.handles.clone())
        result = GoodDragResult(latent=state.edited_latent, handles=problem.handles.clone())
        per_step = config.track_per_step * config.drag_per_track + 1  # progress units: iterations, the DDIM step
        for i in range(start, drag_end):
            if not tracks.dragging:
                break
            base = (i - start) * per_step
            state = _drag_and_denoise(backbone, state, problem, tracks, config, result, on_iteration,
                                      lambda n, base=base: callback(base + n, total),
                                      mutual if config.control_during_drag else None)
            callback(base + per_step, total)
    # G.3: the rest with reference control, from the first step that carried no drag.
    done = config.max_iterations + state.step_index - start
    state = denoise_branches(backbone, state, schedule.num_steps, mutual, state.step_index,
                             lambda k, _n: callback(done + k, total))
    result.state, result.latent = state, state.edited_latent
    result.handles = tracks.handles.clone()
    result.final_distance = float(distances(result.handles, problem.targets).mean())
    result.reached = all_reached(result.handles, problem.targets, config.stop_distance)
    log.info("GoodDrag: %d drag steps, %d iterations, %d trackings, mean distance %.2f grid cells%s",
             result.drag_steps, result.iterations, result.trackings, result.final_distance,
             " (early stop)" if result.early_stopped else "")
    return result


def _drag_and_denoise(
    backbone: Backbone, state: DiffusionState, problem: DragProblem, tracks: _Tracks, config: GoodDragConfig,
    result: GoodDragResult, on_iteration: IterationCallback | None, progress, mutual: MutualSelfAttention | None,
) -> DiffusionState:
    """One AlDD step i (G.3): the drag on z_i, then the DDIM step of both branches (without control unless
    ``mutual`` is given: the control_during_drag option)."""
    schedule, i = state.schedule, state.step_index
    t = schedule.timesteps[i]
    alpha_t, alpha_prev = schedule.alpha(t), schedule.alpha(schedule.prev_timestep(i))
    blocks = tuple(config.feature_blocks)
    # G.2: the unedited trajectory at step i (the source branch): F0_i and z⁰_{i+1}.
    with torch.no_grad():
        source = state.source.to(backbone.device, torch.float32).clone()
        out = guided(backbone, source, t, state.source_prompt, UNetRequest(feature_blocks=blocks))
        F0 = interpolate_features(out.features, problem.grid_hw)
        z_prev_0 = ddim_step(source, out.eps.float(), alpha_t, alpha_prev)
    result.unet_passes += 1
    step = UNetStep(backbone, t, edited_prompt_on(state, backbone.device), blocks)
    step_problem = replace(problem, alpha_t=alpha_t, alpha_prev=alpha_prev)
    z = _drag(step, state.edited_latent, F0, z_prev_0, step_problem, tracks, config, result, on_iteration, progress)
    result.drag_steps += 1
    if mutual is not None:
        result.unet_passes += 1
        return denoise_branches(backbone, state.with_edit(z), i + 1, mutual, i)
    with torch.no_grad():
        edited = ddim_denoise(backbone, z.to(backbone.device), state.edited_prompt, schedule, range(i, i + 1))
    result.unet_passes += 1
    return replace(state, step_index=i + 1, source=z_prev_0.cpu(), edited=edited.cpu())


def _drag(
    step: UNetStep, z_i: torch.Tensor, F0: torch.Tensor, z_prev_0: torch.Tensor, problem: DragProblem,
    tracks: _Tracks, config: GoodDragConfig, result: GoodDragResult, on_iteration: IterationCallback | None,
    progress,
) -> torch.Tensor:
    """G.4–G.6 at one denoising step: returns the dragged z_i (CPU, float32); updates ``tracks``."""
    x = z_i.detach().to(device=problem.device, dtype=torch.float32).clone().requires_grad_(True)
    adam = AdamStep(x, config.lr, config.precision, problem.device)
    threshold = config.drag_loss_threshold * (2 * config.r_m) ** 2
    trackings, since_tracking, iterations, first = 0, 0, 0, True
    while trackings < config.track_per_step:
        with adam.autocast():
            out = step(x)
        F, eps = interpolate_features(out.features, problem.grid_hw), out.eps.float()
        result.unet_passes, result.iterations, iterations = result.unet_passes + 1, result.iterations + 1, iterations + 1
        finite = bool(torch.isfinite(F).all()) and bool(torch.isfinite(eps).all())
        if first and finite:  # G.4: track once after the denoising step
            tracks.handles = _track(F0, F, problem, tracks, config)
        record_iteration(result, tracks.handles, problem.targets, result.iterations - 1, on_iteration)
        if first and _stop(tracks, problem, config, result):
            break
        first, drag_loss, loss = False, None, None
        if finite:
            drag_loss = motion_supervision_loss(F, tracks.handles, problem.targets, config.r_m, config.stop_distance,
                                                (F0, problem.handles), config.beta, float((2 * config.r_m) ** 2))
            loss = drag_loss
            if problem.mask_latent is not None:
                z_prev = ddim_step(x, eps, problem.alpha_t, problem.alpha_prev)
                loss = loss + config.lam * ((z_prev - z_prev_0).abs() * (1.0 - problem.mask_latent)).sum()
        if adam.step(loss, result.iterations):
            result.steps += 1
        else:
            result.skipped_steps.append(result.iterations - 1)
            log.warning("GoodDrag: non-finite features, loss or gradient; step skipped%s", adam.note())
        progress(iterations)
        since_tracking += 1
        if since_tracking == config.drag_per_track or (drag_loss is not None and float(drag_loss.detach()) <= threshold):
            # G.4: track on this forward's features (the ones this step's gradient came from).
            trackings, since_tracking = trackings + 1, 0
            result.trackings += 1
            before = tracks.handles
            if finite:
                tracks.handles = _track(F0, F, problem, tracks, config)
            tracks.no_change = tracks.no_change + 1 if torch.equal(before, tracks.handles) else 0
            if _stop(tracks, problem, config, result, check_reached=trackings < config.track_per_step):
                break
    return x.detach().cpu()


def _track(F0: torch.Tensor, F: torch.Tensor, problem: DragProblem, tracks: _Tracks, config: GoodDragConfig):
    return point_tracking(F0, F.detach(), problem.handles, tracks.handles, config.r_p)


def _stop(tracks: _Tracks, problem: DragProblem, config: GoodDragConfig, result: GoodDragResult,
          check_reached: bool = True) -> bool:
    """G.6: end the drag phase for good? (A step's last tracking is checked for arrival by the next step's
    first one, as in the release.)"""
    if check_reached and all_reached(tracks.handles, problem.targets, config.stop_distance):
        log.info("GoodDrag: all handles reached their targets")
        tracks.dragging = False
    elif tracks.no_change >= config.max_track_no_change:
        log.info("GoodDrag: early stop, %d trackings in a row moved no handle", tracks.no_change)
        tracks.dragging, result.early_stopped = False, True
    return not tracks.dragging
