"""DragDiffusion's latent optimization (SPEC §1.3): move handles to targets by optimizing z_t.

Reads next to SPEC §1.3. The LoRA (§1.1), inversion (§1.2) and reference-latent denoising (§1.4)
are separate stages; this module only turns an inverted state plus points into an edited z_t.
The loop itself (:func:`motion_supervision_drag`) is shared with DragNoise (``dragnoise.py``), which
optimizes the UNet bottleneck instead of z_t.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .backbone import Backbone, StepCallback, UNetOutput, UNetRequest, no_callback
from .guidance import guided
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
    lr: float = 0.01  # Adam learning rate on z_t
    max_iterations: int = 80  # the reference's n_pix_step
    stop_distance: float = 2.0  # a pair has reached its target when ‖h − t‖ < this (grid cells)
    seed: int = 42
    # "fp32", or autocast "fp16" (with dynamic loss scaling, the reference's CUDA default) or "bf16".
    precision: str = "fp32"
    # The released DragNoise code adds the λ term even without a mask (everything is regularized);
    # DragDiffusion, and the default, skip it then (SPEC §2).
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
    bottleneck: torch.Tensor | None = None  # DragNoise: the optimized h, detached, on the CPU, float32


def to_pixels(grid_points: torch.Tensor, image_h: int, image_w: int) -> torch.Tensor:
    """Grid (row, col) → image pixels (x, y), the inverse of ``points.grid_points``' scaling."""
    grid_h, grid_w = image_h // 2, image_w // 2
    g = grid_points.float()
    return torch.stack([g[:, 1] * image_w / grid_w, g[:, 0] * image_h / grid_h], dim=-1)


def optimize_latent(
    backbone: Backbone,
    state: DiffusionState,
    handles: torch.Tensor,
    targets: torch.Tensor,
    mask_latent: torch.Tensor | None,
    config: DragConfig = DragConfig(),
    callback: StepCallback = no_callback,
    on_iteration: IterationCallback | None = None,
    grid_hw: tuple[int, int] | None = None,
) -> DragResult:
    """Optimize z_t so the features at the handles move to the targets (SPEC §1.3).

    z_t is the state's edited latent: the inverted source, or the edited branch of a training-free
    drag (SPEC §3), evaluated with that branch's prompt.
    ``handles``/``targets``: (N, 2) grid (row, col), e.g. from ``points.grid_points``.
    ``mask_latent``: (1, 1, h, w) editable region from ``mask.editable_mask_for_latent``; None = no mask.
    ``grid_hw``: the supervision grid (⌊H/2⌋, ⌊W/2⌋) of the image; default 4× the latent size, which is
    exact when the image sides are multiples of 8 (as ComfyUI's VAE encode makes them).
    ``callback(k + 1, max_iterations)`` runs after every iteration (progress, interrupts; may raise);
    ``on_iteration(k, handles, mean distance)`` runs after the tracking of every iteration.

    A state with ``guidance_scale`` > 1 (a generated image, SPEC §1.5) runs each forward on the batch
    [unconditional, conditional]: ε is CFG-combined and the features are concatenated with weights
    (1 − c, c), c = s/(2s − 1) (see :mod:`drag_core.guidance`).

    One UNet forward per iteration. The forward of iteration 0 (on the unmodified z_t) also provides
    F0 and ε0: the reference computes them in a separate no-grad pass on the same z_t, which gives the
    same values, so this saves one pass and a run that has already reached its targets costs one pass.
    Gradients are taken with respect to z_t only (torch.autograd.grad), so the UNet weights never
    accumulate gradients even if they require grad (SPEC §1.3: "freeze the weights").
    """

    def latent_variable(step: UNetStep, z_t: torch.Tensor) -> DragVariable:
        return DragVariable(initial=z_t, forward=step, z_t=lambda z: z)

    result, z_t = motion_supervision_drag(
        backbone, state, handles, targets, mask_latent, config, latent_variable, callback, on_iteration, grid_hw
    )
    result.latent = z_t
    return result


@dataclass(frozen=True)
class UNetStep:
    """The UNet evaluation a drag repeats: at the state's timestep, with the dragged branch's prompt,
    classifier-free guided when the state is, returning the supervising features."""

    backbone: Backbone
    timestep: int
    context: torch.Tensor
    uncond_context: torch.Tensor | None
    guidance_scale: float
    feature_blocks: tuple[int, ...]

    def __call__(
        self, z: torch.Tensor, bottleneck: torch.Tensor | None = None, capture_bottleneck: bool = False
    ) -> UNetOutput:
        request = UNetRequest(self.feature_blocks, capture_bottleneck=capture_bottleneck, bottleneck=bottleneck)
        return guided(self.backbone, z, self.timestep, self.context, self.uncond_context, self.guidance_scale, request)


@dataclass(frozen=True)
class DragVariable:
    """What a drag optimizes: z_t itself (DragDiffusion) or the bottleneck h with z_t fixed (DragNoise)."""

    initial: torch.Tensor  # the starting value; the loop optimizes a float32 copy of it
    forward: Callable[[torch.Tensor], UNetOutput]  # the UNet evaluation as a function of the variable
    z_t: Callable[[torch.Tensor], torch.Tensor]  # the latent the mask term's DDIM step starts from
    unet_passes: int = 0  # passes spent preparing the variable


def motion_supervision_drag(
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
    """The drag loop shared by DragDiffusion and DragNoise (SPEC §1.3, §2): motion supervision, point
    tracking, the masked regularizer and the stop rule, with Adam on the tensor ``make_variable``
    chooses. Returns the result and the optimized variable (detached, CPU, float32).

    ``make_variable(step, z_t)`` runs inside the loop's gradient context with the state's edited
    latent z_t (a float32 copy on the backbone's device) and returns what to optimize.
    """
    device = backbone.device
    latent_hw = tuple(state.source.shape[-2:])
    grid_hw = grid_hw if grid_hw is not None else (4 * latent_hw[0], 4 * latent_hw[1])
    handles, targets = _check_points(handles, targets, grid_hw)
    if not torch.isfinite(state.edited_latent).all():
        raise RuntimeError("the source latent z_t contains NaN or infinite values; re-run the inversion")
    if mask_latent is not None:
        mask_latent = mask_latent.to(device=device, dtype=torch.float32)
        if tuple(mask_latent.shape[-2:]) != latent_hw:
            raise ValueError(f"mask_latent is {tuple(mask_latent.shape[-2:])}, the latent is {latent_hw}")

    schedule = state.schedule
    t = state.timestep
    alpha_t = schedule.alpha(t)
    alpha_prev = schedule.alpha(schedule.prev_timestep(state.step_index))

    # ComfyUI runs nodes under torch.inference_mode(): leave it (and any no_grad) for the optimization,
    # and clone the inputs, since inference tensors cannot be saved for backward.
    # Seed a private RNG stream: reproducible, and the caller's global RNG state is left as it was.
    fork_devices = [device] if device.type == "cuda" else []
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(config.seed)
        uncond = None if state.uncond_context is None else state.uncond_context.to(device).clone()
        step = UNetStep(backbone, t, state.edited_context.to(device).clone(), uncond, state.guidance_scale,
                        tuple(config.feature_blocks))
        # The released DragNoise code regularizes the whole latent when there is no mask (mask = 0).
        if mask_latent is None and config.mask_term_without_mask:
            mask_latent = torch.zeros((1, 1, *latent_hw), device=device)
        if mask_latent is not None:
            mask_latent = mask_latent.clone()
        z_t = state.edited_latent.detach().to(device=device, dtype=torch.float32).clone()
        variable = make_variable(step, z_t)
        x = variable.initial.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=config.lr)
        scaler = LossScaler(config.precision == "fp16")
        autocast = autocast_for(device, config.precision)
        handles_init = handles.clone()
        result = DragResult(latent=state.edited_latent, handles=handles.clone(), unet_passes=variable.unet_passes)
        F0: torch.Tensor | None = None
        z_prev_0: torch.Tensor | None = None

        for k in range(config.max_iterations):
            with autocast():
                out = variable.forward(x)
            result.unet_passes += 1
            result.iterations = k + 1
            F = interpolate_features(out.features, grid_hw)
            eps = out.eps.float()
            finite = bool(torch.isfinite(F).all()) and bool(torch.isfinite(eps).all())
            if k == 0:
                if not finite:
                    raise RuntimeError("the UNet returned NaN or infinite features/ε on the unmodified latent")
                F0 = F.detach()
                z_prev_0 = ddim_step(variable.z_t(x).detach(), eps.detach(), alpha_t, alpha_prev)
            elif finite:
                handles = point_tracking(F0, F.detach(), handles_init, handles, config.r_p)

            mean_distance = float(distances(handles, targets).mean())
            result.trajectory.append(handles.clone())
            result.distances.append(mean_distance)
            if on_iteration is not None:
                on_iteration(k, handles.clone(), mean_distance)
            if all_reached(handles, targets, config.stop_distance):
                result.reached = True
                log.info("drag: all handles reached their targets at iteration %d", k)
                callback(k + 1, config.max_iterations)
                break

            if finite:
                anchor = (F0, handles_init) if config.motion_anchor == "initial" else None
                loss = motion_supervision_loss(F, handles, targets, config.r_m, config.stop_distance, anchor)
                if mask_latent is not None:
                    z_prev = ddim_step(variable.z_t(x), eps, alpha_t, alpha_prev)
                    loss = loss + config.lam * ((z_prev - z_prev_0).abs() * (1.0 - mask_latent)).sum()
                finite = bool(torch.isfinite(loss)) and loss.requires_grad
            if finite:
                (grad,) = torch.autograd.grad(loss * scaler.scale, [x])
                grad = grad / scaler.scale
                finite = bool(torch.isfinite(grad).all())
                scaler.update(finite)
            if finite:
                x.grad = grad
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps += 1
                if not torch.isfinite(x).all():
                    raise RuntimeError(f"the optimized tensor became NaN or infinite at iteration {k}; try a smaller lr")
            else:
                result.skipped_steps.append(k)
                log.warning(
                    "drag: non-finite features, loss or gradient at iteration %d; step skipped%s", k,
                    f" (fp16 loss scale now {scaler.scale:g})" if scaler.enabled else "",
                )
            callback(k + 1, config.max_iterations)

    result.handles = handles.clone()
    result.final_distance = float(distances(handles, targets).mean())
    log.info(
        "drag: %d iterations, %d steps, %d UNet passes, mean distance %.2f grid cells%s",
        result.iterations,
        result.steps,
        result.unet_passes,
        result.final_distance,
        f", {len(result.skipped_steps)} steps skipped" if result.skipped_steps else "",
    )
    return result, x.detach().cpu()


def _check_points(
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
