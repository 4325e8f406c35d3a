"""The DragDiffusion graph through a real server: it runs, shows its preview, and can be interrupted."""

import json
import time
import urllib.request

from comfy_client import drag_graph, reconstruction_graph
from dragkit.drag_core.points import DragPoints

POINTS = DragPoints((((45, 45), (75, 55)),), 128, 128).to_json()


def test_the_drag_graph_runs_and_shows_the_preview(client):
    entry = client.run(drag_graph(POINTS, max_iterations=5))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"]["10"]["images"][0]["type"] == "temp"  # the preview shown on the node
    assert entry["outputs"]["9"]["images"][0]["type"] == "temp"  # the points shown on DragPoints
    assert entry["outputs"]["8"]["images"] and entry["outputs"]["11"]["images"]


def test_a_bad_points_value_is_a_clear_error_through_the_api(client):
    """Refused before anything runs (DragPoints' validate_inputs): an HTTP 400 naming the node and the input."""
    bad = json.loads(POINTS)
    bad["points"][0]["target"] = [500, 55]  # outside the 128 px picture
    graph = drag_graph(json.dumps(bad))
    status, answer = client.post_prompt(graph)
    assert status == 400, answer
    (node_id,) = [k for k, v in graph.items() if v["class_type"] == "DragKitDragPoints"]
    (error,) = answer["node_errors"][node_id]["errors"]
    assert error["type"] == "custom_validation_failed" and error["extra_info"]["input_name"] == "points"
    assert "DragKit DragPoints: input 'points'" in error["details"] and "outside" in error["details"]


def test_interrupt_mid_optimization_stops_it_and_the_server_serves_the_next_prompt(client):
    # Far more iterations than can run, and a stop distance that is never met.
    status, answer = client.post_prompt(drag_graph(POINTS, max_iterations=2000, stop_distance=0.1))
    assert status == 200, answer
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until the optimization node is running
        queue = client.get_json("/queue")
        running = [item for item in queue["queue_running"] if item[1] == prompt_id]
        if running and _node_is_executing(client, "10"):
            break
        time.sleep(0.2)
    started = time.monotonic()
    urllib.request.urlopen(urllib.request.Request(client.server.url + "/interrupt", data=b"", method="POST"))
    entry = client.wait(prompt_id, timeout=120)
    stopped_after = time.monotonic() - started
    interrupted = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_type"] == "DragKitMotionSupervisionOptimize", entry["status"]
    assert stopped_after < 30, stopped_after  # within about one iteration, not after 2000
    nxt = client.run(reconstruction_graph(steps=4))
    assert nxt["status"]["status_str"] == "success"


def _node_is_executing(client, node_id: str) -> bool:
    """True once the server reports progress for ``node_id`` (polled through /queue + a websocket)."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{client.server.port}/ws?clientId={client.client_id}", timeout=5)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                msg = ws.recv()
            except websocket.WebSocketTimeoutException:
                return False
            if isinstance(msg, str):
                data = json.loads(msg)
                if data["type"] == "progress" and data["data"]["node"] == node_id:
                    return True
        return False
    finally:
        ws.close()


def test_the_identity_lora_flows_into_inversion_drag_and_denoise(client, server):
    from comfy_client import lora_drag_graph

    cache = server.base / "models" / "dragkit" / "lora_cache"
    before = set(cache.glob("*.safetensors"))  # other tests share the server (and its cache)
    entry = client.run(lora_drag_graph(POINTS, max_iterations=3))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert len(set(cache.glob("*.safetensors")) - before) == 1  # trained once and cached under ComfyUI's models/
    log_before = server.log_text().count("cache hit")
    graph = lora_drag_graph(POINTS, max_iterations=3)
    graph["10"]["inputs"]["seed"] = 7  # forces re-execution downstream; the LoRA inputs are unchanged
    graph["12"]["inputs"]["cache"] = "use"
    graph["12"]["inputs"]["precision"] = "fp32"  # same resolved setting on CPU: a new node run, same key
    again = client.run(graph)
    assert again["status"]["status_str"] == "success", again["status"]
    assert server.log_text().count("cache hit") == log_before + 1
