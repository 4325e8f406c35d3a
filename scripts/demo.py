"""`make demo`: the region warp + inpaint, DragDiffusion and GoodDrag on the bundled toy model, through a real
headless ComfyUI server.

Takes a fixed ToyBench edit case (a toy scene, handle → target points, the editable mask and the rough region
to move) and runs three graphs with their defaults through the server's API: RegionWarp (Inpaint4Drag) with
the toy model's own inpainting through core nodes; the full DragDiffusion graph (identity LoRA, DDIM
inversion, motion supervision with point tracking, reference-latent control); GoodDrag's (its LoRA, inversion at
0.75, AlternatingDragDenoise). Writes into outputs/demo/: input.png, truth.png (the true edit the generator
renders), warp.png, result.png (DragDiffusion's), gooddrag.png, before_after.png (input with points | true
edit | warp + inpaint | DragDiffusion | GoodDrag, each scored underneath) and summary.json (per method: where
the object's centroid landed, background PSNR, seconds per stage, the drag's summary).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
import comfy_client  # noqa: E402
import comfy_server  # noqa: E402

log = logging.getLogger("dragkit.demo")
CASE = 3  # a ToyBench case with a clear single-object drag
IMAGE_NAME = "dragkit_demo_input.png"
OUTPUT_FILES = {"region_warp_inpaint": "warp.png", "dragdiffusion": "result.png", "gooddrag": "gooddrag.png"}


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
    from dragkit.drag_core.points import DragPoints

    points = DragPoints((((45, 45), (70, 55)),), 128, 128).to_json()
    server = comfy_server.start(base)
    try:
        client = comfy_client.Client(server)
        entry, seconds, (result,) = run_graph(client, comfy_client.lora_drag_graph(points, max_iterations=20), ("8",))
    finally:
        server.stop()
    result.save(out / "result.png")
    pair = Image.new("RGB", (source.width * 2, source.height))
    pair.paste(source, (0, 0))
    pair.paste(result, (source.width, 0))
    pair.save(out / "before_after.png")
    summary = {"model": "random-weight mini SD1.5 (toy model not bundled): pipeline only, not an edit",
               "drag": entry["outputs"]["10"]["drag"][0], "seconds_per_stage": seconds}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def run_graph(client: comfy_client.Client, graph: dict, outputs: tuple[str, ...]) -> tuple[dict, dict, list]:
    """Run ``graph``; returns (history entry, seconds per node class, the first picture of each output node)."""
    entry, seconds = stage_seconds(client, graph)
    if entry["status"]["status_str"] != "success":
        raise SystemExit(f"the graph failed: {json.dumps(entry['status'], indent=1)}")
    pictures = []
    for node in outputs:
        saved = entry["outputs"][node]["images"][0]
        png = client.get_bytes(f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type={saved['type']}")
        pictures.append(Image.open(io.BytesIO(png)).convert("RGB"))
    return entry, seconds, pictures


def edit_seconds(seconds: dict[str, float]) -> float:
    """The graph's seconds without loading the model (the second graph finds it cached)."""
    return round(sum(v for k, v in seconds.items() if k != "DragKitToyModelLoader"), 2)


def side_by_side(panels: list[tuple[Image.Image, list[str]]], zoom: int = 3) -> Image.Image:
    """Pictures in a row, enlarged ``zoom`` times, each with its lines of text underneath."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    width, height = panels[0][0].width * zoom, panels[0][0].height * zoom
    line = 20
    rows = max(len(text) for _, text in panels)
    sheet = Image.new("RGB", (len(panels) * (width + 8) - 8, height + 10 + rows * line), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (picture, text) in enumerate(panels):
        x = i * (width + 8)
        sheet.paste(picture.resize((width, height), Image.NEAREST), (x, 0))
        for k, words in enumerate(text):
            draw.text((x + 4, height + 6 + k * line), words, fill=(0, 0, 0) if k == 0 else (60, 60, 60), font=font)
    return sheet


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
    from dragkit.drag_core.toy.world import background_caption, caption, render
    from dragkit.nodes.preview import REGION, draw_points

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
        points_json, prompt = bench_cases.case_points(case).to_json(), caption(case.scene)
        graphs = {  # method: (graph, its image output node, its drag node)
            "region_warp_inpaint": (comfy_client.toy_warp_graph(
                IMAGE_NAME, background_caption(case.scene), bench_cases.case_points(case, region=True).to_json()),
                "12", None),
            "dragdiffusion": (comfy_client.toy_drag_graph(IMAGE_NAME, prompt, points_json), "11", "8"),
            "gooddrag": (comfy_client.toy_gooddrag_graph(IMAGE_NAME, prompt, points_json), "11", "8"),
        }
        runs = {}
        for name, (graph, image_node, drag_node) in graphs.items():
            entry, stages, (picture,) = run_graph(client, graph, (image_node,))
            runs[name] = (picture, stages, entry["outputs"][drag_node]["drag"][0] if drag_node else None)
    finally:
        server.stop()

    for name, file in OUTPUT_FILES.items():
        runs[name][0].save(out / file)
    scores = {name: bench_cases.score(case, np.asarray(picture, dtype=np.float32) / 255)
              for name, (picture, _, _) in runs.items()}
    seconds = {name: edit_seconds(stages) for name, (_, stages, _) in runs.items()}

    def scored(name: str, title: str) -> list[str]:
        s = scores[name]
        # A second `make demo` finds the identity LoRA in its cache: say so rather than show a faster method.
        cached = " (LoRA cached)" if 0 < runs[name][1].get("DragKitIdentityLoRATrain", 1.0) < 1.0 else ""
        return [title, f"{s['md']:.1f} px from the true position", f"background {s['background_psnr']:.1f} dB",
                f"{seconds[name]:.1f} s on this CPU{cached}"]

    points = draw_points(source, list(case.pairs), torch.from_numpy(case.region), tint=REGION)
    sheet = side_by_side([
        (points, ["input", f"drag {case.distance:.1f} px, red to blue", "orange: the region to move"]),
        (truth, ["true edit (the generator's)"]),
        (runs["region_warp_inpaint"][0], scored("region_warp_inpaint", "RegionWarp + inpaint")),
        (runs["dragdiffusion"][0], scored("dragdiffusion", "DragDiffusion")),
        (runs["gooddrag"][0], scored("gooddrag", "GoodDrag")),
    ])
    sheet.save(out / "before_after.png")
    summary = {
        "prompt": caption(case.scene),
        "points": [{"handle": list(h), "target": list(t)} for h, t in case.pairs],
        "drag_distance_px": round(case.distance, 2),
        "methods": {
            name: {
                "object_centroid_error_px": round(scores[name]["md"], 2),
                "background_psnr_db": round(scores[name]["background_psnr"], 2),
                "true_edit_psnr_db": round(scores[name]["gt_psnr"], 2),
                "graph_seconds": seconds[name],
                "seconds_per_stage": stages,
                **({"drag": drag} if drag else {}),
            }
            for name, (_, stages, drag) in runs.items()
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for name in scores:
        log.info("%s: object %.1f px from the true position (drag %.1f px), background %.1f dB, %.1f s", name,
                 scores[name]["md"], case.distance, scores[name]["background_psnr"], seconds[name])
    for name in (*OUTPUT_FILES.values(), "before_after.png", "summary.json"):
        print(out / name)


if __name__ == "__main__":
    main()
