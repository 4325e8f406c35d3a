"""In-process ComfyUI for tests and tools: its modules, the pack imported as `dragkit`, tiny models.

Tests and tools (bench/, scripts/) both import this module from scripts/; it imports nothing of theirs.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from comfy_server import comfyui_dir

REPO = Path(__file__).resolve().parent.parent

# SD1.5's UNet config as ComfyUI's supported_models.SD15 takes it (make_test_checkpoint.py's "full").
SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
    "model_channels": 320, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
    "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
# SD1.5's UNet structure (4 levels, 2 res blocks, attention in the first three levels, 16
# self-attention layers), narrow enough that one forward at a 16×16 latent takes milliseconds.
TINY_SD15_UNET = {**SD15_UNET, "model_channels": 32, "channel_mult": [1, 2, 2, 2]}

_ready = False


def register_pack() -> ModuleType:
    """The repository as the package ``dragkit``, without running its ``__init__`` (no ComfyUI needed), so
    that every test and tool imports the core as ``dragkit.drag_core``: one identity for every class."""
    module = sys.modules.get("dragkit")
    if module is None:
        spec = importlib.util.spec_from_file_location("dragkit", REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["dragkit"] = module
    return module


def setup(cpu: bool = True) -> None:
    """Import ComfyUI in-process and load the pack as ComfyUI does (its nodes registered). ``cpu``: run on the CPU
    (tests, CPU benchmarks); False lets ComfyUI pick its device as it would (bench/gpu.py)."""
    global _ready
    if _ready:
        return
    sys.path.insert(0, str(comfyui_dir()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    comfy.cli_args.args.use_pytorch_cross_attention = True
    import utils.extra_config  # noqa: F401  (before `nodes`, or `import utils` finds comfy/utils.py)

    module = register_pack()
    module.__spec__.loader.exec_module(module)
    _ready = True


def emulate_device_moves() -> Callable[[], None]:
    """Make every ``comfy.model_management.load_models_gpu`` re-make the loaded models' weights afterwards, as a
    copy to another device does (``module.to`` sets each ``param.data``). On a GPU machine every load moves a
    model from its offload device; on a CPU nothing moves, so without this the CPU never runs that path.
    Returns the function that undoes it."""
    setup()
    import comfy.model_management

    original = comfy.model_management.load_models_gpu

    def load_and_move(models, *args, **kwargs):
        result = original(models, *args, **kwargs)
        for patcher in models:
            patcher.model._apply(lambda t: t.clone())
        return result

    comfy.model_management.load_models_gpu = load_and_move
    return lambda: setattr(comfy.model_management, "load_models_gpu", original)


def _fill(module: torch.nn.Module, seed: int) -> None:
    """comfy.ops leaves weights uninitialized: norms 1, biases 0, the rest N(0, 0.02)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def tiny_sd15_model(seed: int = 0, unet_config: dict | None = None):
    """A random-weight SD1.5-shaped MODEL (ModelPatcher) on the CPU."""
    setup()
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    # Built under inference mode, like a checkpoint that a loader node loads inside ComfyUI's
    # executor: its weights are inference tensors, which autograd refuses to save for backward.
    with torch.inference_mode():
        cfg = comfy.supported_models.SD15(dict(unet_config or TINY_SD15_UNET))
        cfg.set_inference_dtype(torch.float32, None)
        model = cfg.get_model({})
        _fill(model.diffusion_model, seed)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def random_context(seed: int = 1, tokens: int = 77, dim: int = 768) -> torch.Tensor:
    return torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed))


def conditioning(context: torch.Tensor) -> list:
    return [[context, {"pooled_output": None}]]
