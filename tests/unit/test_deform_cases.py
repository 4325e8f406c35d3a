"""Turned shapes in the toy world and ToyBench's deformation set: the rotation convention, the cases' geometry,
the rough region of every case, and the pose-fitted MD on exact renders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dragkit.drag_core.points import parse_points
from dragkit.drag_core.toy.bench_cases import REGION_DILATION, case_points, dilate, make_cases
from dragkit.drag_core.toy.deform_cases import MIN_DRAG, SYMMETRY, DeformCase, fit_pose, make_deform_cases, score
from dragkit.drag_core.toy.world import (
    Scene,
    ToyObject,
    background_caption,
    contains,
    coverage,
    extent,
    inside,
    object_mask,
    render,
    segment,
    transformed,
)


@pytest.fixture(scope="module")
def cases() -> list[DeformCase]:
    return make_deform_cases(25)


def test_a_turn_is_clockwise_on_screen_and_a_full_period_draws_the_same_shape():
    square = ToyObject("square", "red", 10.0, 40.0, 40.0)
    turned = ToyObject("square", "red", 10.0, 40.0, 40.0, angle=30.0)
    # A corner at (+10, -10) (upper right) turns clockwise on screen to (+10·(cos30+sin30), 10·(sin30-cos30)).
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    corner = (40 + 10 * (c + s) - 0.01, 40 + 10 * (s - c))
    assert bool(contains(turned, corner[0] - 0.2, corner[1])) and not bool(contains(square, *corner))
    np.testing.assert_allclose(coverage(ToyObject("square", "red", 10.0, 40.3, 40.7, angle=90.0), 96),
                               coverage(ToyObject("square", "red", 10.0, 40.3, 40.7), 96), atol=1e-6)
    tri = ToyObject("triangle", "red", 12.0, 48.0, 48.0)
    np.testing.assert_allclose(coverage(ToyObject("triangle", "red", 12.0, 48.0, 48.0, angle=120.0), 96),
                               coverage(tri, 96), atol=1e-6)
    # The box holds every covered pixel, and an unturned shape keeps its old box.
    left, top, right, bottom = extent(turned)
    rows, cols = np.nonzero(coverage(turned, 96))
    assert cols.min() >= math.floor(left) and cols.max() <= math.ceil(right)
    assert rows.min() >= math.floor(top) and rows.max() <= math.ceil(bottom)
    assert extent(tri) == (48.0 - 12.0 * math.sqrt(3) / 2, 36.0, 48.0 + 12.0 * math.sqrt(3) / 2, 54.0)


def test_transformed_turns_and_scales_about_the_pivot():
    scene = Scene((ToyObject("square", "blue", 8.0, 50.0, 40.0),), "grey")
    out = transformed(scene, 0, (40.0, 40.0), 90.0, 1.5).objects[0]
    assert (round(out.x, 9), round(out.y, 9), out.size, out.angle) == (40.0, 55.0, 12.0, 90.0)
    assert background_caption(scene) == "an empty grey background"


def test_cases_are_deterministic_and_valid(cases):
    assert make_deform_cases(25) == cases and make_deform_cases(25, seed=1) != cases
    kinds = {"turn": 0, "scale": 0}
    for case in cases:
        obj = case.scene.objects[case.object_index]
        kinds["turn" if case.angle else "scale"] += 1
        assert (case.angle == 0) != (case.scale == 1.0)
        if case.angle:
            assert 10 <= abs(case.angle) <= 30 and obj.shape != "disk"
        else:
            assert 0.75 <= case.scale <= 0.9 or 1.1 <= case.scale <= 1.33
        assert 2 <= len(case.pairs) <= 3
        offsets = [(t[0] - h[0], t[1] - h[1]) for h, t in case.pairs]
        assert len({(round(dx, 6), round(dy, 6)) for dx, dy in offsets}) == len(offsets)  # they move apart
        assert min(math.hypot(*o) for o in offsets) >= MIN_DRAG
        for h, t in case.pairs:  # every handle is on the object, every target on the truly deformed object
            assert bool(contains(obj, *h)) and bool(contains(case.target_scene.objects[case.object_index], *t))
        assert inside(case.target_scene.objects[case.object_index], case.scene.size)
        source, truth = object_mask(case.scene, case.object_index), object_mask(case.target_scene, case.object_index)
        assert case.mask[source | truth].all()
        np.testing.assert_array_equal(case.region, dilate(source, REGION_DILATION))  # rough, at the source
    assert min(kinds.values()) >= 5


def test_the_true_edit_scores_near_zero_and_the_source_scores_the_drag(cases):
    mds = []
    for case in cases:
        truth = score(case, render(case.target_scene))
        nothing = score(case, render(case.scene))
        assert truth["found"] and truth["success"] and truth["md"] < 0.75, (case.id, truth)
        assert nothing["md"] == pytest.approx(case.distance, abs=1e-9) and not nothing["success"]
        assert truth["gt_psnr"] == 100.0 and nothing["progress"] == pytest.approx(0.0, abs=1e-9)
        mds.append(truth["md"])
    assert np.mean(mds) < 0.35  # the scorer's own floor (segment centroids sit on the pixel grid)


def test_fit_pose_recovers_a_turn_and_a_scale_and_a_lost_object_counts_as_not_moved(cases):
    scene = Scene((ToyObject("triangle", "green", 18.0, 60.0, 64.0),), "beige")
    source = segment(render(scene), "green")
    for angle, scale in ((25.0, 1.0), (-18.0, 1.2), (0.0, 0.8)):
        after = transformed(scene, 0, (60.0, 64.0), angle, scale)
        c0, c1, got_scale, got_angle = fit_pose(source, segment(render(after), "green"), SYMMETRY["triangle"])
        assert got_angle == pytest.approx(angle, abs=1.0) and got_scale == pytest.approx(scale, rel=0.03)
    case = cases[0]
    blank = render(Scene((), case.scene.background, case.scene.background2, case.scene.gradient))
    row = score(case, blank)
    assert not row["found"] and row["md"] == pytest.approx(case.distance)


def test_translation_cases_carry_a_rough_region_at_the_source():
    for case in make_cases(10):
        source = object_mask(case.scene, case.object_index)
        np.testing.assert_array_equal(case.region, dilate(source, REGION_DILATION))
        assert case.region.sum() > 1.2 * source.sum()  # never the exact outline
        assert not case.region[object_mask(case.target_scene, case.object_index) & ~source].all()


def test_case_points_are_the_pairs_with_the_mask_or_the_region_painted(cases):
    for case in (make_cases(3)[2], cases[0]):
        for region, painted in ((False, case.mask), (True, case.region)):
            points = parse_points(case_points(case, region).to_json())
            assert points.pairs == case.pairs and (points.width, points.height) == (case.scene.size,) * 2
            np.testing.assert_array_equal(points.mask_tensor().numpy() > 0, painted)
