"""The CUDA code paths: fp16 autocast with loss scaling in the drag and the identity LoRA, device placement,
memory. Written for a GPU (see conftest.py); rehearsed on the CPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda
CUDA = torch.cuda.is_available()


def _inputs(model, size: int = 64):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, size, size, 3, generator=generator)
    points = '{"version": 1, "width": 64, "height": 64, "points": [{"handle": [20, 24], "target": [34, 30]}]}'
    return image, points


def _chain(mini, precision: str = "auto", iterations: int = 2):
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise
    from dragkit.nodes.points_nodes import DragPoints

    model, clip, vae = mini
    image, points = _inputs(model)
    outputs = {}
    with torch.inference_mode():
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red square"))
        outputs["points"], _ = DragPoints.execute(image, points).result
        outputs["latent"] = {"samples": vae.encode(image)}
        outputs["state"], outputs["noisy"] = DDIMInvert.execute(model, outputs["latent"], cond, 10, 0.7, False)
        drag = MotionSupervisionOptimize.execute(model, outputs["state"], outputs["points"], iterations, 0.01, 0.1,
                                                    1, 3, 0.1, "2", 42, precision)
        outputs["dragged"], outputs["tracked"], outputs["preview"] = drag.result
        outputs["summary"] = drag.ui["drag"][0]
        (outputs["edited"],) = ReferenceLatentDenoise.execute(model, outputs["dragged"], True, 0, 10)
    return outputs


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _tensors(getattr(value, name))


def test_fp16_autocast_drag_loss_and_gradient_agree_with_fp32(mini):
    """One drag iteration's loss and its gradient w.r.t. z_t under fp16 autocast vs fp32: loss within 2 %,
    gradient direction within cosine 0.99 (fp16 keeps ~3 decimal digits; the step is Adam's, scale-free)."""
    from dragkit.drag_core.backbone import UNetRequest
    from dragkit.drag_core.motion import interpolate_features, motion_supervision_loss
    from dragkit.drag_core.precision import autocast_for
    from dragkit.nodes.comfy_unet import ComfyBackbone

    model = mini[0]
    backbone = ComfyBackbone(model, "Test", feature_blocks=(2,))
    backbone.load()
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(1, 4, 8, 8, generator=generator).to(backbone.device)
    context = torch.randn(1, 77, 768, generator=generator).to(backbone.device)
    handles, targets = torch.tensor([[10.0, 12.0]]), torch.tensor([[14.0, 18.0]])
    results = {}
    with torch.inference_mode(False):
        for precision in ("fp32", "fp16"):
            x = z.clone().requires_grad_(True)
            with autocast_for(backbone.device, precision)():
                features = backbone(x, 681, context, UNetRequest(feature_blocks=(2,))).features
            loss = motion_supervision_loss(interpolate_features(features, (32, 32)), handles.to(x.device),
                                           targets.to(x.device))
            (grad,) = torch.autograd.grad(loss, x)
            results[precision] = (float(loss.detach()), grad.flatten().float())
    (l32, g32), (l16, g16) = results["fp32"], results["fp16"]
    assert abs(l16 - l32) <= 0.02 * abs(l32)
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99


def test_a_forced_fp16_overflow_is_skipped_and_reported(mini, monkeypatch):
    from dragkit.drag_core import drag_loop
    from dragkit.drag_core.precision import LossScaler

    class Huge(LossScaler):
        def __init__(self, enabled: bool, **kwargs) -> None:
            super().__init__(enabled, scale=2.0**100 if enabled else 1.0)

    monkeypatch.setattr(drag_loop, "LossScaler", Huge)
    out = _chain(mini, precision="fp16", iterations=3)
    assert out["summary"]["skipped_steps"] >= 1
    torch.testing.assert_close(out["dragged"].edited, out["state"].source)  # no skipped step changed z_t


def test_identity_lora_trains_in_fp16_without_nan_and_its_file_loads_in_fp32(mini, tmp_path):
    import comfy.utils

    from dragkit.nodes.comfy_lora import apply_lora
    from dragkit.nodes.lora_nodes import IdentityLoRATrain

    model, clip, vae = mini
    image, _ = _inputs(model)
    with torch.inference_mode():
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red square"))
        _, lora = IdentityLoRATrain.execute(model, vae, image, cond, 4, 4, 5e-4, 1, 64, 0, "fp16", "off", "")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in lora.values())
    path = tmp_path / "lora.safetensors"
    comfy.utils.save_torch_file(lora, str(path))
    patched = apply_lora(model, comfy.utils.load_torch_file(str(path)))
    out = _chain((patched, clip, vae), precision="fp32")
    assert torch.isfinite(out["edited"]["samples"]).all()


def test_every_output_lands_on_the_intermediate_device_and_memory_returns(mini):
    import comfy.model_management

    first = _chain(mini)
    intermediate = comfy.model_management.intermediate_device()
    for name, value in first.items():
        for t in _tensors(value):
            assert t.device == intermediate, f"{name}: a tensor on {t.device}"
    if CUDA:  # the model is loaded by now; a second run must not keep anything on the GPU
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        _chain(mini)
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() <= before + 2**20
