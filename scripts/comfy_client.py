"""A small client for ComfyUI's HTTP API, plus the test image and graphs the tests and demo run."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

import comfy_server

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
MINI_CHECKPOINT = "dragkit-mini-sd15-random.safetensors"
TEST_IMAGE = "dragkit_test.png"


def sample_image(size: int = 128) -> Image.Image:
    """A small picture with structure: a gradient background and two coloured shapes."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.3 + 0.4 * xx, 0.3 + 0.4 * yy, 0.5 + 0 * xx], axis=-1)
    img[(yy - 0.35) ** 2 + (xx - 0.35) ** 2 < 0.02] = (0.9, 0.1, 0.1)
    img[(abs(yy - 0.7) < 0.12) & (abs(xx - 0.7) < 0.12)] = (0.1, 0.2, 0.9)
    return Image.fromarray((img * 255).astype(np.uint8))


class Client:
    def __init__(self, server: comfy_server.Server) -> None:
        self.server = server
        self.client_id = uuid.uuid4().hex

    def get_json(self, path: str):
        with urllib.request.urlopen(self.server.url + path, timeout=30) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.server.url + path, timeout=30) as r:
            return r.read()

    def post_prompt(self, graph: dict) -> tuple[int, dict]:
        body = json.dumps({"prompt": graph, "client_id": self.client_id}).encode()
        request = urllib.request.Request(self.server.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, graph: dict, timeout: float = 600) -> dict:
        status, answer = self.post_prompt(graph)
        assert status == 200, answer
        return self.wait(answer["prompt_id"], timeout)

    def run_listening(self, graph: dict, timeout: float = 600) -> tuple[dict, list[dict]]:
        """Run ``graph`` while listening on the websocket; returns (history entry, the JSON messages)."""
        import threading

        import websocket

        ws = websocket.create_connection(f"ws://127.0.0.1:{self.server.port}/ws?clientId={self.client_id}",
                                         timeout=timeout)
        messages: list[dict] = []

        def listen() -> None:
            while True:
                msg = ws.recv()
                if isinstance(msg, str):
                    messages.append(json.loads(msg))
                    if messages[-1]["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        entry = self.run(graph, timeout)
        listener.join(timeout=60)
        ws.close()
        return entry, messages


def reconstruction_graph(strength: float = 0.7, steps: int = 20) -> dict:
    """LoadImage → VAEEncode → DDIMInvert → ReferenceLatentDenoise → VAEDecode → SaveImage."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MINI_CHECKPOINT}},
        "2": {"class_type": "LoadImage", "inputs": {"image": TEST_IMAGE}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red disk and a blue square", "clip": ["1", 1]}},
        "5": {
            "class_type": "DragKitDDIMInvert",
            "inputs": {
                "model": ["1", 0], "latent": ["3", 0], "conditioning": ["4", 0], "steps": steps,
                "inversion_strength": strength, "first_step_correction": False,
            },
        },
        "6": {
            "class_type": "DragKitReferenceLatentDenoise",
            "inputs": {"model": ["1", 0], "state": ["5", 0], "reference_control": True, "start_step": 0, "start_layer": 10},
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "dragkit_test"}},
    }


def drag_graph(points_json: str, steps: int = 20, max_iterations: int = 10, stop_distance: float = 2.0) -> dict:
    """DragDiffusion without the LoRA: … → DragPoints → DDIMInvert → MotionSupervisionOptimize →
    ReferenceLatentDenoise → VAEDecode → SaveImage (and the drag preview saved as node "11")."""
    graph = reconstruction_graph(strength=0.7, steps=steps)
    graph["9"] = {"class_type": "DragKitDragPoints", "inputs": {"image": ["2", 0], "points": points_json}}
    graph["10"] = {
        "class_type": "DragKitMotionSupervisionOptimize",
        "inputs": {
            "model": ["1", 0], "state": ["5", 0], "drag_points": ["9", 0], "max_iterations": max_iterations,
            "lr": 0.01, "lam": 0.1, "r_m": 1, "r_p": 3, "stop_distance": stop_distance, "feature_blocks": "2",
            "seed": 42, "precision": "auto",
        },
    }
    graph["6"]["inputs"]["state"] = ["10", 0]
    graph["11"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 2], "filename_prefix": "dragkit_preview"}}
    return graph


def lora_drag_graph(points_json: str, lora_steps: int = 2, resolution: int = 64, **drag) -> dict:
    """The full DragDiffusion graph: IdentityLoRATrain's MODEL feeds inversion, drag and denoise."""
    graph = drag_graph(points_json, **drag)
    graph["12"] = {
        "class_type": "DragKitIdentityLoRATrain",
        "inputs": {
            "model": ["1", 0], "vae": ["1", 2], "image": ["2", 0], "conditioning": ["4", 0], "steps": lora_steps,
            "rank": 16, "lr": 5e-4, "batch_size": 2, "resolution": resolution, "seed": 0, "precision": "auto",
            "cache": "use", "save_name": "", "crop_encoding": "per_crop",
        },
    }
    for node in ("5", "6", "10"):
        graph[node]["inputs"]["model"] = ["12", 0]
    return graph


def toy_drag_graph(image: str, prompt: str, points_json: str, lora_steps: int = 80, max_iterations: int = 80) -> dict:
    """DragDiffusion with every default on the bundled toy model (the `make demo` graph)."""
    return {
        "1": {"class_type": "DragKitToyModelLoader", "inputs": {}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "4": {
            "class_type": "DragKitIdentityLoRATrain",
            "inputs": {
                "model": ["1", 0], "vae": ["1", 2], "image": ["2", 0], "conditioning": ["3", 0], "steps": lora_steps,
                "rank": 16, "lr": 5e-4, "batch_size": 4, "resolution": 128, "seed": 0, "precision": "auto",
                "cache": "use", "save_name": "", "crop_encoding": "per_crop",
            },
        },
        "5": {"class_type": "DragKitDragPoints", "inputs": {"image": ["2", 0], "points": points_json}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "7": {
            "class_type": "DragKitDDIMInvert",
            "inputs": {"model": ["4", 0], "latent": ["6", 0], "conditioning": ["3", 0], "steps": 50,
                       "inversion_strength": 0.7, "first_step_correction": False},
        },
        "8": {
            "class_type": "DragKitMotionSupervisionOptimize",
            "inputs": {
                "model": ["4", 0], "state": ["7", 0], "drag_points": ["5", 0], "max_iterations": max_iterations,
                "lr": 0.01, "lam": 0.1, "r_m": 1, "r_p": 3, "stop_distance": 2.0, "feature_blocks": "2",
                "seed": 42, "precision": "auto", "motion_anchor": "current",
            },
        },
        "9": {
            "class_type": "DragKitReferenceLatentDenoise",
            "inputs": {"model": ["4", 0], "state": ["8", 0], "reference_control": True, "start_step": 0, "start_layer": 10},
        },
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "dragkit_demo"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["8", 2], "filename_prefix": "dragkit_demo_trajectory"}},
    }


def dragnoise_graph(points_json: str, steps: int = 20, max_iterations: int = 10, end_step: int = 0) -> dict:
    """DragNoise without the LoRA: … → DragPoints → DDIMInvert → BottleneckOptimize →
    SemanticPropagationDenoise → VAEDecode → SaveImage (and the drag preview saved as node "11")."""
    graph = drag_graph(points_json, steps=steps, max_iterations=max_iterations)
    optimize = graph["10"]["inputs"]
    graph["10"] = {
        "class_type": "DragKitBottleneckOptimize",
        "inputs": {**optimize, "mask_term_without_mask": False},
    }
    graph["6"] = {"class_type": "DragKitSemanticPropagationDenoise",
                  "inputs": {"model": ["1", 0], "state": ["10", 0], "end_step": end_step}}
    return graph


def sacdrag_graph(points_json: str, steps: int = 10, drag_step: int = 5, sac_step: int = 5, max_iterations: int = 10,
                  edit_prompt: str | None = "a red square and a blue square") -> dict:
    """The training-free self-attention drag: … → DDIMInvert (strength 1.0, first-step correction) →
    DenoiseToStep (edit prompt, control from sac_step) → MotionSupervisionOptimize →
    ReferenceLatentDenoise → VAEDecode → SaveImage (and the drag preview saved as node "11")."""
    graph = drag_graph(points_json, steps=steps, max_iterations=max_iterations)
    graph["5"]["inputs"].update(inversion_strength=1.0, first_step_correction=True)
    graph["13"] = {
        "class_type": "DragKitDenoiseToStep",
        "inputs": {"model": ["1", 0], "state": ["5", 0], "drag_step": drag_step, "self_attention_control": True,
                   "sac_step": sac_step, "sac_layer": 10},
    }
    if edit_prompt is not None:
        graph["12"] = {"class_type": "CLIPTextEncode", "inputs": {"text": edit_prompt, "clip": ["1", 1]}}
        graph["13"]["inputs"]["edit_conditioning"] = ["12", 0]
    graph["10"]["inputs"]["state"] = ["13", 0]
    graph["6"]["inputs"].update(start_step=max(0, sac_step - drag_step), start_layer=10)
    return graph


def widget_defaults(node_class: type) -> dict:
    """A node's inputs that have a default (its widgets, optional ones too: the frontend saves those), at their
    defaults."""
    inputs = node_class.INPUT_TYPES()
    return {name: spec[1]["default"] for group in ("required", "optional")
            for name, spec in inputs.get(group, {}).items() if len(spec) > 1 and "default" in spec[1]}


def gooddrag_inputs(**changes) -> dict:
    """AlternatingDragDenoise's widgets: the node's defaults (GoodDrag's release) with ``changes``."""
    from dragkit.nodes.gooddrag_nodes import AlternatingDragDenoise

    return {**widget_defaults(AlternatingDragDenoise), **changes}


def gooddrag_graph(points_json: str, steps: int = 20, **widgets) -> dict:
    """GoodDrag without the LoRA: … → DragPoints → DDIMInvert (0.75) → AlternatingDragDenoise (node "10") →
    VAEDecode → SaveImage (and the drag preview saved as node "11"); ``widgets`` change the node's defaults."""
    from dragkit.drag_core.gooddrag import INVERSION_STRENGTH

    graph = drag_graph(points_json, steps=steps)
    graph["5"]["inputs"]["inversion_strength"] = INVERSION_STRENGTH
    graph["10"] = {
        "class_type": "DragKitAlternatingDragDenoise",
        "inputs": {"model": ["1", 0], "state": ["5", 0], "drag_points": ["9", 0], **gooddrag_inputs(**widgets)},
    }
    del graph["6"]
    graph["7"]["inputs"]["samples"] = ["10", 0]
    return graph


def toy_gooddrag_graph(image: str, prompt: str, points_json: str, lora_steps: int | None = None, **widgets) -> dict:
    """GoodDrag with its defaults on the bundled toy model (the `make demo` GoodDrag graph): the DragDiffusion demo
    graph with GoodDrag's LoRA (70 steps), DDIMInvert at 0.75 and AlternatingDragDenoise (node "8") straight into
    VAEDecode; ``widgets`` change the node's defaults."""
    from dragkit.drag_core.gooddrag import INVERSION_STRENGTH, LORA_STEPS

    graph = toy_drag_graph(image, prompt, points_json, lora_steps=LORA_STEPS if lora_steps is None else lora_steps)
    graph["7"]["inputs"]["inversion_strength"] = INVERSION_STRENGTH
    graph["8"] = {
        "class_type": "DragKitAlternatingDragDenoise",
        "inputs": {"model": ["4", 0], "state": ["7", 0], "drag_points": ["5", 0], **gooddrag_inputs(**widgets)},
    }
    del graph["9"]
    graph["10"]["inputs"]["samples"] = ["8", 0]
    graph["11"]["inputs"]["filename_prefix"] = "dragkit_gooddrag"
    graph["12"]["inputs"]["filename_prefix"] = "dragkit_gooddrag_trajectory"
    return graph


def toy_dragnoise_graph(image: str, prompt: str, points_json: str, lora_steps: int = 80, max_iterations: int = 60,
                        end_step: int = 0) -> dict:
    """DragNoise with every default on the bundled toy model: the DragDiffusion demo graph with
    BottleneckOptimize (node "8") and SemanticPropagationDenoise (node "9")."""
    graph = toy_drag_graph(image, prompt, points_json, lora_steps=lora_steps)
    graph["8"] = {
        "class_type": "DragKitBottleneckOptimize",
        "inputs": {**graph["8"]["inputs"], "max_iterations": max_iterations, "mask_term_without_mask": False},
    }
    graph["9"] = {"class_type": "DragKitSemanticPropagationDenoise",
                  "inputs": {"model": ["4", 0], "state": ["8", 0], "end_step": end_step}}
    graph["11"]["inputs"]["filename_prefix"] = "dragkit_dragnoise"
    graph["12"]["inputs"]["filename_prefix"] = "dragkit_dragnoise_trajectory"
    return graph


def toy_sacdrag_graph(image: str, prompt: str, points_json: str, edit_prompt: str | None = None,
                      max_iterations: int = 80, drag_step: int = 10, sac_step: int = 10) -> dict:
    """The training-free self-attention drag with every default on the bundled toy model: no LoRA,
    DDIMInvert at strength 1.0 with the first-step correction, DenoiseToStep (node "13") to the drag
    step, MotionSupervisionOptimize, ReferenceLatentDenoise. ``edit_prompt`` (node "4") is optional."""
    graph = toy_drag_graph(image, prompt, points_json, max_iterations=max_iterations)
    del graph["4"]  # no identity LoRA
    for node in ("7", "8", "9"):
        graph[node]["inputs"]["model"] = ["1", 0]
    graph["7"]["inputs"].update(inversion_strength=1.0, first_step_correction=True)
    graph["13"] = {
        "class_type": "DragKitDenoiseToStep",
        "inputs": {"model": ["1", 0], "state": ["7", 0], "drag_step": drag_step, "self_attention_control": True,
                   "sac_step": sac_step, "sac_layer": 10},
    }
    if edit_prompt is not None:
        graph["4"] = {"class_type": "CLIPTextEncode", "inputs": {"text": edit_prompt, "clip": ["1", 1]}}
        graph["13"]["inputs"]["edit_conditioning"] = ["4", 0]
    graph["8"]["inputs"]["state"] = ["13", 0]
    graph["9"]["inputs"].update(start_step=max(0, sac_step - drag_step), start_layer=10)
    graph["11"]["inputs"]["filename_prefix"] = "dragkit_sacdrag"
    graph["12"]["inputs"]["filename_prefix"] = "dragkit_sacdrag_trajectory"
    return graph


def toy_warp_graph(image: str, prompt: str, points_json: str, inpaint_dilation: int = 1,
                   motion: str = "inverse_distance", sampling: str = "nearest", revealed: str = "fill") -> dict:
    """Region warp + inpaint on the bundled toy model (the `make demo` warp graph): DragPoints (painted mask = the
    region to move) → RegionWarp → core inpainting of its mask (VAE Encode → Set Latent Noise Mask → KSampler,
    20 euler steps, cfg 1, ``prompt`` = what the revealed pixels should show → VAE Decode) →
    ImageCompositeMasked onto the warped image → SaveImage (node "12"); the warp's preview is node "13".

    RegionWarp's settings for the toy's 128 px pictures: inpaint_dilation 1 (the reference's 5 px seam is set for
    ~512 px) and revealed = fill (DragKit's option); its node defaults are the reference's (5, keep)."""
    return {
        "1": {"class_type": "DragKitToyModelLoader", "inputs": {}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "5": {"class_type": "DragKitDragPoints", "inputs": {"image": ["2", 0], "points": points_json}},
        "6": {
            "class_type": "DragKitRegionWarp",
            "inputs": {"image": ["2", 0], "drag_points": ["5", 0], "inpaint_dilation": inpaint_dilation,
                       "motion": motion, "sampling": sampling, "revealed": revealed},
        },
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["7", 0], "mask": ["6", 1]}},
        "9": {
            "class_type": "KSampler",
            "inputs": {"model": ["1", 0], "seed": 0, "steps": 20, "cfg": 1.0, "sampler_name": "euler",
                       "scheduler": "normal", "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["8", 0],
                       "denoise": 1.0},
        },
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {
            "class_type": "ImageCompositeMasked",
            "inputs": {"destination": ["6", 0], "source": ["10", 0], "x": 0, "y": 0, "resize_source": False,
                       "mask": ["6", 1]},
        },
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "dragkit_warp"}},
        "13": {"class_type": "PreviewImage", "inputs": {"images": ["6", 2]}},
    }
