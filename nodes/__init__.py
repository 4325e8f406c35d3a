"""ComfyUI nodes: thin wrappers that validate inputs, convert ComfyUI types and call drag_core.

Every node is written in ComfyUI's current node schema (``comfy_api.latest``: ``io.ComfyNode`` with
``define_schema`` and ``execute``); the pack registers them through the top-level ``comfy_entrypoint``. Node ids, input names and order, defaults and output order are those of release 0.1.0, so its
workflows and API graphs run unchanged (tests/fixtures/v0.1.0).
"""

from comfy_api.latest import ComfyExtension, io

from .drag_nodes import MotionSupervisionOptimize
from .dragnoise_nodes import BottleneckOptimize, SemanticPropagationDenoise
from .gooddrag_nodes import AlternatingDragDenoise
from .inversion_nodes import DDIMInvert, DDIMSample, ReferenceLatentDenoise
from .lora_nodes import IdentityLoRATrain
from .points_nodes import DragPoints
from .sacdrag_nodes import DenoiseToStep
from .toy_model import TOY_WEIGHTS, ToyModelLoader
from .warp_nodes import RegionWarp

# Each class carries its node id (global across every installed pack, hence the prefix; never rename one),
# its short NAME (used in error messages) and, where it differs, its DISPLAY_NAME.
NODES: list[type[io.ComfyNode]] = [
    IdentityLoRATrain, DragPoints, DDIMInvert, DDIMSample, MotionSupervisionOptimize, ReferenceLatentDenoise,
    BottleneckOptimize, SemanticPropagationDenoise, DenoiseToStep, AlternatingDragDenoise, RegionWarp,
]
# The loader is offered only when the trained toy weights are in the checkout.
if TOY_WEIGHTS.exists():
    NODES.append(ToyModelLoader)

# By id, for tests and tools (ComfyUI itself registers NODES through the extension below).
NODE_CLASS_MAPPINGS = {cls.NODE_ID: cls for cls in NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.NODE_ID: getattr(cls, "DISPLAY_NAME", cls.NAME) for cls in NODES}


class DragKitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
