"""drag_core's backbone protocol on a diffusers ``UNet2DConditionModel`` (SD1.x/2.x): the second backend.

The same hooks as ``nodes/comfy_unet.py`` offers on a ComfyUI MODEL, made from diffusers' own parts, so every
DragKit method runs unchanged on the model objects the papers' code uses:

- decoder block k's features = the output of ``up_blocks[k]`` (after its upsampler), as DragDiffusion's
  released code reads them;
- the bottleneck = the output of ``mid_block``, captured or replaced by a forward hook;
- mutual self-attention = the ``attn1`` module's own processor called with the source item's hidden states as
  its key/value input: for self-attention the keys and values are computed from that input, so the edited
  item's queries meet the source's keys and values, and every other item is computed exactly as diffusers
  computes it.

Every hook exists only for the duration of one call (forward hooks removed, processors restored, weights'
``requires_grad`` restored), so the user's UNet is left as it was given. diffusers itself is never imported
here: the module only uses the UNet object it is handed.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager

import torch

from .backbone import MutualSelfAttention, UNetOutput, UNetRequest
from .schedule import scaled_linear_alphas_cumprod

log = logging.getLogger(__name__)


class DiffusersBackboneError(ValueError):
    """A UNet or a hook this backend cannot provide; ``setting`` names what was asked for."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def self_attention_modules(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The ``attn1`` modules of every transformer block in forward order: down blocks, middle, up blocks
    (SD1.5: 6 + 1 + 9 = 16), the order of ComfyUI's input, middle and output blocks."""
    found = []
    stages = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    for stage in stages:
        for attention in getattr(stage, "attentions", None) or []:
            found.extend(block.attn1 for block in attention.transformer_blocks)
    return found


def check_sd_unet(unet: torch.nn.Module) -> None:
    """Refuse anything that is not an SD1.x/2.x-shaped ε-prediction UNet, saying what to load instead."""
    config = getattr(unet, "config", None)
    problem = None
    if config is None or not hasattr(unet, "up_blocks") or not hasattr(unet, "mid_block"):
        problem = f"expected a diffusers UNet2DConditionModel, got {type(unet).__name__}"
    elif getattr(config, "addition_embed_type", None) is not None or getattr(config, "class_embed_type", None):
        problem = "this UNet takes extra (SDXL-style) conditioning; DragKit needs SD1.x/2.x"
    elif config.in_channels != 4:
        problem = f"the UNet takes {config.in_channels} latent channels; DragKit needs SD-style 4-channel latents"
    elif unet.mid_block is None:
        problem = "the UNet has no middle block"
    if problem:
        raise DiffusersBackboneError("unet", problem + " (load an SD1.5-family model).")


class DiffusersBackbone:
    """drag_core's backbone over a diffusers SD1.x/2.x UNet.

    ``alphas_cumprod``: the noise schedule (default SD1.5's scaled-linear one, what every SD1.x/2.x scheduler
    config says). Unlike the ComfyUI adapter nothing has to be declared up front: hooks are made per call.
    ``device``: where inputs go (default: the UNet's parameters' device).
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: torch.Tensor | None = None,
                 device: torch.device | None = None, prediction_type: str = "epsilon") -> None:
        check_sd_unet(unet)
        if prediction_type not in ("epsilon", "v_prediction"):
            raise DiffusersBackboneError("prediction_type", f"the UNet predicts {prediction_type!r}; DragKit takes "
                                         "ε- or v-prediction SD1.x/2.x models")
        # v-prediction (SD2.x at 768 px): ε = √ᾱ·v + √(1−ᾱ)·z_t, so every method still sees ε (as ComfyUI's
        # adapter, which derives ε from ComfyUI's denoised output, does for any parametrisation).
        self.prediction_type = prediction_type
        self.unet = unet
        self.alphas_cumprod = (scaled_linear_alphas_cumprod() if alphas_cumprod is None
                               else alphas_cumprod.detach().double().cpu())
        parameter = next(unet.parameters())
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = parameter.dtype
        self.num_decoder_blocks = len(unet.up_blocks)
        self._attn1 = self_attention_modules(unet)
        self.num_self_attention_layers = len(self._attn1)
        # Parameters that gradient passes leave trainable (the identity LoRA's factors while it trains).
        self.trainable: tuple[torch.nn.Parameter, ...] = ()

    def load(self) -> None:
        """Move the UNet to the backbone's device (a no-op when it is there)."""
        self.unet.to(self.device)

    def mutual(self, pairs: tuple[tuple[int, int], ...], start_layer: int = 10) -> MutualSelfAttention:
        """Mutual self-attention from ``start_layer`` to the last layer, for these batch pairs."""
        if not 0 <= start_layer < self.num_self_attention_layers:
            raise DiffusersBackboneError(
                "mutual_start_layer", f"must be in [0, {self.num_self_attention_layers - 1}], got {start_layer}")
        return MutualSelfAttention(frozenset(range(start_layer, self.num_self_attention_layers)), pairs)

    def _check_request(self, request: UNetRequest) -> None:
        for block in request.feature_blocks:
            # The last up block's output is the UNet's final feature map; the methods tap earlier ones.
            if not 0 <= block < self.num_decoder_blocks - 1:
                raise DiffusersBackboneError(
                    "feature_blocks",
                    f"decoder block {block} cannot be tapped; this UNet offers blocks 0–{self.num_decoder_blocks - 2}")
        if request.mutual is not None and not all(0 <= i < self.num_self_attention_layers for i in request.mutual.layers):
            raise DiffusersBackboneError("mutual_start_layer",
                                         f"this UNet has self-attention layers 0–{self.num_self_attention_layers - 1}")

    def __call__(
        self, z: torch.Tensor, timestep: int | torch.Tensor, context: torch.Tensor, request: UNetRequest = UNetRequest()
    ) -> UNetOutput:
        self._check_request(request)
        z = z.to(self.device)
        steps = torch.as_tensor(timestep, dtype=torch.long).reshape(-1)
        if steps.numel() not in (1, z.shape[0]):
            raise RuntimeError(f"{steps.numel()} timesteps for a batch of {z.shape[0]}")
        steps = steps.expand(z.shape[0]).to(self.device)
        context = context.to(self.device)
        if context.shape[0] not in (1, z.shape[0]):
            raise RuntimeError(f"context batch {context.shape[0]} does not match latent batch {z.shape[0]}")
        context = context.expand(z.shape[0], -1, -1)

        features: dict[int, torch.Tensor] = {}
        captured: list[torch.Tensor] = []
        with ExitStack() as stack:
            if torch.is_grad_enabled():
                # Frozen weights: the graph holds no weight gradients (the reference builds and discards them).
                stack.enter_context(_frozen(self.unet, self.trainable))
            for block in request.feature_blocks:
                stack.enter_context(_hook(self.unet.up_blocks[block], _keep(features, block)))
            if request.capture_bottleneck or request.bottleneck is not None:
                stack.enter_context(_hook(self.unet.mid_block, _bottleneck(captured, request.bottleneck)))
            if request.mutual is not None:
                stack.enter_context(self._mutual(request.mutual, z.shape[0]))
            eps = self.unet(z.to(self.dtype), steps, encoder_hidden_states=context.to(self.dtype), return_dict=False)[0]
        eps = eps.float()
        if self.prediction_type == "v_prediction":
            alpha = self.alphas_cumprod[steps.cpu()].float().to(z.device).reshape(-1, 1, 1, 1)
            eps = alpha.sqrt() * eps + (1 - alpha).sqrt() * z.float()
        return UNetOutput(
            eps=eps,
            features=[features[b].float() for b in request.feature_blocks],
            bottleneck=captured[0].float() if request.capture_bottleneck else None,
        )

    @contextmanager
    def _mutual(self, mutual: MutualSelfAttention, batch: int):
        index = list(range(batch))
        for edited, source in mutual.pairs:
            index[edited] = source
        originals = {}
        try:
            for layer in sorted(mutual.layers):
                module = self._attn1[layer]
                originals[layer] = module.processor
                module.processor = _SourceKeysValues(module.processor, index)
            yield
        finally:
            for layer, processor in originals.items():
                self._attn1[layer].processor = processor


class _SourceKeysValues:
    """Wraps an ``attn1`` processor: keys and values come from ``index``-selected batch items."""

    def __init__(self, processor, index: list[int]) -> None:
        self.processor = processor
        self.index = index

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        selected = torch.tensor(self.index, device=hidden_states.device)
        return self.processor(attn, hidden_states, hidden_states.index_select(0, selected), attention_mask, temb,
                              **kwargs)


def _keep(store: dict[int, torch.Tensor], block: int):
    def hook(module, args, output):
        store[block] = output
    return hook


def _bottleneck(captured: list[torch.Tensor], replacement: torch.Tensor | None):
    def hook(module, args, output):
        captured.append(output)
        if replacement is not None:
            return replacement.to(device=output.device, dtype=output.dtype)
        return None
    return hook


@contextmanager
def _hook(module: torch.nn.Module, hook):
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _frozen(module: torch.nn.Module, keep: tuple[torch.nn.Parameter, ...]):
    kept = {id(p) for p in keep}
    trainable = [p for p in module.parameters() if p.requires_grad and id(p) not in kept]
    try:
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
