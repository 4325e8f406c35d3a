"""Motion supervision loss, point tracking, feature interpolation and the stop rule."""

from __future__ import annotations

import math

import pytest
import torch

from dragkit.drag_core.motion import all_reached, interpolate_features, motion_supervision_loss, point_tracking


def loop_loss(F: torch.Tensor, handles, targets, r_m: int = 1, stop: float = 2.0, anchor=None):
    """Straightforward per-sample version of SPEC §0.6 with the explicit bilinear formula.
    Returns the loss and the number of samples kept per pair (None for a pair without a term).
    ``anchor`` = (F0, initial handles): the left-hand side is F0 at the same offset from the initial handle."""
    _, C, H, W = F.shape
    total = F.new_zeros(())
    kept = []
    for i, ((hr, hc), (tr, tc)) in enumerate(zip(handles, targets, strict=True)):
        dist = math.hypot(tr - hr, tc - hc)
        if dist < stop:
            kept.append(None)
            continue
        d0, d1 = (tr - hr) / dist, (tc - hc) / dist
        diffs = []
        for r in range(max(int(hr) - r_m, 0), min(int(hr) + r_m + 1, H)):
            for c in range(max(int(hc) - r_m, 0), min(int(hc) + r_m + 1, W)):
                y, x = r + d0, c + d1
                if not (0 <= y <= H - 1 and 0 <= x <= W - 1):
                    continue
                y0, x0 = math.floor(y), math.floor(x)
                wy, wx = y - y0, x - x0
                sample = F.new_zeros(C)
                for dy, dx, w in (
                    (0, 0, (1 - wy) * (1 - wx)),
                    (0, 1, (1 - wy) * wx),
                    (1, 0, wy * (1 - wx)),
                    (1, 1, wy * wx),
                ):
                    if w > 0:
                        sample = sample + w * F[0, :, y0 + dy, x0 + dx]
                if anchor is None:
                    reference = F[0, :, r, c].detach()
                else:
                    F0, initial = anchor
                    ar, ac = r - int(hr) + int(initial[i][0]), c - int(hc) + int(initial[i][1])
                    if not (0 <= ar < H and 0 <= ac < W):
                        continue
                    reference = F0[0, :, ar, ac]
                diffs.append((reference - sample).abs())
        kept.append(len(diffs))
        total = total + (2 * r_m + 1) ** 2 * torch.stack(diffs).mean()
    return total, kept


PAIRS = [
    ((4.0, 4.0), (7.0, 6.0)),  # interior, diagonal
    ((1.0, 1.0), (0.0, 6.0)),  # next to the top border moving up-right: row 0 of the patch leaves the grid
    ((6.0, 2.0), (8.0, 2.0)),  # unit shift onto the last row (the reference indexes one past it)
    ((8.0, 8.0), (8.0, 3.0)),  # corner, patch clamped to 2×2
    ((2.0, 6.0), (3.0, 7.0)),  # already within 2 cells: no term
]


def test_loss_and_gradient_match_loop_reference():
    g = torch.Generator().manual_seed(0)
    F = torch.randn(1, 3, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    handles = torch.tensor([h for h, _ in PAIRS])
    targets = torch.tensor([t for _, t in PAIRS])

    loss = motion_supervision_loss(F, handles, targets)
    (grad,) = torch.autograd.grad(loss, F)
    expected, kept = loop_loss(F, [h for h, _ in PAIRS], [t for _, t in PAIRS])
    (expected_grad,) = torch.autograd.grad(expected, F)

    assert kept == [9, 6, 9, 4, None]  # dropped samples and the skipped pair really occur
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    assert grad.abs().sum() > 0


def test_initial_anchor_matches_loop_reference():
    """motion_anchor="initial": F0 around the initial handle on the left-hand side, including an initial
    handle in the corner whose patch leaves the grid (those positions are dropped) and F0 getting no gradient."""
    g = torch.Generator().manual_seed(3)
    F = torch.randn(1, 3, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    F0 = torch.randn(1, 3, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    handles = torch.tensor([[4.0, 4.0], [5.0, 5.0], [6.0, 2.0]])
    initial = torch.tensor([[2.0, 3.0], [0.0, 0.0], [6.0, 2.0]])
    targets = torch.tensor([[7.0, 6.0], [8.0, 8.0], [8.0, 2.0]])

    loss = motion_supervision_loss(F, handles, targets, anchor=(F0.detach(), initial))
    grad, grad0 = torch.autograd.grad(loss, [F, F0], allow_unused=True)
    expected, kept = loop_loss(F, handles.tolist(), targets.tolist(), anchor=(F0.detach(), initial.tolist()))
    (expected_grad,) = torch.autograd.grad(expected, F)

    assert kept == [9, 4, 9]  # the corner's initial patch keeps only its in-grid 2×2
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    assert grad0 is None
    assert not torch.allclose(loss, motion_supervision_loss(F, handles, targets))  # the option changes the loss


def test_initial_anchor_is_the_reference_loss_before_anything_moved():
    F = torch.randn(1, 3, 9, 9, generator=torch.Generator().manual_seed(4))
    handles = torch.tensor([[h for h in pair[0]] for pair in PAIRS])
    targets = torch.tensor([[t for t in pair[1]] for pair in PAIRS])
    assert torch.equal(motion_supervision_loss(F, handles, targets, anchor=(F, handles)),
                       motion_supervision_loss(F, handles, targets))


def test_reached_pair_contributes_nothing():
    F = torch.randn(1, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    handles = torch.tensor([[4.0, 4.0], [2.0, 6.0]])
    targets = torch.tensor([[7.0, 6.0], [3.0, 7.0]])
    both = motion_supervision_loss(F, handles, targets)
    first = motion_supervision_loss(F, handles[:1], targets[:1])
    assert torch.equal(both, first)
    assert motion_supervision_loss(F, handles[1:], targets[1:]) == 0


def test_loss_on_linear_features_by_hand():
    # F_c(y, x) = a_c·y + b_c·x: bilinear sampling is exact, so every sample differs by |a_c·d0 + b_c·d1|.
    a = torch.tensor([1.0, -2.0, 0.5])
    b = torch.tensor([3.0, 1.0, -1.0])
    yy, xx = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    F = (a[:, None, None] * yy + b[:, None, None] * xx)[None]
    handles = torch.tensor([[4.0, 4.0]])
    targets = torch.tensor([[7.0, 8.0]])  # d = (0.6, 0.8)
    loss = motion_supervision_loss(F, handles, targets)
    by_hand = 9 * (a * 0.6 + b * 0.8).abs().mean()
    assert torch.allclose(loss, by_hand, atol=1e-5)


def test_r_m_zero_single_sample():
    F = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    loss = motion_supervision_loss(F, torch.tensor([[2.0, 2.0]]), torch.tensor([[2.0, 5.0]]), r_m=0)
    assert torch.allclose(loss, (F[0, :, 2, 2] - F[0, :, 2, 3]).abs().mean())


def test_tracking_finds_planted_match_in_window_not_outside():
    g = torch.Generator().manual_seed(3)
    F0 = torch.randn(1, 5, 12, 12, generator=g)
    F = torch.randn(1, 5, 12, 12, generator=g)
    init = torch.tensor([[5.0, 5.0]])
    f0 = F0[0, :, 5, 5]
    F[0, :, 7, 3] = f0 + 0.01  # best inside the 7×7 window around (6, 4)
    F[0, :, 11, 11] = f0  # exact match, but outside the window
    F[0, :, 6, 4] = F0[0, :, 6, 4]  # the current position's own F0 feature is irrelevant
    new = point_tracking(F0, F, init, torch.tensor([[6.0, 4.0]]))
    assert new.tolist() == [[7.0, 3.0]]
    assert new.dtype == torch.float32


@pytest.mark.parametrize(
    "current, planted, decoy",
    [
        ((0.0, 0.0), (3, 3), (4, 4)),  # top-left: window clamped to rows/cols 0..3
        ((11.0, 11.0), (8, 11), (7, 11)),  # bottom-right: window clamped to 8..11
        ((0.0, 10.0), (0, 11), (0, 6)),  # top edge near the right corner
    ],
)
def test_tracking_window_clamped_at_borders(current, planted, decoy):
    g = torch.Generator().manual_seed(4)
    F0 = torch.randn(1, 4, 12, 12, generator=g)
    F = torch.randn(1, 4, 12, 12, generator=g)
    init = torch.tensor([[2.0, 9.0]])
    F[0, :, planted[0], planted[1]] = F0[0, :, 2, 9] + 0.01
    F[0, :, decoy[0], decoy[1]] = F0[0, :, 2, 9]  # just outside the clamped window
    new = point_tracking(F0, F, init, torch.tensor([current]))
    assert new.tolist() == [[float(planted[0]), float(planted[1])]]


def test_tracking_ties_go_to_first_in_row_major_order():
    F0 = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    flat = torch.zeros(1, 3, 12, 12)
    assert point_tracking(F0, flat, torch.tensor([[1.0, 1.0]]), torch.tensor([[5.0, 5.0]])).tolist() == [[2.0, 2.0]]
    F = torch.full((1, 3, 12, 12), 100.0)
    F[0, :, 6, 4] = F0[0, :, 1, 1]
    F[0, :, 4, 6] = F0[0, :, 1, 1]
    assert point_tracking(F0, F, torch.tensor([[1.0, 1.0]]), torch.tensor([[5.0, 5.0]])).tolist() == [[4.0, 6.0]]


def test_tracking_multiple_handles_independent():
    g = torch.Generator().manual_seed(6)
    F0 = torch.randn(1, 4, 16, 16, generator=g)
    F = torch.randn(1, 4, 16, 16, generator=g)
    F[0, :, 3, 5] = F0[0, :, 2, 2]
    F[0, :, 12, 10] = F0[0, :, 13, 13]
    init = torch.tensor([[2.0, 2.0], [13.0, 13.0]])
    new = point_tracking(F0, F, init, init.clone())
    assert new.tolist() == [[3.0, 5.0], [12.0, 10.0]]
    assert init.tolist() == [[2.0, 2.0], [13.0, 13.0]]  # inputs untouched


def test_all_reached_is_strict():
    targets = torch.tensor([[5.0, 5.0], [0.0, 0.0]])
    assert all_reached(torch.tensor([[5.0, 6.99], [1.0, 1.0]]), targets)
    assert not all_reached(torch.tensor([[5.0, 7.0], [1.0, 1.0]]), targets)  # exactly 2.0 is not reached
    assert not all_reached(torch.tensor([[5.0, 5.0], [3.0, 0.0]]), targets)
    assert all_reached(torch.tensor([[5.0, 7.0], [1.0, 1.0]]), targets, stop_distance=2.5)


def test_interpolate_features_bilinear_align_corners_false_and_concat():
    a = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    b = torch.full((1, 2, 4, 4), 7.0, dtype=torch.float16)
    out = interpolate_features([a, b], (4, 4))
    assert out.shape == (1, 3, 4, 4) and out.dtype == torch.float32
    # align_corners=False: output cell centres sit at -0.25, 0.25, 0.75, 1.25 in input cells (edge-clamped).
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert torch.allclose(out[0, 0, :, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))
    assert torch.equal(out[0, 1:], torch.full((2, 4, 4), 7.0))
