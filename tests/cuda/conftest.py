"""GPU tests (`pytest -m cuda tests/cuda`, run by `bench/gpu.py --tests` on a GPU machine; CI has no GPU and never
collects them, so they are not counted there). DRAGKIT_CUDA_REHEARSAL=1 runs them on the CPU to rehearse the code
(what only a GPU can show, such as CUDA memory, is then not asserted)."""

from __future__ import annotations

import os

import pytest
import torch

import comfyenv

REHEARSAL = os.environ.get("DRAGKIT_CUDA_REHEARSAL") == "1"
if not torch.cuda.is_available() and not REHEARSAL:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def comfy_gpu():
    comfyenv.setup(cpu=not torch.cuda.is_available())
    return comfyenv


@pytest.fixture(scope="session")
def mini(comfy_gpu):
    """(MODEL, CLIP, VAE) of the random mini checkpoint, loaded as CheckpointLoaderSimple would."""
    import comfy.sd

    import make_test_checkpoint
    from comfy_client import CACHE, MINI_CHECKPOINT

    path = make_test_checkpoint.make_checkpoint(CACHE / MINI_CHECKPOINT, "mini")
    with torch.inference_mode():
        return comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)[:3]
