"""The identity LoRA core: adapters, crops, parameter counts and the training loop."""

import logging

import pytest
import torch

from dragkit.drag_core.lora import LoRAConfig, LoRADelta, lora_parameter_count, random_square_crops, train_identity_lora
from dragkit.drag_core.schedule import scaled_linear_alphas_cumprod


def test_delta_starts_as_the_identity_with_gaussian_down_projection():
    delta = LoRADelta(64, 32, rank=16, scale=1.0, generator=torch.Generator().manual_seed(0))
    w = torch.randn(32, 64)
    assert torch.equal(delta(w), w)  # up = 0
    assert delta.down.std().item() == pytest.approx(1 / 16, rel=0.1)
    with torch.no_grad():
        delta.up.fill_(0.5)
    torch.testing.assert_close(delta(w), w + 0.5 * torch.ones(32, 16) @ delta.down)


def test_parameter_count_formula():
    assert lora_parameter_count([(320, 320), (320, 768)], rank=16) == 16 * (640 + 1088)


def test_crops_are_independent_squares_in_minus_one_to_one():
    image = torch.rand(1, 3, 40, 60)
    crops = random_square_crops(image, 32, 4, torch.Generator().manual_seed(0))
    assert crops.shape == (4, 3, 32, 32)
    assert crops.min() >= -1 and crops.max() <= 1
    assert not torch.equal(crops[0], crops[1]) or not torch.equal(crops[1], crops[2])


def test_small_images_are_upscaled_and_logged(caplog):
    with caplog.at_level(logging.INFO):
        crops = random_square_crops(torch.rand(1, 3, 10, 12), 32, 1, torch.Generator())
    assert crops.shape == (1, 3, 32, 32)
    assert any("upscaling" in r.message for r in caplog.records)


@pytest.mark.parametrize("bad", [{"rank": 0}, {"steps": 0}, {"precision": "fp8"}])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        LoRAConfig(**bad)


def _toy_problem(steps: int, seed: int = 0):
    """ε-model: a frozen linear map of z_t plus a LoRA-adapted 1×1 conv that can learn ε."""
    torch.manual_seed(123)
    base = torch.randn(4, 4) * 0.1
    delta = LoRADelta(4, 4, rank=2, scale=1.0, generator=torch.Generator().manual_seed(seed))
    calls = []

    def eps_model(z, t, ctx):
        calls.append(t)
        w = delta(base)
        return torch.einsum("oc,bchw->bohw", w, z)

    def encode(crops, generator):
        return torch.nn.functional.avg_pool2d(crops, 8)[:, :3].repeat(1, 2, 1, 1)[:, :4]

    config = LoRAConfig(rank=2, lr=5e-2, steps=steps, batch_size=4, resolution=16, seed=seed)
    result = train_identity_lora(
        eps_model, list(delta.parameters()), encode, torch.rand(1, 3, 20, 20), torch.zeros(1, 1, 8),
        scaled_linear_alphas_cumprod(), config, torch.device("cpu"),
    )
    return result, delta, calls


def test_training_lowers_the_loss_and_only_moves_the_lora():
    result, delta, calls = _toy_problem(steps=60)
    assert len(result.losses) == 60 and not result.skipped_steps
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert delta.up.abs().sum() > 0
    assert all(t.shape == (4,) and t.min() >= 0 and t.max() < 1000 for t in calls)


def test_training_is_deterministic_for_a_seed():
    a, da, _ = _toy_problem(steps=5)
    b, db, _ = _toy_problem(steps=5)
    assert a.losses == b.losses and torch.equal(da.up, db.up)


def _counting_moments(calls: list[int]):
    def moments(crops):
        calls.append(crops.shape[0])
        pooled = torch.nn.functional.avg_pool2d(crops, 8)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1), 0.1 + pooled.abs().mean(1, keepdim=True).expand(-1, 4, -1, -1)
    return moments


def _naive_sampler(moments):
    """The sampler without the identical-crop cache: every batch encoded."""
    def encode(crops, generator):
        mean, std = moments(crops)
        return (mean + std * torch.randn(mean.shape, generator=generator)) * 0.5
    return encode


@pytest.mark.parametrize("height, width, encodes", [(48, 48, [1]), (48, 80, None)])
def test_a_square_image_is_encoded_once_with_the_same_samples(height, width, encodes):
    """Every crop of a square image is the whole picture: one encode for the whole LoRA, and the latents drawn are
    exactly those of encoding every batch (same posterior, same noise); other images are encoded per batch."""
    from dragkit.drag_core.lora import posterior_sampler

    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    cached_calls, naive_calls = [], []
    cached = posterior_sampler(_counting_moments(cached_calls), lambda z: z * 0.5)
    naive = _naive_sampler(_counting_moments(naive_calls))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(6):
        a = cached(random_square_crops(image, 32, 4, g1), g1)
        b = naive(random_square_crops(image, 32, 4, g2), g2)
        torch.testing.assert_close(a, b)
    assert cached_calls == (encodes or [4] * 6) and naive_calls == [4] * 6


def test_the_low_rank_form_is_the_merged_weight_applied():
    """W·x + scale·up(down(x)) (the reference's form, DragKit's while training) = (W + scale·up·down)·x."""
    generator = torch.Generator().manual_seed(4)
    delta = LoRADelta(12, 20, 4, 0.5, generator)
    with torch.no_grad():
        delta.up.normal_(generator=generator)
    weight = torch.randn(20, 12, generator=generator)
    x = torch.randn(3, 7, 12, generator=generator)
    merged = torch.nn.functional.linear(x, delta(weight))
    torch.testing.assert_close(torch.nn.functional.linear(x, weight) + delta.low_rank(x), merged)


def test_latent_crop_encoding_encodes_the_picture_once_and_cuts_crops_on_the_latent_grid():
    """crop_encoding "latent": one VAE pass for the whole LoRA on a picture that is not square; every crop is a
    (size/8)² window of one posterior sample of the resized picture (trimmed to whole latent cells)."""
    from dragkit.drag_core.lora import latent_square_crops, posterior_sampler, resize_shorter_side

    image = torch.rand(1, 3, 50, 83, generator=torch.Generator().manual_seed(0))  # resized: 32 × 53 → 32 × 48
    calls, pictures = [], []
    moments = _counting_moments(calls)
    encode = posterior_sampler(lambda x: pictures.append(x[:1].clone()) or moments(x), lambda z: z)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        crops = latent_square_crops(encode, image, 32, 4, generator)
        assert crops.shape == (4, 4, 4, 4)
    assert calls == [1]  # one picture encoded, kept for the later steps
    torch.testing.assert_close(pictures[0], resize_shorter_side(image, 32)[:, :, :, :48])
    mean, std = moments(pictures[0])
    windows = [mean[0, :, :, left:left + 4] for left in range(3)]  # latent 4 × 6: three offsets along the width
    for crop in crops:  # each a sample around the mean of one window
        assert min(float((crop - w).abs().max()) for w in windows) <= float(std.max()) * 6


def test_latent_crop_encoding_trains_and_is_refused_off_the_latent_grid():
    with pytest.raises(ValueError, match="divisible by 8"):
        LoRAConfig(resolution=100, crop_encoding="latent")
    with pytest.raises(ValueError, match="crop_encoding"):
        LoRAConfig(crop_encoding="pixels")
    from dragkit.drag_core.lora import posterior_sampler

    calls = []
    delta = LoRADelta(4, 4, rank=2, scale=1.0, generator=torch.Generator().manual_seed(0))
    config = LoRAConfig(rank=2, lr=5e-2, steps=6, batch_size=2, resolution=16, crop_encoding="latent")
    result = train_identity_lora(
        lambda z, t, ctx: torch.einsum("oc,bchw->bohw", delta(torch.eye(4)), z), list(delta.parameters()),
        posterior_sampler(_counting_moments(calls), lambda z: z * 0.5), torch.rand(1, 3, 20, 37),
        torch.zeros(1, 1, 8), scaled_linear_alphas_cumprod(), config, torch.device("cpu"))
    assert len(result.losses) == 6 and calls == [1]  # 6 steps, one picture encoded (per crop: 6 batches of 2)


def test_the_pre_encoded_latents_are_capped_before_anything_is_encoded():
    """Every step's latents are encoded up front: the widgets' maxima (10000 steps × 64 crops at 2048 px) would
    hold hundreds of GB; SPEC's settings hold 21 MB."""
    assert LoRAConfig().latent_bytes == 80 * 4 * 4 * 64 * 64 * 4
    with pytest.raises(ValueError, match=r"steps × batch_size × resolution: 10000 × 64 crops at 2048 px .* GiB"):
        LoRAConfig(steps=10000, batch_size=64, resolution=2048)
