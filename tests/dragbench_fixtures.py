"""A miniature DragBench in the release's format (tests/unit/test_dragbench.py, tests/comfy/test_dragbench_backends.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
# (category, sample, square's top-left (x, y), drags as ((hx, hy), (tx, ty)); pickle protocol)
SAMPLES = (
    ("animals", "JH_2023-09-14-1820-16", (16, 16), (((24, 24), (36, 32)),), 5),
    ("animals", "JH_2023-09-14-1821-23", (30, 12), (((36, 18), (30, 28)), ((42, 22), (36, 32))), 2),
    ("art_work", "LK_2023-09-15-0930-02", (20, 34), (((27, 40), (41, 37)),), 4),
)


def sample_picture(seed: int, square: tuple[int, int]) -> np.ndarray:
    """A noisy gradient with a noisy red square: every 5×5 patch is unique, so content features can find it."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([xs * 2, ys * 2, np.full_like(xs, 90)], axis=-1).astype(np.float64)
    x0, y0 = square
    base[y0:y0 + 16, x0:x0 + 16] = (220, 40, 40)
    return np.clip(base + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)


def sample_mask(square: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)  # the labelling tool stores np.uint8(mask > 0)
    x0, y0 = square
    mask[y0 - 2:y0 + 18, x0 - 2:x0 + 18] = 1
    return mask


def write_meta(path: Path, meta: dict, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    with open(path, "wb") as f:
        pickle.dump(meta, f, protocol=protocol)


def make_bench(root: Path) -> Path:
    """A miniature DragBench: 2 categories, 3 samples, the release's files and pickle structure."""
    for i, (category, name, square, drags, protocol) in enumerate(SAMPLES):
        folder = root / category / name
        folder.mkdir(parents=True)
        image = sample_picture(i, square)
        Image.fromarray(image).save(folder / "original_image.png")
        Image.fromarray(255 - image).save(folder / "user_drag.png")  # display only; never read
        # gradio's click indices: [x, y] lists, handle then target
        points = [list(p) for pair in drags for p in pair]
        write_meta(folder / "meta_data.pkl", {"prompt": f"a red square {i}", "points": points,
                                               "mask": sample_mask(square)}, protocol)
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "animals" / ".DS_Store").write_bytes(b"\0")
    return root
