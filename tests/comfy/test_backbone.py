"""The ComfyUI adapter: hooks fire exactly where SPEC says, and the input MODEL is never touched."""

import pytest
import torch


def _backbone(model, **kw):
    from dragkit.nodes.comfy_unet import ComfyBackbone

    backbone = ComfyBackbone(model, "Test", **kw)
    backbone.load()
    return backbone


def test_layout_matches_sd15_structure(tiny_model):
    backbone = _backbone(tiny_model)
    assert backbone.num_decoder_blocks == 4 and backbone.num_self_attention_layers == 16
    assert backbone.layout.decoder_taps[2] == 9  # third decoder block = output of output_blocks[8]
    assert backbone.layout.attn_keys[10:] == tuple(("output", b, 0) for b in range(6, 12))


def test_timesteps_match_comfyui_ddim_uniform(tiny_model):
    import comfy.samplers

    from dragkit.drag_core.schedule import DDIMSchedule

    sampling = tiny_model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "ddim_uniform", 50)
    assert sigmas[-1] == 0
    timesteps = [int(sampling.timestep(s)) for s in sigmas[:-1]]
    assert timesteps == DDIMSchedule(_backbone(tiny_model).alphas_cumprod, 50).timesteps


def test_feature_tap_fires_at_output_9_and_equals_the_input_of_output_block_9(tiny_model, comfy):
    from dragkit.drag_core.backbone import UNetRequest

    seen = {}

    def spy(h, hsp, transformer_options):
        seen[transformer_options["block"]] = h.clone()
        return h, hsp

    spied = tiny_model.clone()
    spied.set_model_output_block_patch(spy)
    backbone = _backbone(spied, feature_blocks=(2,))
    z = torch.randn(1, 4, 16, 16)
    out = backbone(z, 681, comfy.random_context(), UNetRequest(feature_blocks=(2,)))
    torch.testing.assert_close(out.features[0], seen[("output", 9)])
    assert out.features[0].shape == (1, 64, 16, 16)  # latent resolution, like diffusers up_blocks[2]


def test_mutual_attention_fires_only_in_layers_10_to_15_and_keeps_the_source_branch(tiny_model, comfy):
    from dragkit.drag_core.backbone import UNetRequest

    backbone = _backbone(tiny_model, mutual_start_layer=10)

    z = torch.randn(2, 4, 16, 16)
    ctx = comfy.random_context()
    plain = backbone(z, 681, ctx)
    controlled = backbone(z, 681, ctx, UNetRequest(mutual=backbone.mutual(((1, 0),))))
    assert sorted(backbone_record_layers(backbone, z, ctx)) == list(range(10, 16))
    assert torch.equal(controlled.eps[0], plain.eps[0])  # the source branch is bitwise unchanged
    assert not torch.allclose(controlled.eps[1], plain.eps[1])
    # With identical branches, attending to the source's keys/values is plain self-attention.
    same = torch.cat([z[:1], z[:1]])
    both = backbone(same, 681, ctx, UNetRequest(mutual=backbone.mutual(((1, 0),))))
    torch.testing.assert_close(both.eps[1], both.eps[0])


def backbone_record_layers(backbone, z, ctx):
    """Run once more and return the layers in which the mutual patch replaced keys/values."""
    from dragkit.drag_core.backbone import UNetRequest

    layers = []
    original_check = backbone._check_fired

    def capture(request, record):
        layers.extend(record.mutual_layers)
        original_check(request, record)

    backbone._check_fired = capture
    backbone(z, 681, ctx, UNetRequest(mutual=backbone.mutual(((1, 0),))))
    backbone._check_fired = original_check
    return layers


def test_a_patch_that_does_not_fire_is_an_error(tiny_model, comfy):
    from dragkit.drag_core.backbone import UNetRequest

    backbone = _backbone(tiny_model, feature_blocks=(2,))
    backbone._tap_to_block = {99: 2}  # a key that never occurs, as in the IP-adapter story
    with pytest.raises(RuntimeError, match="did not fire"):
        backbone(torch.randn(1, 4, 16, 16), 681, comfy.random_context(), UNetRequest(feature_blocks=(2,)))


def test_bottleneck_capture_and_replace(tiny_model, comfy):
    from dragkit.drag_core.backbone import UNetRequest

    backbone = _backbone(tiny_model, bottleneck=True)
    z, ctx = torch.randn(1, 4, 16, 16), comfy.random_context()
    captured = backbone(z, 681, ctx, UNetRequest(capture_bottleneck=True))
    same = backbone(z, 681, ctx, UNetRequest(bottleneck=captured.bottleneck))
    torch.testing.assert_close(same.eps, captured.eps)
    changed = backbone(z, 681, ctx, UNetRequest(bottleneck=captured.bottleneck * 3))
    assert not torch.allclose(changed.eps, captured.eps)


def test_gradient_pass_reaches_the_latent_and_leaves_weights_frozen(tiny_model, comfy):
    from dragkit.drag_core.backbone import UNetRequest

    backbone = _backbone(tiny_model, feature_blocks=(2,))
    params = list(tiny_model.model.diffusion_model.parameters())
    flags = [p.requires_grad for p in params]
    z = torch.randn(1, 4, 16, 16, requires_grad=True)
    out = backbone(z, 681, comfy.random_context(), UNetRequest(feature_blocks=(2,)))
    out.features[0].square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in params)
    assert [p.requires_grad for p in params] == flags  # restored after the pass


def test_non_sd_models_are_refused(comfy):
    from types import SimpleNamespace

    from dragkit.nodes.comfy_unet import check_sd_model
    from dragkit.nodes.errors import DragKitInputError

    fake = SimpleNamespace(model=SimpleNamespace(diffusion_model=torch.nn.Linear(2, 2)))
    with pytest.raises(DragKitInputError, match="DDIMInvert: input 'model'.*SD1"):
        check_sd_model(fake, "DDIMInvert")
    sdxl_like = comfy.tiny_sd15_model(unet_config={**comfy.TINY_SD15_UNET, "num_classes": "sequential", "adm_in_channels": 64})
    with pytest.raises(DragKitInputError, match="SDXL"):
        check_sd_model(sdxl_like, "DDIMInvert")


def test_source_branch_of_a_controlled_denoise_is_bitwise_a_plain_denoise(tiny_model, comfy):
    from dragkit.drag_core.inversion import ddim_denoise
    from dragkit.drag_core.reference import mutual_from
    from dragkit.drag_core.schedule import DDIMSchedule

    backbone = _backbone(tiny_model, mutual_start_layer=10)
    schedule = DDIMSchedule(backbone.alphas_cumprod, 50)
    gen = torch.Generator().manual_seed(4)
    source, edited = torch.randn(1, 4, 16, 16, generator=gen), torch.randn(1, 4, 16, 16, generator=gen)
    ctx = comfy.random_context()
    pair = torch.cat([source, edited])
    with torch.no_grad():
        controlled = ddim_denoise(backbone, pair, ctx, schedule, 44, mutual_from(backbone.mutual(((1, 0),)), 0))
        plain = ddim_denoise(backbone, pair, ctx, schedule, 44)
    assert torch.equal(controlled[0], plain[0])
    assert not torch.allclose(controlled[1], plain[1])
