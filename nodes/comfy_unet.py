"""The one adapter from ComfyUI's MODEL (a ModelPatcher) to drag_core's backbone protocol.

Every hook is a ComfyUI patch registered on a *clone* of the user's model (output-block patch for
decoder features and the bottleneck, attn1 replace patches for mutual self-attention), so the input
MODEL is never touched. ComfyUI silently ignores a patch whose key never occurs, so every call
checks that each requested patch really fired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..drag_core.backbone import MutualSelfAttention, UNetOutput, UNetRequest
from .errors import DragKitInputError

log = logging.getLogger(__name__)

# SD's VAE: one latent cell is 8 × 8 pixels. The one place DragKit states it.
PIXELS_PER_LATENT = 8


class BackboneError(ValueError):
    """A hook the model cannot provide: ``setting`` names the backbone setting ("feature_blocks",
    "mutual_start_layer"); the node that chose it names its own input."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


# ---------------------------------------------------------------------------------------------- model facts
# What DragKit reads of a ComfyUI MODEL besides its UNet, in one place.


def latent_in(model, samples: torch.Tensor) -> torch.Tensor:
    """A LATENT's samples → the model's latent space (its latent_format, e.g. × 0.18215 for SD1.5)."""
    return model.model.process_latent_in(samples)


def latent_out(model, z: torch.Tensor) -> torch.Tensor:
    """The model's latent space → a LATENT's samples."""
    return model.model.process_latent_out(z)


def latent_channels(model) -> int:
    return model.model.latent_format.latent_channels


def context_dim(model) -> int | None:
    """The text embedding width the UNet's cross-attention takes (768 for SD1.5), or None if unknown."""
    return model.model.model_config.unet_config.get("context_dim")


def image_size(latent: torch.Tensor) -> tuple[int, int]:
    """(H, W) of the pixel grid a (…, h, w) latent decodes to."""
    return PIXELS_PER_LATENT * int(latent.shape[-2]), PIXELS_PER_LATENT * int(latent.shape[-1])


@dataclass(frozen=True)
class UNetLayout:
    """Where drag_core's names live in ComfyUI's ``openaimodel.UNetModel``."""

    decoder_taps: tuple[int, ...]  # decoder block k ends where output block decoder_taps[k] starts
    attn_keys: tuple[tuple[str, int, int], ...]  # self-attention layers in forward order
    num_decoder_blocks: int


def _unet_layout(unet: torch.nn.Module) -> UNetLayout:
    from comfy.ldm.modules.attention import SpatialTransformer

    # Output blocks are grouped per level, deepest first, num_res_blocks + 1 blocks each.
    per_level = [n + 1 for n in reversed(list(unet.num_res_blocks))]
    ends, total = [], 0
    for count in per_level:
        total += count
        ends.append(total)
    taps = tuple(e for e in ends if e < len(unet.output_blocks))  # the last block has no tap after it

    keys: list[tuple[str, int, int]] = []
    stages = [("input", list(unet.input_blocks)), ("middle", [unet.middle_block]), ("output", list(unet.output_blocks))]
    for name, blocks in stages:
        for i, block in enumerate(blocks):
            for layer in block:
                if isinstance(layer, SpatialTransformer):
                    keys.extend((name, i, j) for j in range(len(layer.transformer_blocks)))
    return UNetLayout(taps, tuple(keys), len(per_level))


def check_sd_model(model, node: str, input_name: str = "model") -> None:
    """Refuse anything that is not an SD1.x/2.x-shaped UNet, with a message the user can act on."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy.model_sampling import ModelSamplingDiscrete

    base = getattr(model, "model", None)
    unet = getattr(base, "diffusion_model", None)
    name = type(base).__name__ if base is not None else type(model).__name__
    problem = None
    if not isinstance(unet, UNetModel):
        problem = f"this is a {name} model; DragKit needs an SD1.x/2.x UNet"
    elif getattr(unet, "num_classes", None) is not None:
        problem = f"this is a {name} model (class/ADM-conditioned UNet, e.g. SDXL); DragKit needs SD1.x/2.x"
    elif unet.in_channels != 4 or base.latent_format.latent_channels != 4:
        problem = f"the UNet takes {unet.in_channels} latent channels; DragKit needs SD-style 4-channel latents"
    elif not isinstance(base.model_sampling, ModelSamplingDiscrete) or len(base.model_sampling.sigmas) != 1000:
        problem = "the model does not use SD's 1000-step discrete noise schedule"
    if problem:
        raise DragKitInputError(node, input_name, problem + " (load an SD1.5-family checkpoint).")


class _Record:
    """What the patches saw during one UNet call."""

    def __init__(self) -> None:
        self.features: dict[int, torch.Tensor] = {}
        self.bottleneck: torch.Tensor | None = None
        self.bottleneck_replaced = False
        self.mutual_layers: set[int] = set()


class _OutputBlockPatch:
    """Taps decoder features and captures/replaces the bottleneck (output-block patch)."""

    def __init__(self, backbone: ComfyBackbone) -> None:
        self.backbone = backbone

    def __call__(self, h, hsp, transformer_options):
        bb = self.backbone
        request, record = bb._request, bb._record
        if request is None:  # the clone is only ever run through ComfyBackbone.__call__
            return h, hsp
        kind, index = transformer_options["block"]
        if kind != "output":
            return h, hsp
        if index == 0:
            if request.capture_bottleneck:
                record.bottleneck = h
            if request.bottleneck is not None:
                h = request.bottleneck.to(device=h.device, dtype=h.dtype)
                record.bottleneck_replaced = True
        block = bb._tap_to_block.get(index)
        if block is not None and block in request.feature_blocks:
            record.features[block] = h
        return h, hsp


class _MutualSelfAttentionPatch:
    """attn1 replace: the edited items' queries attend to their source items' keys and values."""

    def __init__(self, backbone: ComfyBackbone, layer: int) -> None:
        self.backbone = backbone
        self.layer = layer

    def __call__(self, q, k, v, extra_options):
        from comfy.ldm.modules.attention import optimized_attention

        request = self.backbone._request
        mutual = request.mutual if request is not None else None
        if mutual is not None and self.layer in mutual.layers:
            index = list(range(q.shape[0]))
            for edited, source in mutual.pairs:
                index[edited] = source
            index_t = torch.tensor(index, device=k.device)
            k, v = k.index_select(0, index_t), v.index_select(0, index_t)
            self.backbone._record.mutual_layers.add(self.layer)
        # The same call ComfyUI's CrossAttention makes, so unchanged items stay bitwise identical.
        return optimized_attention(
            q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"),
            transformer_options=extra_options,
        )


def _sdpa_for_backward(func, *args, **kwargs):
    """Gradient passes need an attention kernel with a backward (sage/flash have none)."""
    from comfy.ldm.modules.attention import attention_pytorch

    if torch.is_grad_enabled():
        return attention_pytorch(*args, **kwargs)
    return func(*args, **kwargs)


def load_models(patchers: list) -> None:
    """ComfyUI's ``load_models_gpu``, always in inference mode, as ComfyUI's own nodes call it.

    Loading moves weights between devices (``module.to`` sets ``param.data``). Done outside inference mode, a
    weight that the loader node made in inference mode comes out neither an inference tensor nor one with a
    version counter, and every later use fails, ComfyUI's own nodes' too ("Inference tensors do not track version
    counter": found on CUDA, where the offload device is not the compute device; on a CPU nothing moves)."""
    import comfy.model_management

    with torch.inference_mode():
        comfy.model_management.load_models_gpu(patchers)


def usable_by_autograd(tensor: torch.Tensor) -> bool:
    """False for an inference tensor, and for a tensor that lost its version counter to one (e.g. its ``.data``
    set to an inference tensor inside inference mode): autograd cannot save either for backward."""
    if tensor.is_inference():
        return False
    try:
        tensor._version  # noqa: B018  (raises where there is no version counter)
    except RuntimeError:
        return False
    return True


class ComfyBackbone:
    """drag_core's backbone over a clone of a ComfyUI SD1.x/2.x MODEL.

    ``feature_blocks``, ``bottleneck`` and ``mutual_start_layer`` declare up front which hooks the
    methods will use; only those patches are registered on the clone (mutual self-attention on the
    layers from ``mutual_start_layer`` to the last). A hook this UNet cannot provide raises
    :class:`BackboneError`; a model that is not an SD1.x/2.x UNet raises ``node``'s error for its "model" input.
    """

    def __init__(
        self,
        model,
        node: str,
        feature_blocks: tuple[int, ...] = (),
        bottleneck: bool = False,
        mutual_start_layer: int | None = None,
    ) -> None:
        check_sd_model(model, node)
        self.node = node
        self.patcher = model.clone()
        unet = self.patcher.model.diffusion_model
        self.layout = _unet_layout(unet)
        self.num_decoder_blocks = self.layout.num_decoder_blocks
        self.num_self_attention_layers = len(self.layout.attn_keys)
        for block in feature_blocks:
            if not 0 <= block < len(self.layout.decoder_taps):
                raise BackboneError(
                    "feature_blocks",
                    f"decoder block {block} cannot be tapped; this UNet offers blocks 0–{len(self.layout.decoder_taps) - 1}",
                )
        self._tap_to_block = {self.layout.decoder_taps[b]: b for b in feature_blocks}
        mutual_layers = frozenset()
        if mutual_start_layer is not None:
            if not 0 <= mutual_start_layer < self.num_self_attention_layers:
                raise BackboneError(
                    "mutual_start_layer",
                    f"must be in [0, {self.num_self_attention_layers - 1}] for this UNet, got {mutual_start_layer}.",
                )
            mutual_layers = frozenset(range(mutual_start_layer, self.num_self_attention_layers))
        self._declared = (frozenset(feature_blocks), bottleneck, mutual_layers)
        if feature_blocks or bottleneck:
            self.patcher.set_model_output_block_patch(_OutputBlockPatch(self))
        existing = self.patcher.model_options["transformer_options"].get("patches_replace", {}).get("attn1", {})
        for layer in sorted(mutual_layers):
            kind, block, index = self.layout.attn_keys[layer]
            if (kind, block, index) in existing or (kind, block) in existing:
                log.warning("%s: replacing another node's attn1 patch at %s", node, (kind, block, index))
            self.patcher.set_model_attn1_replace(_MutualSelfAttentionPatch(self, layer), kind, block, index)

        sampling = self.patcher.model.model_sampling
        self._sigmas = sampling.sigmas.detach().double().cpu()
        self.alphas_cumprod = 1.0 / (1.0 + self._sigmas**2)
        self._request: UNetRequest | None = None
        self._record = _Record()
        self._autograd_ready = False
        self.device = self.patcher.load_device

    def load(self) -> None:
        """Load the (patched) model onto its device, as ComfyUI's samplers do."""
        load_models([self.patcher])
        self.device = self.patcher.load_device
        self._autograd_ready = False

    def _prepare_for_autograd(self) -> None:
        """Weights that a loader node created under ComfyUI's inference mode are inference tensors,
        which autograd cannot save for backward: swap them for ordinary tensors with the same values
        (in place, once per load; the values, and so every output, are unchanged)."""
        swapped = 0
        with torch.inference_mode(False):
            for module in self.patcher.model.modules():
                for name, param in module._parameters.items():
                    if param is not None and not usable_by_autograd(param):
                        module._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=param.requires_grad)
                        swapped += 1
                for name, buffer in module._buffers.items():
                    if buffer is not None and not usable_by_autograd(buffer):
                        module._buffers[name] = buffer.clone()
                        swapped += 1
        if swapped:
            log.info("%s: made %d inference-mode weights usable by autograd (values unchanged)", self.node, swapped)
        self._autograd_ready = True

    def mutual(self, pairs: tuple[tuple[int, int], ...]) -> MutualSelfAttention:
        """Mutual self-attention on every layer this backbone registered, for these batch pairs."""
        return MutualSelfAttention(self._declared[2], pairs)

    def _check_declared(self, request: UNetRequest) -> None:
        blocks, bottleneck, layers = self._declared
        undeclared = set(request.feature_blocks) - blocks
        if undeclared or ((request.capture_bottleneck or request.bottleneck is not None) and not bottleneck):
            raise RuntimeError(f"{self.node}: UNet request {request} needs hooks this backbone did not register")
        if request.mutual is not None and not request.mutual.layers <= layers:
            raise RuntimeError(f"{self.node}: mutual layers {sorted(request.mutual.layers - layers)} not registered")

    def _check_fired(self, request: UNetRequest, record: _Record) -> None:
        missing = [f"features of decoder block {b}" for b in request.feature_blocks if b not in record.features]
        if request.capture_bottleneck and record.bottleneck is None:
            missing.append("bottleneck capture")
        if request.bottleneck is not None and not record.bottleneck_replaced:
            missing.append("bottleneck replacement")
        if request.mutual is not None and record.mutual_layers != set(request.mutual.layers):
            missing.append(f"mutual self-attention in layers {sorted(set(request.mutual.layers) - record.mutual_layers)}")
        if missing:
            raise RuntimeError(f"{self.node}: UNet patches did not fire: {', '.join(missing)}")

    def __call__(
        self, z: torch.Tensor, timestep: int | torch.Tensor, context: torch.Tensor, request: UNetRequest = UNetRequest()
    ) -> UNetOutput:
        self._check_declared(request)
        z = z.to(self.device)
        # One timestep for the batch, or one per item (LoRA training).
        steps = torch.as_tensor(timestep, dtype=torch.long).reshape(-1).cpu()
        sigmas = self._sigmas[steps].expand(z.shape[0]) if steps.numel() == 1 else self._sigmas[steps]
        if sigmas.shape[0] != z.shape[0]:
            raise RuntimeError(f"{self.node}: {steps.numel()} timesteps for a batch of {z.shape[0]}")
        per_item = (-1,) + (1,) * (z.ndim - 1)
        sqrt_alpha = (1.0 / (1.0 + sigmas**2)).sqrt().float().to(self.device).reshape(per_item)
        sigma = sigmas.float().to(self.device)
        x = z / sqrt_alpha  # VP latent → ComfyUI's sigma space
        context = context.to(self.device)
        if context.shape[0] not in (1, z.shape[0]):
            raise RuntimeError(f"{self.node}: context batch {context.shape[0]} does not match latent batch {z.shape[0]}")
        if context.shape[0] != z.shape[0]:
            context = context.expand(z.shape[0], -1, -1)

        options = self.patcher.model_options["transformer_options"]
        transformer_options = dict(options)
        transformer_options["patches"] = {k: list(v) for k, v in options.get("patches", {}).items()}
        transformer_options["sigmas"] = sigma
        transformer_options["cond_or_uncond"] = [0]
        if torch.is_grad_enabled():
            transformer_options["optimized_attention_override"] = _sdpa_for_backward

        self._request, self._record = request, _Record()
        unet = self.patcher.model.diffusion_model
        if torch.is_grad_enabled() and not self._autograd_ready:
            self._prepare_for_autograd()
        frozen = [p for p in unet.parameters() if p.requires_grad] if torch.is_grad_enabled() else []
        try:
            # Freeze the weights for gradient passes: the graph then holds no weight gradients
            # (the reference builds ~860 M of them per iteration and never uses them).
            for p in frozen:
                p.requires_grad_(False)
            denoised = self.patcher.model.apply_model(x, sigma, c_crossattn=context, transformer_options=transformer_options)
        finally:
            for p in frozen:
                p.requires_grad_(True)
            record, self._request = self._record, None
        self._check_fired(request, record)
        eps = (x - denoised) / sigma.reshape(per_item)
        features = [record.features[b].float() for b in request.feature_blocks]
        bottleneck = record.bottleneck.float() if record.bottleneck is not None else None
        return UNetOutput(eps=eps.float(), features=features, bottleneck=bottleneck)
