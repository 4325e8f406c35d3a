"""ComfyUI nodes: thin wrappers that validate inputs, convert ComfyUI types and call drag_core."""

from .inversion_nodes import DDIMInvert, ReferenceLatentDenoise

_NODES = {
    "DragKitDDIMInvert": (DDIMInvert, "DDIMInvert"),
    "DragKitReferenceLatentDenoise": (ReferenceLatentDenoise, "ReferenceLatentDenoise"),
}

NODE_CLASS_MAPPINGS = {node_id: cls for node_id, (cls, _) in _NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: name for node_id, (_, name) in _NODES.items()}
