"""GoodDrag's alternating drag and denoising (drag_core/gooddrag.py): its schedule, its tracking state across
denoising steps, its stop rules, its loss, and that without drag iterations it is reference-controlled denoising."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dragkit.drag_core.backbone import MutualSelfAttention, UNetOutput, UNetRequest
from dragkit.drag_core.gooddrag import GoodDragConfig, alternating_drag_denoise
from dragkit.drag_core.motion import motion_supervision_loss
from dragkit.drag_core.reference import EDITED_FROM_SOURCE, denoise_branches
from toy_backbones import ToyBackbone, blob_latent, centre_of_mass, make_state

MUTUAL = MutualSelfAttention(layers=frozenset({10}), pairs=EDITED_FROM_SOURCE)
START = 40  # of 50 steps: ten denoising steps to the end
HANDLE = torch.tensor([[17.0, 17.0]])
FAR = torch.tensor([[17.0, 40.0]])  # too far to arrive in the few iterations these tests allow


class RecordingBackbone(ToyBackbone):
    """Records every call: (schedule index, autograd on, features requested, mutual requested, batch)."""

    def __init__(self, fixed_features: bool = False):
        super().__init__()
        self.log: list[tuple[int, bool, bool, bool, int]] = []
        self.fixed_features = fixed_features
        self.pattern = torch.randn(1, 12, 48, 48, generator=torch.Generator().manual_seed(7))

    def __call__(self, z, timestep, context, request=UNetRequest()) -> UNetOutput:
        index = (981 - timestep) // 20
        self.log.append((index, torch.is_grad_enabled(), bool(request.feature_blocks), request.mutual is not None,
                         z.shape[0]))
        out = super().__call__(z, timestep, context, request)
        if self.fixed_features:  # features that ignore z: tracking always finds the initial handle again
            out.features = [self.pattern.expand(z.shape[0], -1, -1, -1) + 0 * z.sum() for _ in out.features]
        return out

    def drag_forwards(self, index: int) -> int:
        return sum(1 for i, grad, features, _, _ in self.log if i == index and grad and features)

    def mutual_indices(self) -> set[int]:
        return {i for i, _, _, mutual, _ in self.log if mutual}


def _state():
    return replace(make_state(blob_latent()), step_index=START)


def test_drag_iterations_ride_on_the_first_denoising_steps_then_reference_control_takes_over():
    backbone = RecordingBackbone()
    config = GoodDragConfig(drag_end_step=3, track_per_step=2, drag_per_track=2, max_track_no_change=100)
    progress = []
    result = alternating_drag_denoise(backbone, _state(), HANDLE, FAR, None, config, lambda k, n: progress.append((k, n)),
                                      mutual=MUTUAL)
    # Steps 40–42 carry the drag: 2 trackings × 2 Adam steps each; none after.
    assert [backbone.drag_forwards(i) for i in range(START, 50)] == [4, 4, 4] + [0] * 7
    assert (result.drag_steps, result.iterations, result.steps, result.trackings) == (3, 12, 12, 6)
    # G.2: the unedited trajectory's features at each drag step, without autograd.
    assert sorted(i for i, grad, features, _, _ in backbone.log if features and not grad) == [40, 41, 42]
    # No control while dragging; mutual self-attention on [source, edited] from the first step without a drag.
    assert backbone.mutual_indices() == set(range(43, 50))
    assert all(batch == 2 for i, _, _, mutual, batch in backbone.log if mutual)
    assert result.state.step_index == 50 and torch.equal(result.latent, result.state.edited)
    assert len(result.trajectory) == len(result.distances) == result.iterations
    assert progress[-1][0] == progress[-1][1] == config.max_iterations + 10
    assert [k for k, _ in progress] == sorted(k for k, _ in progress)


def test_the_control_during_drag_option_puts_reference_control_on_the_drag_steps_too():
    backbone = RecordingBackbone()
    config = GoodDragConfig(drag_end_step=3, track_per_step=1, drag_per_track=1, max_track_no_change=100,
                            control_during_drag=True)
    result = alternating_drag_denoise(backbone, _state(), HANDLE, FAR, None, config, mutual=MUTUAL)
    assert result.drag_steps == 3 and backbone.mutual_indices() == set(range(START, 50))
    default = alternating_drag_denoise(ToyBackbone(), _state(), HANDLE, FAR, None, replace(config, control_during_drag=False),
                                       mutual=MUTUAL)
    assert torch.equal(default.handles, result.handles)  # (the toy backbone ignores the control itself)


def test_the_tracking_state_carries_across_steps_and_the_early_stop_counts_across_them():
    # Features that never change: every tracking finds the handle where it was. With 3 trackings per step and an
    # early stop after 4 unchanged ones, step 40 makes 3, and step 41 stops at its first after 3 Adam steps.
    backbone = RecordingBackbone(fixed_features=True)
    config = GoodDragConfig(drag_end_step=5, track_per_step=3, drag_per_track=3, max_track_no_change=4)
    result = alternating_drag_denoise(backbone, _state(), HANDLE, FAR, None, config, mutual=MUTUAL)
    assert result.early_stopped and not result.reached
    assert (result.drag_steps, result.trackings, result.iterations) == (2, 4, 12)
    assert [backbone.drag_forwards(i) for i in (40, 41, 42)] == [9, 3, 0]
    assert backbone.mutual_indices() == set(range(42, 50))
    assert torch.equal(result.handles, HANDLE)


def test_a_handle_already_at_its_target_stops_the_drag_at_the_first_tracking():
    backbone = RecordingBackbone()
    result = alternating_drag_denoise(backbone, _state(), HANDLE, HANDLE + torch.tensor([[0.0, 1.0]]), None,
                                      GoodDragConfig(), mutual=MUTUAL)
    assert result.reached and (result.drag_steps, result.iterations, result.steps) == (1, 1, 0)
    assert backbone.mutual_indices() == set(range(41, 50))


@pytest.mark.parametrize("edited", [False, True])
@pytest.mark.parametrize("no_drag", [dict(drag_end_step=0), dict(track_per_step=0)])
def test_without_drag_iterations_it_is_reference_controlled_denoising_bitwise(edited, no_drag):
    state = _state()
    if edited:
        state = state.with_edit(state.source + 0.05 * torch.randn(state.source.shape, generator=torch.Generator().manual_seed(3)))
    result = alternating_drag_denoise(ToyBackbone(), state, HANDLE, FAR, None, GoodDragConfig(**no_drag), mutual=MUTUAL)
    expected = denoise_branches(ToyBackbone(), state, 50, MUTUAL, START)
    assert result.iterations == 0 and result.drag_steps == 0
    assert torch.equal(result.latent, expected.edited_latent)
    assert torch.equal(result.state.source, expected.source)


def test_gooddrag_moves_the_blob_toward_the_target():
    target = torch.tensor([[17.0, 27.0]])
    result = alternating_drag_denoise(ToyBackbone(), _state(), HANDLE, target, None, GoodDragConfig())
    (y0, x0), (y1, x1) = centre_of_mass(blob_latent()), centre_of_mass(result.latent)
    assert x1 - x0 > 1.0 and abs(y1 - y0) < 0.5, (x0, x1, y0, y1)
    assert result.final_distance < 10.0  # grid cells; the drag was 10


def test_the_mask_term_keeps_the_outside_on_the_unedited_trajectory():
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., :, 2:9] = 1.0  # editable: the blob's row band to the target
    config = GoodDragConfig(drag_end_step=2, lam=10.0)
    state = _state()
    free = alternating_drag_denoise(ToyBackbone(), state, HANDLE, torch.tensor([[17.0, 27.0]]), None, config)
    held = alternating_drag_denoise(ToyBackbone(), state, HANDLE, torch.tensor([[17.0, 27.0]]), mask, config)
    outside = mask == 0
    change = lambda r: (r.latent - r.state.source).abs()[outside.expand_as(r.latent)].mean()  # noqa: E731
    assert change(held) < 0.5 * change(free)


def test_gooddrags_supervision_shifts_by_up_to_beta_and_weighs_by_2r_squared():
    g = torch.Generator().manual_seed(0)
    F, F0 = torch.randn(1, 3, 20, 20, generator=g), torch.randn(1, 3, 20, 20, generator=g)
    handle, target, r = torch.tensor([[8.0, 5.0]]), torch.tensor([[8.0, 15.0]]), 2
    loss = motion_supervision_loss(F, handle, target, r, 2.0, (F0, handle), 4.0, float((2 * r) ** 2))
    # Shift (0, 4) is a whole number of cells: the bilinear sample is F itself, 4 columns on.
    expected = (2 * r) ** 2 * (F0[0, :, 6:11, 3:8] - F[0, :, 6:11, 7:12]).abs().mean()
    assert torch.allclose(loss, expected)
    # Nearer than β, the shift is the remaining distance.
    near = motion_supervision_loss(F, handle, torch.tensor([[8.0, 8.0]]), r, 2.0, (F0, handle), 4.0, 1.0)
    assert torch.allclose(near, (F0[0, :, 6:11, 3:8] - F[0, :, 6:11, 6:11]).abs().mean())


@pytest.mark.parametrize("bad", [dict(drag_per_track=0), dict(lr=0.0), dict(beta=0.0), dict(precision="fp8"),
                                 dict(feature_blocks=()), dict(track_per_step=-1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        GoodDragConfig(**bad)


def test_points_outside_the_grid_are_refused():
    with pytest.raises(ValueError, match="outside"):
        alternating_drag_denoise(ToyBackbone(), _state(), HANDLE, torch.tensor([[17.0, 60.0]]), None)
