"""What release 0.1.0 saved still works against today's nodes (issue 20: the nodes moved to ComfyUI's current node
schema with their ids, inputs, defaults and outputs unchanged). The records are in tests/fixtures/v0.1.0: the
server's /object_info then, and the API graphs the example workflows gave then (`app.graphToPrompt()`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0.1.0"
EXAMPLES = Path(__file__).resolve().parents[2] / "example_workflows"
OLD_INFO = json.loads((FIXTURES / "object_info.json").read_text())
OLD_PROMPTS = json.loads((FIXTURES / "prompts.json").read_text())
# The toy ones need no downloaded weights: each runs here exactly as 0.1.0 sent it.
TOY = sorted(name for name in OLD_PROMPTS if name.endswith("_toy"))
# The SD1.5 / SDXL ones name checkpoints this machine does not have: ComfyUI must refuse them for that alone.
OTHERS = sorted(name for name in OLD_PROMPTS if not name.endswith("_toy"))


def _input_spec(spec: list) -> tuple[str, dict]:
    """One input as the frontend reads it: the older schema lists a combo's options as its type, the current one
    says COMBO and lists them under "options" (with multiselect false), and it spells out a string's multiline
    false; both mean the same widget."""
    kind, options = spec[0], dict(spec[1]) if len(spec) > 1 else {}
    if isinstance(kind, list):
        kind, options["options"] = "COMBO", kind
    for flag in ("multiselect", "multiline"):
        if options.get(flag) is False:
            del options[flag]
    return kind, options


def _node_contract(info: dict) -> dict:
    """What a saved workflow or API graph depends on: inputs (names, order, types, defaults, ranges, options,
    tooltips), outputs (types, names, order), and the node's names and description."""
    inputs = {group: {name: _input_spec(spec) for name, spec in info["input"].get(group, {}).items()}
              for group in ("required", "optional")}
    return {
        "input": inputs, "input_order": {g: info["input_order"].get(g, []) for g in ("required", "optional")},
        "hidden": sorted(info["input"].get("hidden", {})),
        **{key: info[key] for key in ("output", "output_name", "output_is_list", "output_tooltips", "name",
                                      "display_name", "description", "category", "output_node")},
    }


def test_every_node_offers_the_inputs_and_outputs_of_0_1_0(client):
    info = client.get_json("/object_info")
    assert sorted(name for name in info if name.startswith("DragKit")) == sorted(OLD_INFO)
    for node_id, old in OLD_INFO.items():
        assert _node_contract(info[node_id]) == _node_contract(old), node_id


@pytest.fixture(scope="module")
def toy_inputs(server):
    """The pictures the toy workflows load, where LoadImage finds them (the editor uploads them in the browser)."""
    for name in ("dragkit_demo_input.png",):
        shutil.copy(EXAMPLES / name, server.base / "input" / name)


@pytest.mark.parametrize("name", TOY)
def test_the_toy_graphs_0_1_0_sent_run_unchanged(client, toy_inputs, name):
    entry = client.run(OLD_PROMPTS[name], timeout=600)
    assert entry["status"]["status_str"] == "success", (name, entry["status"])
    saved = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    assert saved, name


@pytest.mark.parametrize("name", OTHERS)
def test_the_sd_graphs_0_1_0_sent_are_refused_only_for_the_missing_checkpoint(client, name):
    """Every DragKit node in them validates (types, ranges, options, the points text); what ComfyUI refuses is the
    checkpoint (and picture) this machine does not have."""
    status, answer = client.post_prompt(OLD_PROMPTS[name])
    assert status == 400, answer
    refused = {answer_id: errors["class_type"] for answer_id, errors in answer["node_errors"].items()}
    assert refused and set(refused.values()) <= {"CheckpointLoaderSimple", "LoadImage"}, answer["node_errors"]
    for errors in answer["node_errors"].values():  # the checkpoint is not in the list; the picture is not a file
        expected = "value_not_in_list" if errors["class_type"] == "CheckpointLoaderSimple" else "custom_validation_failed"
        assert [e["type"] for e in errors["errors"]] == [expected], errors
