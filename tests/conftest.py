"""Test tiers (DESIGN §4): unit/ (pure torch), comfy/ (in-process ComfyUI), server/ (real server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Unit tests import drag_core as a top-level package: it has no ComfyUI import anywhere.
# Appended, not prepended: ComfyUI's own top-level `nodes` module must win over the pack's nodes/.
for extra in (REPO / "tests", REPO / "scripts", REPO):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))


@pytest.fixture(scope="session")
def mini_checkpoint() -> Path:
    """The random-weight "mini" SD1.5 checkpoint, generated once into .cache/ (never committed)."""
    import comfy_client
    import comfyenv

    comfyenv.setup()
    import make_test_checkpoint

    return make_test_checkpoint.make_checkpoint(comfy_client.CACHE / comfy_client.MINI_CHECKPOINT, "mini")
