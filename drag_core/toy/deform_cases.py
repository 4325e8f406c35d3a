"""ToyBench's deformation set: one object turned or scaled about a point, given by 2–3 pairs that move apart.

Translation cases flatter a warp (every handle moves alike). Here each case turns one object by 10–30°
either way, or scales it by 0.75–0.9 or 1.1–1.33, about a pivot near its centre; 2 or 3 handles on the
object, spread around it, each move to where the true deformation takes them (so their offsets differ),
at least ``MIN_DRAG`` px. The generator renders the true edit exactly (``world.transformed``).

Scoring: the centroid barely moves under a turn, so ``md`` is not a centroid distance here. The dragged
object's colour segment in the result is compared with the one in the source: its pose relative to the
source (translation from the centroids, scale from the areas, turn by the best overlap of the source
segment mapped onto the result segment, searched within the shape's symmetry) maps each handle, and
``md`` is the mean distance between the mapped handles and their targets — 0 for the true edit, the mean
drag distance for an unedited result (or when the object is not found). Other fields as ``bench_cases.score``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .bench_cases import (
    CASE_GAP,
    CASE_MARGIN,
    MASK_DILATION,
    MIN_FOUND_FRACTION,
    REGION_DILATION,
    SUCCESS_PX,
    as_image,
    dilate,
    psnr,
)
from .world import Scene, centroid, contains, inside, object_mask, render, sample_scene, segment, separated, transformed

log = logging.getLogger(__name__)

Point = tuple[float, float]

ANGLE_RANGE = (10.0, 30.0)  # degrees, either way
SCALE_RANGES = ((0.75, 0.9), (1.1, 1.33))
SIZE_RANGE = (0.14, 0.2)  # object size as a fraction of the image: larger than the translation set's
MIN_DRAG = 3.5  # px, every handle moves at least this far (more than SUCCESS_PX: doing nothing never succeeds)
PIVOT_JITTER = 0.25  # the pivot lies within this fraction of the object's size from its centre
HANDLE_DEPTH = 0.8  # handles lie inside the shape shrunk to this fraction of its size
SYMMETRY = {"square": 90.0, "diamond": 90.0, "triangle": 120.0}  # degrees; a disk's turn cannot be seen


@dataclass(frozen=True)
class DeformCase:
    """Turn ``scene.objects[object_index]`` by ``angle`` degrees (clockwise on screen) and scale it by ``scale``
    about ``pivot``. ``pairs``, ``mask`` and ``region`` as in :class:`bench_cases.EditCase`."""

    id: int
    scene: Scene
    pairs: tuple[tuple[Point, Point], ...]
    object_index: int
    pivot: Point
    angle: float
    scale: float
    mask: np.ndarray = field(compare=False, repr=False)
    region: np.ndarray = field(compare=False, repr=False)

    @property
    def target_scene(self) -> Scene:
        return transformed(self.scene, self.object_index, self.pivot, self.angle, self.scale)

    @property
    def distance(self) -> float:
        """The mean handle → target distance in px."""
        return float(np.mean([math.hypot(t[0] - h[0], t[1] - h[1]) for h, t in self.pairs]))


def _deformation(pivot: Point, angle: float, scale: float):
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def apply(p: Point) -> Point:
        u, v = p[0] - pivot[0], p[1] - pivot[1]
        return pivot[0] + scale * (c * u - s * v), pivot[1] + scale * (s * u + c * v)

    return apply


def _handles(obj, count: int, phase: float) -> list[Point]:
    """``count`` points spread around the object, each as far out as the shape shrunk to HANDLE_DEPTH allows."""
    shrunk = type(obj)(obj.shape, obj.colour, obj.size * HANDLE_DEPTH, obj.x, obj.y, obj.angle)
    radii = np.linspace(obj.size, 0.0, 64)
    points = []
    for k in range(count):
        phi = phase + 2.0 * math.pi * k / count
        xs, ys = obj.x + radii * math.cos(phi), obj.y + radii * math.sin(phi)
        first = int(np.argmax(contains(shrunk, xs, ys)))  # the outermost radius inside
        points.append((float(xs[first]), float(ys[first])))
    return points


def _try_case(case_id: int, scene: Scene, rng: np.random.Generator) -> DeformCase | None:
    turn = bool(rng.random() < 0.5)
    candidates = [k for k, o in enumerate(scene.objects) if not turn or o.shape != "disk"]
    if not candidates:
        return None
    index = candidates[int(rng.integers(len(candidates)))]
    obj = scene.objects[index]
    others = [o for k, o in enumerate(scene.objects) if k != index]
    for _ in range(20):
        if turn:
            angle, scale = float(rng.uniform(*ANGLE_RANGE)) * (1 if rng.random() < 0.5 else -1), 1.0
        else:
            angle, scale = 0.0, float(rng.uniform(*SCALE_RANGES[int(rng.integers(2))]))
        r, phi = PIVOT_JITTER * obj.size * math.sqrt(rng.random()), float(rng.uniform(0, 2 * math.pi))
        pivot = (obj.x + r * math.cos(phi), obj.y + r * math.sin(phi))
        handles = _handles(obj, int(rng.integers(2, 4)), float(rng.uniform(0, 2 * math.pi)))
        move = _deformation(pivot, angle, scale)
        pairs = tuple((h, move(h)) for h in handles)
        after = transformed(scene, index, pivot, angle, scale)
        new = after.objects[index]
        if min(math.hypot(t[0] - h[0], t[1] - h[1]) for h, t in pairs) < MIN_DRAG:
            continue
        if not inside(new, scene.size, CASE_MARGIN) or not all(separated(new, o, CASE_GAP) for o in others):
            continue
        mask = dilate(object_mask(scene, index) | object_mask(after, index), MASK_DILATION)
        region = dilate(object_mask(scene, index), REGION_DILATION)
        return DeformCase(case_id, scene, pairs, index, pivot, angle, scale, mask, region)
    return None


def make_deform_cases(n: int = 25, seed: int = 4321, size: int = 128) -> list[DeformCase]:
    """``n`` deformation cases, deterministic for ``seed``, alternating neither turns nor scales by design."""
    rng = np.random.default_rng(seed)
    lo, hi = SIZE_RANGE[0] * size, SIZE_RANGE[1] * size
    cases: list[DeformCase] = []
    while len(cases) < n:
        case = _try_case(len(cases), sample_scene(rng, size, size_range=(lo, hi)), rng)
        if case is not None:
            cases.append(case)
    return cases


# ---------------------------------------------------------------------------------------------- scoring


def fit_pose(source: np.ndarray, result: np.ndarray, period: float | None) -> tuple[Point, Point, float, float]:
    """(source centroid, result centroid, scale, turn in degrees) that best map segment ``source`` onto ``result``.

    The translation comes from the centroids. The turn is searched in [−period/2, period/2) in 1° steps
    (None: no turn), then turn and scale together around the best turn (±1° in 0.05° steps) and the scale
    that the areas give (±6 % in 0.5 % steps), by the overlap (IoU) of the source segment mapped onto the
    result. A small change can leave every rounded pixel alone, so the best overlap is a plateau: its centre
    is taken, or no change at all when the plateau holds it (an unedited result keeps exactly no turn and
    scale 1).
    """
    c0, c1 = centroid(source), centroid(result)
    area_scale = math.sqrt(result.sum() / source.sum())
    rows, cols = np.nonzero(dilate(result, 3))
    height, width = source.shape
    target = result[rows, cols]

    def overlap(angles: np.ndarray, scale: float) -> np.ndarray:
        a = np.radians(angles)[:, None]
        u, v = (cols - c1[0]) / scale, (rows - c1[1]) / scale
        x = np.floor(c0[0] + np.cos(a) * u + np.sin(a) * v + 0.5).astype(int)  # the inverse turn
        y = np.floor(c0[1] - np.sin(a) * u + np.cos(a) * v + 0.5).astype(int)
        ok = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        back = np.zeros(x.shape, dtype=bool)
        back[ok] = source[y[ok], x[ok]]
        return (back & target).sum(1) / np.maximum((back | target).sum(1), 1)

    best = 0.0
    if period is not None:
        coarse = np.arange(-period / 2, period / 2, 1.0)
        iou = overlap(coarse, area_scale)
        best = float(min(coarse[iou == iou.max()], key=abs))
    angles = best + np.arange(-20, 21) * 0.05 if period is not None else np.zeros(1)
    scales = area_scale * (1.0 + np.arange(-12, 13) * 0.005)
    grid = np.stack([overlap(angles, s) for s in scales])  # (scales, angles)
    on_top = np.argwhere(grid == grid.max())
    scale, turn = scales[on_top[:, 0]], angles[on_top[:, 1]]
    if bool(((scale == 1.0) & (turn == 0.0)).any()):
        return c0, c1, 1.0, 0.0
    return c0, c1, float(scale.mean()), float(turn.mean())


def score(case: DeformCase, result) -> dict[str, float | bool | int]:
    """Score a result (H, W, 3) in [0, 1] against ``case`` (see the module docstring); keys as ``bench_cases.score``."""
    source, truth = render(case.scene), render(case.target_scene)
    img = as_image(result, case.scene.size)
    obj = case.scene.objects[case.object_index]
    src_seg, seg = segment(source, obj.colour), segment(img, obj.colour)
    found = bool(seg.sum() >= MIN_FOUND_FRACTION * segment(truth, obj.colour).sum())
    handles = np.array([h for h, _ in case.pairs])
    targets = np.array([t for _, t in case.pairs])
    mapped = handles
    if found:
        c0, c1, scale, turn = fit_pose(src_seg, seg, SYMMETRY.get(obj.shape))
        a = math.radians(turn)
        rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        mapped = np.asarray(c1) + scale * (handles - np.asarray(c0)) @ rotation.T
    md = float(np.mean(np.hypot(*(mapped - targets).T)))
    return {
        "id": case.id,
        "md": md,
        "success": md <= SUCCESS_PX,
        "found": found,
        "background_psnr": psnr(img, source, ~case.mask),
        "gt_psnr": psnr(img, truth),
        "progress": 1.0 - md / case.distance,
        "initial_distance": case.distance,
    }
