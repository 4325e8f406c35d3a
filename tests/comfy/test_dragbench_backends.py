"""DragBench's real editors end to end on the miniature DragBench: the diffusers backend on a random-weight diffusers
pipeline and the ComfyUI backend on the random "mini" checkpoint, each sample's LoRA cached and reused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import dragbench
from dragbench_fixtures import SAMPLES, make_bench

pytest.importorskip("diffusers", reason="the diffusers backend needs `pip install diffusers peft`")
pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = {"steps": 5, "lora_steps": 1, "lora_resolution": 64, "max_iterations": 2}


def _run_twice(tmp_path, backend: str, model: str, method: str = "dragdiffusion") -> list[dict]:
    data = make_bench(tmp_path / "DragBench")
    out = tmp_path / f"run-{backend}"
    editor = dragbench.make_editor(method, backend, model, dict(QUICK))
    settings = {"method": method, "backend": backend, "model": model, "options": QUICK}
    first = dragbench.run_benchmark(data, out, editor, settings, limit=2)
    again = dragbench.run_benchmark(data, out, editor, settings, limit=2, overwrite=True)
    for category, name, *_ in SAMPLES[:2]:
        picture = Image.open(out / category / name / "dragged_image.png")
        assert picture.size == (64, 64)
        assert (out / "lora_cache" / f"{category}__{name}.safetensors").is_file()
    return [first, again]


def _summaries(results: dict) -> list[dict]:
    return [entry["summary"] for entry in results["samples"].values()]


def test_the_diffusers_backend_runs_dragbench_and_reuses_each_samples_lora(tmp_path):
    import make_random_pipeline

    model = make_random_pipeline.make_pipeline(tmp_path / "tiny-sd15")
    first, again = _run_twice(tmp_path, "diffusers", str(model))
    assert first["runs"][-1]["counts"]["edited"] == 2 and again["runs"][-1]["counts"]["edited"] == 2
    summaries = _summaries(again)
    assert all(s["lora_cached"] for s in summaries) and all(s["iterations"] <= 2 for s in summaries)
    json.dumps(again)  # results.json stays plain JSON


def test_the_comfyui_backend_runs_dragbench_and_reuses_each_samples_lora(tmp_path, mini_checkpoint):
    first, again = _run_twice(tmp_path, "comfyui", str(mini_checkpoint))
    assert first["runs"][-1]["counts"]["edited"] == 2
    summaries = _summaries(again)
    assert all(s["lora_cached"] for s in summaries) and all(len(s["final_handles"]) >= 1 for s in summaries)
    picture = np.asarray(Image.open(tmp_path / "run-comfyui" / SAMPLES[0][0] / SAMPLES[0][1] / "dragged_image.png"))
    assert picture.std() > 0


def test_the_command_line_runs_a_real_backend(tmp_path):
    """`python bench/dragbench.py run --backend diffusers` as a user types it (a separate process, no test set-up)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import make_random_pipeline

    repo = Path(__file__).resolve().parents[2]
    model = make_random_pipeline.make_pipeline(tmp_path / "tiny-sd15")
    data = make_bench(tmp_path / "DragBench")
    options = [arg for key, value in QUICK.items() for arg in ("--option", f"{key}={value}")]
    run = subprocess.run([sys.executable, str(repo / "bench" / "dragbench.py"), "run", "--data", str(data), "--out",
                          str(tmp_path / "out"), "--backend", "diffusers", "--model", str(model), "--limit", "1",
                          *options], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / SAMPLES[0][0] / SAMPLES[0][1] / "dragged_image.png").is_file()
