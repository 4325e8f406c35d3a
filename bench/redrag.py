"""Re-drag: the same graph queued again through a ComfyUI server with only the points changed.

    .venv/bin/python bench/redrag.py [--json out.json]

ComfyUI re-runs only the nodes whose inputs changed: DragPoints, the drag and the denoise (and the decode), while
the identity LoRA, the VAE encode and the inversion come from its cache. This times, through the real server with a
fresh LoRA cache, (1) the first run of DragDiffusion's graph with every node default, (2) the same graph with the
points moved, on the bundled toy model (the `make demo` graph, a ToyBench case) and on the random "mini" SD1.5-shaped
checkpoint (SD1.5's blocks at 320 channels; a 128 px picture and 128 px LoRA crops, so that the first run stays in
minutes on a CPU). Wall seconds from posting the prompt to its completion (polled every 0.5 s); the re-drag as a
fraction of the first.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import comfy_client  # noqa: E402
import comfy_server  # noqa: E402

log = logging.getLogger("dragkit.bench.redrag")
IMAGE = "redrag.png"


def _moved(points_json: str, dx: float) -> str:
    points = json.loads(points_json)
    for pair in points["points"]:
        pair["target"][0] = min(max(pair["target"][0] + dx, 0), points["width"])
    return json.dumps(points)


def graphs(base: Path) -> dict[str, tuple[dict, dict]]:
    """Per model: (first graph, the same graph with the points changed)."""
    import comfyenv
    import make_test_checkpoint

    comfyenv.setup()
    from PIL import Image

    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import caption, render

    case = bench_cases.make_cases(1)[0]
    Image.fromarray((render(case.scene) * 255).round().astype("uint8")).save(base / "input" / "toy.png")
    points = bench_cases.case_points(case).to_json()
    toy = comfy_client.toy_drag_graph("toy.png", caption(case.scene), points)

    checkpoint = make_test_checkpoint.make_checkpoint(comfy_client.CACHE / comfy_client.MINI_CHECKPOINT, "mini")
    (base / "models" / "checkpoints" / comfy_client.MINI_CHECKPOINT).symlink_to(checkpoint)
    comfy_client.sample_image(128).save(base / "input" / "sd.png")
    sd_points = json.dumps({"version": 1, "width": 128, "height": 128,
                            "points": [{"handle": [45, 45], "target": [70, 60]}]})
    sd = comfy_client.toy_drag_graph("sd.png", "a red disk and a blue square", sd_points)
    sd["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": comfy_client.MINI_CHECKPOINT}}
    out = {}
    for name, graph, pts in (("toy model", toy, points), ("mini SD1.5", sd, sd_points)):
        again = json.loads(json.dumps(graph))
        again["5"]["inputs"]["points"] = _moved(pts, -6)
        out[name] = (graph, again)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = comfy_server.prepare_base(Path(tempfile.mkdtemp(prefix="dragkit-redrag-")))  # a fresh LoRA cache
    runs = graphs(base)
    server = comfy_server.start(base)
    results = {}
    try:
        client = comfy_client.Client(server)
        for name, (first, again) in runs.items():
            seconds = []
            for graph in (first, again):
                started = time.monotonic()
                entry = client.run(graph, timeout=3600)
                seconds.append(time.monotonic() - started)
                if entry["status"]["status_str"] != "success":
                    raise RuntimeError(f"{name}: the graph failed: {entry['status']}")
            results[name] = {"first_s": round(seconds[0], 2), "redrag_s": round(seconds[1], 2),
                             "fraction": round(seconds[1] / seconds[0], 3)}
            log.info("%s: first %.1f s, re-drag %.1f s (%.0f %%)", name, seconds[0], seconds[1],
                     100 * seconds[1] / seconds[0])
    finally:
        server.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    sys.stdout.write(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
