"""The drag loop (SPEC §1.3): motion supervision, point tracking, the masked regularizer, the stop rule
and Adam, over whatever a method optimizes.

Reads next to SPEC §1.3. :func:`drag_loop` is the loop itself, one numbered step per line of the SPEC;
:func:`run_drag` prepares it for a state (device, autograd inside ComfyUI's inference mode, seed, the
prompt and guidance of the dragged branch). A method supplies a :class:`DragVariable`: DragDiffusion
optimizes z_t (``dragdiffusion.py``), DragNoise the UNet bottleneck with z_t fixed (``dragnoise.py``). The
loop works on a state at any step of a schedule: an alternating drag/denoise schedule calls it at each.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from .backbone import Backbone, StepCallback, UNetOutput, UNetRequest, no_callback
from .guidance import Prompt, guided
from .motion import all_reached, distances, interpolate_features, motion_supervision_loss, point_tracking
from .precision import PRECISIONS, LossScaler, autocast_for
from .schedule import ddim_step
from .state import DiffusionState

log = logging.getLogger(__name__)

# (iteration k, handles after tracking in grid (row, col), mean handle→target distance in grid cells)
IterationCallback = Callable[[int, torch.Tensor, float], None]

MOTION_ANCHORS = ("current", "initial")


@dataclass(frozen=True)
class DragConfig:
    """Defaults are the reference's (SPEC §1.6)."""

    feature_blocks: tuple[int, ...] = (2,)  # decoder blocks (diffusers up_blocks index) supervising the drag
    r_m: int = 1  # motion-supervision patch half-size
    r_p: int = 3  # point-tracking window half-size
    lam: float = 0.1  # weight λ of the masked regularizer
    lr: float = 0.01  # Adam learning rate on the optimized tensor
    max_iterations: int = 80  # the reference's n_pix_step
    stop_distance: float = 2.0  # a pair has reached its target when ‖h − t‖ < this (grid cells)
    seed: int = 42
    # "fp32", or autocast "fp16" (with dynamic loss scaling, the reference's CUDA default) or "bf16".
    precision: str = "fp32"
    # DragNoise's switch (read by dragnoise.py only, never by the loop): the released DragNoise code adds the
    # λ term even without a mask (everything is regularized); DragDiffusion, and the default, skip it (SPEC §2).
    mask_term_without_mask: bool = False
    # What motion supervision pulls to the shifted patch: "current" = sg(F) around the tracked handle (the
    # reference), "initial" = F0 around the initial handle (information-preserving; DragKit option).
    motion_anchor: str = "current"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.feature_blocks:
            raise ValueError("feature_blocks must name at least one decoder block")
        if self.r_m < 0 or self.r_p < 0:
            raise ValueError(f"r_m and r_p must be ≥ 0, got {self.r_m}, {self.r_p}")
        if self.lam < 0 or self.lr <= 0:
            raise ValueError(f"lam must be ≥ 0 and lr > 0, got {self.lam}, {self.lr}")
        if self.motion_anchor not in MOTION_ANCHORS:
            raise ValueError(f"motion_anchor must be one of {MOTION_ANCHORS}, got {self.motion_anchor!r}")
        if self.max_iterations < 0 or self.stop_distance <= 0:
            raise ValueError(
                f"max_iterations must be ≥ 0 and stop_distance > 0, got {self.max_iterations}, {self.stop_distance}"
            )


@dataclass
class DragResult:
    latent: torch.Tensor  # the edited z_t, detached, on the CPU, float32 (DragNoise: z_t unchanged)
    handles: torch.Tensor  # final tracked handles, grid (row, col)
    trajectory: list[torch.Tensor] = field(default_factory=list)  # handles at each iteration (after tracking)
    distances: list[float] = field(default_factory=list)  # mean handle→target distance at each iteration
    iterations: int = 0  # loop iterations run (each one UNet forward)
    steps: int = 0  # Adam steps taken
    unet_passes: int = 0
    skipped_steps: list[int] = field(default_factory=list)  # iterations whose step was skipped (non-finite)
    reached: bool = False  # stopped because every handle reached its target
    final_distance: float = math.nan  # mean handle→target distance at the end, grid cells

    def summary(self, pairs, width: int, height: int, final_handles: list) -> dict:
        """The machine-readable summary every front end reports (the nodes' ``ui["drag"]``, the Python API):
        distances in pixels of the edited image (grid cells are 2 px); ``pairs`` (handle, target) and
        ``final_handles`` in pixels of the ``width``×``height`` image the points were placed on."""
        return {
            "iterations": self.iterations, "steps": self.steps, "unet_passes": self.unet_passes,
            "reached": self.reached, "skipped_steps": len(self.skipped_steps),
            "initial_distance_px": 2 * self.distances[0] if self.distances else None,
            "final_distance_px": 2 * self.final_distance,
            "width": width, "height": height,
            "pairs": [{"handle": list(h), "target": list(t)} for h, t in pairs],
            "final_handles": final_handles,
        }


@dataclass(frozen=True)
class UNetStep:
    """The UNet evaluation a drag repeats: at the state's timestep, on the dragged branch's prompt (guided
    when the state is), returning the supervising features and whatever else ``request`` asks for."""

    backbone: Backbone
    timestep: int
    prompt: Prompt
    feature_blocks: tuple[int, ...]

    def __call__(self, z: torch.Tensor, request: UNetRequest = UNetRequest()) -> UNetOutput:
        return guided(self.backbone, z, self.timestep, self.prompt, replace(request, feature_blocks=self.feature_blocks))


@dataclass(frozen=True)
class DragVariable:
    """What a drag optimizes: z_t itself (DragDiffusion) or the bottleneck h with z_t fixed (DragNoise)."""

    initial: torch.Tensor  # the starting value; the loop optimizes a float32 copy of it
    forward: Callable[[torch.Tensor], UNetOutput]  # the UNet evaluation as a function of the variable
    z_t: Callable[[torch.Tensor], torch.Tensor]  # the latent the mask term's DDIM step starts from
    unet_passes: int = 0  # passes spent preparing the variable


@dataclass(frozen=True)
class DragProblem:
    """Everything the loop needs besides the variable, on the backbone's device."""

    handles: torch.Tensor  # (N, 2) initial handles, grid (row, col)
    targets: torch.Tensor  # (N, 2) grid (row, col)
    mask_latent: torch.Tensor | None  # (1, 1, h, w) editable region; None = no λ term
    grid_hw: tuple[int, int]
    alpha_t: float  # ᾱ at the drag's timestep and at the one after it (the mask term's DDIM step)
    alpha_prev: float
    latent: torch.Tensor  # the state's z_t (CPU), reported as the result's latent until a method sets it
    device: torch.device


def drag_loop(
    variable: DragVariable,
    problem: DragProblem,
    config: DragConfig,
    callback: StepCallback = no_callback,
    on_iteration: IterationCallback | None = None,
) -> tuple[DragResult, torch.Tensor]:
    """SPEC §1.3 on ``variable``; returns the result and the optimized tensor (detached, CPU, float32).
    ``callback(k + 1, max_iterations)`` after every iteration (progress, interrupts; may raise)."""
    x = variable.initial.detach().to(device=problem.device, dtype=torch.float32).clone().requires_grad_(True)
    adam = AdamStep(x, config.lr, config.precision, problem.device)
    result = DragResult(latent=problem.latent, handles=problem.handles.clone(), unet_passes=variable.unet_passes)
    handles, F0, z_prev_0 = problem.handles.clone(), None, None
    for k in range(config.max_iterations):
        # 1. Forward: features F (upsampled to the grid) and ε; the first pass, on the unmodified value, also
        #    gives F0 and ε0 (the reference spends an extra no-grad pass on the same values).
        with adam.autocast():
            out = variable.forward(x)
        result.unet_passes, result.iterations = result.unet_passes + 1, k + 1
        F, eps = interpolate_features(out.features, problem.grid_hw), out.eps.float()
        finite = bool(torch.isfinite(F).all()) and bool(torch.isfinite(eps).all())
        # 2. Track the handles (SPEC §0.5) against F0 at the initial handles; the first pass records F0.
        if k == 0:
            F0, z_prev_0 = _first_pass(F, eps, finite, variable.z_t(x), problem)
        elif finite:
            handles = point_tracking(F0, F.detach(), problem.handles, handles, config.r_p)
        record_iteration(result, handles, problem.targets, k, on_iteration)
        # 3. Stop once every handle is within stop_distance of its target (tested at k = 0 too).
        if all_reached(handles, problem.targets, config.stop_distance):
            result.reached = True
            log.info("drag: all handles reached their targets at iteration %d", k)
            callback(k + 1, config.max_iterations)
            break
        # 4. Loss: motion supervision (SPEC §0.6) + λ·Σ|z_{t−1} − z⁰_{t−1}|·(1 − M) (SPEC §1.3).
        loss = _loss(F, eps, variable.z_t(x), handles, F0, z_prev_0, problem, config) if finite else None
        # 5. Adam step; skipped and counted when the loss or its gradient is not finite.
        if adam.step(loss, k):
            result.steps += 1
        else:
            result.skipped_steps.append(k)
            log.warning("drag: non-finite features, loss or gradient at iteration %d; step skipped%s", k, adam.note())
        callback(k + 1, config.max_iterations)
    result.handles, result.final_distance = handles.clone(), float(distances(handles, problem.targets).mean())
    log.info("drag: %d iterations, %d steps, %d UNet passes, mean distance %.2f grid cells%s", result.iterations,
             result.steps, result.unet_passes, result.final_distance,
             f", {len(result.skipped_steps)} steps skipped" if result.skipped_steps else "")
    return result, x.detach().cpu()


def run_drag(
    backbone: Backbone,
    state: DiffusionState,
    handles: torch.Tensor,
    targets: torch.Tensor,
    mask_latent: torch.Tensor | None,
    config: DragConfig,
    make_variable: Callable[[UNetStep, torch.Tensor], DragVariable],
    callback: StepCallback = no_callback,
    on_iteration: IterationCallback | None = None,
    grid_hw: tuple[int, int] | None = None,
) -> tuple[DragResult, torch.Tensor]:
    """Check the inputs and run :func:`drag_loop` on the state's edited branch at its timestep.

    ``handles``/``targets``: (N, 2) grid (row, col), e.g. from ``points.grid_points``. ``mask_latent``:
    (1, 1, h, w) editable region from ``mask.editable_mask_for_latent``; None = no mask. ``grid_hw``: the
    supervision grid (⌊H/2⌋, ⌊W/2⌋) of the image; default 4× the latent size, exact when the image sides are
    multiples of 8 (as ComfyUI's VAE encode makes them). ``make_variable(step, z_t)`` runs inside the loop's
    gradient context with a float32 copy of the edited latent on the backbone's device and returns what to
    optimize. Gradients are taken with respect to that tensor only, so the UNet weights never accumulate
    gradients even if they require grad (SPEC §1.3: "freeze the weights").
    """
    device = backbone.device
    with drag_context(device, config.seed):
        problem = drag_problem(state, handles, targets, mask_latent, grid_hw, device)
        step = UNetStep(backbone, state.timestep, edited_prompt_on(state, device), tuple(config.feature_blocks))
        z_t = state.edited_latent.detach().to(device=device, dtype=torch.float32).clone()
        return drag_loop(make_variable(step, z_t), problem, config, callback, on_iteration)


def drag_problem(
    state: DiffusionState,
    handles: torch.Tensor,
    targets: torch.Tensor,
    mask_latent: torch.Tensor | None,
    grid_hw: tuple[int, int] | None,
    device: torch.device,
) -> DragProblem:
    """Check a drag's inputs (arguments as :func:`run_drag`) and gather them, for the state's timestep, on
    ``device``. Call inside :func:`drag_context` (the mask is cloned out of inference mode)."""
    latent_hw = tuple(state.source.shape[-2:])
    grid_hw = grid_hw if grid_hw is not None else (4 * latent_hw[0], 4 * latent_hw[1])
    handles, targets = check_points(handles, targets, grid_hw)
    if not torch.isfinite(state.edited_latent).all():
        raise RuntimeError("the source latent z_t contains NaN or infinite values; re-run the inversion")
    if mask_latent is not None:
        mask_latent = mask_latent.to(device=device, dtype=torch.float32).clone()
        if tuple(mask_latent.shape[-2:]) != latent_hw:
            raise ValueError(f"mask_latent is {tuple(mask_latent.shape[-2:])}, the latent is {latent_hw}")
    schedule = state.schedule
    return DragProblem(
        handles, targets, mask_latent, grid_hw, schedule.alpha(state.timestep),
        schedule.alpha(schedule.prev_timestep(state.step_index)), state.edited_latent, device,
    )


@contextmanager
def drag_context(device: torch.device, seed: int) -> Iterator[None]:
    """Where a drag runs: ComfyUI runs nodes under torch.inference_mode(), so leave it (and any no_grad) for
    the optimization; seed a private RNG stream, so a drag is reproducible and the caller's global RNG state
    is left as it was. Inputs must be cloned inside (inference tensors cannot be saved for backward)."""
    fork_devices = [device] if device.type == "cuda" else []
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        yield


def edited_prompt_on(state: DiffusionState, device: torch.device) -> Prompt:
    """The edited branch's prompt and guidance, cloned onto ``device`` (usable for autograd)."""
    uncond = None if state.uncond_context is None else state.uncond_context.to(device).clone()
    return Prompt(state.edited_context.to(device).clone(), uncond, state.guidance_scale)


# ---------------------------------------------------------------------------------------------- the loop's steps


class AdamStep:
    """Adam on ``x`` with dynamic loss scaling under fp16 autocast (the reference's CUDA precision)."""

    def __init__(self, x: torch.Tensor, lr: float, precision: str, device: torch.device) -> None:
        self.x = x
        self.optimizer = torch.optim.Adam([x], lr=lr)
        self.scaler = LossScaler(precision == "fp16")
        self.autocast = autocast_for(device, precision)

    def step(self, loss: torch.Tensor | None, k: int) -> bool:
        """One step on ``loss``; False (nothing changed) when the loss or its gradient is not finite."""
        if loss is None or not (bool(torch.isfinite(loss)) and loss.requires_grad):
            return False
        (grad,) = torch.autograd.grad(loss * self.scaler.scale, [self.x])
        grad = grad / self.scaler.scale
        finite = bool(torch.isfinite(grad).all())
        self.scaler.update(finite)
        if not finite:
            return False
        self.x.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(self.x).all():
            raise RuntimeError(f"the optimized tensor became NaN or infinite at iteration {k}; try a smaller lr")
        return True

    def note(self) -> str:
        return f" (fp16 loss scale now {self.scaler.scale:g})" if self.scaler.enabled else ""


def _first_pass(F: torch.Tensor, eps: torch.Tensor, finite: bool, z_t: torch.Tensor, problem: DragProblem):
    """F0 and z⁰_{t−1} = DDIM step(ε0, t, z_t) from the forward on the unmodified value."""
    if not finite:
        raise RuntimeError("the UNet returned NaN or infinite features/ε on the unmodified latent")
    return F.detach(), ddim_step(z_t.detach(), eps.detach(), problem.alpha_t, problem.alpha_prev)


def record_iteration(result: DragResult, handles: torch.Tensor, targets: torch.Tensor, k: int,
            on_iteration: IterationCallback | None) -> None:
    mean_distance = float(distances(handles, targets).mean())
    result.trajectory.append(handles.clone())
    result.distances.append(mean_distance)
    if on_iteration is not None:
        on_iteration(k, handles.clone(), mean_distance)


def _loss(F, eps, z_t, handles, F0, z_prev_0, problem: DragProblem, config: DragConfig) -> torch.Tensor:
    anchor = (F0, problem.handles) if config.motion_anchor == "initial" else None
    loss = motion_supervision_loss(F, handles, problem.targets, config.r_m, config.stop_distance, anchor)
    if problem.mask_latent is not None:
        z_prev = ddim_step(z_t, eps, problem.alpha_t, problem.alpha_prev)
        loss = loss + config.lam * ((z_prev - z_prev_0).abs() * (1.0 - problem.mask_latent)).sum()
    return loss


def check_points(
    handles: torch.Tensor, targets: torch.Tensor, grid_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    handles, targets = handles.detach().float().cpu(), targets.detach().float().cpu()
    if handles.dim() != 2 or handles.shape[-1] != 2 or handles.shape != targets.shape or handles.shape[0] == 0:
        raise ValueError(
            f"handles and targets must both be (N, 2) with N ≥ 1, got {tuple(handles.shape)}, {tuple(targets.shape)}"
        )
    for name, pts in (("handle", handles), ("target", targets)):
        inside = (pts >= 0).all(dim=-1) & (pts[:, 0] <= grid_hw[0] - 1) & (pts[:, 1] <= grid_hw[1] - 1)
        if not bool(inside.all()):
            i = int((~inside).nonzero()[0])
            raise ValueError(f"{name} {i} at grid {pts[i].tolist()} is outside the {grid_hw[0]}×{grid_hw[1]} grid")
    return handles, targets
