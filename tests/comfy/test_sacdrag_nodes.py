"""The training-free self-attention drag in-process: DDIMInvert (1.0) → DenoiseToStep → MotionSupervisionOptimize →
ReferenceLatentDenoise on ComfyUI's real UNet and hooks."""


import pytest
import torch

from dragkit.drag_core.points import DragPoints

STEPS, DRAG_STEP, SAC_STEP = 10, 5, 3  # a short schedule keeps the tier fast
POINTS = DragPoints((((40, 40), (70, 52)),), 128, 128).to_json()


@pytest.fixture
def prompts(comfy):
    return comfy.conditioning(comfy.random_context(1)), comfy.conditioning(comfy.random_context(3))


@pytest.fixture
def z_T(tiny_model, prompts):
    from dragkit.nodes.inversion_nodes import DDIMInvert

    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        state, _ = DDIMInvert.execute(tiny_model, latent, prompts[0], STEPS, 1.0, True)
    assert state.step_index == 0
    return state


def _to_step(model, state, edit=None, control=True, drag_step=DRAG_STEP, sac_step=SAC_STEP, sac_layer=10):
    from dragkit.nodes.sacdrag_nodes import DenoiseToStep

    with torch.inference_mode():
        return DenoiseToStep.execute(model, state, drag_step, control, sac_step, sac_layer, edit)[0]


def _finish(model, state, control=True, start_layer=10):
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise

    with torch.inference_mode():
        return ReferenceLatentDenoise.execute(model, state, control, 0, start_layer)[0]["samples"]


def test_mutual_attention_starts_exactly_at_sac_step(tiny_model, z_T, prompts, monkeypatch):
    from dragkit.nodes.comfy_unet import ComfyBackbone

    fired = []  # per UNet call: (σ, the self-attention layers whose keys/values came from the source)
    original = ComfyBackbone._check_fired

    def record(self, request, record):
        fired.append(sorted(record.mutual_layers))
        original(self, request, record)

    monkeypatch.setattr(ComfyBackbone, "_check_fired", record)
    state = _to_step(tiny_model, z_T, edit=prompts[1])
    assert fired == [[] if i < SAC_STEP else list(range(10, 16)) for i in range(DRAG_STEP)]
    assert state.step_index == DRAG_STEP and state.edited is not None


def test_the_edit_prompt_reaches_only_the_edited_branch(tiny_model, comfy, z_T, prompts):
    from dragkit.drag_core.inversion import ddim_denoise
    from dragkit.nodes.comfy_unet import ComfyBackbone

    state = _to_step(tiny_model, z_T, edit=prompts[1], control=False)
    backbone = ComfyBackbone(tiny_model, "Test")
    backbone.load()
    alone = {}
    with torch.no_grad():
        for name, (cond,) in (("source", prompts[0]), ("edit", prompts[1])):
            alone[name] = ddim_denoise(backbone, z_T.source, cond[0], z_T.schedule, range(0, DRAG_STEP))
    torch.testing.assert_close(state.source, alone["source"], rtol=1e-4, atol=1e-4)  # batch 2 vs 1: float rounding
    torch.testing.assert_close(state.edited, alone["edit"], rtol=1e-4, atol=1e-4)  # batch 2 vs 1: float rounding
    assert not torch.allclose(alone["source"], alone["edit"])
    assert torch.equal(state.edit_context, prompts[1][0][0]) and torch.equal(state.context, z_T.context)


def test_without_control_and_points_the_path_reproduces_plain_ddim_reconstruction(tiny_model, z_T):
    state = _to_step(tiny_model, z_T, control=False)
    assert state.edited is None  # identical branches are computed once
    split = _finish(tiny_model, state, control=False)
    whole = _finish(tiny_model, z_T, control=False)
    assert torch.equal(split, whole)


def test_the_full_training_free_chain_drags_the_edited_branch(tiny_model, z_T, prompts):
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.points_nodes import DragPoints

    image = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    at_drag = _to_step(tiny_model, z_T, edit=prompts[1])
    with torch.inference_mode():
        drag_points, _ = DragPoints.execute(image, POINTS).result
        dragged = MotionSupervisionOptimize.execute(
            tiny_model, at_drag, drag_points, 2, 0.01, 0.1, 1, 3, 2.0, "2", 42, "auto").result[0]
    assert torch.equal(dragged.source, at_drag.source) and not torch.equal(dragged.edited, at_drag.edited)
    controlled, free = _finish(tiny_model, dragged), _finish(tiny_model, dragged, control=False)
    assert torch.isfinite(controlled).all() and not torch.allclose(controlled, free)


def test_a_generated_image_from_seed_noise_with_source_and_edit_prompts(tiny_model, prompts):
    from dragkit.nodes.inversion_nodes import DDIMSample

    with torch.inference_mode():
        (noise,) = DDIMSample.execute(tiny_model, prompts[0], prompts[1], 42, STEPS, 7.5, 1.0, 128, 128)
    assert noise.step_index == 0 and noise.guidance_scale == 7.5
    edit = [[torch.randn(1, 154, 768, generator=torch.Generator().manual_seed(5)), {}]]  # a longer edit prompt
    state = _to_step(tiny_model, noise, edit=edit)
    assert state.edited.shape == (1, 4, 16, 16) and not torch.allclose(state.edited, state.source)
    assert torch.isfinite(_finish(tiny_model, state)).all()


def test_clear_errors(tiny_model, comfy, prompts):
    from dragkit.nodes.errors import DragKitInputError
    from dragkit.nodes.inversion_nodes import DDIMInvert

    latent = {"samples": torch.randn(1, 4, 16, 16)}
    with torch.inference_mode():
        partial, _ = DDIMInvert.execute(tiny_model, latent, prompts[0], STEPS, 0.7, False)
    with pytest.raises(DragKitInputError, match="DenoiseToStep: input 'drag_step'.*inversion_strength 1.0"):
        _to_step(tiny_model, partial, drag_step=1)
    with pytest.raises(DragKitInputError, match=r"DenoiseToStep: input 'sac_layer': must be in \[0, 15\]"):
        _to_step(tiny_model, partial, drag_step=STEPS, sac_layer=16)
    with pytest.raises(DragKitInputError, match="input 'edit_conditioning'"):
        _to_step(tiny_model, partial, edit=[[torch.zeros(1, 77, 32), {}]], drag_step=STEPS)
