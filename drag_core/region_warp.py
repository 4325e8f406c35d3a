"""Region warp for drag-then-inpaint editing (Inpaint4Drag: Lu & Han, ICCV 2025).

The user paints the region to move and places handle → target pairs on it. The region is warped in
pixel space; the pixels the move revealed (and a thin seam around the moved region) form an inpaint
mask that any inpainting model then fills. No LoRA, no inversion, no optimization.

What the released code does (Visual-AI/Inpaint4Drag, ``utils/drag.py: bi_warp``) and this module
reproduces by default:

1. **Regions.** Every connected region of the binary mask (outer contour, holes filled) is warped on its
   own, by the pairs whose handle lies on it. A region without a handle stays where it is.
2. **Forward map.** A region pixel p moves by the inverse-distance weighted mean of the displacements
   t − h of its region's handles: weights 1/(|p − h| + 10⁻⁶) over the 4 nearest handles. One handle (or
   handles that all move alike) is a pure translation.
3. **Backward map** (so that the moved region has no holes and no folds). Up to 100 region pixels, evenly
   spaced in row-major order, are mapped forward; each carries the way back, p − (p + f(p)). A pixel q of
   the image takes its colour from q + b(q), b the inverse-distance weighted mean (4 nearest, same
   weights) of those ways back, rounded to the nearest pixel (nearest-neighbour copy).
4. **Inpaint mask.** (source region ∖ moved region) dilated by a k × k square, k = 5, united with a band
   of width k along the moved region's contour (the seam between pasted and kept pixels). k = 0: the
   revealed pixels alone.

Where this implementation differs, on purpose:

- The moved region is the set of pixels whose way back lands in the source region. The reference fills
  the forward-warped contour polygon instead (it needs OpenCV's rasterizer); for a translation both give
  the region shifted by the drag, for a deformation they can differ along the boundary.
- Rounding is half-up (⌊x + ½⌋), and a translation is applied exactly, so a drag of 10.5 px moves every
  pixel by the same 11 px (torch's round-half-to-even would move alternate columns by 10 and 11).
- A handle "lies on" a region when the pixel nearest to it does (the reference needs an exact integer
  match). A pair whose handle lies on no region is an error, not silently dropped.

Options (defaults = the reference): ``motion = "similarity"`` fits one rotation + uniform scale +
translation per region to its pairs by least squares (exact for 2 pairs) and maps both ways with it;
``sampling = "bilinear"`` samples the source at the exact, unrounded position; ``revealed = "fill"`` paints
the revealed pixels (the reference leaves the old content there) with a smooth guess from the pixels around
them that neither region covers (push-pull: mask-weighted averages down an image pyramid, then back up), so
an inpainting that starts from the warped picture — ComfyUI's Set Latent Noise Mask keeps it under the noise —
is not pulled back toward the object that left.

Coordinates: points are (x, y) in pixels, x right and y down, pixel (row i, column j) at (x = j, y = i).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

Point = tuple[float, float]

MAX_PIXELS = 4096 * 4096  # larger images are refused before anything is allocated
MAX_SIDE = 8192
MAX_PAIRS = 256
MOTIONS = ("inverse_distance", "similarity")
SAMPLINGS = ("nearest", "bilinear")
REVEALED = ("keep", "fill")
NEAREST = 4  # handles / reference points averaged, as in the reference
MAX_REFERENCES = 100  # forward-mapped region pixels that define the backward map, as in the reference
IDW_EPS = 1e-6
_CHUNK = 1 << 16  # target pixels per distance computation (bounds memory: _CHUNK × MAX_REFERENCES floats)


class WarpError(ValueError):
    """Input the region warp cannot use: ``field`` names it (image, region, pairs or an option), the message
    says what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class WarpResult:
    """The warped image and what it came from. Masks are (H, W) bool on the image's device."""

    image: torch.Tensor  # (H, W, C): moved regions pasted at their targets; nothing else changed
    inpaint_mask: torch.Tensor  # pixels an inpainting model should fill
    source_region: torch.Tensor  # the regions that moved, where they were
    moved_region: torch.Tensor  # the same regions where they are now


def region_warp(
    image: torch.Tensor,
    region: torch.Tensor,
    pairs: Sequence[tuple[Point, Point]],
    *,
    inpaint_dilation: int = 5,
    motion: str = "inverse_distance",
    sampling: str = "nearest",
    revealed: str = "keep",
) -> WarpResult:
    """Move the painted ``region`` of ``image`` (H, W, C) along the handle → target ``pairs``.

    ``region`` is (H, W), nonzero = paint. Runs on ``image``'s device. Raises :class:`WarpError` for an
    empty region, a region covering the whole image, a pair whose handle lies on no region, an image
    over :data:`MAX_PIXELS`, or options it does not know.
    """
    height, width = _check(image, region, pairs, inpaint_dilation, motion, sampling, revealed)
    device = image.device
    coordinates = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    labels = region_labels(region.to(device) > 0)
    handles = torch.tensor([h for h, _ in pairs], dtype=coordinates, device=device)
    targets = torch.tensor([t for _, t in pairs], dtype=coordinates, device=device)
    on = labels[_pixel(handles[:, 1], height), _pixel(handles[:, 0], width)]
    if bool((on == 0).any()):
        missing = [i for i in range(len(pairs)) if int(on[i]) == 0]
        where = "; ".join(f"pair {i + 1}: handle ({pairs[i][0][0]:g}, {pairs[i][0][1]:g})" for i in missing)
        raise WarpError(
            "pairs",
            f"{where} — not on the painted region to move. Paint over the content each handle should drag, "
            "or remove those pairs."
        )

    out = image.clone()
    source_region = torch.zeros(height, width, dtype=torch.bool, device=device)
    moved_region = torch.zeros_like(source_region)
    sources, destinations = [], []
    for label in dict.fromkeys(on.tolist()):  # regions in the order of their first pair
        component = labels == label
        mine = on == label
        where_from, where_to = _warp_component(component, handles[mine], targets[mine], motion)
        source_region |= component
        moved_region[where_to[:, 0], where_to[:, 1]] = True
        sources.append(where_from)
        destinations.append(where_to)
    # Every region reads the original picture; where moved regions overlap, the later region wins.
    for where_from, where_to in zip(sources, destinations):
        out[where_to[:, 0], where_to[:, 1]] = _sample(image, where_from, sampling)
    if revealed == "fill":
        hole = source_region & ~moved_region
        out = torch.where(hole[..., None], fill_from_surroundings(image, ~(source_region | moved_region)), out)
    return WarpResult(out, inpaint_mask(source_region, moved_region, inpaint_dilation), source_region, moved_region)


def inpaint_mask(source_region: torch.Tensor, moved_region: torch.Tensor, k: int) -> torch.Tensor:
    """(source ∖ moved) dilated by a k × k square ∪ a band of width k along the moved region's contour."""
    revealed = source_region & ~moved_region
    if k <= 0:
        return revealed
    k = k + 1 if k % 2 == 0 else k  # odd, centred, as the reference
    # The contour: moved pixels with a neighbour outside the moved region (outside the image does not count).
    inner = ~_dilate(~moved_region, 3, pad_value=False)
    contour = moved_region & ~inner
    return _dilate(revealed, k) | _dilate(contour, k)


def fill_from_surroundings(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(H, W, C): ``image`` where ``known``; elsewhere a smooth guess from the known pixels (push-pull).

    Pull: halve the picture repeatedly, each pixel the mean of its known children, until every pixel is known.
    Push: from the coarsest level back up, unknown pixels take the bilinear upsampling of the level above. With
    no known pixel at all the image is returned unchanged.
    """
    if not bool(known.any()):
        return image
    x = image.permute(2, 0, 1)[None]
    w = known.to(image.dtype)[None, None]
    levels = [(x, w)]
    while not bool((w > 0).all()):
        weight = F.avg_pool2d(w, 2, ceil_mode=True)
        x = F.avg_pool2d(x * w, 2, ceil_mode=True) / weight.clamp(min=1e-12)
        w = (weight > 0).to(image.dtype)
        levels.append((x, w))
    filled = levels[-1][0]
    for x, w in reversed(levels[:-1]):
        up = F.interpolate(filled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        filled = x * w + up * (1 - w)
    return filled[0].permute(1, 2, 0)


def region_labels(mask: torch.Tensor) -> torch.Tensor:
    """int64 (H, W): 0 outside, one positive label per 8-connected region, holes filled."""
    background = region_components(~mask, connectivity=4)
    border = torch.cat([background[0], background[-1], background[:, 0], background[:, -1]]).unique()
    outside = torch.isin(background, border[border > 0])
    return region_components(~outside, connectivity=8)


def region_components(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """int64 (H, W): 0 outside ``mask``; inside, the largest flat index + 1 of the pixel's component.

    Label propagation in the manner of Shiloach–Vishkin: a label names a pixel of the same component (its
    flat index + 1) whose own label is at least as large. Each round every pixel looks at its neighbours'
    labels and raises both its own label and that of the pixel its label names (hooking), then every label
    is replaced by the label it names until nothing changes (pointer jumping). Converges in a few rounds
    even for long winding regions; no loop runs over pixels.
    """
    height, width = mask.shape
    flat_mask = mask.reshape(-1)
    index = torch.arange(1, height * width + 1, device=mask.device, dtype=torch.int64)
    labels = torch.where(flat_mask, index, torch.zeros_like(index))
    for _ in range(height * width + 1):  # never reached: labels only grow and are bounded
        seen = _neighbour_max(labels.reshape(height, width), connectivity).reshape(-1) * flat_mask
        raised = torch.maximum(labels, seen)
        raised.scatter_reduce_(0, (labels - 1)[flat_mask], seen[flat_mask], reduce="amax")
        while True:
            jumped = torch.where(flat_mask, raised[(raised - 1).clamp(min=0)], raised)
            if torch.equal(jumped, raised):
                break
            raised = jumped
        if torch.equal(raised, labels):
            return labels.reshape(height, width)
        labels = raised
    raise AssertionError("region labelling did not converge")


# ---------------------------------------------------------------------------------------------- the maps


def _warp_component(component: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor, motion: str):
    """(sources (M, 2) float (row, col), destinations (M, 2) long (row, col)) for one region."""
    height, width = component.shape
    device = component.device
    rows, cols = torch.nonzero(component, as_tuple=True)
    pixels = torch.stack([cols, rows], dim=1).to(handles.dtype)  # (x, y), row-major order
    displacement = targets - handles
    if bool((displacement == displacement[0]).all()):
        forward = pixels + displacement[0]
        back = lambda q: q - displacement[0]  # noqa: E731  (exact translation)
    elif motion == "similarity":
        a, b = _fit_similarity(handles, targets)
        forward = _apply_similarity(pixels, a, b)
        inverse_a = 1.0 / a
        back = lambda q: _apply_similarity(q, inverse_a, -b * inverse_a)  # noqa: E731
    else:
        forward = pixels + _idw(pixels, handles, displacement)
        pick = torch.linspace(0, len(pixels) - 1, min(MAX_REFERENCES, len(pixels)), device=device).long()
        anchors, ways_back = forward[pick], pixels[pick] - forward[pick]
        back = lambda q: q + _idw(q, anchors, ways_back)  # noqa: E731

    # Candidates: every image pixel near the forward-mapped region; keep those whose way back lands on it.
    low = torch.floor(forward.min(0).values) - 2
    high = torch.ceil(forward.max(0).values) + 2
    x0, y0 = max(0, int(low[0])), max(0, int(low[1]))
    x1, y1 = min(width - 1, int(high[0])), min(height - 1, int(high[1]))
    sources, destinations = [], []
    if x1 >= x0 and y1 >= y0:
        ys, xs = torch.meshgrid(torch.arange(y0, y1 + 1, device=device), torch.arange(x0, x1 + 1, device=device),
                                indexing="ij")
        candidates = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).to(handles.dtype)
        for chunk in candidates.split(_CHUNK):
            position = back(chunk)
            px, py = _round(position[:, 0]), _round(position[:, 1])
            inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
            keep = inside.clone()
            keep[inside] = component[py[inside], px[inside]]
            sources.append(position[keep].flip(1))
            destinations.append(chunk[keep].flip(1).long())
    if not sources:
        return torch.zeros(0, 2, dtype=handles.dtype, device=device), torch.zeros(0, 2, dtype=torch.long, device=device)
    return torch.cat(sources), torch.cat(destinations)


def _idw(points: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Inverse-distance weighted mean of ``values`` at the (up to) 4 ``anchors`` nearest each point."""
    if len(anchors) == 1:
        return values.expand(len(points), -1)
    # The direct formula: the matrix-product shortcut loses the exact zero at a handle to cancellation.
    distance = torch.cdist(points, anchors, compute_mode="donot_use_mm_for_euclid_dist")
    nearest, which = distance.topk(min(NEAREST, len(anchors)), dim=1, largest=False)
    weights = 1.0 / (nearest + IDW_EPS)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return (weights.unsqueeze(-1) * values[which]).sum(dim=1)


def _fit_similarity(handles: torch.Tensor, targets: torch.Tensor) -> tuple[complex, complex]:
    """Least-squares t ≈ a·h + b with complex a (rotation and uniform scale) and b (translation)."""
    handles, targets = handles.cpu().double(), targets.cpu().double()  # a few pairs; complex128 everywhere
    h = torch.complex(handles[:, 0], handles[:, 1])
    t = torch.complex(targets[:, 0], targets[:, 1])
    hc, tc = h - h.mean(), t - t.mean()
    spread = float((hc.abs() ** 2).sum())
    if spread == 0.0:  # all handles on one point: the mean displacement
        return 1.0 + 0j, complex(t.mean() - h.mean())
    a = complex((tc * hc.conj()).sum() / spread)
    if abs(a) < 0.05:
        raise WarpError("pairs", "the targets squeeze the region to almost nothing (scale < 5 %): spread the targets apart.")
    return a, complex(t.mean() - a * h.mean())


def _apply_similarity(points: torch.Tensor, a: complex, b: complex) -> torch.Tensor:
    x, y = points[:, 0], points[:, 1]
    return torch.stack([a.real * x - a.imag * y + b.real, a.imag * x + a.real * y + b.imag], dim=1)


def _sample(image: torch.Tensor, positions: torch.Tensor, sampling: str) -> torch.Tensor:
    """Colours of ``image`` (H, W, C) at (row, col) ``positions``: the nearest pixel, or bilinear."""
    height, width = image.shape[:2]
    rows, cols = positions[:, 0], positions[:, 1]
    if sampling == "nearest":
        return image[_round(rows).clamp(0, height - 1), _round(cols).clamp(0, width - 1)]
    r0 = torch.floor(rows).clamp(0, height - 1)
    c0 = torch.floor(cols).clamp(0, width - 1)
    fr = (rows - r0).clamp(0, 1).unsqueeze(-1).to(image.dtype)
    fc = (cols - c0).clamp(0, 1).unsqueeze(-1).to(image.dtype)
    r0, c0 = r0.long(), c0.long()
    r1, c1 = (r0 + 1).clamp(max=height - 1), (c0 + 1).clamp(max=width - 1)
    top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
    bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
    return top * (1 - fr) + bottom * fr


# ---------------------------------------------------------------------------------------------- helpers


def _check(image, region, pairs, k, motion, sampling, revealed) -> tuple[int, int]:
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise WarpError("image", f"expected a (H, W, C) tensor, got {getattr(image, 'shape', type(image).__name__)}")
    height, width = int(image.shape[0]), int(image.shape[1])
    if height * width > MAX_PIXELS or max(height, width) > MAX_SIDE:
        raise WarpError(
            "image",
            f"image is {width}×{height}; the warp takes at most {MAX_PIXELS:,} pixels and {MAX_SIDE} px a side: "
            "scale the picture down first."
        )
    if not isinstance(region, torch.Tensor) or tuple(region.shape) != (height, width):
        got = tuple(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__
        raise WarpError("region", f"expected an (H, W) = ({height}, {width}) mask, got {got}")
    painted = region > 0
    if not bool(painted.any()):
        raise WarpError("region", "the region to move is empty: paint over the content the handles should drag.")
    if bool(painted.all()):
        raise WarpError(
            "region",
            "the region to move covers the whole image: nothing would stay in place and nothing could be filled "
            "in. Paint only the content to move."
        )
    if not pairs:
        raise WarpError("pairs", "no handle → target pairs: place at least one.")
    if len(pairs) > MAX_PAIRS:
        raise WarpError("pairs", f"{len(pairs)} pairs; the warp takes at most {MAX_PAIRS}.")
    try:
        finite = all(math.isfinite(float(v)) for pair in pairs for point in pair for v in point)
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise WarpError("pairs", "every pair must be ((hx, hy), (tx, ty)) with finite numbers in pixels.")
    if motion not in MOTIONS:
        raise WarpError("motion", f"expected one of {MOTIONS}, got {motion!r}")
    if sampling not in SAMPLINGS:
        raise WarpError("sampling", f"expected one of {SAMPLINGS}, got {sampling!r}")
    if revealed not in REVEALED:
        raise WarpError("revealed", f"expected one of {REVEALED}, got {revealed!r}")
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 255:
        raise WarpError("inpaint_dilation", f"expected an integer from 0 to 255 px, got {k!r}")
    return height, width


def _round(x: torch.Tensor) -> torch.Tensor:
    """Half-up rounding to long (torch.round is half-to-even, which splits a half-pixel shift)."""
    return torch.floor(x + 0.5).long()


def _pixel(coordinate: torch.Tensor, size: int) -> torch.Tensor:
    return _round(coordinate).clamp(0, size - 1)


def _neighbour_max(labels: torch.Tensor, connectivity: int) -> torch.Tensor:
    """The largest label in each pixel's 3 × 3 (8) or cross (4) neighbourhood, itself included."""
    padded = F.pad(labels, (1, 1, 1, 1))
    height, width = labels.shape
    out = labels
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if (di or dj) and (connectivity == 8 or di == 0 or dj == 0):
                out = torch.maximum(out, padded[1 + di : 1 + di + height, 1 + dj : 1 + dj + width])
    return out


def _dilate(mask: torch.Tensor, k: int, pad_value: bool = False) -> torch.Tensor:
    """bool (H, W) dilated by a k × k square (k odd); outside the image counts as ``pad_value``."""
    x = mask.to(torch.float32)[None, None]
    x = F.pad(x, (k // 2,) * 4, value=float(pad_value))
    return F.max_pool2d(x, k, stride=1)[0, 0] > 0
