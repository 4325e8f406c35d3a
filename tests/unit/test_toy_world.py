"""The toy world (scenes, rendering, captions, segmentation) and ToyBench's cases and scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dragkit.drag_core.toy.bench_cases import (
    PSNR_CAP,
    EditCase,
    copy_paste,
    do_nothing,
    make_cases,
    psnr,
    score,
    summarize,
)
from dragkit.drag_core.toy.world import (
    BACKGROUNDS,
    PALETTE,
    SHAPES,
    Scene,
    ToyObject,
    caption,
    centroid,
    classify_shape,
    coverage,
    make_dataset,
    moved,
    object_mask,
    render,
    render_background,
    sample_scene,
    segment,
)


def _scenes(n: int, seed: int = 0, size: int = 128) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, size) for _ in range(n)]


@pytest.fixture(scope="module")
def cases() -> list[EditCase]:
    return make_cases(50, seed=1234)


# ---------------------------------------------------------------------------------------------- scenes


def test_sample_scene_is_deterministic_for_a_seed():
    a, b, c = _scenes(20, seed=7), _scenes(20, seed=7), _scenes(20, seed=8)
    assert a == b
    assert a != c
    assert all(np.array_equal(render(x), render(y)) for x, y in zip(a, b))


def test_scenes_vary_in_count_shape_colour_and_background():
    scenes = _scenes(200, seed=1)
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    assert {o.shape for s in scenes for o in s.objects} == set(SHAPES)
    assert {o.colour for s in scenes for o in s.objects} == set(PALETTE)
    assert {s.gradient for s in scenes} == {None, "vertical", "horizontal"}


def test_object_colours_are_distinct_and_far_from_the_background():
    for scene in _scenes(100, seed=2):
        colours = [o.colour for o in scene.objects]
        assert len(set(colours)) == len(colours)
        bg = render_background(scene).reshape(-1, 3)
        for colour in colours:
            assert np.linalg.norm(bg - np.asarray(PALETTE[colour]), axis=1).min() > 0.4, (scene, colour)
    assert not set(PALETTE) & set(BACKGROUNDS)


def test_objects_do_not_overlap_and_stay_inside_the_image():
    for scene in _scenes(100, seed=3):
        covs = [coverage(o, scene.size) for o in scene.objects]
        for i in range(len(covs)):
            assert covs[i].sum() > 0
            border = np.concatenate(
                [covs[i][:3].ravel(), covs[i][-3:].ravel(), covs[i][:, :3].ravel(), covs[i][:, -3:].ravel()]
            )
            assert border.max() == 0.0, scene.objects[i]
            for j in range(i + 1, len(covs)):
                assert not np.any((covs[i] > 0) & (covs[j] > 0)), (scene.objects[i], scene.objects[j])


# ---------------------------------------------------------------------------------------------- rendering


def test_render_is_in_range_with_the_object_colour_at_its_centre():
    for scene in _scenes(50, seed=4):
        img = render(scene)
        assert img.dtype == np.float32 and img.shape == (scene.size, scene.size, 3)
        assert img.min() >= 0.0 and img.max() <= 1.0
        for o in scene.objects:
            np.testing.assert_allclose(img[round(o.y), round(o.x)], PALETTE[o.colour], atol=1e-6)


def test_edges_are_anti_aliased():
    scene = Scene((ToyObject("disk", "white", 20.0, 64.3, 63.7),), "black")
    img = render(scene)[..., 0]
    partial = (img > 0.1) & (img < 0.9)
    assert partial.sum() > 40  # a ring of blended pixels around the disk


def test_horizontal_gradient_at_another_size():
    scene = Scene((ToyObject("square", "blue", 10.0, 32.0, 32.0),), "grey", "beige", "horizontal", size=64)
    img = render(scene)
    assert img.shape == (64, 64, 3)
    # Horizontal gradient: columns differ, rows are identical away from the object.
    np.testing.assert_allclose(img[0, 0], BACKGROUNDS["grey"], atol=1e-6)
    np.testing.assert_allclose(img[0, -1], BACKGROUNDS["beige"], atol=1e-6)
    np.testing.assert_array_equal(img[0], img[-1])


def test_moved_changes_only_that_object():
    for scene in _scenes(30, seed=5):
        index = len(scene.objects) - 1
        after = moved(scene, index, 6.5, -4.0)
        assert after.objects[:index] == scene.objects[:index]
        assert after.background == scene.background and after.gradient == scene.gradient
        o, n = scene.objects[index], after.objects[index]
        assert (n.x - o.x, n.y - o.y) == pytest.approx((6.5, -4.0))
        changed = np.any(render(after) != render(scene), axis=-1)
        allowed = object_mask(scene, index) | object_mask(after, index)
        assert changed.any()
        assert not np.any(changed & ~allowed)


def test_object_mask_accounts_for_occlusion():
    below = ToyObject("disk", "red", 12.0, 50.0, 50.0)
    above = ToyObject("square", "blue", 12.0, 60.0, 50.0)
    scene = Scene((below, above), "grey")
    alone = coverage(below, scene.size) > 0
    visible = object_mask(scene, 0)
    assert visible.sum() < alone.sum()
    assert not visible[50, 55]  # inside both: hidden under the square
    assert visible[50, 42]
    assert np.array_equal(object_mask(scene, 1), coverage(above, scene.size) > 0)


# ---------------------------------------------------------------------------------------------- measuring


def test_segment_and_centroid_recover_object_centres():
    worst = 0.0
    for scene in _scenes(60, seed=6):
        img = render(scene)
        for o in scene.objects:
            c = centroid(segment(img, o.colour))
            assert c is not None
            worst = max(worst, math.hypot(c[0] - o.x, c[1] - o.y))
    assert worst < 1.0


def test_segment_separates_close_colours_and_missing_ones():
    scene = Scene(
        (ToyObject("square", "red", 10.0, 40.0, 40.0), ToyObject("disk", "orange", 10.0, 75.0, 40.0)), "beige"
    )
    img = render(scene)
    red, orange = segment(img, "red"), segment(img, "orange")
    assert red.sum() > 300 and orange.sum() > 200
    assert not np.any(red & orange)
    assert centroid(red)[0] < 50 < centroid(orange)[0]
    # Orange and yellow are 0.38 apart: with a loose tolerance each pixel still goes to its nearest colour only.
    pair = Scene(
        (ToyObject("square", "orange", 10.0, 40.0, 40.0), ToyObject("disk", "yellow", 10.0, 75.0, 40.0)), "grey"
    )
    loose = segment(render(pair), "orange", tol=0.45)
    assert loose[40, 40] and not loose[40, 75]
    assert not segment(img, "blue").any()
    assert centroid(segment(img, "blue")) is None
    with pytest.raises(ValueError, match="colour"):
        segment(img, "purple")


def test_caption_grammar_and_mentions():
    one = Scene((ToyObject("disk", "red", 10.0, 30.0, 30.0),), "grey")
    assert caption(one) == "a red disk on a grey background"
    three = Scene(
        (
            ToyObject("disk", "red", 10.0, 30.0, 30.0),
            ToyObject("square", "orange", 10.0, 80.0, 30.0),
            ToyObject("triangle", "white", 10.0, 60.0, 90.0),
        ),
        "dark blue",
        "beige",
        "vertical",
    )
    assert (
        caption(three) == "a red disk, an orange square and a white triangle on a dark blue to beige vertical gradient"
    )
    for scene in _scenes(100, seed=9):
        text = caption(scene)
        assert text == text.lower()
        assert len(text.split()) < 30  # far below CLIP's 77 tokens
        for o in scene.objects:
            assert f"{o.colour} {o.shape}" in text
        assert scene.background in text


def test_make_dataset_matches_its_scenes():
    images, captions, scenes = make_dataset(5, seed=11, size=64)
    assert images.shape == (5, 64, 64, 3) and len(captions) == len(scenes) == 5
    assert np.array_equal(images[3], render(scenes[3]))
    assert captions[3] == caption(scenes[3])


def test_invalid_objects_and_scenes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        ToyObject("star", "red", 5.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="colour"):
        ToyObject("disk", "grey", 5.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="together"):
        Scene((), "grey", "beige", None)


# ---------------------------------------------------------------------------------------------- ToyBench cases


def test_cases_are_deterministic_and_counted(cases):
    assert len(cases) == 50 and [c.id for c in cases] == list(range(50))
    again = make_cases(50, seed=1234)
    assert [(c.scene, c.pairs, c.offset) for c in again] == [(c.scene, c.pairs, c.offset) for c in cases]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(again, cases))
    assert make_cases(5, seed=99)[0].scene != cases[0].scene
    assert {len(c.pairs) for c in cases} == {1, 2}


def test_case_drags_are_valid(cases):
    for c in cases:
        assert 8.0 <= c.distance <= 32.0
        obj = c.scene.objects[c.object_index]
        target = c.target_scene
        new_mask = object_mask(target, c.object_index)
        cov = coverage(target.objects[c.object_index], c.scene.size)
        assert cov[0].max() == cov[-1].max() == cov[:, 0].max() == cov[:, -1].max() == 0.0  # fully inside
        for k in range(len(c.scene.objects)):
            if k != c.object_index:
                assert not np.any(new_mask & object_mask(target, k))
                assert not np.any(c.mask & object_mask(c.scene, k))  # the editable region spares the others
        old_mask = object_mask(c.scene, c.object_index)
        assert np.all(c.mask[old_mask]) and np.all(c.mask[new_mask])
        assert c.mask.sum() > (old_mask | new_mask).sum()  # dilated
        assert c.pairs[0][0] == pytest.approx((obj.x, obj.y))
        for handle, tgt in c.pairs:
            assert (tgt[0] - handle[0], tgt[1] - handle[1]) == pytest.approx(c.offset)
            assert old_mask[round(handle[1]), round(handle[0])]


# ---------------------------------------------------------------------------------------------- scoring


def test_copy_paste_is_the_ceiling(cases):
    rows = [score(c, copy_paste(c)) for c in cases[:25]]
    assert all(r["success"] and r["md"] < 1.0 and r["gt_psnr"] == PSNR_CAP for r in rows)
    assert all(r["progress"] == pytest.approx(1.0, abs=0.01) for r in rows)
    summary = summarize(rows)
    assert summary["success_rate"] == 1.0 and summary["md_fraction"] < 0.05


def test_do_nothing_is_the_floor(cases):
    rows = [score(c, do_nothing(c)) for c in cases[:25]]
    for r in rows:
        assert abs(r["md"] - r["initial_distance"]) < 1.0
        assert r["progress"] == pytest.approx(0.0, abs=0.01)
        assert not r["success"]
        assert r["background_psnr"] == PSNR_CAP  # identical outside the editable mask
        assert r["gt_psnr"] < 40.0
    summary = summarize(rows)
    assert summary["success_rate"] == 0.0 and summary["md_fraction"] == pytest.approx(1.0, abs=0.05)


def test_partial_lost_and_noisy_results(cases):
    c = next(c for c in cases if c.distance > 20)
    half = render(moved(c.scene, c.object_index, c.offset[0] / 2, c.offset[1] / 2))
    assert score(c, half)["md"] == pytest.approx(c.distance / 2, abs=1.0)
    assert score(c, half)["progress"] == pytest.approx(0.5, abs=0.05)
    others = tuple(o for k, o in enumerate(c.scene.objects) if k != c.object_index)
    erased = render(Scene(others, c.scene.background, c.scene.background2, c.scene.gradient, c.scene.size))
    lost = score(c, erased)
    assert not lost["found"] and lost["md"] == pytest.approx(c.distance, abs=1.0)
    noisy = np.clip(copy_paste(c) + np.random.default_rng(0).normal(0, 0.02, (128, 128, 3)), 0, 1)
    r = score(c, noisy)
    assert r["success"] and 25.0 < r["background_psnr"] < 40.0


def test_score_accepts_a_comfy_image_batch_and_rejects_other_shapes(cases):
    c = cases[0]
    batch = torch.from_numpy(copy_paste(c))[None]
    assert score(c, batch)["md"] == score(c, copy_paste(c))["md"]
    with pytest.raises(ValueError, match="result"):
        score(c, np.zeros((64, 64, 3), dtype=np.float32))


def test_psnr_cap_and_empty_region():
    a = np.zeros((4, 4, 3))
    assert psnr(a, a) == PSNR_CAP
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert math.isnan(psnr(a, a, np.zeros((4, 4), dtype=bool)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [6.0, 11.5, 20.0])
def test_classify_shape_names_each_rendered_shape(shape, size):
    scene = Scene((ToyObject(shape, "red", size, 60.3, 66.8),), "grey")
    found, iou = classify_shape(segment(render(scene), "red"))
    assert found == shape and iou > 0.75


def test_classify_shape_rejects_tiny_or_empty_segments():
    mask = np.zeros((32, 32), dtype=bool)
    assert classify_shape(mask) == (None, 0.0)
    mask[3:6, 3:6] = True  # 9 px: below the default minimum
    assert classify_shape(mask) == (None, 0.0)
    # A thin bar is none of the shapes: every candidate overlaps it poorly.
    bar = np.zeros((64, 64), dtype=bool)
    bar[30:33, 4:60] = True
    assert classify_shape(bar)[1] < 0.5
