"""Test tiers (DESIGN §4): unit/ (pure torch), comfy/ (in-process ComfyUI), server/ (real server), browser/.

pytest.ini puts tests/ (test helpers), scripts/ (the in-process ComfyUI set-up, the server and client, the
generators) and bench/ on the import path. The repository itself is imported as the package ``dragkit`` in
every tier, so the core has one identity in a test run (``dragkit.drag_core``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import comfyenv

comfyenv.register_pack()  # before any test module is collected: unit tests import dragkit.drag_core


@pytest.fixture
def one_thread():
    """Tiny models: a second thread only adds contention on a shared 2-core machine (with two threads and another
    process busy, a pass of a tiny UNet took 100× longer)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mini_checkpoint() -> Path:
    """The random-weight "mini" SD1.5 checkpoint, generated once into .cache/ (never committed)."""
    import comfy_client

    comfyenv.setup()
    import make_test_checkpoint

    return make_test_checkpoint.make_checkpoint(comfy_client.CACHE / comfy_client.MINI_CHECKPOINT, "mini")
