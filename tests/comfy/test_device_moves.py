"""Weights that ComfyUI moves between devices. On a GPU machine every load moves a model from its offload device
(the CPU) to the GPU (``module.to``, which sets each ``param.data``); on a CPU nothing moves, so the CPU tests
never saw what the first H200 run found: after IdentityLoRATrain, ComfyUI's own VAE Encode failed with
"Inference tensors do not track version counter" (the VAE had been loaded outside inference mode, inside the
training). Here every load moves the weights as a device copy would, so the CPU runs the GPU's code path."""

from __future__ import annotations

import pytest
import torch

POINTS = '{"version": 1, "width": 64, "height": 64, "points": [{"handle": [20, 24], "target": [30, 28]}]}'


@pytest.fixture
def moving_loads():
    import comfyenv

    undo = comfyenv.emulate_device_moves()
    yield
    undo()


def test_a_lora_training_leaves_the_models_usable_by_comfyui_and_by_the_drag(mini_checkpoint, moving_loads,
                                                                              one_thread):
    import comfy.sd

    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.inversion_nodes import DDIMInvert, ReferenceLatentDenoise
    from dragkit.nodes.lora_nodes import IdentityLoRATrain
    from dragkit.nodes.points_nodes import DragPoints

    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # as ComfyUI runs every node, the loader included
        model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(mini_checkpoint), output_vae=True,
                                                                 output_clip=True)[:3]
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red square"))
        lora_model, _ = IdentityLoRATrain.execute(model, vae, image, cond, 1, 4, 5e-4, 1, 64, 0, "fp32", "off", "")
        latent = {"samples": vae.encode(image)}  # core VAE Encode, after the training moved the VAE
        state, _ = DDIMInvert.execute(lora_model, latent, cond, 10, 0.7, False)
        points, _ = DragPoints.execute(image, POINTS).result
        dragged = MotionSupervisionOptimize.execute(lora_model, state, points, 1, 0.01, 0.1, 1, 3, 0.1, "2", 42,
                                                       "fp32").result[0]
        (edited,) = ReferenceLatentDenoise.execute(lora_model, dragged, True, 0, 10)
        decoded = vae.decode(edited["samples"])  # core VAE Decode
    assert torch.isfinite(decoded).all()
