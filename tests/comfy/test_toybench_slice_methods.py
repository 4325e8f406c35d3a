"""The ToyBench CI slice for DragNoise and the training-free self-attention drag: on the bundled, trained
toy model, each method with its nodes' defaults really moves the dragged object towards its target and
keeps the background outside the editable mask (the pattern of test_toybench_slice.py).

Scored with the toy world's own segmentation against the generator's true edit (drag_core/toy/bench_cases).

As for DragDiffusion's slice, the bundled model (second training run) does not meet this yet. Measured
2026-11-22 on case 0 (`pytest --runxfail` on this file): the training-free drag moves the object 89 % of
the way but keeps the background at 28.3 dB (< 30); DragNoise does not move it (progress −1 %, 27.4 dB).
The slice still runs both graphs on the trained weights (a crash fails) and is a strict expected failure
of its assertions: once a model or method change passes, the mark must go.
"""

from __future__ import annotations

import pytest

SLICE = (0,)  # ToyBench case ids; one per method keeps CI lean (bench/toybench.py runs the full set)
MIN_PROGRESS = 0.5  # the object's centroid travels at least half way along the drag
MIN_BACKGROUND_PSNR = 30.0  # dB outside the editable mask vs the source


@pytest.fixture(scope="module")
def toy(comfy):
    from bench import toybench
    from dragkit.nodes.toy_model import TOY_WEIGHTS

    assert TOY_WEIGHTS.exists(), f"the bundled toy model is missing: {TOY_WEIGHTS}"
    return toybench, toybench.load_models()


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="toy model v2: drags fall short of the targets, docs/BENCHMARKS.md")
@pytest.mark.parametrize("method", ["dragnoise", "sacdrag"])
@pytest.mark.parametrize("case_id", SLICE)
def test_the_method_moves_the_toy_object(toy, method, case_id):
    from dragkit.drag_core.toy import bench_cases

    toybench, models = toy
    case = bench_cases.make_cases(max(SLICE) + 1)[case_id]
    row = bench_cases.score(case, getattr(toybench, method)(models, case, toybench.SLICE_SETTINGS))
    assert row["found"], f"{method} case {case_id}: the dragged object vanished"
    assert row["progress"] >= MIN_PROGRESS, f"{method} case {case_id}: {row}"
    assert row["background_psnr"] >= MIN_BACKGROUND_PSNR, f"{method} case {case_id}: {row}"
