"""DDIMInvert and ReferenceLatentDenoise in-process, against ComfyUI's own modules and samplers."""

import copy

import pytest
import torch


@pytest.fixture
def image_latent():
    # A smooth "image" latent in VAE units (ComfyUI LATENT convention, before process_in).
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(1, 4, 4, 4, generator=gen)
    return {"samples": torch.nn.functional.interpolate(base, size=(16, 16), mode="bilinear") * 5}


def _nodes():
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise

    return DDIMInvert(), ReferenceLatentDenoise()


def test_one_inversion_step_equals_hand_computed_ddim(tiny_model, comfy, image_latent):
    from dragkit.drag_core.schedule import scaled_linear_alphas_cumprod

    invert, _ = _nodes()
    ctx = comfy.random_context()
    with torch.inference_mode():
        state, _ = invert.execute(tiny_model, image_latent, comfy.conditioning(ctx), 50, 0.02, False)
    assert state.timestep == 1
    # Independent: ComfyUI's raw UNet on the VP latent at t = 1, the DDIM formula with float64 ᾱ.
    z0 = image_latent["samples"] * 0.18215
    unet = tiny_model.model.diffusion_model
    with torch.no_grad():
        eps = unet(z0, torch.tensor([1.0]), context=ctx)
    a = scaled_linear_alphas_cumprod()
    x0 = (z0 - (1 - a[0]).sqrt().float() * eps) / a[0].sqrt().float()
    expected = a[1].sqrt().float() * x0 + (1 - a[1]).sqrt().float() * eps
    torch.testing.assert_close(state.source, expected, rtol=1e-4, atol=1e-5)


def test_invert_then_denoise_reconstructs(tiny_model, comfy, image_latent):
    invert, denoise = _nodes()
    cond = comfy.conditioning(comfy.random_context())
    with torch.inference_mode():
        state, _ = invert.execute(tiny_model, image_latent, cond, 50, 0.7, False)
        (out,) = denoise.execute(tiny_model, state, True, 0, 10)
    assert state.timestep == 681 and state.step_index == 15
    z0 = image_latent["samples"]
    noisy_in_vae_units = state.source / 0.18215
    ratio = ((out["samples"] - z0).norm() / (noisy_in_vae_units - z0).norm()).item()
    # A random-weight UNet is a poor denoiser, so the round trip is not exact: measured 0.13
    # (the reconstruction is ~8× closer to the input than the inverted latent is).
    assert ratio < 0.25, ratio


def test_noisy_latent_continues_in_core_ksampler_advanced(tiny_model, comfy, image_latent):
    import nodes as comfy_nodes

    invert, denoise = _nodes()
    cond = comfy.conditioning(comfy.random_context())
    with torch.inference_mode():
        state, noisy = invert.execute(tiny_model, image_latent, cond, 50, 0.7, False)
        (ours,) = denoise.execute(tiny_model, state, False, 0, 10)
        (core,) = comfy_nodes.KSamplerAdvanced().sample(
            tiny_model, "disable", 0, 50, 1.0, "ddim", "ddim_uniform", cond, cond, noisy, 15, 10000, "disable"
        )
    torch.testing.assert_close(core["samples"], ours["samples"], rtol=1e-3, atol=1e-3)


def test_the_input_model_and_latent_are_left_untouched(tiny_model, comfy, image_latent):
    invert, denoise = _nodes()
    weights = {k: v.clone() for k, v in tiny_model.model.state_dict().items()}
    options = copy.deepcopy(tiny_model.model_options)
    latent_before = image_latent["samples"].clone()
    with torch.inference_mode():
        state, _ = invert.execute(tiny_model, image_latent, comfy.conditioning(comfy.random_context()), 10, 0.5, False)
        denoise.execute(tiny_model, state.with_edit(state.source + 0.1), True, 0, 10)
    assert tiny_model.model_options == options
    assert all(torch.equal(v, weights[k]) for k, v in tiny_model.model.state_dict().items())
    assert torch.equal(image_latent["samples"], latent_before)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"latent": {"samples": torch.zeros(1, 16, 16, 16)}}, "input 'latent'.*16 channels"),
        ({"latent": {"samples": torch.zeros(2, 4, 16, 16)}}, "input 'latent'.*batch of 2"),
        ({"latent": {"samples": torch.full((1, 4, 16, 16), float("nan"))}}, "input 'latent'.*NaN"),
        ({"inversion_strength": 0.0}, "input 'inversion_strength'.*\\(0, 1\\]"),
        ({"inversion_strength": 1.5}, "input 'inversion_strength'"),
        ({"steps": 0}, "input 'steps'"),
        ({"conditioning": [[torch.zeros(1, 77, 1024), {}]]}, "input 'conditioning'.*context dim 768"),
    ],
)
def test_bad_input_names_node_and_input(tiny_model, comfy, image_latent, change, match):
    from dragkit.nodes.errors import DragKitInputError

    invert, _ = _nodes()
    kwargs = dict(
        model=tiny_model, latent=image_latent, conditioning=comfy.conditioning(comfy.random_context()),
        steps=50, inversion_strength=0.7, first_step_correction=False,
    )
    kwargs.update(change)
    with pytest.raises(DragKitInputError, match="DragKit DDIMInvert: " + match):
        invert.execute(**kwargs)


def test_denoise_refuses_a_start_layer_the_model_does_not_have(tiny_model, comfy, image_latent):
    from dragkit.nodes.errors import DragKitInputError

    invert, denoise = _nodes()
    with torch.inference_mode():
        state, _ = invert.execute(tiny_model, image_latent, comfy.conditioning(comfy.random_context()), 10, 0.3, False)
    with pytest.raises(DragKitInputError, match="ReferenceLatentDenoise: input 'start_layer'"):
        denoise.execute(tiny_model, state.with_edit(state.source), True, 0, 16)
