"""Motion supervision and point tracking on the supervision grid (SPEC §0.3, §0.5, §0.6).

All point tensors are (N, 2) float in grid (row, col) order. Features are (1, C, grid_h, grid_w).

One rule decides both when a pair stops contributing a motion term and when the drag stops: a pair
has *reached* its target when ‖handle − target‖ < ``stop_distance`` (strictly, 2.0 grid cells by
default), exactly as the reference's ``check_handle_reach_target`` and its per-pair skip.
"""

from __future__ import annotations

import torch
from torch.nn import functional as nnf


def interpolate_features(features: list[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
    """Upsample each (1, C_i, h, w) feature map bilinearly (align_corners=False) to ``grid_hw`` and
    concatenate on channels. Computed in float32 so half-precision backbones give stable losses."""
    if not features:
        raise ValueError("interpolate_features needs at least one feature map")
    maps = [nnf.interpolate(f.float(), size=tuple(grid_hw), mode="bilinear", align_corners=False) for f in features]
    return torch.cat(maps, dim=1)


def distances(handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """‖handle − target‖ per pair, in grid cells."""
    return (targets.float() - handles.float()).norm(dim=-1)


def all_reached(handles: torch.Tensor, targets: torch.Tensor, stop_distance: float = 2.0) -> bool:
    """True when every handle is strictly closer than ``stop_distance`` grid cells to its target."""
    return bool((distances(handles, targets) < stop_distance).all())


def motion_supervision_loss(
    F: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    r_m: int = 1,
    stop_distance: float = 2.0,
    anchor: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_step: float | None = None,
    weight: float | None = None,
) -> torch.Tensor:
    """Σ_i (2r_m+1)² · mean |sg(F[Ω_i]) − F_bilinear[Ω_i + d_i]| over pairs not yet reached (SPEC §0.6).

    d_i = (t_i − h_i)/‖t_i − h_i‖; Ω_i is the (2r_m+1)² square around the integer handle, clamped to
    the grid (rows max(h−r, 0) … min(h+r+1, H) − 1, as the reference). F_bilinear samples F at the
    shifted, fractional positions with bilinear interpolation.

    Out-of-grid samples: the reference indexes past the grid edge and crashes when a shifted patch
    leaves the grid. Here a patch position whose shifted position lies outside [0, H−1]×[0, W−1] is
    dropped (both sides of the difference), just as clamping Ω drops positions, and the mean runs
    over the remaining positions. The shifted handle itself always stays inside (it lies on the
    segment towards an in-grid target), so every active pair keeps at least one sample.

    ``anchor`` = (F0, initial handles) switches the left-hand side from sg(F[Ω_i]) to the *first*
    iteration's features around the *initial* handle, F0[Ω_i⁰] (the ``motion_anchor="initial"`` option,
    after GoodDrag's information-preserving supervision): every step pulls the original content, not
    whatever the previous steps left at the handle, so appearance cannot drift along the drag. Patch
    positions whose anchor lies outside the grid are dropped too.

    GoodDrag's supervision (``gooddrag.py``) sets two more: ``max_step`` β makes the shift
    d_i = unit(t_i − h_i)·min(β, ‖t_i − h_i‖) instead of the unit step, and ``weight`` replaces the factor
    (2r_m+1)² (GoodDrag's code weighs by (2r_1)²).
    """
    _, C, H, W = F.shape
    loss = F.new_zeros(())
    dist = distances(handles, targets)
    for i in range(handles.shape[0]):
        if dist[i] < stop_distance:
            continue
        d = (targets[i].float() - handles[i].float()) / dist[i]
        if max_step is not None:
            d = d * min(max_step, float(dist[i]))
        row, col = int(handles[i, 0]), int(handles[i, 1])
        r1, r2 = max(row - r_m, 0), min(row + r_m + 1, H)
        c1, c2 = max(col - r_m, 0), min(col + r_m + 1, W)
        rows = torch.arange(r1, r2, device=F.device, dtype=torch.float32)
        cols = torch.arange(c1, c2, device=F.device, dtype=torch.float32)
        grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
        shifted_r, shifted_c = grid_r + float(d[0]), grid_c + float(d[1])
        keep = (shifted_r >= 0) & (shifted_r <= H - 1) & (shifted_c >= 0) & (shifted_c <= W - 1)
        if not bool(keep.any()):
            continue
        # grid_sample with align_corners=True maps -1/+1 to the centres of the first/last cells, so
        # pixel-index coordinates convert linearly; zero padding only ever meets weight-0 neighbours
        # because every kept sample lies inside the grid.
        norm_c = shifted_c[keep] / max(W - 1, 1) * 2 - 1
        norm_r = shifted_r[keep] / max(H - 1, 1) * 2 - 1
        sample_grid = torch.stack([norm_c, norm_r], dim=-1).reshape(1, 1, -1, 2).to(F.dtype)
        moved = nnf.grid_sample(F, sample_grid, mode="bilinear", align_corners=True).reshape(C, -1)
        if anchor is None:
            reference = F[0, :, r1:r2, c1:c2].detach()[:, keep]
        else:
            reference, moved = _initial_patch(anchor, i, grid_r - row, grid_c - col, keep, moved)
            if reference is None:
                continue
        loss = loss + ((2 * r_m + 1) ** 2 if weight is None else weight) * (reference - moved).abs().mean()
    return loss


def _initial_patch(
    anchor: tuple[torch.Tensor, torch.Tensor], i: int, off_r: torch.Tensor, off_c: torch.Tensor,
    keep: torch.Tensor, moved: torch.Tensor,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """F0 at the initial handle i plus the patch offsets (integer cells), for the kept positions; also
    drops from ``moved`` the positions whose initial-patch cell lies outside the grid."""
    F0, handles_init = anchor
    _, _, H, W = F0.shape
    rows = off_r[keep].long() + int(handles_init[i, 0])
    cols = off_c[keep].long() + int(handles_init[i, 1])
    inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    if not bool(inside.any()):
        return None, moved
    return F0[0, :, rows[inside], cols[inside]].detach(), moved[:, inside]


@torch.no_grad()
def point_tracking(
    F0: torch.Tensor, F: torch.Tensor, handles_init: torch.Tensor, handles: torch.Tensor, r_p: int = 3
) -> torch.Tensor:
    """New handle positions (SPEC §0.5): in the (2r_p+1)² window around each current handle, clamped to
    the grid, the position whose feature in ``F`` is closest in L1 (summed over channels) to the
    feature of the *initial* handle in ``F0``. Ties go to the first position in row-major order
    (torch.argmin returns the first minimum). Returns integer positions as a new float tensor."""
    _, _, H, W = F.shape
    new = handles.clone().float()
    for i in range(handles.shape[0]):
        f0 = F0[0, :, int(handles_init[i, 0]), int(handles_init[i, 1])]
        row, col = int(handles[i, 0]), int(handles[i, 1])
        r1, r2 = max(row - r_p, 0), min(row + r_p + 1, H)
        c1, c2 = max(col - r_p, 0), min(col + r_p + 1, W)
        window = F[0, :, r1:r2, c1:c2]
        cost = (window - f0[:, None, None]).abs().sum(dim=0)
        best = int(cost.reshape(-1).argmin())
        new[i, 0] = r1 + best // (c2 - c1)
        new[i, 1] = c1 + best % (c2 - c1)
    return new
