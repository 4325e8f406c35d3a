"""``dragkit-edit``: one drag edit from the command line, on a diffusers SD1.x/2.x model (see :mod:`.api`).

    dragkit-edit --model path/to/sd15 --image cat.png --points points.json --prompt "a cat" --out dragged.png

``--points``: the DragPoints editor's JSON (a file, or the JSON itself), e.g.
``{"version": 1, "width": 512, "height": 512, "points": [{"handle": [100, 200], "target": [140, 200]}]}``.
The drag summary (distances, final handles, seconds per stage) is printed as JSON and written next to the image.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .api import METHODS, DragKitError, DragPipeline, edit
from .files import atomic_write, write_safetensors

log = logging.getLogger("dragkit")


def _value(text: str):
    """--option values: JSON where it parses (numbers, true/false, lists), the plain string otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dragkit-edit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="diffusers pipeline folder or .safetensors/.ckpt checkpoint")
    parser.add_argument("--model-config", help="for a single-file checkpoint: a diffusers folder with its configs")
    parser.add_argument("--image", required=True)
    parser.add_argument("--points", required=True, help="points JSON file, or the JSON itself")
    parser.add_argument("--mask", help="editable-region picture (white = editable), combined with the points' mask")
    parser.add_argument("--method", choices=sorted(METHODS), default="dragdiffusion")
    parser.add_argument("--prompt", default="")
    parser.add_argument("--edit-prompt", help="the training-free drag's prompt for the edited branch (sacdrag)")
    parser.add_argument("--out", required=True, type=Path, help="the edited picture (.png)")
    parser.add_argument("--lora", default="train", help="'train' (default), 'none', or a kohya .safetensors file")
    parser.add_argument("--save-lora", type=Path, help="also write the identity LoRA used (kohya keys)")
    parser.add_argument("--lora-steps", type=int)
    parser.add_argument("--lora-resolution", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--inversion-strength", type=float)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a drag node widget, e.g. max_iterations=40 or motion_anchor=initial (repeatable)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the first that exists)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        points = Path(args.points).read_text(encoding="utf-8") if Path(args.points).is_file() else args.points
        options = {}
        for item in args.option:
            name, sep, value = item.partition("=")
            if not sep:
                raise DragKitError(f"--option: expected NAME=VALUE, got {item!r}")
            options[name] = _value(value)
        mask = None
        if args.mask:
            import numpy as np
            from PIL import Image

            mask = np.asarray(Image.open(args.mask).convert("L")) > 127
        lora = None if args.lora == "none" else args.lora
        pipe = DragPipeline.load(args.model, args.device, args.model_config)
        result = edit(pipe, args.image, points, mask, args.method, args.prompt, lora=lora, lora_steps=args.lora_steps,
                      lora_resolution=args.lora_resolution, steps=args.steps,
                      inversion_strength=args.inversion_strength, edit_prompt=args.edit_prompt, options=options)
    except DragKitError as e:
        log.error("dragkit-edit: %s", e)
        return 2
    atomic_write(args.out, lambda tmp: result.image.save(tmp, format="PNG"))
    summary = {**result.summary, "seconds": result.seconds, "method": args.method}
    atomic_write(args.out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    if args.save_lora and result.lora is not None:
        write_safetensors(args.save_lora, result.lora)
    sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
