import pytest
import torch

from dragkit.drag_core.schedule import (
    DDIMSchedule,
    ddim_step,
    inversion_step_count,
    leading_timesteps,
    scaled_linear_alphas_cumprod,
    sigma_of,
    sigma_space_to_vp,
    vp_to_sigma_space,
)


def test_fifty_step_timesteps_are_981_to_1():
    ts = leading_timesteps(50)
    assert ts[0] == 981 and ts[-1] == 1 and len(ts) == 50
    assert all(a - b == 20 for a, b in zip(ts, ts[1:]))


@pytest.mark.parametrize(
    "strength, n, t", [(0.7, 35, 681), (0.6, 30, 581), (0.75, 38, 741), (0.8, 40, 781), (1.0, 50, 981)]
)
def test_inversion_strength_lands_on_spec_timestep(strength, n, t):
    schedule = DDIMSchedule(scaled_linear_alphas_cumprod(), 50)
    assert inversion_step_count(50, strength) == n
    assert schedule.timesteps[schedule.start_index(strength)] == t


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.01])
def test_strength_outside_unit_interval_is_refused(strength):
    with pytest.raises(ValueError, match="inversion_strength"):
        inversion_step_count(50, strength)


def test_steps_below_one_are_refused():
    with pytest.raises(ValueError, match="steps"):
        leading_timesteps(0)


def test_alphas_cumprod_match_sd15_values():
    a = scaled_linear_alphas_cumprod()
    # Well-known SD1.5 values (diffusers' scaled_linear schedule).
    assert a[0].item() == pytest.approx(0.99915, abs=1e-5)
    assert a[999].item() == pytest.approx(0.0046, abs=1e-4)


def test_vp_ddim_step_equals_euler_step_in_sigma_space():
    a = scaled_linear_alphas_cumprod()
    z = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    eps = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    for t, t_prev in [(681, 661), (21, 1), (1, None)]:
        alpha_t = a[t].item()
        alpha_prev = 1.0 if t_prev is None else a[t_prev].item()
        vp = ddim_step(z, eps, alpha_t, alpha_prev)
        x = vp_to_sigma_space(z, alpha_t)
        x_next = x + (sigma_of(alpha_prev) - sigma_of(alpha_t)) * eps
        torch.testing.assert_close(sigma_space_to_vp(x_next, alpha_prev), vp, rtol=1e-12, atol=1e-12)


def test_ddim_step_inverts_itself_for_fixed_eps():
    z = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    eps = torch.randn_like(z)
    there = ddim_step(z, eps, 0.9, 0.3)
    torch.testing.assert_close(ddim_step(there, eps, 0.3, 0.9), z)
