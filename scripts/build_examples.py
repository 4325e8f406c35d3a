"""Regenerate example_workflows/ from the API-format graphs the tests and `make demo` run.

    .venv/bin/python scripts/build_examples.py [--only toy|sd15]

Each workflow is the API graph loaded into the real frontend (app.loadApiJson), laid out, given a
Note, saved as UI-format JSON (app.graph.serialize()), and pictured by a screenshot of its DragPoints
editor (the .jpg thumbnail; the SD1.5 one also gives docs/images/editor.png). The input pictures are rendered toy-world scenes with their edit's
points and mask already placed, so each workflow runs as shipped. The toy workflow needs the bundled
toy weights (its loader node is registered only then).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
BROWSER = REPO / "scripts" / "browser"  # build_examples.mjs and the playwright-core it drives

import comfy_client  # noqa: E402
import comfy_server  # noqa: E402

OUT = REPO / "example_workflows"
SD15_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"  # the usual SD1.5 file name; the Note says to set it
SD15_IMAGE = "dragkit_sd15_input.png"

TOY_NOTE = """DragDiffusion on the bundled toy model (runs on a CPU in a few minutes).

The input picture, its handle → target points and the editable mask are already placed: press Run.
This is exactly the `make demo` graph.

In DragPoints: click a handle, then its target (red → blue); drag a point to move it; right-click or
Delete removes a pair; "Mask" paints the region that may change. After the run the editor shows the
result with the tracked handles (yellow).

The toy model knows only simple coloured shapes: describe the picture in the prompt the way its
captions do ("a red disk and a blue square on a grey background")."""

SD15_NOTE = """DragDiffusion on Stable Diffusion 1.5.

Set:
1. Load Checkpoint: your SD1.5 checkpoint (any SD1.5 fine-tune works).
2. Load Image: your picture (512 px works best).
3. CLIP Text Encode: a short prompt describing the picture.
4. DragPoints: click handles and targets, paint the region that may change (Mask).

IdentityLoRATrain trains a small LoRA on the picture first (80 steps: about a minute on a GPU,
much longer on a CPU; it is cached for the same image, prompt and model). The editor shows the tracked
handles (yellow) on the result after the run."""


def demo_case():
    """The `make demo` ToyBench case: its input picture, prompt and points JSON (with the mask)."""
    import comfyenv

    comfyenv.setup()
    import demo
    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import caption, render

    case = bench_cases.make_cases(demo.CASE + 1)[demo.CASE]
    picture = Image.fromarray((render(case.scene) * 255).round().astype(np.uint8))
    return demo.IMAGE_NAME, picture, caption(case.scene), bench_cases.case_points(case).to_json()


def sd15_case():
    """The demo case drawn 4× larger (512 px, SD1.5's size): the same edit, the default of the SD1.5 workflow."""
    return scaled_case(4, SD15_IMAGE)


def scaled_case(k: int, image_name: str, region: bool = False):
    """The demo case drawn k× larger: (image name, picture, prompt, points JSON) with the caption and the editable
    mask, or (``region``) the background-only caption and the region to move (the warp workflows')."""
    import demo
    from dragkit.drag_core.points import DragPoints, RLEMask
    from dragkit.drag_core.toy import bench_cases
    from dragkit.drag_core.toy.world import background_caption, caption, render

    case = bench_cases.make_cases(demo.CASE + 1)[demo.CASE]
    scene = replace(case.scene, size=case.scene.size * k,
                    objects=tuple(replace(o, x=o.x * k, y=o.y * k, size=o.size * k) for o in case.scene.objects))
    picture = Image.fromarray((render(scene) * 255).round().astype(np.uint8))
    painted = case.region if region else case.mask
    mask = torch.from_numpy(np.kron(painted.astype(np.float32), np.ones((k, k), np.float32)))
    pairs = tuple(((h[0] * k, h[1] * k), (t[0] * k, t[1] * k)) for h, t in case.pairs)
    points = DragPoints(pairs, scene.size, scene.size, RLEMask.from_tensor(mask)).to_json()
    prompt = background_caption(scene) if region else caption(scene)
    return image_name, picture, prompt, points


def sd15_graph(image: str, prompt: str, points: str) -> dict:
    """The toy graph with a checkpoint loader and SD1.5's LoRA resolution: every node default."""
    graph = comfy_client.toy_drag_graph(image, prompt, points)
    graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15_CHECKPOINT}}
    graph["4"]["inputs"]["resolution"] = 512
    graph["11"]["inputs"]["filename_prefix"] = "dragkit_sd15"
    graph["12"]["inputs"]["filename_prefix"] = "dragkit_sd15_trajectory"
    return graph


def render_workflows(jobs: list, docs_dir: Path | None = None, layout: dict | None = None) -> None:
    """Load each job's API graph into the real frontend (build_examples.mjs) on a temporary server and save it,
    laid out (``layout``: node id → x, y, w, h; default the DragDiffusion graph's), as a UI workflow with its
    thumbnail into example_workflows/. ``jobs``: (name, input picture name, picture, graph, note). ``docs_dir``
    receives the README's picture of the editor (taken for dragdiffusion_sd15; a temporary folder when None)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = comfy_server.prepare_base(Path(tmp) / "base")
        spec = []
        for name, image, picture, graph, note in jobs:
            picture.save(base / "input" / image)
            spec.append({"name": name, "graph": graph, "note": note, **({"layout": layout} if layout else {})})
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        docs = docs_dir or Path(tmp) / "docs"
        docs.mkdir(parents=True, exist_ok=True)
        server = comfy_server.start(base)
        try:
            subprocess.run(["node", str(BROWSER / "build_examples.mjs"), server.url, str(spec_path), str(OUT), str(docs)],
                           check=True, cwd=BROWSER)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["toy", "sd15"])
    args = parser.parse_args()
    import comfyenv

    comfyenv.setup()
    from dragkit.nodes.toy_model import TOY_WEIGHTS

    jobs = []
    if args.only in (None, "sd15"):
        image, picture, prompt, points = sd15_case()
        jobs.append(("dragdiffusion_sd15", image, picture, sd15_graph(image, prompt, points), SD15_NOTE))
    if args.only in (None, "toy"):
        if not TOY_WEIGHTS.exists():
            raise SystemExit(f"the toy workflow needs the toy weights at {TOY_WEIGHTS}")
        image, picture, prompt, points = demo_case()
        jobs.append(("dragdiffusion_toy", image, picture, comfy_client.toy_drag_graph(image, prompt, points), TOY_NOTE))

    for _, image, picture, *_ in jobs:
        picture.save(OUT / image)  # served by ComfyUI from example_workflows/; the editor uploads it
    render_workflows(jobs, REPO / "docs" / "images")
    for name, *_ in jobs:
        print(OUT / f"{name}.json")


if __name__ == "__main__":
    main()
