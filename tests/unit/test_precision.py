"""Mixed precision in the drag: fp16 loss scaling skips overflowing steps and says so; bf16 runs."""

import logging

import torch
from torch.nn import functional as nnf

from dragkit.drag_core.backbone import UNetOutput, UNetRequest
from dragkit.drag_core.drag_loop import DragConfig
from dragkit.drag_core.dragdiffusion import optimize_latent
from dragkit.drag_core.precision import LossScaler
from dragkit.drag_core.schedule import DDIMSchedule, scaled_linear_alphas_cumprod
from dragkit.drag_core.state import DiffusionState


class LoudBackbone:
    """Features are a conv of z times ``gain``: large enough that fp16 gradients overflow at the
    initial loss scale 2¹⁶ and need a few halvings (the reference's GradScaler situation)."""

    num_decoder_blocks = 4
    num_self_attention_layers = 16

    def __init__(self, gain: float) -> None:
        self.gain = gain
        self.weight = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.3
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.dtypes: list[torch.dtype] = []

    def __call__(self, z, timestep, context, request=UNetRequest()) -> UNetOutput:
        features = nnf.conv2d(z, self.weight, padding=1)
        self.dtypes.append(features.dtype)
        return UNetOutput(eps=z * 0.1, features=[features * self.gain for _ in request.feature_blocks])


def _run(backbone, precision: str, iterations: int = 12):
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    state = DiffusionState(DDIMSchedule(scaled_linear_alphas_cumprod()), 15, z, torch.zeros(1, 1, 4))
    config = DragConfig(max_iterations=iterations, stop_distance=0.5, precision=precision)
    handles, targets = torch.tensor([[10.0, 10.0]]), torch.tensor([[10.0, 20.0]])
    return optimize_latent(backbone, state, handles, targets, None, config)


def test_loss_scaler_halves_on_overflow_and_grows_after_clean_steps():
    scaler = LossScaler(True, scale=8.0, growth_interval=3)
    scaler.update(False)
    assert scaler.scale == 4.0
    for _ in range(3):
        scaler.update(True)
    assert scaler.scale == 8.0
    assert LossScaler(False).scale == 1.0


def test_fp16_overflowing_steps_are_skipped_reported_and_recovered(caplog):
    backbone = LoudBackbone(gain=100.0)
    with caplog.at_level(logging.WARNING):
        result = _run(backbone, "fp16")
    assert torch.float16 in backbone.dtypes  # the forward really ran under fp16 autocast
    assert result.skipped_steps and result.skipped_steps == list(range(len(result.skipped_steps)))
    assert result.steps > 0 and result.steps + len(result.skipped_steps) == result.iterations
    assert any("loss scale now" in r.message for r in caplog.records)
    assert torch.isfinite(result.latent).all()


def test_fp32_takes_every_step_on_the_same_problem():
    result = _run(LoudBackbone(gain=100.0), "fp32")
    assert result.skipped_steps == [] and result.steps == result.iterations


def test_bf16_autocast_runs_without_loss_scaling():
    backbone = LoudBackbone(gain=1.0)
    result = _run(backbone, "bf16", iterations=4)
    assert torch.bfloat16 in backbone.dtypes
    assert result.skipped_steps == [] and result.steps == 4
