"""Drag points: handle→target pairs in image pixels, their JSON format and their grid coordinates.

JSON format (what the editor widget, workflow files and API users write)::

    {
      "version": 1,
      "width": 512, "height": 512,
      "points": [
        {"handle": [120.0, 200.5], "target": [160.0, 200.5]},
        {"handle": [300, 310], "target": [280, 330]}
      ],
      "mask": {"width": 512, "height": 512, "rle": [1000, 24, 488, ...]}
    }

- ``width``/``height``: the size in pixels of the image the points were placed on.
- ``points``: at least one pair; every coordinate is ``[x, y]`` in pixels (x to the right, y down,
  floats allowed) with ``0 ≤ x ≤ width`` and ``0 ≤ y ≤ height``; a handle must differ from its target.
- ``mask`` (optional, written by the editor): the editable region (1 = editable) run-length encoded,
  row-major, as alternating run lengths that start with a run of zeros (possibly of length 0), of the
  same width × height as the points.

The value comes from workflow files and API clients, so every size in it is checked against the
limits below before anything is allocated: a few bytes must not make the server allocate gigabytes.

Grid coordinates (SPEC §0.4): the supervision grid is (⌊H/2⌋, ⌊W/2⌋) and a point maps to
(row, col) = round(y/H·grid_h), round(x/W·grid_w) with round-half-to-even, as the reference does.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import reprlib
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

POINTS_VERSION = 1

# The largest picture side (width or height, pixels) DragKit accepts, for the points and their mask;
# SD1.5 works at 512–1024, so this is ample, and it caps a decoded mask at 8192² floats (256 MiB).
MAX_SIDE = 8192
# Handle→target pairs: far more than anyone places by hand, and every pair costs work in each drag step.
MAX_PAIRS = 64
# Characters of points JSON, checked before parsing: bounds the parse work and the number of mask runs.
# The editor writes a painted mask as a few runs per row (≈100 KB at 8192²), but a noisy 8192² mask can
# need ~67M runs; such a value is refused with a message to simplify the mask or pass it as a MASK input.
MAX_POINTS_JSON = 4 * 2**20

_EXAMPLE = '{"version": 1, "width": 512, "height": 512, "points": [{"handle": [100, 200], "target": [140, 200]}]}'

Point = tuple[float, float]


class PointsError(ValueError):
    """Drag points that cannot be used, with a message saying what was expected."""


@dataclass(frozen=True)
class RLEMask:
    """A binary mask run-length encoded row-major: alternating runs of 0 and 1, starting with 0."""

    width: int
    height: int
    runs: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_size("mask", self.width, self.height)
        if not isinstance(self.runs, tuple):
            raise PointsError(f"mask: runs must be a tuple of run lengths, got {type(self.runs).__name__}")
        _check_run_count(len(self.runs), self.width, self.height)
        # Before summing: a run must be a plain int (not a bool, float or huge object) and not negative.
        if not all(_is_int(r) and r >= 0 for r in self.runs):
            raise PointsError("mask: run lengths must be non-negative integers")
        if sum(self.runs) != self.width * self.height:
            raise PointsError(
                f"mask: run lengths sum to {sum(self.runs)}, expected width·height = {self.width * self.height}"
            )

    def to_tensor(self) -> torch.Tensor:
        """(height, width) float tensor of 0/1 (the size was checked against MAX_SIDE on construction)."""
        # uint8 keeps the expanded intermediate at one byte a pixel instead of eight.
        values = (torch.arange(len(self.runs)) % 2).to(torch.uint8)
        flat = torch.repeat_interleave(values, torch.tensor(self.runs, dtype=torch.long))
        return flat.to(torch.float32).reshape(self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "rle": list(self.runs)}

    @staticmethod
    def from_tensor(mask: torch.Tensor) -> RLEMask:
        mask = _as_2d(mask)
        flat = (mask.reshape(-1) > 0).to(torch.int8)
        if flat.numel() == 0:
            raise PointsError("mask: empty tensor")
        _check_size("mask", int(mask.shape[1]), int(mask.shape[0]))
        # Run boundaries are where the value changes; a leading 1 needs an empty zero run first.
        change = torch.nonzero(flat[1:] != flat[:-1]).reshape(-1) + 1
        bounds = torch.cat([torch.tensor([0]), change, torch.tensor([flat.numel()])])
        runs = (bounds[1:] - bounds[:-1]).tolist()
        if flat[0] == 1:
            runs = [0, *runs]
        return RLEMask(int(mask.shape[1]), int(mask.shape[0]), tuple(int(r) for r in runs))

    @staticmethod
    def from_dict(d: Any) -> RLEMask:
        if not isinstance(d, dict) or not {"width", "height", "rle"} <= d.keys():
            raise PointsError('mask: expected {"width": W, "height": H, "rle": [run, run, ...]}')
        width, height, rle = d["width"], d["height"], d["rle"]
        if not (_is_int(width) and _is_int(height)):
            raise PointsError(f"mask: width and height must be integers, got {_brief(width)}, {_brief(height)}")
        _check_size("mask", width, height)
        if not isinstance(rle, list):
            raise PointsError("mask: rle must be a list of integer run lengths")
        _check_run_count(len(rle), width, height)
        if not all(_is_int(r) for r in rle):
            raise PointsError("mask: rle must be a list of integer run lengths")
        return RLEMask(width, height, tuple(rle))


def mask_to_rle(mask: torch.Tensor) -> dict[str, Any]:
    """Encode a mask ((H, W), (1, H, W) or (1, 1, H, W); nonzero = editable) as the JSON ``mask`` value."""
    return RLEMask.from_tensor(mask).to_dict()


def mask_from_rle(d: dict[str, Any]) -> torch.Tensor:
    """Decode the JSON ``mask`` value to an (H, W) float tensor of 0/1."""
    return RLEMask.from_dict(d).to_tensor()


@dataclass(frozen=True)
class DragPoints:
    """Handle→target pairs in pixels (x, y) of a ``width``×``height`` image; immutable and validated."""

    pairs: tuple[tuple[Point, Point], ...]
    width: int
    height: int
    mask: RLEMask | None = field(default=None)

    def __post_init__(self) -> None:
        # Normalize to tuples of floats so equality and JSON round trips do not depend on the caller's types;
        # only numbers are coordinates (float() would also take "12", and a string is a sequence of characters).
        try:
            pairs = tuple((_point(h), _point(t)) for h, t in self.pairs)
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            raise PointsError(
                f"drag points: pairs must be ((hx, hy), (tx, ty)) finite numbers, got {_brief(self.pairs)}"
            ) from None
        object.__setattr__(self, "pairs", pairs)
        _validate(pairs, self.width, self.height)
        if self.mask is not None and not isinstance(self.mask, RLEMask):
            raise PointsError(f"drag points: mask must be an RLEMask or None, got {type(self.mask).__name__}")

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def handles(self) -> tuple[Point, ...]:
        return tuple(h for h, _ in self.pairs)

    @property
    def targets(self) -> tuple[Point, ...]:
        return tuple(t for _, t in self.pairs)

    def rescaled(self, width: int, height: int) -> DragPoints:
        """The same points on a ``width``×``height`` image (x·W'/W, y·H'/H); the mask keeps its own size."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height

        def scale(p: Point) -> Point:
            # Clamp guards the closed range [0, size] against float rounding at the far edge.
            return (min(p[0] * sx, float(width)), min(p[1] * sy, float(height)))

        pairs = tuple((scale(h), scale(t)) for h, t in self.pairs)
        return DragPoints(pairs, width, height, self.mask)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": POINTS_VERSION,
            "width": self.width,
            "height": self.height,
            "points": [{"handle": list(h), "target": list(t)} for h, t in self.pairs],
        }
        if self.mask is not None:
            d["mask"] = self.mask.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def mask_tensor(self) -> torch.Tensor | None:
        """The editor's mask as an (H, W) 0/1 tensor, or None."""
        return None if self.mask is None else self.mask.to_tensor()


def parse_points(text: str) -> DragPoints:
    """Parse the JSON format of the module docstring; raise :class:`PointsError` saying what was expected.

    Every size is checked against MAX_POINTS_JSON, MAX_SIDE and MAX_PAIRS before anything is allocated.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise PointsError(f"drag points must be JSON text, got {type(text).__name__}; expected e.g. {_EXAMPLE}")
    if len(text) > MAX_POINTS_JSON:
        raise PointsError(
            f"drag points: the value is {len(text)} characters, more than the limit of {MAX_POINTS_JSON}; "
            "simplify the painted mask (fewer, larger strokes), or leave it out and pass the mask as a MASK input"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PointsError(
            f"drag points are not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos}); "
            f"expected e.g. {_EXAMPLE}"
        ) from None
    except ValueError as e:  # e.g. an integer of more than sys.get_int_max_str_digits() digits; bad UTF-8
        raise PointsError(f"drag points are not valid JSON: {e}; expected e.g. {_EXAMPLE}") from None
    except RecursionError:
        raise PointsError(f"drag points are not valid JSON: nested too deeply; expected e.g. {_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise PointsError(f"drag points must be a JSON object, got {type(data).__name__}; expected e.g. {_EXAMPLE}")
    version = data.get("version")
    if version != POINTS_VERSION or isinstance(version, bool):
        got = "missing" if "version" not in data else repr(version)
        raise PointsError(f'drag points: "version" must be {POINTS_VERSION} (got {got}); expected e.g. {_EXAMPLE}')
    width, height = data.get("width"), data.get("height")
    if not (_is_int(width) and _is_int(height)) or width < 1 or height < 1:
        raise PointsError(
            f'drag points: "width" and "height" must be positive integers (the image size in pixels), '
            f"got {_brief(width)} and {_brief(height)}"
        )
    _check_size("drag points", width, height)
    raw = data.get("points")
    if not isinstance(raw, list) or not raw:
        raise PointsError(
            'drag points: "points" must be a non-empty list of pairs like {"handle": [x, y], "target": [x, y]}, '
            f"got {_brief(raw)}"
        )
    _check_pair_count(len(raw))
    pairs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "handle" not in item or "target" not in item:
            raise PointsError(
                f'points[{i}] (pair {i + 1}): expected {{"handle": [x, y], "target": [x, y]}}, got {_brief(item)}'
            )
        pairs.append((_coordinate(item["handle"], i, "handle"), _coordinate(item["target"], i, "target")))
    mask = RLEMask.from_dict(data["mask"]) if data.get("mask") is not None else None
    if mask is not None and (mask.width, mask.height) != (width, height):
        raise PointsError(
            f"drag points: the mask is {mask.width}×{mask.height} but the points are on a {width}×{height} image; "
            f"the mask must have the points' size (paint it again in the editor, or encode it at {width}×{height})"
        )
    return DragPoints(tuple(pairs), int(width), int(height), mask)


def grid_points(points: DragPoints, image_h: int, image_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Handles and targets as (N, 2) float tensors of (row, col) on the supervision grid (⌊H/2⌋, ⌊W/2⌋).

    Points placed on a differently sized image are rescaled first. As in the reference, the value
    pixel/size·grid is rounded in float32 with round-half-to-even. A point on the far edge (x = W)
    would round to col = grid_w, one past the grid, so coordinates are clamped to [0, grid − 1].
    """
    if (points.width, points.height) != (image_w, image_h):
        log.info(
            "drag points were placed on a %d×%d image; rescaling them to %d×%d",
            points.width,
            points.height,
            image_w,
            image_h,
        )
        points = points.rescaled(image_w, image_h)
    grid_h, grid_w = image_h // 2, image_w // 2
    if grid_h < 1 or grid_w < 1:
        raise PointsError(f"image {image_w}×{image_h} is too small for a supervision grid (needs ≥ 2 pixels a side)")

    def to_grid(ps: tuple[Point, ...]) -> torch.Tensor:
        rc = torch.tensor([[y / image_h * grid_h, x / image_w * grid_w] for x, y in ps], dtype=torch.float32)
        rc = torch.round(rc)
        rc[:, 0].clamp_(0, grid_h - 1)
        rc[:, 1].clamp_(0, grid_w - 1)
        return rc

    return to_grid(points.handles), to_grid(points.targets)


def to_pixels(grid: torch.Tensor, image_h: int, image_w: int) -> torch.Tensor:
    """Grid (row, col) → image pixels (x, y): the inverse of :func:`grid_points`' scaling (before rounding)."""
    grid_h, grid_w = image_h // 2, image_w // 2
    g = grid.float()
    return torch.stack([g[:, 1] * image_w / grid_w, g[:, 0] * image_h / grid_h], dim=-1)


def _validate(pairs: tuple[tuple[Point, Point], ...], width: int, height: int) -> None:
    if not (_is_int(width) and _is_int(height)) or width < 1 or height < 1:
        raise PointsError(
            f"drag points: width and height must be positive integers, got {_brief(width)}, {_brief(height)}"
        )
    _check_size("drag points", width, height)
    if not pairs:
        raise PointsError('drag points: no pairs; expected at least one {"handle": [x, y], "target": [x, y]}')
    _check_pair_count(len(pairs))
    for i, (handle, target) in enumerate(pairs):
        for name, (x, y) in (("handle", handle), ("target", target)):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise PointsError(f"points[{i}] (pair {i + 1}) {name} [{x}, {y}]: coordinates must be finite numbers")
            if not (0 <= x <= width and 0 <= y <= height):
                raise PointsError(
                    f"points[{i}] (pair {i + 1}) {name} [{x:g}, {y:g}] is outside the {width}×{height} image: "
                    f"expected 0 ≤ x ≤ {width} and 0 ≤ y ≤ {height}"
                )
        if handle == target:
            raise PointsError(
                f"points[{i}] (pair {i + 1}): handle equals target [{handle[0]:g}, {handle[1]:g}]; "
                "the target must differ from the handle"
            )


def _coordinate(value: Any, index: int, name: str) -> Point:
    where = f"points[{index}] (pair {index + 1}) {name}"
    if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) for v in value):
        raise PointsError(f"{where}: expected [x, y] with two numbers in pixels, got {_brief(value)}")
    try:
        x, y = float(value[0]), float(value[1])
    except OverflowError:  # an integer beyond float range (JSON allows ~4300 digits)
        x = y = math.inf
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointsError(f"{where}: coordinates must be finite numbers, got {_brief(value)}")
    return (x, y)


def _check_size(what: str, width: int, height: int) -> None:
    """Refuse a size that is not two positive ints, or has a side over MAX_SIDE."""
    if not (_is_int(width) and _is_int(height)) or width < 1 or height < 1:
        raise PointsError(f"{what}: width and height must be positive integers, got {_brief(width)}×{_brief(height)}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise PointsError(
            f"{what}: {_brief(width)}×{_brief(height)} pixels is larger than DragKit's limit of {MAX_SIDE} "
            f"pixels a side; scale the image down (SD1.5 works at 512–1024) and place the points on it"
        )


def _check_pair_count(count: int) -> None:
    if count > MAX_PAIRS:
        raise PointsError(
            f"drag points: {count} handle→target pairs, more than the limit of {MAX_PAIRS}; remove some pairs"
        )


def _check_run_count(count: int, width: int, height: int) -> None:
    """A minimal RLE has at most width·height + 1 runs (a leading empty zero run, then one run a pixel)."""
    if count > width * height + 1:
        raise PointsError(
            f"mask: {count} runs for a {width}×{height} mask, more than width·height + 1 = {width * height + 1}; "
            "encode it with alternating runs of 0 and 1 and no empty runs except the first"
        )


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 8


def _brief(value: Any) -> str:
    """repr() cut short for an error message: a refused value can be megabytes of JSON."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return f"<{type(value).__name__} too long to print>"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _point(p: Any) -> Point:
    """(x, y) as floats from a two-item sequence of real numbers; TypeError/ValueError otherwise."""
    if isinstance(p, (str, bytes, bytearray)) or len(p) != 2:
        raise ValueError("a point is two numbers")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in p):
        raise TypeError("coordinates must be numbers")
    return (float(p[0]), float(p[1]))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_2d(mask: torch.Tensor) -> torch.Tensor:
    if mask.dim() == 2:
        return mask
    if mask.dim() in (3, 4) and all(s == 1 for s in mask.shape[:-2]):
        return mask.reshape(mask.shape[-2:])
    raise PointsError(f"mask: expected shape (H, W), (1, H, W) or (1, 1, H, W), got {tuple(mask.shape)}")
