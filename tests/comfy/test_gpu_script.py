"""bench/gpu.py, rehearsed: its --cpu-smoke mode runs every graph of the GPU check at toy sizes, as a separate
process (as the GPU machine runs it), with every model load moving the weights as a GPU machine's loads do
(comfyenv.emulate_device_moves), and writes the report the GPU run would."""

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
                 "training-free: drag + ReferenceLatentDenoise", "GoodDrag: AlternatingDragDenoise",
                 "Inpaint4Drag: RegionWarp", "Inpaint4Drag: inpaint + VAE decode"):
        assert stages[name]["seconds"] > 0, name
    assert [s["error"] for s in report["stages"] if s["error"]] == []  # a failed stage is recorded, not raised
    # UNet passes as the graphs make them: the smoke schedule has 12 steps, 0.7 → 8 inverted.
    assert stages["DDIMInvert (0.7)"]["unet_passes"] == 8
    assert stages["DragDiffusion: ReferenceLatentDenoise"]["unet_passes"] == 8
    assert stages["IdentityLoRATrain"]["unet_passes"] == 2
    assert stages["Inpaint4Drag: inpaint + VAE decode"]["unet_passes"] == 2  # 2 KSampler steps, cond + uncond batched
    assert "| DragDiffusion: MotionSupervisionOptimize |" in (tmp_path / "gpu.md").read_text()
    assert stages["DragDiffusion: MotionSupervisionOptimize"]["peak_mib"] is None  # CUDA only


def test_gpu_check_refuses_to_run_without_cuda_unless_rehearsing(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 2 and "no CUDA device" in run.stderr


def test_a_failing_stage_is_recorded_and_the_run_goes_on(tmp_path):
    # A GPU minute is too dear to lose the other graphs to one bug: the first H200 run stopped at its first stage.
    import gpu
    import torch

    import comfyenv

    comfyenv.register_pack()
    meter = gpu.Meter(torch.device("cpu"), tmp_path / "partial.json")
    with torch.inference_mode():
        layer = torch.nn.Linear(2, 2)  # inference-mode weights: autograd cannot save them for backward
    meter.suspects.append(layer)
    with meter.stage("fails"):
        layer(torch.ones(1, 2, requires_grad=True)).sum().backward()
    with meter.stage("runs"):
        pass
    failed, ran = meter.stages
    assert "Inference tensors cannot be saved" in failed.error and "Linear.weight" in failed.error
    assert ran.error == ""
    assert [s["name"] for s in json.loads((tmp_path / "partial.json").read_text())] == ["fails", "runs"]
    assert "**FAILED**" in gpu.markdown({"device": "cpu", "torch": "", "sizes": {"image": 64, "checkpoint": "mini"},
                                         "total_seconds": 0, "stages": [vars(s) for s in meter.stages]})
