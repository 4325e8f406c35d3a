"""DragKit's algorithms in plain torch.

Nothing here imports ComfyUI: every method is written once against the small backbone protocol in
:mod:`drag_core.backbone`; ``nodes/comfy_unet.py`` implements that protocol for ComfyUI's MODEL.
"""
