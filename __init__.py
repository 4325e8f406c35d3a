"""DragKit: point-based ("drag") image editing with diffusion models, as ComfyUI nodes.

ComfyUI finds the nodes through ``comfy_entrypoint`` (its current extension API; exporting
``NODE_CLASS_MAPPINGS`` here as well would make it ignore the entrypoint). The nodes are imported only when
ComfyUI asks for them, so ``dragkit.drag_core`` (the Python API and CLI on diffusers) imports without ComfyUI.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import DragKitExtension

    return DragKitExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
