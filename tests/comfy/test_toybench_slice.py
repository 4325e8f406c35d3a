"""The ToyBench CI slice (issue 5): on the bundled, trained toy model, DragDiffusion with the nodes' defaults
really moves the dragged object towards its target and keeps the background outside the editable mask.

Scored with the toy world's own segmentation against the generator's true edit (drag_core/toy/bench_cases).

The bundled model (second training run, docs/TOY_MODEL.md) finds and moves the object but does not meet
this on every case yet. Measured 2026-11-22 (`pytest --runxfail` on this file): case 0 moves 68 % of the
way with the background at 27.9 dB, case 1 overshoots (200 %, 25.0 dB), case 2 moves 14 % (24.3 dB);
the toy VAE's round trip alone keeps the background at 31.6 dB on average over ToyBench, so 30 dB leaves
the drag little room. The slice still runs the whole graph on the trained weights (a crash fails) and is
marked as an expected failure of its assertions, strict: once a model or method change passes, the mark
must go.
"""

from __future__ import annotations

import pytest

SLICE = (0, 1, 2)  # ToyBench case ids (bench/toybench.py --cases 50 uses 0..49)
MIN_PROGRESS = 0.5  # the object's centroid travels at least half way along the drag
MIN_BACKGROUND_PSNR = 30.0  # dB outside the editable mask vs the source (issue 5's target)


@pytest.fixture(scope="module")
def toy(comfy):
    from bench import toybench
    from dragkit.nodes.toy_model import TOY_WEIGHTS

    assert TOY_WEIGHTS.exists(), f"the bundled toy model is missing: {TOY_WEIGHTS}"
    return toybench, toybench.load_models()


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="toy model v2: drags fall short of the targets, docs/BENCHMARKS.md")
@pytest.mark.parametrize("case_id", SLICE)
def test_dragdiffusion_moves_the_toy_object(toy, case_id):
    from dragkit.drag_core.toy import bench_cases

    toybench, models = toy
    case = bench_cases.make_cases(max(SLICE) + 1)[case_id]
    row = bench_cases.score(case, toybench.dragdiffusion(models, case, toybench.SLICE_SETTINGS))
    assert row["found"], f"case {case_id}: the dragged object vanished"
    assert row["progress"] >= MIN_PROGRESS, f"case {case_id}: {row}"
    assert row["background_psnr"] >= MIN_BACKGROUND_PSNR, f"case {case_id}: {row}"


def test_the_vae_roundtrip_reference_keeps_the_object_and_most_of_the_background(toy):
    """ToyBench's vae_roundtrip row (the background ceiling of latent methods): the object is found where it
    was (no progress along the drag) and the background survives the toy VAE (measured 27.6 dB on case 0)."""
    from dragkit.drag_core.toy import bench_cases

    toybench, models = toy
    case = bench_cases.make_cases(1)[0]
    row = bench_cases.score(case, toybench.vae_roundtrip(models, case))
    assert row["found"] and abs(row["progress"]) < 0.2, row
    assert row["background_psnr"] >= 25.0, row
