"""Classifier-free guidance for generated images (SPEC §1.5)."""

import torch

from dragkit.drag_core.backbone import MutualSelfAttention, UNetOutput, UNetRequest
from dragkit.drag_core.drag_loop import DragConfig
from dragkit.drag_core.dragdiffusion import optimize_latent
from dragkit.drag_core.guidance import Prompt, concat_contexts, feature_weight, guided
from dragkit.drag_core.inversion import ddim_denoise
from dragkit.drag_core.schedule import DDIMSchedule, ddim_step, scaled_linear_alphas_cumprod
from dragkit.drag_core.state import DiffusionState


class PromptAware:
    """ε and features depend on the latent and on the prompt embedding, so the branches differ."""

    num_decoder_blocks = 4
    num_self_attention_layers = 16

    def __init__(self) -> None:
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.requests: list[tuple[int, UNetRequest]] = []

    def __call__(self, z, timestep, context, request=UNetRequest()):
        self.requests.append((z.shape[0], request))
        bias = context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        features = [torch.cat([z * (1 + bias), z.roll(1, -1) - bias], dim=1) for _ in request.feature_blocks]
        return UNetOutput(eps=torch.tanh(z + bias), features=features)


def _contexts():
    return torch.full((1, 77, 8), 0.5), torch.zeros(1, 77, 8)


def test_feature_weight_is_s_over_2s_minus_1():
    assert feature_weight(7.5) == 7.5 / 14
    assert feature_weight(1.0) == 1.0


def test_scale_one_or_no_uncond_is_a_plain_call():
    backbone = PromptAware()
    z = torch.randn(1, 4, 6, 6)
    cond, uncond = _contexts()
    plain = backbone(z, 681, cond, UNetRequest(feature_blocks=(2,)))
    for out in (guided(backbone, z, 681, Prompt(cond, uncond, 1.0), UNetRequest(feature_blocks=(2,))),
                guided(backbone, z, 681, Prompt(cond, None, 7.5), UNetRequest(feature_blocks=(2,)))):
        assert torch.equal(out.eps, plain.eps) and torch.equal(out.features[0], plain.features[0])


def test_guided_eps_and_features_follow_spec():
    backbone = PromptAware()
    z = torch.randn(2, 4, 6, 6)
    cond, uncond = _contexts()
    out = guided(backbone, z, 681, Prompt(cond, uncond, 7.5), UNetRequest(feature_blocks=(2,)))
    eu, ec = backbone(z, 681, uncond).eps, backbone(z, 681, cond).eps
    torch.testing.assert_close(out.eps, eu + 7.5 * (ec - eu))
    fu = backbone(z, 681, uncond, UNetRequest(feature_blocks=(2,))).features[0]
    fc = backbone(z, 681, cond, UNetRequest(feature_blocks=(2,))).features[0]
    c = 7.5 / 14
    torch.testing.assert_close(out.features[0], torch.cat([(1 - c) * fu, c * fc], dim=1))
    assert backbone.requests[0][0] == 4  # one call on the batch [uncond × 2, cond × 2]


def test_mutual_pairs_apply_per_branch():
    backbone = PromptAware()
    cond, uncond = _contexts()
    mutual = MutualSelfAttention(frozenset({10}), ((1, 0),))
    guided(backbone, torch.randn(2, 4, 6, 6), 681, Prompt(cond, uncond, 7.5), UNetRequest(mutual=mutual))
    assert backbone.requests[0][1].mutual.pairs == ((1, 0), (3, 2))


def test_contexts_of_different_lengths_are_repeated_to_a_common_length():
    a, b = torch.randn(1, 77, 8), torch.randn(1, 154, 8)
    both = concat_contexts([a, b])
    assert both.shape == (2, 154, 8)
    assert torch.equal(both[0, :77], a[0]) and torch.equal(both[0, 77:], a[0]) and torch.equal(both[1], b[0])


def test_guided_denoise_step_is_the_cfg_ddim_step():
    backbone = PromptAware()
    schedule = DDIMSchedule(backbone.alphas_cumprod)
    cond, uncond = _contexts()
    z = torch.randn(1, 4, 6, 6)
    out = ddim_denoise(backbone, z, Prompt(cond, uncond, 7.5), schedule, range(20, 21))
    eu, ec = backbone(z, 581, uncond).eps, backbone(z, 581, cond).eps
    torch.testing.assert_close(out, ddim_step(z, eu + 7.5 * (ec - eu), schedule.alpha(581), schedule.alpha(561)))


def test_the_drag_of_a_generated_image_runs_guided():
    backbone = PromptAware()
    cond, uncond = _contexts()
    state = DiffusionState(DDIMSchedule(backbone.alphas_cumprod), 15, torch.randn(1, 4, 8, 8), cond,
                           uncond_context=uncond, guidance_scale=7.5)
    result = optimize_latent(backbone, state, torch.tensor([[10.0, 10.0]]), torch.tensor([[10.0, 16.0]]), None,
                             DragConfig(max_iterations=3))
    assert result.unet_passes == 3 and all(batch == 2 for batch, _ in backbone.requests)
    assert not torch.equal(result.latent, state.source)
