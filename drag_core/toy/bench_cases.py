"""ToyBench: fixed drag-edit cases in the toy world, scored against the rendered true edit.

A case drags one object of a toy scene by 8–32 px in a random direction (the moved object stays inside
the image and clear of the others). ``score`` measures a method's result by segmenting the dragged
object's colour: ``md`` is how far its centroid lies from where the true edit puts it, ``success`` is
md ≤ 3 px, ``background_psnr`` compares the result with the source outside the editable mask and
``gt_psnr`` compares it with the true edit everywhere. PSNRs are capped at ``PSNR_CAP`` dB so that
identical images (infinite PSNR) average cleanly.

Reference methods: ``do_nothing`` (the source; md = the drag distance) is the floor and ``copy_paste``
(the generator's own render of the moved scene; md = 0, gt_psnr = cap) is the ceiling.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..points import DragPoints, RLEMask
from .world import (
    Scene,
    centroid,
    inside,
    moved,
    object_mask,
    render,
    sample_scene,
    segment,
    separated,
)

log = logging.getLogger(__name__)

Point = tuple[float, float]

DRAG_RANGE = (8.0, 32.0)  # px, drag distance drawn uniformly
MASK_DILATION = 4  # px, the editable mask is the old ∪ new object dilated by this disk radius
REGION_DILATION = 3  # px, the region to move (region warp) is the object at its source dilated by this radius
CASE_GAP = 6.0  # px between the moved object and the others: the dilated mask never touches them
CASE_MARGIN = 2.0  # px between the moved object and the image border
SUCCESS_PX = 3.0  # md at or below this counts as a success
PSNR_CAP = 100.0  # dB, reported for identical images
MIN_FOUND_FRACTION = 0.1  # the object counts as found if ≥ this fraction of its true area is segmented


@dataclass(frozen=True)
class EditCase:
    """One ToyBench case: drag ``scene.objects[object_index]`` by ``offset`` = (dx, dy) px.

    ``pairs`` are handle→target pairs ((hx, hy), (tx, ty)) in pixels (x right, y down, pixel centres at
    integer coordinates): the first handle is the object's centre, an optional second one another point
    on the object; all share the offset. ``mask`` is bool (H, W), True = editable. ``region`` is the rough
    region a user paints around the object to move it (a region warp's input): the object at its source
    dilated by ``REGION_DILATION`` px, never its exact outline.
    """

    id: int
    scene: Scene
    pairs: tuple[tuple[Point, Point], ...]
    object_index: int
    offset: tuple[float, float]
    mask: np.ndarray = field(compare=False, repr=False)
    region: np.ndarray = field(compare=False, repr=False)

    @property
    def target_scene(self) -> Scene:
        """The ground-truth edited scene."""
        return moved(self.scene, self.object_index, *self.offset)

    @property
    def distance(self) -> float:
        """The drag distance |offset| in px."""
        return math.hypot(*self.offset)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool (H, W): ``mask`` dilated by a disk of ``radius`` px (pixels within that distance of the mask)."""
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    h, w = mask.shape
    for di in range(-radius, radius + 1):
        for dj in range(-radius, radius + 1):
            if (di or dj) and di * di + dj * dj <= radius * radius:
                src = mask[max(0, -di) : h - max(0, di), max(0, -dj) : w - max(0, dj)]
                out[max(0, di) : h - max(0, -di), max(0, dj) : w - max(0, -dj)] |= src
    return out


def _try_case(case_id: int, scene: Scene, rng: np.random.Generator) -> EditCase | None:
    if not scene.objects:
        return None
    index = int(rng.integers(len(scene.objects)))
    obj = scene.objects[index]
    for _ in range(20):
        dist = float(rng.uniform(*DRAG_RANGE))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        dx, dy = dist * math.cos(angle), dist * math.sin(angle)
        after = moved(scene, index, dx, dy)
        new = after.objects[index]
        others = [o for k, o in enumerate(scene.objects) if k != index]
        if not inside(new, scene.size, CASE_MARGIN) or not all(separated(new, o, CASE_GAP) for o in others):
            continue
        pairs: list[tuple[Point, Point]] = [((obj.x, obj.y), (obj.x + dx, obj.y + dy))]
        if rng.random() < 0.5:
            # 0.4·size from the centre is inside every shape (the triangle's inradius is 0.5·size).
            phi = float(rng.uniform(0.0, 2.0 * math.pi))
            hx, hy = obj.x + 0.4 * obj.size * math.cos(phi), obj.y + 0.4 * obj.size * math.sin(phi)
            pairs.append(((hx, hy), (hx + dx, hy + dy)))
        mask = dilate(object_mask(scene, index) | object_mask(after, index), MASK_DILATION)
        region = dilate(object_mask(scene, index), REGION_DILATION)
        return EditCase(case_id, scene, tuple(pairs), index, (dx, dy), mask, region)
    return None


def make_cases(n: int = 50, seed: int = 1234, size: int = 128) -> list[EditCase]:
    """ToyBench's ``n`` fixed cases, deterministic for ``seed`` (scenes that admit no valid drag are skipped)."""
    rng = np.random.default_rng(seed)
    cases: list[EditCase] = []
    skipped = 0
    while len(cases) < n:
        case = _try_case(len(cases), sample_scene(rng, size), rng)
        if case is None:
            skipped += 1
            continue
        cases.append(case)
    log.debug("made %d ToyBench cases (seed %d, %d px), skipped %d scenes", n, seed, size, skipped)
    return cases


def case_points(case, region: bool = False) -> DragPoints:
    """A case (this module's or ``deform_cases``') as the points a user places: its pairs on its picture with its
    editable mask painted, or (``region``) the region to move painted instead (RegionWarp's input)."""
    size = case.scene.size
    mask = case.region if region else case.mask
    return DragPoints(case.pairs, size, size, RLEMask.from_tensor(torch.from_numpy(mask.astype(np.float32))))


# ---------------------------------------------------------------------------------------------- scoring


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB of two [0, 1] images over the pixels ``where`` (bool (H, W)); capped at ``PSNR_CAP``.

    NaN when ``where`` selects no pixel.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if where is not None:
        diff = diff[np.asarray(where, dtype=bool)]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff * diff))
    if mse <= 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(1.0 / mse))


def as_image(result: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """A result as float32 (size, size, 3); a ComfyUI IMAGE batch of one is accepted."""
    if isinstance(result, torch.Tensor):
        result = result.detach().to("cpu", torch.float32).numpy()
    img = np.asarray(result, dtype=np.float32)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.shape != (size, size, 3):
        raise ValueError(f"result: expected ({size}, {size}, 3) (or a batch of one), got {img.shape}")
    return img


def score(case: EditCase, result: np.ndarray | torch.Tensor) -> dict[str, float | bool | int]:
    """Score a method's result (H, W, 3) float in [0, 1] (a ComfyUI IMAGE batch of one is accepted).

    - ``md``: px between the centroid of the dragged object's colour segment in the result and in the
      rendered true edit. If the object is not found (segment smaller than ``MIN_FOUND_FRACTION`` of its
      true area) it counts as not moved: md = distance from its source centroid to the true one, i.e.
      the drag distance, the same as doing nothing; ``found`` is then False.
    - ``success``: md ≤ ``SUCCESS_PX``.
    - ``background_psnr``: PSNR vs the source over pixels outside ``case.mask``.
    - ``gt_psnr``: PSNR vs the rendered true edit over the whole image.
    - ``progress``: how far the object's centroid travelled along the drag, as a fraction of the true
      displacement (0 = not moved, 1 = arrived; sideways motion does not count).
    - ``initial_distance``: |offset|. PSNRs are capped at ``PSNR_CAP`` dB.
    """
    source = render(case.scene)
    truth = render(case.target_scene)
    img = as_image(result, case.scene.size)
    colour = case.scene.objects[case.object_index].colour
    true_seg = segment(truth, colour)
    true_c = centroid(true_seg)
    src_c = centroid(segment(source, colour))
    if true_c is None or src_c is None:
        raise ValueError(f"case {case.id}: the {colour} object is not visible in its own render")
    seg = segment(img, colour)
    found = bool(seg.sum() >= MIN_FOUND_FRACTION * true_seg.sum())
    got = (centroid(seg) if found else None) or src_c
    md = math.hypot(got[0] - true_c[0], got[1] - true_c[1])
    wanted = (true_c[0] - src_c[0], true_c[1] - src_c[1])
    travelled = (got[0] - src_c[0], got[1] - src_c[1])
    progress = (travelled[0] * wanted[0] + travelled[1] * wanted[1]) / max(wanted[0] ** 2 + wanted[1] ** 2, 1e-9)
    return {
        "id": case.id,
        "md": md,
        "success": md <= SUCCESS_PX,
        "found": found,
        "background_psnr": psnr(img, source, ~case.mask),
        "gt_psnr": psnr(img, truth),
        "progress": progress,
        "initial_distance": case.distance,
    }


def summarize(rows: list[dict]) -> dict[str, float]:
    """Means over cases of md, PSNRs and initial distance; success and found rates; md / mean initial distance."""
    if not rows:
        raise ValueError("summarize: no rows")
    out: dict[str, float] = {"n": float(len(rows))}
    for key in ("md", "background_psnr", "gt_psnr", "initial_distance"):
        out[key] = float(np.nanmean([float(r[key]) for r in rows]))
    out["success_rate"] = float(np.mean([bool(r["success"]) for r in rows]))
    out["found_rate"] = float(np.mean([bool(r.get("found", True)) for r in rows]))
    out["md_fraction"] = out["md"] / out["initial_distance"] if out["initial_distance"] > 0 else float("nan")
    return out


# ---------------------------------------------------------------------------------------------- reference methods


def do_nothing(case: EditCase) -> np.ndarray:
    """The floor: the source image, unedited."""
    return render(case.scene)


def copy_paste(case: EditCase) -> np.ndarray:
    """The ceiling: the generator's render of the moved scene (the object pasted exactly at the target)."""
    return render(case.target_scene)
