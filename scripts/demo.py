"""`make demo`: run a DragKit graph through a real headless ComfyUI and write what happened.

Until the bundled toy model lands, the graph is DDIM inversion → reconstruction on a random-weight
SD1.5-shaped checkpoint generated on the spot: it shows the whole pipeline running in a real server,
not an edit. Writes outputs/demo/{input.png, result.png, before_after.png, summary.json}.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # comfyenv: in-process ComfyUI for the generator
import comfy_client  # noqa: E402
import comfy_server  # noqa: E402

log = logging.getLogger("dragkit.demo")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = REPO / "outputs" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    import comfyenv

    comfyenv.setup()
    import make_test_checkpoint

    checkpoint = make_test_checkpoint.make_checkpoint(comfy_client.CACHE / comfy_client.MINI_CHECKPOINT, "mini")
    base = comfy_server.prepare_base(REPO / ".comfyui" / "demo-base")
    link = base / "models" / "checkpoints" / comfy_client.MINI_CHECKPOINT
    if not link.exists():
        link.symlink_to(checkpoint)
    image = comfy_client.sample_image()
    image.save(base / "input" / comfy_client.TEST_IMAGE)
    image.save(out / "input.png")

    started = time.monotonic()
    server = comfy_server.start(base)
    try:
        log.info("ComfyUI with DragKit at %s (ready in %.1f s)", server.url, time.monotonic() - started)
        client = comfy_client.Client(server)
        t0 = time.monotonic()
        entry = client.run(comfy_client.reconstruction_graph(strength=0.7, steps=50))
        seconds = time.monotonic() - t0
        if entry["status"]["status_str"] != "success":
            raise SystemExit(f"the graph failed: {json.dumps(entry['status'], indent=1)}")
        saved = entry["outputs"]["8"]["images"][0]
        png = client.get_bytes(f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type=output")
    finally:
        server.stop()

    result = Image.open(io.BytesIO(png)).convert("RGB")
    result.save(out / "result.png")
    pair = Image.new("RGB", (image.width * 2, image.height))
    pair.paste(image, (0, 0))
    pair.paste(result, (image.width, 0))
    pair.save(out / "before_after.png")
    summary = {
        "graph": "LoadImage → VAEEncode → DDIMInvert(50 steps, 0.7) → ReferenceLatentDenoise → VAEDecode",
        "model": "random-weight mini SD1.5 (toy model not bundled yet: this shows the pipeline, not an edit)",
        "graph_seconds": round(seconds, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for name in ("result.png", "before_after.png", "summary.json"):
        print(out / name)


if __name__ == "__main__":
    main()
