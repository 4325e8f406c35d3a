"""DragKit inside a real ComfyUI server: loaded, listed, and running graphs through the API."""

import io
import json

from PIL import Image

from comfy_client import reconstruction_graph


def test_every_dragkit_node_is_listed_and_the_pack_imported_cleanly(client, server):
    from dragkit.nodes import NODE_CLASS_MAPPINGS

    info = client.get_json("/object_info")
    for node_id in NODE_CLASS_MAPPINGS:
        assert node_id in info, node_id
        assert info[node_id]["category"] == "DragKit"
    assert info["DragKitDDIMInvert"]["display_name"] == "DDIMInvert"
    assert info["DragKitDDIMInvert"]["input"]["required"]["inversion_strength"][1]["default"] == 0.7
    lines = server.log_text().splitlines()
    ours = [line for line in lines if "custom_nodes/dragkit" in line]
    assert ours, "ComfyUI never mentioned the pack"  # it lists every pack it imported, with the time
    assert not [line for line in ours if "IMPORT FAILED" in line], ours


def test_reconstruction_graph_runs_with_progress_on_the_websocket(client):
    entry, messages = client.run_listening(reconstruction_graph(strength=0.7, steps=20))
    assert entry["status"]["status_str"] == "success", entry["status"]
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    invert = [p["value"] for p in progress if p["node"] == "5"]
    denoise = [p["value"] for p in progress if p["node"] == "6"]
    assert invert and max(invert) == 14 and {p["max"] for p in progress if p["node"] == "5"} == {14}
    assert denoise and max(denoise) == 14  # 20 − 14 = 6 is where denoising starts; 14 steps remain
    image = entry["outputs"]["8"]["images"][0]
    png = client.get_bytes(f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type=output")
    assert Image.open(io.BytesIO(png)).size == (128, 128)


def test_out_of_range_strength_is_refused_before_running(client):
    status, answer = client.post_prompt(reconstruction_graph(strength=0.0))
    assert status == 400
    errors = json.dumps(answer["node_errors"]["5"])
    assert "inversion_strength" in errors


def test_node_error_reaches_the_user_with_node_and_input(client):
    graph = reconstruction_graph()
    graph["9"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}}
    graph["5"]["inputs"]["latent"] = ["9", 0]
    entry = client.run(graph)
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "DragKit DDIMInvert: input 'latent'" in errors[0]["exception_message"]
    assert "batch of 2" in errors[0]["exception_message"]
