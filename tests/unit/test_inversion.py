import pytest
import torch

from dragkit.drag_core.inversion import ddim_denoise, ddim_invert
from dragkit.drag_core.schedule import DDIMSchedule, ddim_step
from toy_backbones import SmoothBackbone


@pytest.fixture
def setup():
    backbone = SmoothBackbone()
    schedule = DDIMSchedule(backbone.alphas_cumprod, 50)
    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    context = torch.zeros(1, 77, 8)
    return backbone, schedule, z0, context


def test_inversion_evaluates_target_timesteps_upward(setup):
    backbone, schedule, z0, context = setup
    ddim_invert(backbone, z0, context, schedule, 35)
    assert [t for t, _ in backbone.calls] == list(range(1, 682, 20))


def test_first_inversion_step_is_the_reference_formula(setup):
    backbone, schedule, z0, context = setup
    z1 = ddim_invert(backbone, z0, context, schedule, 1)
    a0, a1 = schedule.alphas_cumprod[0].item(), schedule.alphas_cumprod[1].item()
    eps = backbone(z0, 1, context).eps
    x0 = (z0 - (1 - a0) ** 0.5 * eps) / a0**0.5
    torch.testing.assert_close(z1, a1**0.5 * x0 + (1 - a1) ** 0.5 * eps)
    corrected = ddim_invert(backbone, z0, context, schedule, 1, first_step_correction=True)
    torch.testing.assert_close(corrected, a1**0.5 * z0 + (1 - a1) ** 0.5 * eps)
    assert not torch.allclose(corrected, z1)


def test_denoise_walks_down_and_ends_clean(setup):
    backbone, schedule, z0, context = setup
    z_t = torch.randn_like(z0)
    out = ddim_denoise(backbone, z_t, context, schedule, 48)
    assert [t for t, _ in backbone.calls] == [21, 1]
    eps21 = backbone(z_t, 21, context).eps
    z1 = ddim_step(z_t, eps21, schedule.alpha(21), schedule.alpha(1))
    eps1 = backbone(z1, 1, context).eps
    torch.testing.assert_close(out, ddim_step(z1, eps1, schedule.alpha(1), 1.0))


def test_invert_then_denoise_returns_close_to_the_input(setup):
    backbone, schedule, z0, context = setup
    start = schedule.start_index(0.7)
    z_t = ddim_invert(backbone, z0, context, schedule, 50 - start, first_step_correction=True)
    back = ddim_denoise(backbone, z_t, context, schedule, start)
    ratio = (back - z0).norm() / (z_t - z0).norm()
    assert ratio < 0.05, ratio


def test_callback_sees_every_step_and_can_interrupt(setup):
    backbone, schedule, z0, context = setup
    seen = []
    ddim_invert(backbone, z0, context, schedule, 5, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 5) for i in range(1, 6)]

    class Stop(Exception):
        pass

    def interrupt(done, total):
        if done == 2:
            raise Stop

    backbone.calls.clear()
    with pytest.raises(Stop):
        ddim_denoise(backbone, z0, context, schedule, 10, callback=interrupt)
    assert len(backbone.calls) == 2


class _ElsewhereBackbone:
    """A UNet on another device than the latent it is given (the meta device stands in for a GPU: mixing its
    tensors with CPU ones fails as mixing CUDA and CPU ones does)."""

    device = torch.device("meta")
    alphas_cumprod = SmoothBackbone().alphas_cumprod

    def __call__(self, z, timestep, context, request=None):
        from dragkit.drag_core.backbone import UNetOutput

        assert z.device == self.device
        return UNetOutput(eps=torch.zeros_like(z))


def test_inversion_and_denoising_follow_the_unet_to_its_device(setup):
    # Found on an H200: DDIMInvert got its latent from ComfyUI's CPU (the intermediate device) and the UNet's
    # ε on the GPU; the DDIM update mixed the two.
    _, schedule, z0, context = setup
    backbone = _ElsewhereBackbone()
    assert ddim_invert(backbone, z0, context, schedule, 3).device == backbone.device
    assert ddim_denoise(backbone, z0, context, schedule, 47).device == backbone.device
