"""DragPoints: JSON format, validation messages, rescaling, grid coordinates, mask RLE."""

from __future__ import annotations

import json

import pytest
import torch

from dragkit.drag_core.points import (
    DragPoints,
    PointsError,
    grid_points,
    mask_from_rle,
    mask_to_rle,
    parse_points,
)


def _doc(points, width=100, height=80, **extra) -> str:
    return json.dumps({"version": 1, "width": width, "height": height, "points": points, **extra})


def test_parse_and_round_trip():
    text = _doc([{"handle": [10, 20.5], "target": [30, 40]}, {"handle": [0, 0], "target": [100, 80]}])
    pts = parse_points(text)
    assert pts.width == 100 and pts.height == 80
    assert pts.pairs == (((10.0, 20.5), (30.0, 40.0)), ((0.0, 0.0), (100.0, 80.0)))
    assert pts.handles == ((10.0, 20.5), (0.0, 0.0))
    again = parse_points(pts.to_json())
    assert again == pts
    assert json.loads(pts.to_json())["version"] == 1


def test_round_trip_with_mask():
    mask = torch.zeros(80, 100)
    mask[10:30, 40:70] = 1
    text = _doc([{"handle": [10, 20], "target": [30, 40]}], mask=mask_to_rle(mask))
    pts = parse_points(text)
    assert torch.equal(pts.mask_tensor(), mask)
    assert parse_points(pts.to_json()) == pts


def test_invalid_json_reports_position():
    with pytest.raises(PointsError, match=r"not valid JSON: .* line 1 column 12 \(char 11\)"):
        parse_points('{"version":')


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"width": 10, "height": 10, "points": []}, r'"version" must be 1 \(got missing\).*e\.g\. \{"version": 1'),
        ({"version": 2, "width": 10, "height": 10, "points": []}, r'"version" must be 1 \(got 2\)'),
        ({"version": "1", "width": 10, "height": 10, "points": []}, r"\"version\" must be 1 \(got '1'\)"),
        ({"version": 1, "width": 0, "height": 10, "points": []}, r'"width" and "height" must be positive integers'),
        ({"version": 1, "width": 10, "height": 10, "points": []}, r'"points" must be a non-empty list'),
        ({"version": 1, "width": 10, "height": 10}, r'"points" must be a non-empty list'),
    ],
)
def test_document_errors(doc, expected):
    with pytest.raises(PointsError, match=expected):
        parse_points(json.dumps(doc))


def test_not_an_object():
    with pytest.raises(PointsError, match="must be a JSON object, got list"):
        parse_points("[1, 2]")


@pytest.mark.parametrize(
    "points, expected",
    [
        (
            [{"handle": [1, 1], "target": [2, 2]}, {"handle": [5, 5], "target": [101, 5]}],
            r"points\[1\] \(pair 2\) target \[101, 5\] is outside the 100×80 image: expected 0 ≤ x ≤ 100 and 0 ≤ y ≤ 80",
        ),
        (
            [{"handle": [-1, 5], "target": [2, 2]}],
            r"points\[0\] \(pair 1\) handle \[-1, 5\] is outside the 100×80 image",
        ),
        (
            [{"handle": [1, 1], "target": [2, 2]}, {"handle": [7, 3], "target": [7, 3]}],
            r"points\[1\] \(pair 2\): handle equals target \[7, 3\]",
        ),
        ([{"handle": [1, 1]}], r'points\[0\] \(pair 1\): expected \{"handle": \[x, y\], "target": \[x, y\]\}'),
        ([{"handle": [1, 1, 1], "target": [2, 2]}], r"points\[0\] \(pair 1\) handle: expected \[x, y\] with two"),
        ([{"handle": [1, 1], "target": ["2", 2]}], r"points\[0\] \(pair 1\) target: expected \[x, y\]"),
        ([{"handle": [1, True], "target": [2, 2]}], r"points\[0\] \(pair 1\) handle: expected \[x, y\]"),
    ],
)
def test_point_errors_name_pair_and_field(points, expected):
    with pytest.raises(PointsError, match=expected):
        parse_points(_doc(points))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers(literal):
    text = '{"version": 1, "width": 10, "height": 10, "points": [{"handle": [1, 1], "target": [2, LIT]}]}'
    text = text.replace("LIT", literal)
    with pytest.raises(PointsError, match=r"points\[0\] \(pair 1\) target: coordinates must be finite"):
        parse_points(text)


def test_bad_mask_rle():
    text = _doc([{"handle": [1, 1], "target": [2, 2]}], mask={"width": 2, "height": 2, "rle": [1, 2]})
    with pytest.raises(PointsError, match=r"run lengths sum to 3, expected width·height = 4"):
        parse_points(text)


def test_constructor_validates_and_normalizes():
    pts = DragPoints(pairs=[([1, 2], [3, 4])], width=10, height=10)
    assert pts.pairs == (((1.0, 2.0), (3.0, 4.0)),)
    with pytest.raises(PointsError, match="no pairs"):
        DragPoints(pairs=(), width=10, height=10)


def test_rescaled():
    pts = DragPoints(pairs=(((10, 20), (100, 80)),), width=100, height=80)
    big = pts.rescaled(250, 40)
    assert big.width == 250 and big.height == 40
    assert big.pairs == (((25.0, 10.0), (250.0, 40.0)),)
    assert pts.rescaled(100, 80) is pts


def test_grid_points_row_col_and_half_to_even():
    # 10×10 image → 5×5 grid: pixel 5 → 2.5 → 2 (half to even), pixel 3 → 1.5 → 2, pixel 7 → 3.5 → 4.
    pts = DragPoints(pairs=(((5, 3), (7, 1)),), width=10, height=10)
    handles, targets = grid_points(pts, 10, 10)
    assert handles.dtype == torch.float32
    assert handles.tolist() == [[2.0, 2.0]]  # (row from y=3, col from x=5)
    assert targets.tolist() == [[0.0, 4.0]]  # y=1 → 0.5 → 0, x=7 → 3.5 → 4


def test_grid_points_odd_size_and_far_edge_clamped():
    # 11 px wide → grid 5: x = 11 maps to 5.0, one past the last grid column → clamped to 4.
    pts = DragPoints(pairs=(((11, 0), (2.2, 6)),), width=11, height=6)
    handles, targets = grid_points(pts, 6, 11)
    assert handles.tolist() == [[0.0, 4.0]]
    assert targets.tolist() == [[2.0, 1.0]]  # y 6/6·3 = 3 → clamped 2; x 2.2/11·5 = 1.0


def test_grid_points_rescales_points_from_other_image_size():
    pts = DragPoints(pairs=(((50, 40), (100, 0)),), width=100, height=80)
    handles, targets = grid_points(pts, 160, 200)  # image twice the size; grid 80×100
    assert handles.tolist() == [[40.0, 50.0]]
    assert targets.tolist() == [[0.0, 99.0]]


def test_mask_rle_encoding_is_compact_and_starts_with_zeros():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    d = mask_to_rle(mask)
    assert d == {"width": 3, "height": 2, "rle": [0, 2, 3, 1]}
    assert torch.equal(mask_from_rle(d), mask)
    empty = mask_to_rle(torch.zeros(1, 1, 2, 2))
    assert empty["rle"] == [4]
    assert mask_from_rle(empty).sum() == 0


def test_mask_rle_round_trip_random():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(17, 23, generator=g) > 0.6).float()
    assert torch.equal(mask_from_rle(mask_to_rle(mask * 0.5)), mask)
