"""The toy model's classes and training script end to end at a token size: train, save, load, run."""

import torch


def test_a_short_training_run_saves_a_model_that_loads_and_runs(comfy, tmp_path):
    import train_toy
    from dragkit.nodes.comfy_unet import ComfyBackbone
    from dragkit.nodes.toy_model import IMAGE_SIZE, TOY_VAE_GROUP_CHANNELS, load_toy_model

    vae_model, vae_report = train_toy.train_vae(steps=2, batch=2, seed=0)
    model, clip, used, report = train_toy.train_diffusion(vae_model, steps=2, batch=4, dataset_size=8, seed=0)
    path = tmp_path / "toy.safetensors"
    train_toy.save(path, vae_model, model, clip, used, {"vae": vae_report, "diffusion": report})
    assert path.stat().st_size < 25e6 and path.with_suffix(".json").exists()

    with torch.inference_mode():
        model, clip, vae = load_toy_model(path)
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red disk on a grey background"))
        latent = vae.encode(torch.rand(1, IMAGE_SIZE, IMAGE_SIZE, 3))
        image = vae.decode(latent)
    assert cond[0][0].shape == (1, 77, 128) and torch.isfinite(cond[0][0]).all()
    assert latent.shape == (1, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8) and image.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    norms = [m for m in vae.first_stage_model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups == TOY_VAE_GROUP_CHANNELS for m in norms)
    backbone = ComfyBackbone(model, "Test", feature_blocks=(2,), mutual_start_layer=10)
    assert backbone.num_self_attention_layers == 16 and backbone.layout.decoder_taps[2] == 9  # SD1.5's indices


def test_zero_residual_branches_make_every_vae_block_the_identity(comfy):
    from comfy.ldm.models.autoencoder import AutoencoderKL

    import train_toy
    from dragkit.nodes.toy_model import vae_config

    vae_model = AutoencoderKL(**vae_config()["params"])
    train_toy.reset_parameters(vae_model, 0)
    train_toy.zero_residual_branches(vae_model)
    mid = vae_model.decoder.mid  # a res block and an attention block, 64 channels each
    x = torch.randn(1, 64, 4, 4)
    with torch.no_grad():
        assert torch.equal(mid.block_1(x), x)
        assert torch.equal(mid.attn_1(x), x)
        reset = AutoencoderKL(**vae_config()["params"])
        train_toy.reset_parameters(reset, 0)
        assert not torch.equal(reset.decoder.mid.block_1(x), x)  # without it, the block is not the identity
