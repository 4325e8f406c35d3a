"""The region warp (drag_core/region_warp.py) against independent computations: scipy's morphology and labelling,
and a per-pixel loop written from the module docstring."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy import ndimage

from dragkit.drag_core.region_warp import WarpError, inpaint_mask, region_labels, region_warp

SQUARE = np.ones((3, 3), dtype=bool)


def _image(h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(h, w, 3, generator=torch.Generator().manual_seed(seed))


def _box(h, w, top, left, bottom, right) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[top:bottom, left:right] = 1
    return m


def _reference_inpaint_mask(source: np.ndarray, moved: np.ndarray, k: int) -> np.ndarray:
    """(source ∖ moved) ⊕ k×k ∪ (contour of moved) ⊕ k×k, with scipy; outside the image counts as moved."""
    square = np.ones((k, k), dtype=bool)
    revealed = ndimage.binary_dilation(source & ~moved, square)
    contour = moved & ~ndimage.binary_erosion(moved, SQUARE, border_value=1)
    return revealed | ndimage.binary_dilation(contour, square)


def test_an_integer_translation_moves_the_region_exactly_and_nothing_else():
    image, region = _image(), _box(64, 64, 10, 12, 20, 25)
    r = region_warp(image, region, [((15, 15), (25, 20))])  # d = (10, 5)
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[15:25, 22:35] = True
    assert torch.equal(r.moved_region, expected)
    assert torch.equal(r.source_region, region > 0)
    assert torch.equal(r.image[15:25, 22:35], image[10:20, 12:25])  # bitwise
    untouched = ~(r.source_region | r.moved_region)
    assert torch.equal(r.image[untouched], image[untouched])
    # The revealed strip keeps the old content (the inpainting replaces it).
    revealed = r.source_region & ~r.moved_region
    assert torch.equal(r.image[revealed], image[revealed])
    np.testing.assert_array_equal(r.inpaint_mask.numpy(), _reference_inpaint_mask(r.source_region.numpy(), expected.numpy(), 5))


def test_a_fractional_drag_moves_every_pixel_by_the_same_whole_number():
    image, region = _image(), _box(64, 64, 20, 20, 30, 30)
    for drag, shift in (((10.4, 5.6), (10, 6)), ((-7.6, 3.2), (-8, 3))):
        r = region_warp(image, region, [((25, 25), (25 + drag[0], 25 + drag[1]))])
        dx, dy = shift
        assert torch.equal(r.moved_region, torch.roll(region > 0, (dy, dx), (0, 1))), drag
        assert torch.equal(r.image[20 + dy : 30 + dy, 20 + dx : 30 + dx], image[20:30, 20:30]), drag
    # A half-pixel drag (where round-half-to-even would split the columns) is one consistent shift too.
    r = region_warp(image, region, [((25, 25), (35.5, 25.5))])
    rows, cols = torch.nonzero(r.moved_region, as_tuple=True)
    assert int(r.moved_region.sum()) == 100 and int(cols.max() - cols.min()) == 9 and int(rows.max() - rows.min()) == 9


def test_inpaint_dilation_zero_is_exactly_the_revealed_pixels():
    region = _box(64, 64, 10, 10, 20, 20)
    r = region_warp(_image(), region, [((15, 15), (18, 15))], inpaint_dilation=0)
    assert torch.equal(r.inpaint_mask, r.source_region & ~r.moved_region)
    assert int(r.inpaint_mask.sum()) == 3 * 10
    # Even k is made odd (centred), as the reference does.
    assert torch.equal(inpaint_mask(r.source_region, r.moved_region, 4), inpaint_mask(r.source_region, r.moved_region, 5))


def _reference_warp(image: np.ndarray, region: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray]:
    """The module docstring's inverse-distance warp for one region, pixel by pixel (no torch)."""
    h, w = region.shape
    handles = np.array([p[0] for p in pairs], float)
    moves = np.array([p[1] for p in pairs], float) - handles

    def idw(point, anchors, values):
        d = np.hypot(*(anchors - point).T)
        nearest = np.argsort(d, kind="stable")[: min(4, len(anchors))]
        wts = 1.0 / (d[nearest] + 1e-6)
        return (wts[:, None] * values[nearest]).sum(0) / wts.sum()

    pixels = [np.array([j, i], float) for i in range(h) for j in range(w) if region[i, j]]
    forward = [p + idw(p, handles, moves) for p in pixels]
    pick = np.linspace(0, len(pixels) - 1, min(100, len(pixels))).astype(int)
    anchors = np.array([forward[k] for k in pick])
    back = np.array([pixels[k] - forward[k] for k in pick])
    out, moved = image.copy(), np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            q = np.array([j, i], float)
            x, y = np.floor(q + idw(q, anchors, back) + 0.5).astype(int)
            if 0 <= x < w and 0 <= y < h and region[y, x]:
                moved[i, j] = True
                out[i, j] = image[y, x]
    return out, moved


def test_the_inverse_distance_warp_matches_a_per_pixel_reading_of_the_docstring():
    image = _image(40, 40, seed=3)
    region = torch.zeros(40, 40)
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    region[((xx - 18) ** 2 + (yy - 20) ** 2) <= 64] = 1  # a disk: a turn and a stretch
    pairs = [((12.0, 20.0), (13.0, 25.0)), ((24.0, 20.0), (27.0, 16.0)), ((18.0, 14.0), (20.0, 13.0))]
    r = region_warp(image, region, pairs)
    out, moved = _reference_warp(image.double().numpy(), region.numpy() > 0, pairs)
    np.testing.assert_array_equal(r.moved_region.numpy(), moved)
    np.testing.assert_array_equal(r.image.numpy(), out.astype(np.float32))
    assert r.moved_region.sum() > 150


def test_no_holes_and_no_foreign_pixels_in_a_turned_or_stretched_region():
    yy, xx = np.mgrid[0:96, 0:96]
    disk = ((xx - 40) ** 2 + (yy - 48) ** 2) <= 14**2
    image = torch.zeros(96, 96, 3)
    image[torch.from_numpy(disk)] = torch.tensor([1.0, 0.0, 0.0])  # every region pixel is pure red
    region = torch.from_numpy(disk).float()
    cases = {
        "scale 1.3 (similarity)": ([((40, 48), (40, 48 - 1e-9)), ((50, 48), (53, 48))], "similarity"),
        "turn 30° (similarity)": ([((30, 48), (40 - 10 * math.cos(0.52), 48 - 10 * math.sin(0.52))),
                                   ((50, 48), (40 + 10 * math.cos(0.52), 48 + 10 * math.sin(0.52)))], "similarity"),
        "three pairs (inverse distance)": ([((30, 48), (28, 52)), ((50, 48), (56, 44)), ((40, 38), (41, 33))],
                                            "inverse_distance"),
    }
    for name, (pairs, motion) in cases.items():
        r = region_warp(image, region, pairs, motion=motion)
        moved = r.moved_region.numpy()
        assert ndimage.label(moved, SQUARE)[1] == 1, name
        np.testing.assert_array_equal(ndimage.binary_fill_holes(moved), moved, err_msg=name)
        assert torch.equal(r.image[r.moved_region], torch.tensor([1.0, 0.0, 0.0]).expand(int(moved.sum()), 3)), name
    # The stretch: a disk of radius 14·1.3 about the pivot (the fitted scale of these two pairs is 1.3).
    r = region_warp(image, region, cases["scale 1.3 (similarity)"][0], motion="similarity")
    bigger = ((xx - 40) ** 2 + (yy - 48) ** 2) <= (14 * 1.3) ** 2
    iou = (r.moved_region.numpy() & bigger).sum() / (r.moved_region.numpy() | bigger).sum()
    assert iou > 0.95


def test_similarity_maps_back_through_the_exact_inverse():
    image = _image(80, 80, seed=5)
    region = _box(80, 80, 30, 30, 50, 46)
    angle, scale, pivot = math.radians(25.0), 1.1, np.array([38.0, 40.0])
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    handles = [np.array([32.0, 33.0]), np.array([44.0, 47.0])]
    pairs = [(tuple(h), tuple(pivot + rot @ (h - pivot))) for h in handles]
    r = region_warp(image, region, pairs, motion="similarity")
    inverse = np.linalg.inv(rot)
    expected = np.zeros((80, 80), bool)
    for i in range(80):
        for j in range(80):
            x, y = np.floor(pivot + inverse @ (np.array([j, i]) - pivot) + 0.5).astype(int)
            expected[i, j] = 0 <= x < 80 and 0 <= y < 80 and bool(region[y, x])
    assert abs(int(r.moved_region.sum()) - int(expected.sum())) <= 2  # float rounding on exact halves
    assert (r.moved_region.numpy() != expected).sum() <= 2


def test_bilinear_sampling_is_exact_on_whole_pixels_and_averages_on_halves():
    image, region = _image(), _box(64, 64, 10, 10, 20, 20)
    nearest = region_warp(image, region, [((15, 15), (25, 15))])
    bilinear = region_warp(image, region, [((15, 15), (25, 15))], sampling="bilinear")
    assert torch.equal(nearest.image, bilinear.image)
    half = region_warp(image, region, [((15, 15), (25.5, 15))], sampling="bilinear")
    # Shifted by 10.5: the way back lands half-way between two source columns.
    col = int(torch.nonzero(half.moved_region[15]).min())
    src = col - 10.5
    expected = (image[15, math.floor(src)] + image[15, math.ceil(src)]) / 2
    torch.testing.assert_close(half.image[15, col], expected)


def test_pairs_on_one_region_moving_alike_are_one_translation_and_regions_move_independently():
    image = _image()
    region = _box(64, 64, 5, 5, 15, 15) + _box(64, 64, 40, 40, 50, 50) + _box(64, 64, 5, 45, 12, 55)
    pairs = [((8, 8), (18, 10)), ((12, 12), (22, 14)), ((45, 45), (40, 50))]
    r = region_warp(image, region, pairs)
    assert torch.equal(r.image[7:17, 15:25], image[5:15, 5:15])  # both pairs: (+10, +2)
    assert torch.equal(r.image[45:55, 35:45], image[40:50, 40:50])  # (−5, +5)
    third = _box(64, 64, 5, 45, 12, 55) > 0  # no handle on it: it stays, and is not in the inpaint mask
    assert torch.equal(r.image[third], image[third])
    assert not bool((r.source_region & third).any()) and not bool((r.inpaint_mask & third).any())


def test_a_region_on_the_border_moves_in_and_out_of_the_picture():
    image, region = _image(), _box(64, 64, 20, 0, 30, 10)  # touches the left edge
    inward = region_warp(image, region, [((5, 25), (15, 25))])
    assert torch.equal(inward.image[20:30, 10:20], image[20:30, 0:10])
    outward = region_warp(image, region, [((5, 25), (-0.0, 25))])  # x = 0: half of it leaves the picture
    assert int(outward.moved_region.sum()) == 10 * 5
    assert torch.equal(outward.image[20:30, 0:5], image[20:30, 5:10])
    # The image border is not a seam: along column 0 the band comes only from the top and bottom edges.
    assert not bool(outward.inpaint_mask[23:27, 0:2].any()) and bool(outward.inpaint_mask[23:27, 2:].any())


@pytest.mark.parametrize("seed", range(6))
def test_region_labels_match_scipy(seed):
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((50, 70)) < 0.55, np.ones((2, 2)))
    mask[20:30, 20:30] = True
    mask[24:26, 24:26] = False  # a hole: filled
    labels = region_labels(torch.from_numpy(mask)).numpy()
    expected, count = ndimage.label(ndimage.binary_fill_holes(mask), SQUARE)
    assert (labels > 0).sum() == (expected > 0).sum() and np.array_equal(labels > 0, expected > 0)
    pairs = {(int(a), int(b)) for a, b in zip(labels[labels > 0], expected[expected > 0])}
    assert len(pairs) == count == len({a for a, _ in pairs})  # the same partition


def test_long_winding_regions_label_in_a_few_rounds():
    mask = torch.zeros(512, 512, dtype=torch.bool)
    mask[::2] = True  # rows joined alternately at the ends: one path of 130,000 pixels
    mask[1::4, -1] = True
    mask[3::4, 0] = True
    started = time.monotonic()
    labels = region_labels(mask)
    assert labels.unique().numel() == 2
    assert time.monotonic() - started < 30  # generous: a per-round propagation would take minutes


def test_clear_errors():
    image = _image()
    with pytest.raises(WarpError, match="empty") as e:
        region_warp(image, torch.zeros(64, 64), [((5, 5), (9, 9))])
    assert e.value.field == "region"
    with pytest.raises(WarpError, match="whole image"):
        region_warp(image, torch.ones(64, 64), [((5, 5), (9, 9))])
    with pytest.raises(WarpError, match="pair 2: handle \\(40, 40\\).*pair 3") as e:
        region_warp(image, _box(64, 64, 0, 0, 10, 10), [((5, 5), (9, 9)), ((40, 40), (9, 9)), ((60, 2), (1, 1))])
    assert e.value.field == "pairs"
    with pytest.raises(WarpError, match="finite"):
        region_warp(image, _box(64, 64, 0, 0, 10, 10), [((5, float("nan")), (9, 9))])
    with pytest.raises(WarpError) as e:
        region_warp(image, _box(64, 64, 0, 0, 10, 10), [((5, 5), (9, 9))], motion="spline")
    assert e.value.field == "motion"
    with pytest.raises(WarpError) as e:
        region_warp(image, _box(64, 64, 0, 0, 10, 10), [((5, 5), (9, 9))], revealed="blur")
    assert e.value.field == "revealed"
    with pytest.raises(WarpError, match="squeeze"):
        region_warp(image, _box(64, 64, 0, 0, 10, 10), [((2, 2), (5, 5)), ((8, 8), (5, 5))], motion="similarity")
    # Too large: refused before anything the size of the image is allocated (the inputs are broadcast views).
    huge = torch.zeros(1, 1, 3).expand(5000, 5000, 3)
    with pytest.raises(WarpError, match="at most") as e:
        region_warp(huge, torch.zeros(1, 1).expand(5000, 5000), [((5, 5), (9, 9))])
    assert e.value.field == "image"


def test_revealed_fill_replaces_only_the_revealed_pixels_with_the_surroundings():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    background = torch.stack([0.2 + 0.01 * xx, 0.3 + 0.005 * yy, torch.full_like(xx, 0.5)], dim=-1)
    image = background.clone()
    image[20:30, 20:30] = torch.tensor([1.0, 0.0, 0.0])  # a red square on a smooth gradient
    region = _box(64, 64, 18, 18, 32, 32)  # roughly around it
    kept = region_warp(image, region, [((25, 25), (37, 27))])
    filled = region_warp(image, region, [((25, 25), (37, 27))], revealed="fill")
    hole = kept.source_region & ~kept.moved_region
    assert torch.equal(filled.image[~hole], kept.image[~hole])  # the moved region and the rest: as with keep
    assert torch.equal(kept.image[hole], image[hole])  # keep: the old content (the reference)
    # fill: close to the background behind the square (a smooth guess, not the red square, not the moved one).
    assert (filled.image[hole] - background[hole]).abs().max() < 0.08
    assert (kept.image[hole] - background[hole]).abs().max() > 0.5
    flat = region_warp(torch.full((32, 32, 3), 0.25), _box(32, 32, 4, 4, 12, 12), [((8, 8), (20, 20))],
                       revealed="fill")
    torch.testing.assert_close(flat.image, torch.full((32, 32, 3), 0.25))  # a constant surround stays constant
