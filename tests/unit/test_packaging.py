"""`pip install "dragkit[diffusers]"`: the wheel holds the pack as the package `dragkit`, declares the extra without
pinning versions, installs the `dragkit-edit` command, and the README's Python example runs from the installed copy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the example needs `pip install diffusers peft`")

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The README's Python example: the fenced block after the marker comment."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its <!-- python-api-example --> block"
    return match.group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("src")
    # Build from a copy of the tracked files, so the checkout gets no build/ or egg-info folders.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("models/", "example_workflows/", "docs/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                    "-w", str(out)], check=True, capture_output=True)
    return next(out.glob("dragkit-*.whl"))


def test_the_wheel_declares_the_extra_unpinned_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"dragkit/__init__.py", "dragkit/drag_core/api.py", "dragkit/drag_core/diffusers_backbone.py",
            "dragkit/nodes/comfy_unet.py"} <= set(names)
    extra = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" in line]
    required = {line.split()[1].split(";")[0] for line in extra}
    assert {"diffusers", "peft", "transformers", "torch"} <= required
    assert not any(re.search(r"[<>=~]=?\s*\d", line.split(";")[0]) for line in extra), extra  # nothing pinned
    assert "dragkit-edit = dragkit.drag_core.cli:main" in entry_points


def test_the_readme_example_runs_from_the_installed_package(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    import make_random_pipeline

    make_random_pipeline.make_pipeline(tmp_path / "tiny-sd15")
    # The installed copy, not the checkout; one thread, as the other tests of tiny models.
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    code = "import dragkit, sys; assert dragkit.__file__.startswith(sys.argv[1]), dragkit.__file__\n" + readme_example()
    run = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "dragged.png").stat().st_size > 0
