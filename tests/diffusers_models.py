"""Small random SD1.5-shaped models built in diffusers, and the same weights converted to ComfyUI's format with
ComfyUI's own key map (``comfy.utils.unet_to_diffusers``): the two backends then run the same numbers."""

from __future__ import annotations

import torch

import comfyenv
import make_random_pipeline


def tiny_diffusers_unet(seed: int = 0):
    """diffusers' own initialisation, seeded; biases and norms made non-trivial so no path hides behind zeros."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**make_random_pipeline.unet_config("tiny"))  # the twin of comfyenv.TINY_SD15_UNET
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, generator=generator) * 0.05)
            elif name.endswith("conv_out.weight"):  # zero-initialised in diffusers: give ε some signal
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return unet.eval()


def comfy_state_dict(unet, unet_config: dict | None = None) -> dict[str, torch.Tensor]:
    """The diffusers UNet's weights under ComfyUI's keys, by ComfyUI's own diffusers key map."""
    comfyenv.setup()
    import comfy.utils

    mapping = comfy.utils.unet_to_diffusers(dict(unet_config or comfyenv.TINY_SD15_UNET))
    weights = unet.state_dict()
    unmapped = set(weights) - set(mapping)
    if unmapped:
        raise KeyError(f"ComfyUI's map has no place for {sorted(unmapped)[:5]}")
    # The map also names optional parts (class / added embeddings) this UNet does not have; comfy_twin loads
    # strictly, so every ComfyUI weight must still be filled.
    return {comfy_key: weights[diffusers_key].detach().clone() for diffusers_key, comfy_key in mapping.items()
            if diffusers_key in weights}


def comfy_twin(unet):
    """A ComfyUI MODEL (ModelPatcher) holding the same weights as the diffusers ``unet``."""
    comfyenv.setup()
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    with torch.inference_mode():
        config = comfy.supported_models.SD15(dict(comfyenv.TINY_SD15_UNET))
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({})
        model.diffusion_model.load_state_dict(comfy_state_dict(unet), strict=True)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)
