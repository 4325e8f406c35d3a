"""DragDiffusion's latent optimization on a tiny translation-equivariant backbone."""

from __future__ import annotations

import pytest
import torch

from dragkit.drag_core.backbone import UNetOutput, UNetRequest
from dragkit.drag_core.drag_loop import DragConfig
from dragkit.drag_core.dragdiffusion import optimize_latent
from dragkit.drag_core.points import DragPoints, grid_points, to_pixels
from toy_backbones import LATENT, ToyBackbone, blob_latent, centre_of_mass, make_state

HANDLE = torch.tensor([[17.0, 17.0]])
TARGET = torch.tensor([[17.0, 27.0]])  # 10 grid cells (2.5 latent cells) to the right


def test_drag_moves_the_blob_to_the_target():
    z = blob_latent()
    backbone = ToyBackbone()
    progress, seen = [], []
    result = optimize_latent(
        backbone,
        make_state(z),
        HANDLE,
        TARGET,
        None,
        DragConfig(),  # the reference defaults: lr 0.01, 80 iterations
        callback=lambda done, total: progress.append((done, total)),
        on_iteration=lambda k, h, d: seen.append((k, h.tolist(), d)),
    )
    assert result.reached
    assert torch.linalg.norm(result.handles - TARGET) < 2.0
    assert result.iterations < 80
    assert result.unet_passes == result.iterations == backbone.calls
    assert result.steps == result.iterations - 1  # no step on the iteration that detects arrival
    assert result.skipped_steps == []
    # The handle really travelled: monotone-ish progress recorded per iteration.
    assert result.distances[0] == pytest.approx(10.0)
    assert result.final_distance < 2.0
    assert len(result.trajectory) == result.iterations
    assert progress == [(k + 1, 80) for k in range(result.iterations)]
    assert [k for k, _, _ in seen] == list(range(result.iterations))
    # The content moved: the blob's centre of mass shifted right, not up or down, and the blob's
    # value now fills the latent cell under the target (grid col 27 ≈ latent col 6).
    (y0, x0), (y1, x1) = centre_of_mass(z), centre_of_mass(result.latent)
    assert x1 - x0 > 0.8
    assert abs(y1 - y0) < 0.5
    assert z[0, 0, 4, 6] < 0.3 < 0.5 < result.latent[0, 0, 4, 6]
    assert result.latent.device.type == "cpu" and not result.latent.requires_grad
    assert torch.equal(z, blob_latent())  # the input state is untouched


def test_stops_at_iteration_zero_when_already_reached():
    z = blob_latent()
    backbone = ToyBackbone()
    progress = []
    result = optimize_latent(
        backbone,
        make_state(z),
        HANDLE,
        HANDLE + torch.tensor([[1.0, 1.0]]),
        None,
        DragConfig(),
        callback=lambda done, total: progress.append((done, total)),
    )
    assert result.reached
    assert result.unet_passes == 1 and backbone.calls == 1
    assert result.steps == 0 and result.iterations == 1
    assert torch.equal(result.latent, z)
    assert progress == [(1, 80)]


def test_same_seed_gives_bitwise_equal_latents():
    config = DragConfig(max_iterations=6)
    a = optimize_latent(ToyBackbone(), make_state(blob_latent()), HANDLE, TARGET, None, config)
    b = optimize_latent(ToyBackbone(), make_state(blob_latent()), HANDLE, TARGET, None, config)
    assert torch.equal(a.latent, b.latent)
    assert not torch.equal(a.latent, blob_latent())


def test_global_rng_state_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    optimize_latent(ToyBackbone(), make_state(blob_latent()), HANDLE, TARGET, None, DragConfig(max_iterations=2))
    assert torch.equal(torch.rand(3), expected)


def test_mask_term_holds_the_region_outside_the_mask():
    # Editable: the blob's rows only. The motion term's receptive field reaches rows 1–7, so without
    # the regularizer rows outside the band change too.
    mask = torch.zeros(1, 1, LATENT, LATENT)
    mask[..., 3:6, 2:10] = 1
    config = DragConfig(max_iterations=12, stop_distance=0.5)  # λ = 0.1 as in the reference
    z = blob_latent()
    free = optimize_latent(ToyBackbone(), make_state(z), HANDLE, TARGET, None, config).latent
    held = optimize_latent(ToyBackbone(), make_state(z), HANDLE, TARGET, mask, config).latent
    outside = 1 - mask
    change_free = ((free - z).abs() * outside).sum()
    change_held = ((held - z).abs() * outside).sum()
    assert change_free > 0
    assert change_held < 0.5 * change_free
    # Inside the editable band the drag still acts.
    assert ((held - z).abs() * mask).sum() > 0.5 * ((free - z).abs() * mask).sum()


class FlakyBackbone(ToyBackbone):
    """Returns NaN features on one call (e.g. an fp16 overflow)."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.bad_call = bad_call

    def __call__(self, z, timestep, context, request=UNetRequest()) -> UNetOutput:
        out = super().__call__(z, timestep, context, request)
        if self.calls == self.bad_call:
            out.features = [torch.full_like(f, float("nan")) for f in out.features]
        return out


def test_non_finite_features_skip_the_step(caplog):
    config = DragConfig(max_iterations=5, stop_distance=0.5)
    result = optimize_latent(FlakyBackbone(bad_call=3), make_state(blob_latent()), HANDLE, TARGET, None, config)
    assert result.skipped_steps == [2]
    assert result.steps == 4 and result.iterations == 5
    assert torch.isfinite(result.latent).all()
    assert torch.equal(result.trajectory[2], result.trajectory[1])  # no tracking on garbage features
    assert "step skipped" in caplog.text


def test_runs_under_inference_mode_like_comfyui_nodes():
    # ComfyUI executes nodes inside torch.inference_mode(); the state's tensors are inference tensors.
    # (Whether the UNet's weights are usable by autograd is the backbone adapter's business.)
    backbone = ToyBackbone()
    with torch.inference_mode():
        state = make_state(blob_latent())
        mask = torch.ones(1, 1, LATENT, LATENT)
        mask[..., :2, :] = 0
        result = optimize_latent(backbone, state, HANDLE, TARGET, mask, DragConfig(max_iterations=3))
    assert result.steps == 3
    assert not torch.equal(result.latent, blob_latent())


def test_non_finite_source_raises():
    z = blob_latent()
    z[0, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="source latent z_t contains NaN"):
        optimize_latent(ToyBackbone(), make_state(z), HANDLE, TARGET, None, DragConfig(max_iterations=2))


def test_unet_weights_get_no_gradient():
    backbone = ToyBackbone(weights_require_grad=True)
    result = optimize_latent(backbone, make_state(blob_latent()), HANDLE, TARGET, None, DragConfig(max_iterations=3))
    assert result.steps == 3
    assert backbone.eps_weight.grad is None


def test_callback_can_interrupt():
    class Interrupted(Exception):
        pass

    def callback(done: int, total: int) -> None:
        if done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        optimize_latent(ToyBackbone(), make_state(blob_latent()), HANDLE, TARGET, None, DragConfig(), callback=callback)


def test_points_outside_grid_rejected():
    with pytest.raises(ValueError, match=r"target 0 at grid \[17.0, 48.0\] is outside the 48×48 grid"):
        optimize_latent(ToyBackbone(), make_state(blob_latent()), HANDLE, torch.tensor([[17.0, 48.0]]), None)


def test_to_pixels_inverts_grid_points():
    points = DragPoints(pairs=(((96.0, 40.0), (10.0, 2.0)),), width=192, height=100)
    handles, targets = grid_points(points, 100, 192)
    assert to_pixels(handles, 100, 192).tolist() == [[96.0, 40.0]]
    assert to_pixels(targets, 100, 192).tolist() == [[10.0, 2.0]]


def test_config_defaults_match_spec():
    c = DragConfig()
    assert (c.feature_blocks, c.r_m, c.r_p, c.lam, c.lr, c.max_iterations, c.stop_distance, c.seed) == (
        (2,),
        1,
        3,
        0.1,
        0.01,
        80,
        2.0,
        42,
    )
    assert c.motion_anchor == "current"  # the reference's motion supervision
    with pytest.raises(ValueError):
        DragConfig(lr=0)
    with pytest.raises(ValueError, match="motion_anchor"):
        DragConfig(motion_anchor="original")
