"""DragNoise, the training-free self-attention drag and GoodDrag as API graphs through a real server."""


from comfy_client import dragnoise_graph, gooddrag_graph, sacdrag_graph
from dragkit.drag_core.points import DragPoints

POINTS = DragPoints((((45, 45), (75, 55)),), 128, 128).to_json()


def _summary(entry: dict, node: str) -> dict:
    return entry["outputs"][node]["drag"][0]


def test_the_new_nodes_are_listed(client):
    for node in ("DragKitBottleneckOptimize", "DragKitSemanticPropagationDenoise", "DragKitDenoiseToStep",
                 "DragKitAlternatingDragDenoise"):
        info = client.get_json(f"/object_info/{node}")[node]
        assert info["category"] == "DragKit"
        assert all("tooltip" in spec[1] for spec in info["input"]["required"].values()), node


def test_the_dragnoise_graph_runs(client):
    entry = client.run(dragnoise_graph(POINTS, max_iterations=4, end_step=10))
    assert entry["status"]["status_str"] == "success", entry["status"]
    summary = _summary(entry, "10")
    assert summary["iterations"] == 4 and summary["unet_passes"] == 5  # capture + one per iteration
    assert entry["outputs"]["8"]["images"] and entry["outputs"]["11"]["images"]  # result and drag preview


def test_the_training_free_graph_runs_with_an_edit_prompt(client):
    entry = client.run(sacdrag_graph(POINTS, max_iterations=3))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert _summary(entry, "10")["iterations"] == 3
    assert entry["outputs"]["8"]["images"] and entry["outputs"]["11"]["images"]


def test_a_partial_inversion_into_denoise_to_step_is_a_clear_error(client):
    graph = sacdrag_graph(POINTS, max_iterations=1)
    graph["5"]["inputs"]["inversion_strength"] = 0.3  # the latent stays at step 7, past drag_step 5
    entry = client.run(graph)
    assert entry["status"]["status_str"] == "error"
    (error,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert error["node_type"] == "DragKitDenoiseToStep"
    assert "input 'drag_step'" in error["exception_message"] and "inversion_strength 1.0" in error["exception_message"]


def test_the_gooddrag_graph_runs_with_progress_through_drag_and_denoising(client):
    # 20 steps at strength 0.75: 15 denoising steps; drag on the first 2, 2 trackings × 2 Adam steps each.
    entry, messages = client.run_listening(gooddrag_graph(POINTS, drag_end_step=2, track_per_step=2, drag_per_track=2))
    assert entry["status"]["status_str"] == "success", entry["status"]
    summary = _summary(entry, "10")
    assert 1 <= summary["iterations"] <= 8 and len(summary["final_handles"]) == 1
    assert entry["outputs"]["8"]["images"] and entry["outputs"]["11"]["images"]  # result and drag preview
    progress = [m["data"] for m in messages if m["type"] == "progress" and m["data"]["node"] == "10"]
    assert progress and {p["max"] for p in progress} == {8 + 15} and progress[-1]["value"] == 8 + 15


def test_a_bad_gooddrag_setting_is_a_clear_error_through_the_api(client):
    """Refused before the graph runs (validate_inputs): an HTTP 400 naming the node and the input."""
    status, answer = client.post_prompt(gooddrag_graph(POINTS, feature_blocks="nine"))
    assert status == 400, answer
    errors = answer["node_errors"]["10"]
    assert errors["class_type"] == "DragKitAlternatingDragDenoise"
    assert any("DragKit AlternatingDragDenoise: input 'feature_blocks'" in e["details"] for e in errors["errors"])
