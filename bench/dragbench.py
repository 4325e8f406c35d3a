"""DragBench: read the benchmark's folders and run a drag editor over every sample.

    .venv/bin/python bench/dragbench.py run --data DragBench --out runs/dd --method dragdiffusion --backend fake
                                            [--model PATH] [--option key=value ...] [--limit N]
                                            [--categories animals,art_work] [--overwrite] [--fail-fast]

DragBench (DragDiffusion, Shi et al.; ``DragBench.zip`` of release v0.1.1 of Yujun-Shi/DragDiffusion) is 205
images with 349 handle→target pairs in ten category folders. The layout, as the release's labelling tool
(``drag_bench_evaluation/labeling_tool.py``) writes it and its runner and evaluators
(``run_drag_diffusion.py``, ``run_eval_point_matching.py``, ``run_eval_similarity.py``) read it::

    <data>/<category>/<sample>/original_image.png   the picture, 512 px wide (the tool resizes to width 512)
    <data>/<category>/<sample>/user_drag.png        the picture with the clicks drawn on it (display only)
    <data>/<category>/<sample>/meta_data.pkl        pickle of {"prompt": str, "points": [...], "mask": ndarray}

Categories: art_work, land_scape, building_city_view, building_countryside_view, animals, human_head,
human_upper_body, human_full_body, interior_design, other_objects; sample folders are named
``<labeller>_<date-time>`` (e.g. ``JH_2023-09-14-1820-16``). ``points`` is the list of clicks in order, each an
``[x, y]`` pixel of ``original_image.png`` (gradio's click index): even entries are handles, odd entries their
targets. ``mask`` is an (H, W) uint8 array, 1 = editable (the release's runner divides by 255 and keeps
everything > 0, so 0/255 masks read the same). The release skips ``.DS_Store`` entries; so does this reader,
and any other hidden entry.

Results use the release's layout (what its runner writes and its evaluators read):
``<out>/<category>/<sample>/dragged_image.png``, the edit at the source's size. This runner adds
``<out>/results.json`` (per sample: seconds, peak memory, the editor's summary, the LoRA file; per run: its
settings) and ``<out>/lora_cache/<category>__<sample>.safetensors``, the per-sample LoRA an editor reads when it
exists and writes after training (the release trains one LoRA per sample into ``drag_bench_lora/`` first).

Departures from the release, all deliberate:

- ``meta_data.pkl`` is untrusted input (unpickling can run code): it is read by an unpickler that resolves only
  the numpy and builtin names an array, a scalar or plain data need, and every other global is refused before
  anything is called. Malformed content (odd number of clicks, a mask not of the image's size, a click outside
  the image) raises :class:`DragBenchError` naming the file instead of failing later.
- Samples run in sorted order (the release uses ``os.listdir`` order), so ``--limit`` picks the same samples
  every time.
- A sample whose ``dragged_image.png`` exists is skipped unless ``--overwrite``; every file is written
  atomically (a temporary file, then ``os.replace``), so a killed run leaves no half-written image or JSON.

The editor is whatever :func:`make_editor` returns: ``backend="fake"`` (a numpy stand-in that moves the masked
region by the mean drag, for tests and for checking the evaluator) or, once ``dragkit.drag_core.api`` wires
them in, the ``diffusers`` and ``comfyui`` backends.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import pickle
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("dragkit.dragbench")

REPO = Path(__file__).resolve().parent.parent
# The real backends (dragbench_editors.py) import DragKit as the package `dragkit` and ComfyUI through comfyenv,
# also when this file runs as a script.
sys.path.insert(0, str(REPO / "scripts"))
import comfyenv  # noqa: E402

comfyenv.register_pack()
from dragkit.drag_core.files import atomic_write  # noqa: E402

CATEGORIES = (
    "art_work",
    "land_scape",
    "building_city_view",
    "building_countryside_view",
    "animals",
    "human_head",
    "human_upper_body",
    "human_full_body",
    "interior_design",
    "other_objects",
)
IMAGE_FILE = "original_image.png"
META_FILE = "meta_data.pkl"
RESULT_FILE = "dragged_image.png"
RESULTS_JSON = "results.json"
LORA_DIR = "lora_cache"
RESULTS_FORMAT = "dragkit-dragbench-results"
RESULTS_VERSION = 1
BACKENDS = ("fake", "diffusers", "comfyui")

Point = tuple[float, float]


class DragBenchError(ValueError):
    """A DragBench folder, sample or result that cannot be used; the message names the file."""


# --------------------------------------------------------------------------------------------------- meta_data.pkl


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; pickles from either era name one or the other.
    import importlib

    for candidate in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"{module}.{name}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(text, "latin1"); no other codec is ever needed.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


# What an ndarray, a numpy scalar, a dtype and plain containers unpickle through: nothing that can reach the
# file system, import arbitrary modules or call arbitrary functions.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    **{(m, "_reconstruct"): (lambda m=m: _numpy_global(m, "_reconstruct"))
       for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): (lambda m=m: _numpy_global(m, "scalar"))
       for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): (lambda m=m: _numpy_global(m, "_frombuffer"))
       for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("builtins", "bytearray"): lambda: bytearray,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "complex"): lambda: complex,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS`; anything else is refused before it is called."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a DragBench meta_data.pkl")
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a DragBench meta_data.pkl")


def load_meta(path: Path) -> dict[str, Any]:
    """Unpickle a ``meta_data.pkl`` safely: only numpy arrays/scalars and plain data; keys checked, not values."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except OSError as e:
        raise DragBenchError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # a malformed pickle raises almost anything; every kind means the same here
        raise DragBenchError(f"{path}: refused or malformed pickle: {type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise DragBenchError(f"{path}: expected a dict with prompt, points and mask, got {type(data).__name__}")
    missing = {"prompt", "points", "mask"} - data.keys()
    if missing:
        raise DragBenchError(f"{path}: missing key(s) {sorted(missing)}; expected prompt, points and mask")
    return data


# --------------------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class DragBenchSample:
    """One DragBench sample: pixel (x, y) points of ``image`` (H×W×3 uint8), mask H×W bool (True = editable)."""

    category: str
    name: str
    folder: Path
    image: np.ndarray = field(repr=False)
    prompt: str
    handles: tuple[Point, ...]
    targets: tuple[Point, ...]
    mask: np.ndarray = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.category}/{self.name}"

    @property
    def pairs(self) -> int:
        return len(self.handles)


def read_image(path: Path) -> np.ndarray:
    """An image file as H×W×3 uint8 (RGBA, palette and grey pictures are converted to RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                log.debug("%s: converting %s to RGB", path, im.mode)
                im = im.convert("RGB")
            return np.array(im, dtype=np.uint8)
    except OSError as e:
        raise DragBenchError(f"{path}: cannot read the image ({e})") from None


def _points(raw: Any, path: Path, width: int, height: int) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or not raw:
        raise DragBenchError(f"{path}: points must be a non-empty list of [x, y] clicks, got {raw!r}")
    clicks: list[Point] = []
    for i, p in enumerate(raw):
        if isinstance(p, np.ndarray):
            p = p.tolist()
        ok = isinstance(p, (list, tuple)) and len(p) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in p)
        if not ok or not all(math.isfinite(float(v)) for v in p):
            raise DragBenchError(f"{path}: points[{i}] must be an [x, y] pair of numbers, got {p!r}")
        x, y = float(p[0]), float(p[1])
        # The release indexes feature maps at these pixels, so they must be pixels of the picture.
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            role = "handle" if i % 2 == 0 else "target"
            raise DragBenchError(
                f"{path}: points[{i}] ({role} of pair {i // 2 + 1}) [{x:g}, {y:g}] is outside the {width}×{height} "
                f"image: expected 0 ≤ x ≤ {width - 1} and 0 ≤ y ≤ {height - 1}")
        clicks.append((x, y))
    if len(clicks) % 2:
        raise DragBenchError(
            f"{path}: {len(clicks)} clicks, an odd number: points alternate handle, target, so the last handle "
            f"has no target")
    return tuple(clicks[0::2]), tuple(clicks[1::2])


def _mask(raw: Any, path: Path, width: int, height: int) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.dtype == object or raw.dtype.kind not in "biuf":
        raise DragBenchError(f"{path}: mask must be a numeric numpy array, got {type(raw).__name__}")
    mask = raw[..., 0] if raw.ndim == 3 and raw.shape[2] in (1, 3) else raw
    if mask.shape != (height, width):
        raise DragBenchError(
            f"{path}: mask is {'×'.join(map(str, raw.shape))} but the image is {height}×{width} (H×W); "
            f"expected an (H, W) mask of the image's size")
    return mask > 0  # the release: mask / 255, then every value > 0 is editable


def read_sample(folder: Path, category: str | None = None) -> DragBenchSample:
    """Read and validate one sample folder (``original_image.png`` + ``meta_data.pkl``)."""
    folder = Path(folder)
    for name in (IMAGE_FILE, META_FILE):
        if not (folder / name).is_file():
            raise DragBenchError(f"{folder}: no {name}; a DragBench sample folder holds {IMAGE_FILE} and {META_FILE}")
    image = read_image(folder / IMAGE_FILE)
    height, width = image.shape[:2]
    meta_path = folder / META_FILE
    meta = load_meta(meta_path)
    prompt = meta["prompt"]
    if not isinstance(prompt, str):
        raise DragBenchError(f"{meta_path}: prompt must be a string, got {type(prompt).__name__}")
    handles, targets = _points(meta["points"], meta_path, width, height)
    mask = _mask(meta["mask"], meta_path, width, height)
    return DragBenchSample(category or folder.parent.name, folder.name, folder, image, prompt, handles, targets, mask)


def _visible_dirs(folder: Path) -> list[Path]:
    # The release skips macOS's .DS_Store; any hidden entry (and __MACOSX from zips made on a Mac) is noise too.
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))


def sample_dirs(data_dir: Path, categories: list[str] | None = None, limit: int | None = None) -> list[tuple[str, Path]]:
    """(category, sample folder) in sorted order: the categories present (or the ones asked for), first ``limit``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DragBenchError(
            f"{data_dir}: no such folder; extract DragBench.zip (release v0.1.1 of Yujun-Shi/DragDiffusion) so that "
            f"it holds the category folders ({', '.join(CATEGORIES[:3])}, ...)")
    present = {p.name: p for p in _visible_dirs(data_dir)}
    if categories:
        unknown = [c for c in categories if c not in present]
        if unknown:
            raise DragBenchError(f"{data_dir}: no category folder(s) {unknown}; present: {sorted(present)}")
        chosen = list(categories)
    else:
        chosen = sorted(present)
        if not chosen:
            raise DragBenchError(f"{data_dir}: no category folders; is this the extracted DragBench folder?")
        absent = [c for c in CATEGORIES if c not in present]
        if absent:
            log.info("%s: DragBench categories not present: %s", data_dir, ", ".join(absent))
    found = [(c, s) for c in chosen for s in _visible_dirs(present[c])]
    if limit is not None:
        found = found[: max(limit, 0)]
    return found


def iter_samples(data_dir: Path, categories: list[str] | None = None,
                 limit: int | None = None) -> Iterator[DragBenchSample]:
    """Every sample of a DragBench folder, read and validated, in sorted order."""
    for category, folder in sample_dirs(data_dir, categories, limit):
        yield read_sample(folder, category)


# ----------------------------------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def result_path(out_dir: Path, category: str, name: str) -> Path:
    return Path(out_dir) / category / name / RESULT_FILE


def lora_path(out_dir: Path, category: str, name: str) -> Path:
    return Path(out_dir) / LORA_DIR / f"{category}__{name}.safetensors"


# ---------------------------------------------------------------------------------------------------------- editors


@dataclass
class EditOutcome:
    """An editor's result: the edited picture (H×W×3 uint8) and a JSON-able summary of what it did."""

    image: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)


class Editor(Protocol):
    def __call__(self, image: np.ndarray, prompt: str, handles: list[Point], targets: list[Point],
                 mask: np.ndarray, lora_path: Path) -> EditOutcome: ...


def shift_region(image: np.ndarray, mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move the masked pixels by (dx, dy); where they were (and are not covered again) gets the image's mean colour.

    The vacated pixels are filled rather than kept so that the moved content exists once: a matcher that finds the
    handle's content must find it at its new place.
    """
    out = image.copy()
    ys, xs = np.nonzero(mask)
    if not len(ys) or (dx, dy) == (0, 0):
        return out
    out[ys, xs] = np.round(image.reshape(-1, image.shape[2]).mean(axis=0)).astype(image.dtype)
    ny, nx = ys + dy, xs + dx
    inside = (ny >= 0) & (ny < image.shape[0]) & (nx >= 0) & (nx < image.shape[1])
    out[ny[inside], nx[inside]] = image[ys[inside], xs[inside]]
    return out


def _fake_editor(method: str, options: dict[str, Any]) -> Editor:
    mode = options.get("mode", "shift")
    if mode not in ("shift", "identity"):
        raise ValueError(f"fake backend: option mode must be 'shift' or 'identity', got {mode!r}")
    write_lora = bool(options.get("lora", False))

    def edit(image: np.ndarray, prompt: str, handles: list[Point], targets: list[Point], mask: np.ndarray,
             lora_path: Path) -> EditOutcome:
        summary: dict[str, Any] = {"backend": "fake", "method": method, "mode": mode}
        if write_lora:
            # Stands in for "train once, then reuse": a real (tiny) safetensors file, so the cache stays readable.
            summary["lora_cached"] = lora_path.exists()
            if not summary["lora_cached"]:
                from safetensors.numpy import save

                atomic_write_bytes(lora_path, save({"fake_lora": np.zeros(1, np.float32)}))
        if mode == "identity":
            return EditOutcome(image.copy(), summary)
        # One rigid shift for the whole region: the mean drag, rounded to whole pixels.
        d = np.mean(np.asarray(targets, float) - np.asarray(handles, float), axis=0)
        dx, dy = int(round(d[0])), int(round(d[1]))
        summary.update(shift=[dx, dy], moved_pixels=int(mask.sum()))
        return EditOutcome(shift_region(image, mask, dx, dy), summary)

    return edit


def make_editor(method: str, backend: str, model: str | None, options: dict[str, Any]) -> Editor:
    """The editor for ``method`` on ``backend``: the single place where DragBench meets DragKit's methods.

    ``fake``: numpy only; ``options`` ``mode=shift`` (default: the masked region moves by the mean drag) or
    ``mode=identity`` (the do-nothing baseline), ``lora=true`` to write and reuse a placeholder LoRA file.
    ``diffusers``: the method through the Python API (``dragkit.drag_core.api``) on a diffusers folder or
    checkpoint; ``comfyui``: its ComfyUI graph, in-process through the nodes, on a single-file checkpoint
    (``dragbench_editors.py``; ``options`` are the drag node's widgets plus the API's run settings).
    """
    if backend == "fake":
        return _fake_editor(method, options)
    if backend in ("diffusers", "comfyui"):
        import dragbench_editors

        make = dragbench_editors.diffusers_editor if backend == "diffusers" else dragbench_editors.comfyui_editor
        return make(method, model, options)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


# ----------------------------------------------------------------------------------------------------------- runner


class _PeakMemory:
    """Peak memory of one edit: CUDA's max allocated bytes when CUDA is available, else the growth of the
    process's peak RSS (``getrusage``; a lower bound: an edit that stays under an earlier peak reads 0)."""

    def __init__(self) -> None:
        self.torch = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:
            pass
        self.kind = "cuda_max_memory_allocated" if self.torch is not None else "peak_rss_delta"
        self.start = 0
        self.bytes: int | None = None

    @staticmethod
    def _peak_rss() -> int | None:
        try:
            import resource
        except ImportError:  # Windows
            return None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux

    def __enter__(self) -> _PeakMemory:
        if self.torch is not None:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        else:
            self.start = self._peak_rss() or 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize()
            self.bytes = int(self.torch.cuda.max_memory_allocated())
        else:
            peak = self._peak_rss()
            self.kind = self.kind if peak is not None else "unavailable"
            self.bytes = None if peak is None else max(peak - self.start, 0)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "bytes": self.bytes}


def _check_outcome(outcome: Any, sample: DragBenchSample) -> EditOutcome:
    if not isinstance(outcome, EditOutcome):
        raise TypeError(f"{sample.key}: the editor returned {type(outcome).__name__}, expected EditOutcome")
    im = outcome.image
    if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
        got = f"{im.dtype} {im.shape}" if isinstance(im, np.ndarray) else type(im).__name__
        raise TypeError(f"{sample.key}: the editor's image must be an H×W×3 uint8 array, got {got}")
    if not isinstance(outcome.summary, dict):
        raise TypeError(f"{sample.key}: the editor's summary must be a dict, got {type(outcome.summary).__name__}")
    if im.shape != sample.image.shape:
        log.warning("%s: the edit is %s, the source %s (the evaluator resizes it back, as the release does)",
                    sample.key, im.shape[:2], sample.image.shape[:2])
    return outcome


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _json_safe(value: Any) -> Any:
    # Summaries come from editors: numpy scalars and tuples are common, anything else becomes its repr.
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else repr(o)))


def load_results(out_dir: Path) -> dict[str, Any]:
    """``<out>/results.json``, or a fresh record when there is none."""
    path = Path(out_dir) / RESULTS_JSON
    if not path.is_file():
        return {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "runs": [], "samples": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DragBenchError(f"{path}: unreadable ({e}); move it away to start a fresh record") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise DragBenchError(f"{path}: not a {RESULTS_FORMAT} file")
    return data


def run_benchmark(data_dir: Path, out_dir: Path, editor: Editor, settings: dict[str, Any], *,
                  categories: list[str] | None = None, limit: int | None = None, overwrite: bool = False,
                  fail_fast: bool = False) -> dict[str, Any]:
    """Edit every sample into ``out_dir`` (DragBench's result layout) and keep ``results.json``; return it.

    A sample whose result exists is skipped unless ``overwrite``. An editor error is recorded for its sample
    (and re-tried by the next run) unless ``fail_fast``, which re-raises it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(out_dir)
    run_id = len(results["runs"])
    results["runs"].append({
        **_json_safe(settings), "data": str(Path(data_dir).resolve()), "categories": categories, "limit": limit,
        "overwrite": overwrite, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(), "python": platform.python_version(), "platform": platform.platform(),
    })
    counts = {"edited": 0, "skipped": 0, "failed": 0}
    for category, folder in sample_dirs(data_dir, categories, limit):
        key = f"{category}/{folder.name}"
        target = result_path(out_dir, category, folder.name)
        if target.exists() and not overwrite:
            log.info("%s: result exists, skipped (--overwrite redoes it)", key)
            counts["skipped"] += 1
            continue
        sample = read_sample(folder, category)
        lora = lora_path(out_dir, category, folder.name)
        lora_before = lora.exists()
        record: dict[str, Any] = {"category": category, "sample": folder.name, "run": run_id, "pairs": sample.pairs}
        try:
            with _PeakMemory() as memory:
                start = time.perf_counter()
                outcome = editor(sample.image, sample.prompt, list(sample.handles), list(sample.targets),
                                 sample.mask, lora)
                seconds = time.perf_counter() - start
            outcome = _check_outcome(outcome, sample)
        except Exception as e:
            if fail_fast:
                raise
            log.error("%s: the editor failed: %s", key, e)
            record.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
            counts["failed"] += 1
        else:
            write_png(target, outcome.image)
            record.update(
                seconds=seconds, memory=memory.record(), summary=_json_safe(outcome.summary),
                lora={"path": str(lora.relative_to(out_dir)), "existed_before": lora_before,
                      "exists_after": lora.exists()},
                size=[int(outcome.image.shape[1]), int(outcome.image.shape[0])])
            counts["edited"] += 1
            log.info("%s: %.2f s, %s", key, seconds, outcome.summary)
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results["samples"][key] = record
        atomic_write_json(out_dir / RESULTS_JSON, results)  # after every sample: a killed run keeps its progress
    results["runs"][run_id]["counts"] = counts
    atomic_write_json(out_dir / RESULTS_JSON, results)
    log.info("%s: %d edited, %d skipped, %d failed", out_dir, counts["edited"], counts["skipped"], counts["failed"])
    return results


# -------------------------------------------------------------------------------------------------------------- CLI


def parse_options(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is read as JSON when it parses (numbers, true/false, lists), else a string."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--option expects key=value, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="edit every sample into DragBench's result layout")
    run.add_argument("--data", type=Path, required=True, help="the extracted DragBench folder")
    run.add_argument("--out", type=Path, required=True, help="the results folder (created)")
    run.add_argument("--method", default="dragdiffusion")
    run.add_argument("--backend", choices=BACKENDS, default="fake")
    run.add_argument("--model", help="the model the backend loads (a checkpoint file or a diffusers folder)")
    run.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="editor option (repeatable)")
    run.add_argument("--limit", type=int, help="only the first N samples (sorted order)")
    run.add_argument("--categories", help="comma-separated category folders (default: all)")
    run.add_argument("--overwrite", action="store_true", help="redo samples whose dragged_image.png exists")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first editor error")
    run.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    options = parse_options(args.option)
    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    try:
        editor = make_editor(args.method, args.backend, args.model, options)
        results = run_benchmark(
            args.data, args.out, editor,
            {"method": args.method, "backend": args.backend, "model": args.model, "options": options},
            categories=categories, limit=args.limit, overwrite=args.overwrite, fail_fast=args.fail_fast)
    except (ValueError, NotImplementedError) as e:  # DragBenchError is a ValueError
        log.error("%s", e)
        return 2
    counts = results["runs"][-1]["counts"]
    print(f"{args.out}: {counts['edited']} edited, {counts['skipped']} skipped, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    # Run as the module `dragbench`, which the editors import too: one EditOutcome class, not one per name.
    import dragbench

    sys.exit(dragbench.main())
