"""The points format under hostile input (issue 19): whatever a workflow file or an API client sends either
parses into a valid DragPoints or raises PointsError, round trips are exact, and no size in the value can make
the parser allocate more than the limits allow. Property tests are derandomized, so every run is the same."""

from __future__ import annotations

import contextlib
import json
import time
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dragkit.drag_core import points as points_module
from dragkit.drag_core.points import (
    MAX_PAIRS,
    MAX_POINTS_JSON,
    MAX_SIDE,
    DragPoints,
    PointsError,
    RLEMask,
    mask_from_rle,
    parse_points,
)


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True)


class _NoTorch:
    """Stands in for torch in drag_core.points while parsing: any tensor operation fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"torch.{name} used while parsing drag points: parsing must not allocate tensors")


@contextlib.contextmanager
def no_tensors():
    with mock.patch.object(points_module, "torch", _NoTorch()):
        yield


def check_valid(pts: DragPoints) -> None:
    """Every invariant a DragPoints from untrusted input must hold (the bounds follow from the limits)."""
    assert 1 <= pts.width <= MAX_SIDE and 1 <= pts.height <= MAX_SIDE
    assert 1 <= len(pts) <= MAX_PAIRS
    for handle, target in pts.pairs:
        assert handle != target
        for x, y in (handle, target):
            assert 0 <= x <= pts.width and 0 <= y <= pts.height  # also False for NaN
    if pts.mask is not None:
        m = pts.mask
        assert (m.width, m.height) == (pts.width, pts.height)
        assert m.width * m.height <= MAX_SIDE**2
        assert len(m.runs) <= m.width * m.height + 1 and sum(m.runs) == m.width * m.height
        assert all(type(r) is int and r >= 0 for r in m.runs)


def parses_or_refuses(text) -> DragPoints | None:
    """parse_points(text) without touching torch; any exception but PointsError fails the test."""
    with no_tensors():
        try:
            pts = parse_points(text)
        except PointsError as e:
            assert len(str(e)) < 2000, "error messages must stay short whatever was sent"
            return None
    check_valid(pts)
    return pts


# --- strategies ------------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["version", "width", "height", "points", "handle", "target", "mask", "rle"]) | st.text(
    max_size=6
)
NASTY_INTS = st.sampled_from([0, 1, -1, 2, MAX_SIDE, MAX_SIDE + 1, 100_000, 2**31, 2**63, -(2**63), 10**400])
NASTY_FLOATS = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.5, 1e308, -1e308, 5e-324])
SCALARS = st.none() | st.booleans() | st.integers() | NASTY_INTS | st.floats() | NASTY_FLOATS | st.text(max_size=10)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12
)
SIDES = st.integers(1, 12) | NASTY_INTS | JSON_VALUES
COORDS = st.lists(st.integers(-2, 14) | st.floats(-2, 14) | NASTY_INTS | NASTY_FLOATS | JSON_VALUES, max_size=3)
PAIR_LIKE = st.fixed_dictionaries({"handle": COORDS, "target": COORDS}) | JSON_VALUES
RUNS = st.lists(st.integers(0, 50) | NASTY_INTS | JSON_VALUES, max_size=8)
MASK_LIKE = st.fixed_dictionaries({"width": SIDES, "height": SIDES, "rle": RUNS | JSON_VALUES}) | JSON_VALUES
DOCS = st.fixed_dictionaries(
    {"version": st.just(1) | JSON_VALUES, "width": SIDES, "height": SIDES, "points": st.lists(PAIR_LIKE, max_size=4)},
    optional={"mask": MASK_LIKE},
)


@st.composite
def masks(draw, width: int, height: int) -> torch.Tensor:
    """A random (height, width) 0/1 mask: empty, full, sparse, dense or noisy."""
    density = draw(st.sampled_from([0.0, 0.05, 0.5, 0.95, 1.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    return (torch.rand(height, width, generator=g) < density).float()


@st.composite
def drag_points(draw, max_side: int = 64, max_pairs: int = MAX_PAIRS) -> DragPoints:
    """A valid DragPoints: sides 1..64, 1..MAX_PAIRS in-bounds pairs (handle ≠ target), an optional mask."""
    width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    coord = st.tuples(st.floats(0, width) | st.integers(0, width), st.floats(0, height) | st.integers(0, height))
    pairs = draw(st.lists(st.tuples(coord, coord).filter(lambda p: p[0] != p[1]), min_size=1, max_size=max_pairs))
    mask = draw(st.none() | masks(width, height).map(RLEMask.from_tensor))
    return DragPoints(tuple(pairs), width, height, mask)


def _slots(value, path: tuple = ()) -> list[tuple]:
    """The paths of every dict value and list item inside a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, item in items for p in [(*path, key), *_slots(item, (*path, key))]]


HOSTILE = NASTY_INTS | NASTY_FLOATS | JSON_VALUES
BIG_SIDES = st.integers(1, 2 * MAX_SIDE) | NASTY_INTS.filter(lambda v: v > 0)


@st.composite
def hostile_docs(draw) -> dict:
    """A valid points value (as a dict) with one to three attacks: a part replaced by a hostile value, a size
    declared huge or a mask of another size (its runs summing right), or the pairs repeated past the limit."""
    doc = draw(drag_points(max_side=12, max_pairs=4)).to_dict()
    for _ in range(draw(st.integers(1, 3))):
        attack = draw(st.sampled_from(["replace", "replace", "size", "pairs"]))
        if attack == "size":
            w, h = draw(BIG_SIDES), draw(BIG_SIDES)
            doc.update(width=w, height=h)
            if "mask" in doc or draw(st.booleans()):
                mask_w = draw(st.just(w) | BIG_SIDES)  # the points' size, or another one
                doc["mask"] = {"width": mask_w, "height": h, "rle": [mask_w * h]}
        elif attack == "pairs" and isinstance(doc.get("points"), list):
            doc["points"] = doc["points"] * draw(st.integers(1, MAX_PAIRS))
        elif slots := _slots(doc):
            *parent, key = draw(st.sampled_from(slots))
            container = doc
            for k in parent:
                container = container[k]
            container[key] = draw(HOSTILE)
    return doc


@st.composite
def mutated(draw) -> str:
    """A valid points value with a few characters deleted, replaced or inserted."""
    text = draw(drag_points()).to_json()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 6))
        new = draw(
            st.sampled_from(
                ["", "-", "1e999", "0", "9" * 30, "9" * 400, "true", "NaN", "[", "]", "{", "}", ",", '"', "."]
            )
        )
        text = text[:at] + new + text[at + cut :]
    return text


# --- any value parses or is refused with PointsError -------------------------------------------------------------


@fuzz(400)
@given(st.text())
def test_any_text(text):
    parses_or_refuses(text)


@fuzz(300)
@given(JSON_VALUES)
def test_any_json_value(value):
    parses_or_refuses(json.dumps(value))


@fuzz(300)
@given(DOCS)
def test_points_shaped_json(doc):
    parses_or_refuses(json.dumps(doc))


@fuzz(300)
@given(hostile_docs())
def test_valid_value_under_attack(doc):
    parses_or_refuses(json.dumps(doc))


@fuzz(200)
@given(mutated())
def test_mutated_valid_value(text):
    parses_or_refuses(text)


@fuzz(300)
@given(JSON_VALUES | MASK_LIKE)
def test_any_mask_value(value):
    with no_tensors():
        try:
            mask = RLEMask.from_dict(value)
        except PointsError:
            return
    assert 1 <= mask.width <= MAX_SIDE and 1 <= mask.height <= MAX_SIDE
    assert sum(mask.runs) == mask.width * mask.height


@fuzz(200)
@given(JSON_VALUES, SIDES, SIDES)
def test_constructor_validates_anything(pairs, width, height):
    try:
        pts = DragPoints(pairs, width, height)
    except PointsError:
        return
    check_valid(pts)


# --- exact round trips -------------------------------------------------------------------------------------------


@fuzz(150)
@given(drag_points())
def test_round_trip_through_json(pts):
    check_valid(pts)
    again = parses_or_refuses(pts.to_json())
    assert again == pts
    if pts.mask is not None:
        assert torch.equal(again.mask_tensor(), pts.mask_tensor())


@fuzz(150)
@given(st.integers(1, 64).flatmap(lambda w: st.integers(1, 64).flatmap(lambda h: masks(w, h))))
def test_mask_rle_round_trip(mask):
    rle = RLEMask.from_tensor(mask)
    assert torch.equal(rle.to_tensor(), mask)
    assert RLEMask.from_dict(rle.to_dict()) == rle
    # Minimal: only the leading zero run may be empty, so the count cap never refuses an encoder's output.
    assert 0 not in rle.runs[1:] and len(rle.runs) <= mask.numel() + 1


# --- regressions: sizes are refused before anything is allocated -------------------------------------------------

PAIR = [{"handle": [1, 1], "target": [2, 2]}]


def _doc(width=8, height=8, points=PAIR, **extra) -> str:
    return json.dumps({"version": 1, "width": width, "height": height, "points": points, **extra})


def refused_fast(text, match: str) -> None:
    start = time.perf_counter()
    with no_tensors(), pytest.raises(PointsError, match=match):
        parse_points(text)
    # Generous: a guard against the old behaviour (a 4 GiB allocation, ~30 s), not a benchmark.
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (MAX_SIDE + 1, 1), (1, MAX_SIDE + 1), (10**400, 1)])
def test_huge_mask_refused_before_allocation(width, height):
    # The ~160-byte value that used to allocate gigabytes: small points, a huge mask.
    small = _doc(mask={"width": width, "height": height, "rle": [width * height]})
    refused_fast(small, rf"mask: .* larger than DragKit's limit of {MAX_SIDE} pixels a side")
    refused_fast(
        _doc(width, height, mask={"width": width, "height": height, "rle": [width * height]}),
        rf"drag points: .* larger than DragKit's limit of {MAX_SIDE} pixels a side",
    )
    with no_tensors(), pytest.raises(PointsError, match="limit"):
        mask_from_rle({"width": width, "height": height, "rle": [width * height]})
    with pytest.raises(PointsError, match="limit"):
        RLEMask(width, height, (width * height,))
    with pytest.raises(PointsError, match="limit"):
        DragPoints((((1, 1), (2, 2)),), width, height)


def test_largest_mask_is_accepted_without_decoding():
    side = MAX_SIDE
    pts = parses_or_refuses(_doc(side, side, mask={"width": side, "height": side, "rle": [side * side]}))
    assert pts is not None and pts.mask.runs == (side * side,)


def test_pair_count_limit():
    pairs = [{"handle": [1, 1], "target": [2, i % 8]} for i in range(MAX_PAIRS + 1)]
    assert len(parses_or_refuses(_doc(points=pairs[:MAX_PAIRS]))) == MAX_PAIRS
    refused_fast(_doc(points=pairs), rf"{MAX_PAIRS + 1} handle→target pairs, more than the limit of {MAX_PAIRS}")
    with pytest.raises(PointsError, match=f"limit of {MAX_PAIRS}"):
        DragPoints(tuple(((1, 1), (2, i % 8)) for i in range(MAX_PAIRS + 1)), 8, 8)


def test_mask_of_another_size_refused():
    mask = {"width": 4, "height": 2, "rle": [8]}
    refused_fast(_doc(8, 8, mask=mask), r"the mask is 4×2 but the points are on a 8×8 image")


def test_run_count_limit():
    assert parses_or_refuses(_doc(2, 2, mask={"width": 2, "height": 2, "rle": [0, 1, 1, 1, 1]})) is not None
    refused_fast(
        _doc(2, 2, mask={"width": 2, "height": 2, "rle": [0, 1, 1, 1, 1, 0, 0]}),
        r"mask: 7 runs for a 2×2 mask, more than width·height \+ 1 = 5",
    )
    # A long run list for a small mask is refused by its length, before its items are looked at.
    refused_fast(_doc(2, 2, mask={"width": 2, "height": 2, "rle": [0] * 100_000}), r"100000 runs")


@pytest.mark.parametrize("rle", [[True, 3], [1.0, 3], [-1, 5], ["4"], [10**400]])
def test_bad_runs_refused(rle):
    refused_fast(_doc(2, 2, mask={"width": 2, "height": 2, "rle": rle}), r"mask: ")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "9" * 400])
def test_non_finite_coordinates_refused(literal):
    text = _doc().replace('"target": [2, 2]', f'"target": [2, {literal}]')
    refused_fast(text, r"points\[0\] \(pair 1\) target: coordinates must be finite")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 10**400])
def test_constructor_refuses_non_finite(bad):
    with pytest.raises(PointsError, match="finite"):
        DragPoints((((1, 1), (2, bad)),), 8, 8)


@pytest.mark.parametrize("target", [(2, "2"), (2, b"2"), (2, True), (2, None), (2, [2]), "12", b"12", (1, 2, 3),
                                    {"x": 1, "y": 2}, 2])
def test_constructor_refuses_what_is_not_a_number(target):
    # float() takes "2" and True, and a two-character string would pass as a point of two digits.
    with pytest.raises(PointsError, match=r"pairs must be \(\(hx, hy\), \(tx, ty\)\) finite numbers"):
        DragPoints((((1, 1), target),), 8, 8)


def test_constructor_takes_numpy_numbers():
    import numpy as np

    pts = DragPoints((((np.int64(1), np.float32(1.5)), (np.float64(2), 3)),), 8, 8)
    assert pts.pairs == (((1.0, 1.5), (2.0, 3.0)),) and all(type(v) is float for p in pts.pairs[0] for v in p)


def test_over_long_text_refused_before_parsing():
    text = _doc()
    padded = text[:-1] + " " * (MAX_POINTS_JSON - len(text)) + "}"
    assert len(padded) == MAX_POINTS_JSON and parses_or_refuses(padded) is not None
    with mock.patch.object(points_module.json, "loads", side_effect=AssertionError("parsed an over-long value")):
        refused_fast(
            padded + " ",
            rf"{MAX_POINTS_JSON + 1} characters, more than the limit of {MAX_POINTS_JSON}; "
            "simplify the painted mask",
        )


@pytest.mark.parametrize("text", ["[" * 100_000, "9" * 5000, b"\xff\xfe", _doc().encode()[:-1] + b"\xff}"])
def test_json_the_decoder_cannot_take_is_refused(text):
    refused_fast(text, "not valid JSON")


def test_error_messages_stay_short():
    refused_fast(_doc(points="x" * 1_000_000), r'"points" must be a non-empty list')
    with pytest.raises(PointsError) as e:
        parse_points(_doc(points="x" * 1_000_000))
    assert len(str(e.value)) < 500
