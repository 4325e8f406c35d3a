"""The training-free drag's branch denoising (SPEC §3) on a spy backbone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dragkit.drag_core.backbone import MutualSelfAttention, UNetOutput, UNetRequest
from dragkit.drag_core.drag_loop import DragConfig
from dragkit.drag_core.dragdiffusion import optimize_latent
from dragkit.drag_core.inversion import ddim_denoise, ddim_invert
from dragkit.drag_core.reference import branches_identical, denoise_branches
from dragkit.drag_core.sacdrag import DRAG_STEP, SAC_LAYER, SAC_STEP
from dragkit.drag_core.schedule import DDIMSchedule, scaled_linear_alphas_cumprod
from dragkit.drag_core.state import DiffusionState
from toy_backbones import SmoothBackbone

MUTUAL = MutualSelfAttention(frozenset(range(10, 16)), ((1, 0),))


class Spy:
    """ε depends on the latent and the prompt; with mutual attention an edited item also sees its
    source item's latent. Records (timestep, batch, per-item prompt means, mutual) for every call."""

    num_decoder_blocks = 4
    num_self_attention_layers = 16

    def __init__(self) -> None:
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.calls: list[tuple[int, int, list[float], MutualSelfAttention | None]] = []

    def __call__(self, z, timestep, context, request=UNetRequest()):
        prompts = context.expand(z.shape[0], -1, -1).mean(dim=(1, 2))
        self.calls.append((int(timestep), z.shape[0], prompts.tolist(), request.mutual))
        eps = torch.tanh(0.5 * z + prompts.reshape(-1, 1, 1, 1))
        if request.mutual is not None:
            eps = eps.clone()
            for edited, source in request.mutual.pairs:
                eps[edited] = eps[edited] + 0.1 * z[source]
        features = [torch.cat([z, z.roll(1, -1)], dim=1) for _ in request.feature_blocks]
        return UNetOutput(eps=eps, features=features)


SOURCE, EDIT = torch.full((1, 77, 8), 0.25), torch.full((1, 77, 8), -0.5)


def z_T_state(**kw) -> DiffusionState:
    schedule = DDIMSchedule(scaled_linear_alphas_cumprod(), 50)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return DiffusionState(**{"schedule": schedule, "step_index": 0, "source": z, "context": SOURCE, **kw})


def test_defaults_are_the_paper_s_setup():
    assert (SAC_STEP, DRAG_STEP, SAC_LAYER) == (10, 10, 10)


def test_the_edit_prompt_reaches_only_the_edited_branch():
    state = z_T_state(edit_context=EDIT)
    spy = Spy()
    out = denoise_branches(spy, state, 10)
    assert [t for t, _, _, _ in spy.calls] == state.schedule.timesteps[:10]
    assert all(prompts == [0.25, -0.5] for _, _, prompts, _ in spy.calls)  # [source, edited]
    # Each branch is exactly a one-branch denoise on its own prompt.
    torch.testing.assert_close(out.source, ddim_denoise(Spy(), state.source, SOURCE, state.schedule, range(0, 10)))
    torch.testing.assert_close(out.edited, ddim_denoise(Spy(), state.source, EDIT, state.schedule, range(0, 10)))
    assert out.step_index == 10 and out.timestep == 781 and torch.equal(out.edit_context, EDIT)


def test_mutual_attention_starts_exactly_at_sac_step():
    spy = Spy()
    out = denoise_branches(spy, z_T_state(edit_context=EDIT), 12, MUTUAL, mutual_from_index=7)
    assert [m is not None for _, _, _, m in spy.calls] == [i >= 7 for i in range(12)]
    plain = denoise_branches(Spy(), z_T_state(edit_context=EDIT), 12)
    assert torch.equal(out.source, plain.source)  # the source branch is never changed by the control
    assert not torch.allclose(out.edited, plain.edited)


def test_identical_branches_are_computed_once():
    spy = Spy()
    out = denoise_branches(spy, z_T_state(edit_context=SOURCE.clone()), 10, MUTUAL, 0)
    assert all(batch == 1 for _, batch, _, _ in spy.calls) and out.edited is None
    assert branches_identical(z_T_state()) and not branches_identical(z_T_state(edit_context=EDIT))


def test_without_control_and_drag_the_path_is_plain_ddim_reconstruction():
    schedule = DDIMSchedule(scaled_linear_alphas_cumprod(), 50)
    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.5
    backbone = SmoothBackbone()  # ε varies slowly along the trajectory, as a trained model's
    z_T = ddim_invert(backbone, z0, SOURCE, schedule, 50, first_step_correction=True)
    state = DiffusionState(schedule, 0, z_T, SOURCE)
    at_drag_step = denoise_branches(backbone, state, DRAG_STEP)
    split = ddim_denoise(backbone, at_drag_step.edited_latent, at_drag_step.edited_context, schedule, DRAG_STEP)
    whole = ddim_denoise(backbone, z_T, SOURCE, schedule, 0)
    assert torch.equal(split, whole)
    # … and the full DDIM round trip returns near the input (measured 0.065 of the way back to z_T).
    assert (whole - z0).norm() < 0.1 * (z_T - z0).norm()


def test_the_drag_optimizes_the_edited_branch_on_the_edit_prompt():
    state = denoise_branches(Spy(), z_T_state(edit_context=EDIT), 10)
    spy = Spy()
    config = DragConfig(max_iterations=3, stop_distance=0.5)
    handles, targets = torch.tensor([[10.0, 10.0]]), torch.tensor([[10.0, 20.0]])
    result = optimize_latent(spy, state, handles, targets, None, config)
    assert all(prompts == [-0.5] for _, _, prompts, _ in spy.calls)
    from_source = optimize_latent(Spy(), replace(state, edited=None, edit_context=None), handles, targets, None, config)
    assert not torch.allclose(result.latent, from_source.latent)
    assert torch.equal(state.edited, denoise_branches(Spy(), z_T_state(edit_context=EDIT), 10).edited)  # untouched


def test_end_index_before_the_state_is_refused():
    with pytest.raises(ValueError, match="end_index 3"):
        denoise_branches(Spy(), replace(z_T_state(), step_index=5), 3)
