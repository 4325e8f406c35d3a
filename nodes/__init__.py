"""ComfyUI nodes: thin wrappers that validate inputs, convert ComfyUI types and call drag_core."""

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
_NODES = [
    IdentityLoRATrain, DragPoints, DDIMInvert, DDIMSample, MotionSupervisionOptimize, ReferenceLatentDenoise,
    BottleneckOptimize, SemanticPropagationDenoise, DenoiseToStep, AlternatingDragDenoise, RegionWarp,
]
# The loader is offered only when the trained toy weights are in the checkout.
if TOY_WEIGHTS.exists():
    _NODES.append(ToyModelLoader)

NODE_CLASS_MAPPINGS = {cls.NODE_ID: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.NODE_ID: getattr(cls, "DISPLAY_NAME", cls.NAME) for cls in _NODES}
