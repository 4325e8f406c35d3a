"""Dragging a generated image (SPEC §1.5): DDIMSample → MotionSupervisionOptimize → ReferenceLatentDenoise."""


import pytest
import torch


def _sample(model, comfy, **kw):
    from dragkit.nodes.inversion_nodes import DDIMSample

    args = dict(seed=42, steps=20, cfg=7.5, strength=0.7, width=128, height=128)
    args.update(kw)
    cond, uncond = comfy.conditioning(comfy.random_context(1)), comfy.conditioning(comfy.random_context(2))
    with torch.inference_mode():
        return DDIMSample.execute(model, cond, uncond, **args)[0]


def test_generation_split_at_the_drag_step_equals_one_uninterrupted_generation(tiny_model, comfy):
    from dragkit.drag_core.guidance import Prompt
    from dragkit.drag_core.inversion import ddim_denoise
    from dragkit.nodes.comfy_unet import ComfyBackbone
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise

    state = _sample(tiny_model, comfy)
    assert state.step_index == 6 and state.guidance_scale == 7.5 and state.uncond_context is not None
    with torch.inference_mode():
        (image,) = ReferenceLatentDenoise.execute(tiny_model, state, True, 0, 10)
    backbone = ComfyBackbone(tiny_model, "Test")
    backbone.load()
    noise = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(42))
    with torch.no_grad():
        whole = ddim_denoise(backbone, noise, Prompt(state.context, state.uncond_context, 7.5), state.schedule, 0)
    torch.testing.assert_close(image["samples"], tiny_model.model.process_latent_out(whole), rtol=1e-5, atol=1e-5)


def test_the_generated_image_is_dragged_and_denoised_with_guidance(tiny_model, comfy):
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import ReferenceLatentDenoise
    from dragkit.nodes.points_nodes import DragPoints

    state = _sample(tiny_model, comfy)
    from dragkit.drag_core.points import DragPoints as Points

    points = Points((((40, 40), (70, 50)),), 128, 128).to_json()
    with torch.inference_mode():
        drag_points, _ = DragPoints.execute(torch.rand(1, 128, 128, 3), points).result
        edited, _, _ = MotionSupervisionOptimize.execute(
            tiny_model, state, drag_points, 3, 0.01, 0.1, 1, 3, 2.0, "2", 42, "auto").result
        (controlled,) = ReferenceLatentDenoise.execute(tiny_model, edited, True, 0, 10)
        (plain,) = ReferenceLatentDenoise.execute(tiny_model, edited, False, 0, 10)
    assert edited.guidance_scale == 7.5 and not torch.equal(edited.edited, state.source)
    assert torch.isfinite(controlled["samples"]).all()
    assert not torch.allclose(controlled["samples"], plain["samples"])  # the control acts under CFG too


@pytest.mark.parametrize("change, match", [({"strength": 0.0}, "input 'strength'"), ({"steps": 0}, "input 'steps'"),
                                           ({"width": 100}, "input 'width'")])
def test_bad_sample_settings_are_clear_errors(tiny_model, comfy, change, match):
    from dragkit.nodes.errors import DragKitInputError

    with pytest.raises(DragKitInputError, match="DragKit DDIMSample: " + match):
        _sample(tiny_model, comfy, **change)
