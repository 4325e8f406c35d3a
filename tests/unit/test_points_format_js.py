"""The editor's copy of the points format (web/points_format.js, run with node) refuses what drag_core/points.py
refuses, before allocating: a shared workflow's points value is untrusted in the browser tab too."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dragkit.drag_core.points import PointsError, parse_points

WEB = Path(__file__).resolve().parents[2] / "web" / "points_format.js"
VALID = {"version": 1, "width": 6, "height": 4, "points": [{"handle": [1, 1], "target": [4, 3]}],
         "mask": {"width": 6, "height": 4, "rle": [7, 3, 3, 3, 8]}}
HOSTILE = {
    "huge mask": {**VALID, "mask": {"width": 100000, "height": 100000, "rle": [10**10]}},
    "huge points": {**VALID, "width": 9000, "height": 9000, "mask": None},
    "mask of another size": {**VALID, "mask": {"width": 3, "height": 8, "rle": [7, 3, 3, 3, 8]}},
    "too many runs": {**VALID, "mask": {"width": 6, "height": 4, "rle": [1] * 26}},
    "65 pairs": {**VALID, "width": 100, "height": 100, "mask": None,
                 "points": [{"handle": [i + 1, 1], "target": [i + 1, 5]} for i in range(65)]},
}


def _node(values: list[str]) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed (the browser tier uses it too): install Debian's nodejs")
    script = (f"import {{ parsePoints, serializePoints }} from {json.dumps(WEB.as_uri())};\n"
              "const out = [];\n"
              f"for (const text of {json.dumps(values)}) {{\n"
              "  const started = Date.now();\n"
              "  try { const p = parsePoints(text); out.push({ok: true, again: serializePoints(p), ms: Date.now() - started}); }\n"
              "  catch (e) { out.push({ok: false, error: String(e.message), ms: Date.now() - started}); }\n"
              "}\nconsole.log(JSON.stringify(out));\n")
    run = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_editor_refuses_what_python_refuses_without_allocating_and_round_trips_the_rest():
    texts = [json.dumps(VALID)] + [json.dumps(v) for v in HOSTILE.values()]
    results = _node(texts)
    assert results[0]["ok"] and json.loads(results[0]["again"]) == VALID
    for (name, value), result in zip(HOSTILE.items(), results[1:]):
        assert not result["ok"], name
        assert result["ms"] < 500, (name, result)  # refused before allocating, not after
        with pytest.raises(PointsError):
            parse_points(json.dumps(value))
