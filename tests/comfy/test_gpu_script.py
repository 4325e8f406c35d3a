"""bench/gpu.py, rehearsed: its --cpu-smoke mode runs every graph of the GPU check at toy sizes, as a separate
process (as the GPU machine runs it), and writes the report the GPU run would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_every_graph_at_smoke_sizes(tmp_path, mini_checkpoint):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--cpu-smoke", "--out", str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    for name in ("IdentityLoRATrain", "DDIMInvert (0.7)", "DragDiffusion: MotionSupervisionOptimize",
                 "re-drag (new points): ReferenceLatentDenoise", "DragNoise: SemanticPropagationDenoise",
                 "training-free: drag + ReferenceLatentDenoise", "GoodDrag: AlternatingDragDenoise"):
        assert stages[name]["seconds"] > 0, name
    # UNet passes as the graphs make them: the smoke schedule has 12 steps, 0.7 → 8 inverted.
    assert stages["DDIMInvert (0.7)"]["unet_passes"] == 8
    assert stages["DragDiffusion: ReferenceLatentDenoise"]["unet_passes"] == 8
    assert stages["IdentityLoRATrain"]["unet_passes"] == 2
    assert "| DragDiffusion: MotionSupervisionOptimize |" in (tmp_path / "gpu.md").read_text()
    assert stages["DragDiffusion: MotionSupervisionOptimize"]["peak_mib"] is None  # CUDA only


def test_gpu_check_refuses_to_run_without_cuda_unless_rehearsing(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 2 and "no CUDA device" in run.stderr
