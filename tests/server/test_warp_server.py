"""RegionWarp + core inpainting as API graphs through a real server (the toy model; the SD1.5 graph's shape on
the random mini checkpoint)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_client import MINI_CHECKPOINT, TEST_IMAGE, toy_warp_graph
from dragkit.drag_core.points import DragPoints, RLEMask

TOY_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "toy" / "dragkit_toy.safetensors"


def _points(pairs=(((45, 45), (75, 55)),)) -> str:
    region = torch.zeros(128, 128)
    region[30:60, 30:60] = 1  # around sample_image()'s red disk
    return DragPoints(pairs, 128, 128, RLEMask.from_tensor(region)).to_json()


def _picture(client, entry, node) -> np.ndarray:
    saved = entry["outputs"][node]["images"][0]
    png = client.get_bytes(f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type={saved['type']}")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_region_warp_is_listed_with_tooltips(client):
    info = client.get_json("/object_info/DragKitRegionWarp")["DragKitRegionWarp"]
    assert info["category"] == "DragKit" and info["output_name"] == ["warped_image", "inpaint_mask", "preview"]
    assert all("tooltip" in spec[1] for spec in info["input"]["required"].values())


def test_the_toy_warp_graph_moves_the_disk_and_keeps_the_rest(client):
    if not TOY_WEIGHTS.exists():
        pytest.fail(f"the toy warp graph needs {TOY_WEIGHTS}")
    entry = client.run(toy_warp_graph(TEST_IMAGE, "an empty grey background", _points()))
    assert entry["status"]["status_str"] == "success", entry["status"]
    result, preview = _picture(client, entry, "12"), _picture(client, entry, "13")
    source = np.asarray(Image.open(client.server.base / "input" / TEST_IMAGE).convert("RGB"))
    # The disk's centre (45, 45) now sits at (75, 55); far from both regions nothing changed (SaveImage
    # truncates 255·x, hence ±1).
    assert np.abs(result[55, 75].astype(int) - source[45, 45].astype(int)).max() <= 1
    assert np.abs(result[100:, :20].astype(int) - source[100:, :20].astype(int)).max() <= 1
    assert np.abs(result[45, 45].astype(int) - source[45, 45].astype(int)).max() > 30  # the disk left
    assert preview.shape == result.shape
    assert entry["outputs"]["6"]["drag"][0]["final_handles"] == [[75.0, 55.0]]


def test_a_handle_off_the_region_is_a_clear_error_and_the_server_keeps_serving(client):
    graph = toy_warp_graph(TEST_IMAGE, "", _points((((45, 45), (75, 55)), ((100, 100), (110, 110)))))
    graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MINI_CHECKPOINT}}
    entry = client.run(graph)
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert error["node_type"] == "DragKitRegionWarp"
    assert "input 'drag_points'" in error["exception_message"] and "pair 2: handle (100, 100)" in error["exception_message"]
    graph["5"]["inputs"]["points"] = _points()  # the same graph, valid: runs on the mini SD1.5 checkpoint
    graph["9"]["inputs"]["steps"] = 2
    assert client.run(graph)["status"]["status_str"] == "success"
