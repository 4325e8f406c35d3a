"""The Comfy Registry's metadata, checked without network: `pyproject.toml` against the rules of the Registry's own
validator (`comfy node validate`, comfy-cli 1.23.0: comfy_cli/registry/config_parser.py and
command/custom_nodes/command.py, re-implemented here), the version against CHANGELOG.md, the icon against its URL.
The validator itself runs too (comfy-cli is a dev requirement; offline, under a second)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python's standard library from 3.11")

REPO = Path(__file__).resolve().parents[2]
# semver.org's regular expression (2.0.0), without the build metadata the Registry has no use for.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
                    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$")
# comfy-cli's accepted values (config_parser.validate_and_extract_*_classifiers, validate_version): anything else is
# dropped with a warning, and the Registry then lists no OS, no accelerator or no ComfyUI version for the pack.
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")
ACCELERATORS = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend",
                "GPU :: Apple Metal"}
VERSION_SPEC = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
# The Registry's pack id is `[project] name`; comfy-cli derives it as a PEP 508 name without a "comfyui" prefix.
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
CHANGELOG_ENTRY = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})$", re.M)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_project_table_has_what_the_registry_publishes(pyproject):
    project, comfy = pyproject["project"], pyproject["tool"]["comfy"]
    assert NAME.match(project["name"]) and not project["name"].startswith("comfy"), project["name"]
    assert SEMVER.match(project["version"]), project["version"]
    assert project["description"].strip()
    licence = project["license"]  # a string, or a table with file or text (else comfy-cli warns)
    assert isinstance(licence, str) or {"file", "text"} & set(licence), licence
    if isinstance(licence, dict) and "file" in licence:
        assert (REPO / licence["file"]).is_file()
    # The host owns torch (COMFYUI.md §6); the Registry installs these beside ComfyUI.
    requirements = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert project["dependencies"] == [r for r in requirements if r]
    assert not any(re.match(r"torch\b", d) for d in project["dependencies"])
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert comfy["PublisherId"] and comfy["DisplayName"]
    for model in comfy.get("Models", []):  # comfy-cli 1.23.0 crashes on an entry without either key
        assert {"location", "model_url"} <= set(model)


def test_classifiers_name_the_supported_systems_as_the_registry_spells_them(pyproject):
    classifiers = pyproject["project"]["classifiers"]
    systems = [c.removeprefix("Operating System :: ") for c in classifiers if c.startswith("Operating System :: ")]
    accelerators = [c.removeprefix("Environment :: ") for c in classifiers if c.startswith("Environment ::")]
    assert systems and all(s.startswith(OS_PREFIXES) for s in systems), systems
    assert accelerators and set(accelerators) <= ACCELERATORS, accelerators
    # DragKit runs on ComfyUI's torch device: CUDA, MPS (Apple Metal) or the CPU, which has no classifier.
    assert {"GPU :: NVIDIA CUDA", "GPU :: Apple Metal"} <= set(accelerators)


def test_requires_comfyui_is_a_version_range_the_registry_reads(pyproject):
    spec = pyproject["tool"]["comfy"]["requires-comfyui"]
    assert all(VERSION_SPEC.match(part.strip()) for part in spec.split(",")), spec
    # The oldest ComfyUI the pack is tested on (README: ComfyUI 0.3.75); comfy_api.latest exists from 0.3.47 on.
    assert spec == ">=0.3.75"


def test_the_version_is_the_newest_changelog_entry(pyproject):
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    entries = [(m["version"], m["date"]) for m in CHANGELOG_ENTRY.finditer(text)]
    assert entries, "CHANGELOG.md has no '## [x.y.z] - YYYY-MM-DD' entry"
    assert entries[0][0] == pyproject["project"]["version"]
    assert all(SEMVER.match(v) for v, _ in entries), entries
    versions = [tuple(int(p) for p in SEMVER.match(v).groups()[:3]) for v, _ in entries]
    assert versions == sorted(set(versions), reverse=True), "entries newest first, each version once"
    dates = [d for _, d in entries]
    assert dates == sorted(dates, reverse=True)


def test_the_icon_is_a_small_square_png_at_its_url(pyproject):
    url = pyproject["tool"]["comfy"]["Icon"]
    raw = pyproject["project"]["urls"]["Repository"].replace("https://github.com/", "https://raw.githubusercontent.com/")
    assert url.startswith(raw + "/main/"), url
    path = REPO / url.removeprefix(raw + "/main/")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width == height <= 400, (width, height)
    # Served from the repository, so it must be committed: not ignored by git.
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO)
    assert ignored.returncode == 1


def test_no_code_the_validator_warns_about():
    """comfy-cli's security check: ruff's S102 (exec), S307 (eval) and E702 (several statements on a line), which the
    Registry says will become errors; here they are errors already."""
    run = subprocess.run([sys.executable, "-m", "ruff", "check", ".", "-q", "--select", "S102,S307,E702"], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_comfy_node_validate_passes_without_warnings(tmp_path):
    # HOME: comfy-cli writes its config under ~/.config; DO_NOT_TRACK: no telemetry (it sends none when
    # non-interactive anyway). It makes no network connection for `node validate`.
    env = {**os.environ, "HOME": str(tmp_path), "DO_NOT_TRACK": "1", "COMFY_NO_TELEMETRY": "1"}
    run = subprocess.run([sys.executable, "-m", "comfy_cli", "--skip-prompt", "node", "validate"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "All validation checks passed" in out and "Warning" not in out, out
