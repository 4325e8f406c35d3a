"""`make demo`: DragDiffusion on the bundled toy model, through a real headless ComfyUI server.

Takes a fixed ToyBench edit case (a toy scene, handle → target points and the editable mask), runs
the full DragDiffusion graph with every default (identity LoRA, DDIM inversion, motion supervision
with point tracking, reference-latent control) through the server's API, and writes into
outputs/demo/: input.png, result.png, before_after.png (input with points | tracked trajectory |
result), truth.png (the true edit the generator renders) and summary.json (handle→target distances
before/after, where the object's centroid landed, background PSNR, seconds per stage).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # comfyenv: in-process ComfyUI, for the toy world and scoring
sys.path.insert(0, str(REPO / "bench"))
import comfy_client  # noqa: E402
import comfy_server  # noqa: E402

log = logging.getLogger("dragkit.demo")
CASE = 3  # a ToyBench case with a clear single-object drag
IMAGE_NAME = "dragkit_demo_input.png"


def stage_seconds(client: comfy_client.Client, graph: dict) -> tuple[dict, dict[str, float]]:
    """Run the graph, timing each node from the websocket's "executing" messages."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{client.server.port}/ws?clientId={client.client_id}", timeout=900)
    marks: list[tuple[str | None, float]] = []

    def listen() -> None:
        while True:
            msg = ws.recv()
            if isinstance(msg, str):
                data = json.loads(msg)
                if data["type"] == "executing":
                    marks.append((data["data"]["node"], time.monotonic()))
                    if data["data"]["node"] is None:
                        return
                if data["type"] in ("execution_error", "execution_interrupted"):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    entry = client.run(graph, timeout=900)
    listener.join(timeout=30)
    ws.close()
    seconds = {}
    for (node, start), (_, end) in zip(marks, marks[1:]):
        if node is not None:
            seconds[graph[node]["class_type"]] = round(seconds.get(graph[node]["class_type"], 0) + end - start, 2)
    return entry, seconds


def fallback_demo(out: Path) -> None:
    """Without the bundled toy weights: the same DragDiffusion graph on a random-weight "mini" SD1.5
    checkpoint generated on the spot. It shows every stage running in a real server, not an edit."""
    import make_test_checkpoint

    log.warning("the toy model is not bundled in this checkout: running the pipeline on a random-weight model")
    checkpoint = make_test_checkpoint.make_checkpoint(comfy_client.CACHE / comfy_client.MINI_CHECKPOINT, "mini")
    base = comfy_server.prepare_base(REPO / ".comfyui" / "demo-base")
    link = base / "models" / "checkpoints" / comfy_client.MINI_CHECKPOINT
    if not link.exists():
        link.symlink_to(checkpoint)
    source = comfy_client.sample_image()
    source.save(base / "input" / comfy_client.TEST_IMAGE)
    source.save(out / "input.png")
    points = json.dumps({"version": 1, "width": 128, "height": 128,
                         "points": [{"handle": [45, 45], "target": [70, 55]}]})
    server = comfy_server.start(base)
    try:
        client = comfy_client.Client(server)
        entry, seconds = stage_seconds(client, comfy_client.lora_drag_graph(points, max_iterations=20))
        if entry["status"]["status_str"] != "success":
            raise SystemExit(f"the graph failed: {json.dumps(entry['status'], indent=1)}")
        saved = entry["outputs"]["8"]["images"][0]
        png = client.get_bytes(f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type=output")
    finally:
        server.stop()
    result = Image.open(io.BytesIO(png)).convert("RGB")
    result.save(out / "result.png")
    pair = Image.new("RGB", (source.width * 2, source.height))
    pair.paste(source, (0, 0))
    pair.paste(result, (source.width, 0))
    pair.save(out / "before_after.png")
    summary = {"model": "random-weight mini SD1.5 (toy model not bundled): pipeline only, not an edit",
               "drag": entry["outputs"]["10"]["drag"][0], "seconds_per_stage": seconds}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import comfyenv

    comfyenv.setup()
    from dragkit.nodes.toy_model import TOY_WEIGHTS

    if not TOY_WEIGHTS.exists():
        out = REPO / "outputs" / "demo"
        out.mkdir(parents=True, exist_ok=True)
        fallback_demo(out)
        for name in ("result.png", "before_after.png", "summary.json"):
            print(out / name)
        return
    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import caption, render
    from toybench import points_json

    out = REPO / "outputs" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    case = bench_cases.make_cases(CASE + 1)[CASE]
    source = Image.fromarray((render(case.scene) * 255).round().astype(np.uint8))
    truth = Image.fromarray((render(case.target_scene) * 255).round().astype(np.uint8))
    base = comfy_server.prepare_base(REPO / ".comfyui" / "demo-base")
    source.save(base / "input" / IMAGE_NAME)
    source.save(out / "input.png")
    truth.save(out / "truth.png")

    started = time.monotonic()
    server = comfy_server.start(base)
    try:
        log.info("ComfyUI with DragKit at %s (ready in %.1f s)", server.url, time.monotonic() - started)
        client = comfy_client.Client(server)
        graph = comfy_client.toy_drag_graph(IMAGE_NAME, caption(case.scene), points_json(case))
        t0 = time.monotonic()
        entry, seconds = stage_seconds(client, graph)
        total = time.monotonic() - t0
        if entry["status"]["status_str"] != "success":
            raise SystemExit(f"the graph failed: {json.dumps(entry['status'], indent=1)}")
        pictures = {}
        for node in ("11", "12"):
            saved = entry["outputs"][node]["images"][0]
            png = client.get_bytes(f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type=output")
            pictures[node] = Image.open(io.BytesIO(png)).convert("RGB")
        drag = entry["outputs"]["8"]["drag"][0]
    finally:
        server.stop()

    result, trajectory = pictures["11"], pictures["12"]
    result.save(out / "result.png")
    strip = Image.new("RGB", (source.width * 3, source.height))
    for i, picture in enumerate((source, trajectory, result)):
        strip.paste(picture, (i * source.width, 0))
    strip.resize((strip.width * 3, strip.height * 3), Image.NEAREST).save(out / "before_after.png")
    score = bench_cases.score(case, np.asarray(result, dtype=np.float32) / 255)
    summary = {
        "prompt": caption(case.scene),
        "points": [{"handle": list(h), "target": list(t)} for h, t in case.pairs],
        "drag": drag,
        "object_centroid_error_px": round(score["md"], 2),
        "drag_distance_px": round(score["initial_distance"], 2),
        "background_psnr_db": round(score["background_psnr"], 2),
        "true_edit_psnr_db": round(score["gt_psnr"], 2),
        "seconds_per_stage": seconds,
        "graph_seconds": round(total, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("object moved to within %.1f px of the true position (drag %.1f px); tracked handle %.1f → %.1f px",
             score["md"], score["initial_distance"], drag["initial_distance_px"], drag["final_distance_px"])
    for name in ("result.png", "before_after.png", "summary.json"):
        print(out / name)


if __name__ == "__main__":
    main()
