"""ComfyUI nodes: thin wrappers that validate inputs, convert ComfyUI types and call drag_core."""

from .drag_nodes import MotionSupervisionOptimize
from .dragnoise_nodes import BottleneckOptimize, SemanticPropagationDenoise
from .inversion_nodes import DDIMInvert, DDIMSample, ReferenceLatentDenoise
from .lora_nodes import IdentityLoRATrain
from .points_nodes import DragPoints
from .sacdrag_nodes import DenoiseToStep
from .toy_model import TOY_WEIGHTS, ToyModelLoader
from .warp_nodes import RegionWarp

# Node ids are global across every installed pack, hence the prefix. Never rename them.
_NODES = {
    "DragKitIdentityLoRATrain": (IdentityLoRATrain, "IdentityLoRATrain"),
    "DragKitDragPoints": (DragPoints, "DragPoints"),
    "DragKitDDIMInvert": (DDIMInvert, "DDIMInvert"),
    "DragKitDDIMSample": (DDIMSample, "DDIMSample"),
    "DragKitMotionSupervisionOptimize": (MotionSupervisionOptimize, "MotionSupervisionOptimize"),
    "DragKitReferenceLatentDenoise": (ReferenceLatentDenoise, "ReferenceLatentDenoise"),
    "DragKitBottleneckOptimize": (BottleneckOptimize, "BottleneckOptimize (DragNoise)"),
    "DragKitSemanticPropagationDenoise": (SemanticPropagationDenoise, "SemanticPropagationDenoise (DragNoise)"),
    "DragKitDenoiseToStep": (DenoiseToStep, "DenoiseToStep"),
    "DragKitRegionWarp": (RegionWarp, "RegionWarp (Inpaint4Drag)"),
}

# The loader is offered only when the trained toy weights are in the checkout.
if TOY_WEIGHTS.exists():
    _NODES["DragKitToyModelLoader"] = (ToyModelLoader, "ToyModelLoader")

NODE_CLASS_MAPPINGS = {node_id: cls for node_id, (cls, _) in _NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: name for node_id, (_, name) in _NODES.items()}
