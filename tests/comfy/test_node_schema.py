"""The nodes in ComfyUI's current node schema (issue 20): registered through comfy_entrypoint, their schemas valid,
the checks that need only a widget's value run before the graph (validate_inputs), and the same checks when
execute is called directly."""

from __future__ import annotations

import asyncio

import pytest

POINTS = '{"version": 1, "width": 64, "height": 64, "points": [{"handle": [10, 10], "target": [20, 12]}]}'


def test_the_entrypoint_offers_every_node_in_the_current_schema(comfy):
    from comfy_api.latest import ComfyExtension, io

    import dragkit
    from dragkit.nodes import NODE_CLASS_MAPPINGS, NODES

    assert not hasattr(dragkit, "NODE_CLASS_MAPPINGS")  # ComfyUI would ignore the entrypoint
    extension = asyncio.run(dragkit.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension)
    offered = asyncio.run(extension.get_node_list())
    assert offered == NODES and len(offered) >= 11
    for node in offered:
        assert issubclass(node, io.ComfyNode)
        schema = node.GET_SCHEMA()  # validates ids (unique across inputs and outputs)
        assert schema.node_id == node.NODE_ID and schema.node_id.startswith("DragKit") and schema.category == "DragKit"
        assert schema.description and all(i.tooltip for i in schema.inputs if i.id not in ("seed", "width", "height"))
        assert all(o.tooltip for o in schema.outputs), node.NODE_ID
        assert NODE_CLASS_MAPPINGS[node.NODE_ID] is node


@pytest.mark.parametrize("node_id, values, message", [
    ("DragKitDragPoints", {"points": "{not json"}, "DragKit DragPoints: input 'points': drag points are not valid JSON"),
    ("DragKitDragPoints", {"points": ""}, "input 'points': no drag points"),
    ("DragKitMotionSupervisionOptimize", {"feature_blocks": "2,2"}, "input 'feature_blocks'"),
    ("DragKitMotionSupervisionOptimize", {"precision": "fp8"}, "input 'precision': 'fp8' is not one of: auto, fp32"),
    ("DragKitBottleneckOptimize", {"motion_anchor": "start"}, "input 'motion_anchor': 'start' is not one of"),
    ("DragKitAlternatingDragDenoise", {"precision": "int8"}, "input 'precision'"),
    ("DragKitIdentityLoRATrain", {"save_name": "../x"}, "input 'save_name'"),
    ("DragKitIdentityLoRATrain", {"cache": "maybe"}, "input 'cache'"),
    ("DragKitIdentityLoRATrain", {"crop_encoding": "pixels"}, "input 'crop_encoding'"),
    ("DragKitRegionWarp", {"motion": "spin"}, "input 'motion'"),
    ("DragKitRegionWarp", {"revealed": "erase"}, "input 'revealed'"),
])
def test_validate_inputs_refuses_a_bad_widget_value_by_name(comfy, node_id, values, message):
    from dragkit.nodes import NODE_CLASS_MAPPINGS

    node = NODE_CLASS_MAPPINGS[node_id]
    result = node.validate_inputs(**values)
    assert isinstance(result, str) and message in result, result


@pytest.mark.parametrize("node_id, values", [
    ("DragKitDragPoints", {"points": POINTS}),
    ("DragKitDragPoints", {}),  # linked from another node: judged when it runs
    ("DragKitMotionSupervisionOptimize", {"feature_blocks": "1,2", "precision": "bf16", "motion_anchor": "initial"}),
    ("DragKitAlternatingDragDenoise", {"feature_blocks": None, "precision": "auto"}),
    ("DragKitIdentityLoRATrain", {"save_name": "my lora-1.safetensors", "cache": "off", "crop_encoding": "latent"}),
    ("DragKitRegionWarp", {"motion": "similarity", "sampling": "bilinear", "revealed": "fill"}),
])
def test_validate_inputs_passes_good_and_linked_values(comfy, node_id, values):
    from dragkit.nodes import NODE_CLASS_MAPPINGS

    assert NODE_CLASS_MAPPINGS[node_id].validate_inputs(**values) is True


def test_a_direct_call_checks_the_options_too(comfy, tiny_model):
    """ComfyUI does not check a current-schema combo's value; execute refuses an unknown option by name before any
    work (a Python caller skips validate_inputs)."""
    from dragkit.nodes.drag_nodes import MotionSupervisionOptimize
    from dragkit.nodes.errors import DragKitInputError

    with pytest.raises(DragKitInputError, match="MotionSupervisionOptimize: input 'precision': 'fp64' is not one of"):
        MotionSupervisionOptimize.execute(tiny_model, None, None, 1, 0.01, 0.1, 1, 3, 2.0, "2", 0, "fp64")


def test_the_toy_loader_reloads_a_retrained_file(comfy, tmp_path, monkeypatch):
    """fingerprint_inputs: ComfyUI re-runs the loader when the weights file changed on disk (scripts/train_toy.py)."""
    import os

    from dragkit.nodes import toy_model

    weights = tmp_path / "toy.safetensors"
    monkeypatch.setattr(toy_model, "TOY_WEIGHTS", weights)
    assert toy_model.ToyModelLoader.fingerprint_inputs() is None
    weights.write_bytes(b"1234")
    first = toy_model.ToyModelLoader.fingerprint_inputs()
    os.utime(weights, ns=(1, 10**18))
    assert first is not None and toy_model.ToyModelLoader.fingerprint_inputs() != first
