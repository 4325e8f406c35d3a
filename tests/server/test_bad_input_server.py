"""Bad values a client can post, for DragKit's node inputs, through a real server (issue 19): each is refused
before running (HTTP 400 with ``node_errors``: ComfyUI's own range and type checks, and the nodes' validate_inputs for
what can be judged from the widget alone: the points text, feature_blocks, save_name) or fails its node with a message naming the node and the input —
never a crash, a hang or a huge allocation — and the server then still runs a valid prompt.

CASES use DragDiffusion with the identity LoRA on the random "mini" checkpoint (scripts/comfy_client.py:
lora_drag_graph; nodes: 2 LoadImage, 3 VAEEncode, 5 DDIMInvert, 6 ReferenceLatentDenoise, 9 DragPoints,
10 MotionSupervisionOptimize, 12 IdentityLoRATrain); OTHER_CASES the other methods' graphs (DragNoise, the
training-free drag, GoodDrag, RegionWarp on the toy model, DDIMSample). ComfyUI caches every node whose inputs did
not change, so each case re-runs only the node it breaks and what follows it."""

from __future__ import annotations

import json

import pytest

from comfy_client import (
    MINI_CHECKPOINT,
    TEST_IMAGE,
    dragnoise_graph,
    gooddrag_graph,
    lora_drag_graph,
    sacdrag_graph,
    toy_warp_graph,
)

POINTS = '{"version": 1, "width": 128, "height": 128, "points": [{"handle": [40, 64], "target": [52, 64]}]}'
HUGE_MASK = json.dumps({"version": 1, "width": 128, "height": 128, "points": [{"handle": [40, 64], "target": [52, 64]}],
                        "mask": {"width": 100000, "height": 100000, "rle": [10**10]}})
MANY_PAIRS = json.dumps({"version": 1, "width": 128, "height": 128,
                         "points": [{"handle": [i + 1, 10], "target": [i + 1, 20]} for i in range(65)]})
NAN = float("nan")

# (node, input, bad value, "refused" = HTTP 400 naming the input | "fails" = an execution error, text it must hold)
CASES = [
    ("9", "points", "", "refused", "DragPoints: input 'points': no drag points"),
    ("9", "points", "{not json", "refused", "DragPoints: input 'points': drag points are not valid JSON"),
    ("9", "points", HUGE_MASK, "refused", "DragPoints: input 'points': mask: 100000×100000 pixels is larger than DragKit's limit of 8192"),
    ("9", "points", MANY_PAIRS, "refused", "DragPoints: input 'points': drag points: 65 handle→target pairs, more than the limit of 64"),
    ("9", "points", POINTS.replace("52, 64]", "NaN, 64]"), "refused", "DragPoints: input 'points'"),
    ("9", "points", POINTS.replace("52, 64]", "900, 64]"), "refused", "DragPoints: input 'points': "),
    ("9", "image", ["3", 0], "refused", "image"),  # a LATENT where an IMAGE goes
    ("5", "steps", 0, "refused", "steps"),
    ("5", "steps", 10**9, "refused", "steps"),
    ("5", "inversion_strength", 5.0, "refused", "inversion_strength"),
    ("5", "inversion_strength", NAN, "fails", "DDIMInvert: input 'inversion_strength'"),
    ("5", "inversion_strength", "strong", "refused", "inversion_strength"),
    ("5", "latent", ["2", 0], "refused", "latent"),  # an IMAGE where a LATENT goes
    ("10", "max_iterations", -1, "refused", "max_iterations"),
    ("10", "lr", NAN, "fails", "MotionSupervisionOptimize: input 'lr': must be a finite number"),
    ("10", "stop_distance", float("inf"), "refused", "stop_distance"),
    ("10", "feature_blocks", "9", "fails", "MotionSupervisionOptimize: input 'feature_blocks'"),
    ("10", "feature_blocks", "2," * 5000, "refused", "MotionSupervisionOptimize: input 'feature_blocks'"),
    ("10", "precision", "fp8", "refused", "precision"),
    ("10", "state", ["9", 0], "refused", "state"),  # DRAG_POINTS where a DRAG_STATE goes
    ("6", "start_layer", 64, "fails", "ReferenceLatentDenoise: input 'start_layer'"),
    ("12", "lr", NAN, "fails", "IdentityLoRATrain: input 'lr': must be a finite number"),
    ("12", "save_name", "../../escape", "refused", "IdentityLoRATrain: input 'save_name'"),
    ("12", "steps", 10000, "fails", "IdentityLoRATrain: input 'steps'"),  # × batch 64 at 2048 px below: > 2 GiB
]


def _sample_graph() -> dict:
    """DDIMSample on the mini checkpoint (a generated picture's state), denoised and decoded."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MINI_CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red disk", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "DragKitDDIMSample", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                            "seed": 0, "steps": 4, "cfg": 5.0, "strength": 0.7,
                                                            "width": 64, "height": 64}},
        "5": {"class_type": "DragKitReferenceLatentDenoise",
              "inputs": {"model": ["1", 0], "state": ["4", 0], "reference_control": True, "start_step": 0,
                         "start_layer": 10}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def _reference_on_dragnoise_state() -> dict:
    graph = dragnoise_graph(POINTS, steps=10, max_iterations=1)
    graph["6"] = {"class_type": "DragKitReferenceLatentDenoise",
                  "inputs": {"model": ["1", 0], "state": ["10", 0], "reference_control": True, "start_step": 0,
                             "start_layer": 10}}
    return graph


GRAPHS = {
    "dragnoise": lambda: dragnoise_graph(POINTS, steps=10, max_iterations=1),
    "dragnoise state into ReferenceLatentDenoise": _reference_on_dragnoise_state,
    "sacdrag": lambda: sacdrag_graph(POINTS, max_iterations=1),
    "gooddrag": lambda: gooddrag_graph(POINTS, steps=10),
    "warp": lambda: toy_warp_graph(TEST_IMAGE, "", POINTS),
    "sample": _sample_graph,
}
# The other methods' nodes: (graph, node, input, bad value, outcome, text); input None = the graph as it is.
OTHER_CASES = [
    ("dragnoise", "10", "lr", NAN, "fails", "BottleneckOptimize: input 'lr': must be a finite number"),
    ("dragnoise", "10", "feature_blocks", "2,2", "refused", "BottleneckOptimize: input 'feature_blocks'"),
    ("dragnoise", "6", "end_step", -1, "refused", "end_step"),
    ("dragnoise", "6", "state", ["5", 0], "fails", "SemanticPropagationDenoise: input 'state': the state holds no"),
    ("dragnoise state into ReferenceLatentDenoise", "6", None, None, "fails",
     "ReferenceLatentDenoise: input 'state': this state holds a DragNoise bottleneck"),
    ("sacdrag", "13", "sac_layer", 99, "refused", "sac_layer"),
    ("sacdrag", "13", "drag_step", 11, "fails", "DenoiseToStep: input 'drag_step'"),
    ("sacdrag", "13", "edit_conditioning", ["2", 0], "refused", "edit_conditioning"),
    ("gooddrag", "10", "beta", NAN, "fails", "AlternatingDragDenoise: input 'beta': must be a finite number"),
    ("gooddrag", "10", "drag_loss_threshold", NAN, "fails", "AlternatingDragDenoise: input 'drag_loss_threshold'"),
    ("gooddrag", "10", "drag_end_step", 51, "refused", "drag_end_step"),
    ("warp", "6", "inpaint_dilation", 65, "refused", "inpaint_dilation"),
    ("warp", "6", "motion", "spin", "refused", "motion"),
    ("warp", "6", None, None, "fails", "RegionWarp: input 'drag_points'"),  # no region painted in POINTS
    ("sample", "4", "cfg", NAN, "fails", "DDIMSample: input 'cfg': must be a finite number"),
    ("sample", "4", "width", 100, "fails", "DDIMSample: input 'width'"),
    ("sample", "4", "width", 99999, "refused", "width"),
]


def _graph(node: str, name: str, value) -> dict:
    graph = lora_drag_graph(POINTS, lora_steps=1, max_iterations=1)
    graph[node]["inputs"][name] = value
    if (node, name, value) == ("12", "steps", 10000):
        graph[node]["inputs"].update(batch_size=64, resolution=2048)
    return graph


def _check(client, graph: dict, node: str, outcome: str, text: str) -> None:
    status, answer = client.post_prompt(graph)
    if outcome == "refused":
        # 400, or 200 when the graph's other outputs are valid: ComfyUI then queues those and names the node
        node_errors = answer.get("node_errors", {})
        assert node in node_errors and text in json.dumps(node_errors[node], ensure_ascii=False), answer
        if status == 200:
            client.wait(answer["prompt_id"], timeout=300)
        else:
            assert status == 400, answer
        return
    assert status == 200, answer
    entry = client.wait(answer["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "error", entry["status"]
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["node_id"] == node, errors
    message = errors[0]["exception_message"]
    assert message.startswith("DragKit ") and text in message, message
    assert errors[0]["exception_type"].rsplit(".", 1)[-1] in ("DragKitInputError", "DragKitNodeError"), errors[0]


@pytest.mark.parametrize("node, name, value, outcome, text", CASES,
                         ids=[f"{n}.{i}={str(v)[:16]}" for n, i, v, *_ in CASES])
def test_a_bad_value_is_refused_or_fails_its_node_by_name(client, node, name, value, outcome, text):
    _check(client, _graph(node, name, value), node, outcome, text)


@pytest.mark.parametrize("graph, node, name, value, outcome, text", OTHER_CASES,
                         ids=[f"{g}:{n}.{i}={str(v)[:16]}" for g, n, i, v, *_ in OTHER_CASES])
def test_the_other_methods_nodes_refuse_bad_values_by_name(client, graph, node, name, value, outcome, text):
    built = GRAPHS[graph]()
    if name is not None:
        built[node]["inputs"][name] = value
    _check(client, built, node, outcome, text)


def test_the_server_still_runs_a_valid_prompt_after_the_bad_ones(client):
    entry = client.run(lora_drag_graph(POINTS, lora_steps=1, max_iterations=1), timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
