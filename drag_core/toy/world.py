"""The toy world: 1–3 coloured shapes on a plain or gradient background, deterministic from a seed.

Coordinates are in pixels with x to the right and y down; pixel (row i, col j) has its centre at
(x=j, y=i), so an image of ``size`` pixels spans [-0.5, size - 0.5] and a drag handle on an object's
centre is simply (obj.x, obj.y). Every shape is centred on its area centroid, so the centroid of its
mask is (x, y):

- disk: radius ``size``;
- square: axis-aligned, half-side ``size``;
- diamond: a square rotated by 45°, vertices at distance ``size`` from the centre;
- triangle: equilateral, apex up, circumradius ``size`` (top at y - size, base at y + size/2).

A shape may be turned by ``angle`` degrees about its centre, clockwise on screen (the standard rotation of
(x, y) with y pointing down); ``transformed`` turns and scales an object about any point (ToyBench's
deformation cases). Angle 0 draws exactly what an unrotated shape always drew.

Rendering supersamples 4×4 per pixel and box-averages, so edges are anti-aliased; objects are composited
in order (later on top). Captions read e.g. "a red disk and an orange square on a grey background" or
"a red disk, a blue square and a white triangle on a grey to beige vertical gradient".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np

log = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "diamond")

# Saturated object colours, pairwise ≥ 0.38 apart in RGB (red/orange and orange/yellow are the closest).
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "yellow": (1.00, 0.92, 0.10),
    "green": (0.10, 0.80, 0.15),
    "cyan": (0.10, 0.85, 0.95),
    "blue": (0.12, 0.25, 1.00),
    "magenta": (0.90, 0.12, 0.90),
    "white": (1.00, 1.00, 1.00),
}

# Muted background colours: every colour on a gradient between two of them is ≥ 0.45 from every object colour.
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "grey": (0.50, 0.50, 0.50),
    "beige": (0.80, 0.74, 0.60),
    "brown": (0.40, 0.28, 0.18),
    "dark blue": (0.10, 0.12, 0.28),
    "dark green": (0.10, 0.25, 0.14),
    "black": (0.04, 0.04, 0.04),
}

GRADIENTS: tuple[str, ...] = ("vertical", "horizontal")

SUPERSAMPLE = 4
DEFAULT_SIZE_RANGE = (0.08, 0.16)  # object size (radius / half-side) as a fraction of the image size
DEFAULT_MARGIN = 4.0  # px kept free between every object and the image border
DEFAULT_GAP = 3.0  # px kept free between the bounding circles of two objects

_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_RGB = np.array([PALETTE[c] for c in _PALETTE_NAMES], dtype=np.float32)
_SQRT3_2 = math.sqrt(3.0) / 2.0


@dataclass(frozen=True)
class ToyObject:
    """One shape: ``size`` is its radius / half-side in px, (x, y) its centre (= area centroid) in px."""

    shape: str
    colour: str
    size: float
    x: float
    y: float
    angle: float = 0.0  # degrees, clockwise on screen, about (x, y)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape: expected one of {SHAPES}, got {self.shape!r}")
        if self.colour not in PALETTE:
            raise ValueError(f"colour: expected one of {tuple(PALETTE)}, got {self.colour!r}")
        if not self.size > 0:
            raise ValueError(f"size: expected > 0, got {self.size}")


@dataclass(frozen=True)
class Scene:
    """Objects in drawing order on a plain background, or a gradient from ``background`` to ``background2``.

    A vertical gradient runs from ``background`` at the top row to ``background2`` at the bottom row, a
    horizontal one from the left column to the right column. ``size`` is the image side in pixels.
    """

    objects: tuple[ToyObject, ...]
    background: str
    background2: str | None = None
    gradient: str | None = None
    size: int = 128

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background: expected one of {tuple(BACKGROUNDS)}, got {self.background!r}")
        if (self.background2 is None) != (self.gradient is None):
            raise ValueError("background2 and gradient must be given together (or both be None)")
        if self.background2 is not None and self.background2 not in BACKGROUNDS:
            raise ValueError(f"background2: expected one of {tuple(BACKGROUNDS)}, got {self.background2!r}")
        if self.gradient is not None and self.gradient not in GRADIENTS:
            raise ValueError(f"gradient: expected one of {GRADIENTS} or None, got {self.gradient!r}")
        if self.size < 8:
            raise ValueError(f"size: expected ≥ 8 px, got {self.size}")


# ---------------------------------------------------------------------------------------------- geometry


def extent(obj: ToyObject) -> tuple[float, float, float, float]:
    """The exact bounding box (left, top, right, bottom) of the shape, in px."""
    s = obj.size
    if obj.angle and obj.shape != "disk":
        xs, ys = zip(*(_rotate(u, v, obj.angle) for u, v in _VERTICES[obj.shape]))
        return obj.x + s * min(xs), obj.y + s * min(ys), obj.x + s * max(xs), obj.y + s * max(ys)
    if obj.shape == "triangle":
        return obj.x - s * _SQRT3_2, obj.y - s, obj.x + s * _SQRT3_2, obj.y + s / 2.0
    return obj.x - s, obj.y - s, obj.x + s, obj.y + s


def bounding_radius(obj: ToyObject) -> float:
    """The radius of the smallest circle around (x, y) that contains the shape."""
    return obj.size * math.sqrt(2.0) if obj.shape == "square" else obj.size


def inside(obj: ToyObject, size: int, margin: float = 0.0) -> bool:
    """Whether the shape lies within the image with at least ``margin`` px to spare on every side."""
    left, top, right, bottom = extent(obj)
    lo, hi = margin - 0.5, size - 0.5 - margin
    return left >= lo and top >= lo and right <= hi and bottom <= hi


def separated(a: ToyObject, b: ToyObject, gap: float = 0.0) -> bool:
    """Whether the bounding circles of two shapes are at least ``gap`` px apart (so the shapes cannot touch)."""
    return math.hypot(a.x - b.x, a.y - b.y) >= bounding_radius(a) + bounding_radius(b) + gap


# Vertices of the polygons at size 1, unrotated (x right, y down).
_VERTICES = {
    "square": ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)),
    "diamond": ((0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)),
    "triangle": ((0.0, -1.0), (_SQRT3_2, 0.5), (-_SQRT3_2, 0.5)),
}


def _rotate(u, v, degrees: float):
    """(u, v) turned by ``degrees`` clockwise on screen (y down): the standard rotation matrix."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return c * u - s * v, s * u + c * v


def transformed(scene: Scene, index: int, pivot: tuple[float, float], angle: float, scale: float) -> Scene:
    """The ground truth of a deformation: object ``index`` turned by ``angle`` degrees (clockwise on screen) and
    scaled by ``scale`` about ``pivot`` = (x, y); everything else identical."""
    obj = scene.objects[index]
    du, dv = _rotate(obj.x - pivot[0], obj.y - pivot[1], angle)
    objects = list(scene.objects)
    objects[index] = replace(obj, x=pivot[0] + scale * du, y=pivot[1] + scale * dv, size=obj.size * scale,
                             angle=obj.angle + angle)
    return replace(scene, objects=tuple(objects))


def _inside_shape(shape: str, s: float, u: np.ndarray, v: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """Point-in-shape test for offsets (u, v) from the centre (broadcasting), the shape turned by ``angle``."""
    if angle and shape != "disk":
        u, v = _rotate(u, v, -angle)
    if shape == "disk":
        return u * u + v * v <= s * s
    if shape == "square":
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= s
    # Equilateral triangle, apex up, centroid at the origin: the inradius is s/2 and the outward side
    # normals are (0, 1), (±√3/2, -1/2).
    return (v <= s / 2.0) & (_SQRT3_2 * np.abs(u) - 0.5 * v <= s / 2.0)


def contains(obj: ToyObject, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """Whether the points (x, y) lie inside the shape (broadcasting; edges count as inside)."""
    return _inside_shape(obj.shape, obj.size, np.asarray(x, float) - obj.x, np.asarray(y, float) - obj.y, obj.angle)


def _coverage_patch(obj: ToyObject, size: int, supersample: int = SUPERSAMPLE) -> tuple[int, int, np.ndarray]:
    """(i0, j0, patch): the fraction of each pixel the shape covers, on the pixels of its bounding box."""
    left, top, right, bottom = extent(obj)
    j0, j1 = max(0, math.floor(left)), min(size, math.ceil(right) + 1)
    i0, i1 = max(0, math.floor(top)), min(size, math.ceil(bottom) + 1)
    if j1 <= j0 or i1 <= i0:
        return 0, 0, np.zeros((0, 0), dtype=np.float32)
    sub = (np.arange(supersample, dtype=np.float64) + 0.5) / supersample - 0.5
    xs = (np.arange(j0, j1, dtype=np.float64)[:, None] + sub[None, :]).reshape(-1) - obj.x
    ys = (np.arange(i0, i1, dtype=np.float64)[:, None] + sub[None, :]).reshape(-1) - obj.y
    hit = _inside_shape(obj.shape, obj.size, xs[None, :], ys[:, None], obj.angle)
    patch = hit.reshape(i1 - i0, supersample, j1 - j0, supersample).mean(axis=(1, 3), dtype=np.float32)
    return i0, j0, patch


def coverage(obj: ToyObject, size: int) -> np.ndarray:
    """float32 (size, size): the fraction of each pixel the shape covers (ignoring other objects)."""
    out = np.zeros((size, size), dtype=np.float32)
    i0, j0, patch = _coverage_patch(obj, size)
    out[i0 : i0 + patch.shape[0], j0 : j0 + patch.shape[1]] = patch
    return out


# ---------------------------------------------------------------------------------------------- scenes


def sample_scene(
    rng: np.random.Generator,
    size: int = 128,
    max_objects: int = 3,
    *,
    min_objects: int = 1,
    size_range: tuple[float, float] | None = None,
    margin: float = DEFAULT_MARGIN,
    gap: float = DEFAULT_GAP,
    gradient_prob: float = 0.5,
) -> Scene:
    """A random scene: ``min_objects``..``max_objects`` shapes with distinct colours, none touching.

    ``size_range`` is the (min, max) object size in px (default 8 %–16 % of ``size``). Each object is
    placed by rejection sampling (200 tries, keeping ``margin`` px from the border and ``gap`` px between
    bounding circles); an object that finds no room is dropped, so very crowded settings may yield fewer
    objects than drawn. Deterministic for the generator's state.
    """
    if not 1 <= min_objects <= max_objects <= len(PALETTE):
        raise ValueError(f"expected 1 ≤ min_objects ≤ max_objects ≤ {len(PALETTE)}, got {min_objects}, {max_objects}")
    lo, hi = size_range if size_range is not None else (DEFAULT_SIZE_RANGE[0] * size, DEFAULT_SIZE_RANGE[1] * size)
    n = int(rng.integers(min_objects, max_objects + 1))
    colours = [_PALETTE_NAMES[k] for k in rng.choice(len(_PALETTE_NAMES), size=n, replace=False)]
    shapes = [SHAPES[k] for k in rng.integers(0, len(SHAPES), size=n)]
    bg_names = tuple(BACKGROUNDS)
    background = bg_names[int(rng.integers(len(bg_names)))]
    background2 = gradient = None
    if rng.random() < gradient_prob:
        others = [b for b in bg_names if b != background]
        background2 = others[int(rng.integers(len(others)))]
        gradient = GRADIENTS[int(rng.integers(len(GRADIENTS)))]

    placed: list[ToyObject] = []
    for shape, colour in zip(shapes, colours):
        for _ in range(200):
            s = float(rng.uniform(lo, hi))
            probe = ToyObject(shape, colour, s, 0.0, 0.0)
            left, top, right, bottom = extent(probe)
            x_lo, x_hi = margin - 0.5 - left, size - 0.5 - margin - right
            y_lo, y_hi = margin - 0.5 - top, size - 0.5 - margin - bottom
            if x_hi < x_lo or y_hi < y_lo:
                continue
            obj = replace(probe, x=float(rng.uniform(x_lo, x_hi)), y=float(rng.uniform(y_lo, y_hi)))
            if all(separated(obj, other, gap) for other in placed):
                placed.append(obj)
                break
        else:
            log.debug("no room for a %s %s in a %d px scene; dropped", colour, shape, size)
    return Scene(tuple(placed), background, background2, gradient, size)


def moved(scene: Scene, index: int, dx: float, dy: float) -> Scene:
    """The ground-truth edit: object ``index`` moved by (dx, dy) px, everything else identical."""
    obj = scene.objects[index]
    objects = list(scene.objects)
    objects[index] = replace(obj, x=obj.x + dx, y=obj.y + dy)
    return replace(scene, objects=tuple(objects))


# ---------------------------------------------------------------------------------------------- rendering


def render_background(scene: Scene) -> np.ndarray:
    """float32 (H, W, 3): the plain or gradient background alone."""
    n = scene.size
    c1 = np.asarray(BACKGROUNDS[scene.background], dtype=np.float32)
    if scene.gradient is None or scene.background2 is None:
        return np.broadcast_to(c1, (n, n, 3)).copy()
    c2 = np.asarray(BACKGROUNDS[scene.background2], dtype=np.float32)
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    ramp = (1.0 - t)[:, None] * c1[None, :] + t[:, None] * c2[None, :]  # (n, 3)
    if scene.gradient == "vertical":
        return np.broadcast_to(ramp[:, None, :], (n, n, 3)).copy()
    return np.broadcast_to(ramp[None, :, :], (n, n, 3)).copy()


def render(scene: Scene) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1]: the background, then each object composited by its pixel coverage."""
    img = render_background(scene)
    for obj in scene.objects:
        i0, j0, a = _coverage_patch(obj, scene.size)
        if a.size == 0:
            continue
        region = img[i0 : i0 + a.shape[0], j0 : j0 + a.shape[1]]
        colour = np.asarray(PALETTE[obj.colour], dtype=np.float32)
        region[:] = region * (1.0 - a[..., None]) + colour * a[..., None]
    return np.clip(img, 0.0, 1.0, out=img)


def object_mask(scene: Scene, index: int) -> np.ndarray:
    """bool (H, W): pixels where object ``index`` contributes to the rendered image.

    A pixel counts when the object covers any part of it (anti-aliased edge pixels included) and later
    objects do not cover it entirely; with no overlap this is simply the object's footprint.
    """
    n = scene.size
    visible = coverage(scene.objects[index], n).astype(np.float64)
    for later in scene.objects[index + 1 :]:
        visible *= 1.0 - coverage(later, n)
    return visible > 0.0


# ---------------------------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    """The scene's caption: objects in drawing order, then the background; lower case, deterministic.

    Grammar: ``<obj>[, <obj>] and <obj> on <bg>`` where ``<obj>`` = "a|an <colour> <shape>" and
    ``<bg>`` = "a <colour> background" or "a <colour> to <colour2> vertical|horizontal gradient".
    A scene without objects reads "an empty <bg-without-article>", e.g. "an empty grey background".
    """
    if scene.gradient is not None:
        bg = f"{scene.background} to {scene.background2} {scene.gradient} gradient"
    else:
        bg = f"{scene.background} background"
    items = [f"{_article(o.colour)} {o.colour} {o.shape}" for o in scene.objects]
    if not items:
        return f"an empty {bg}"
    things = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return f"{things} on {_article(bg)} {bg}"


def background_caption(scene: Scene) -> str:
    """The caption of the scene without its objects, e.g. "an empty grey background": an inpainting prompt."""
    return caption(replace(scene, objects=()))


# ---------------------------------------------------------------------------------------------- measuring


def segment(image: np.ndarray, colour: str, tol: float = 0.25) -> np.ndarray:
    """bool (H, W): pixels within ``tol`` (RGB Euclidean, image in [0, 1]) of a palette colour.

    A pixel is assigned only to its nearest palette colour, so the tolerance balls of close colours
    (red/orange, orange/yellow) never claim the same pixel. Anti-aliased edge pixels that are mostly
    background fall outside ``tol``; since every shape is point-symmetric or 3-fold symmetric about
    its centre, the centroid of the segment is still the object's centre.
    """
    if colour not in PALETTE:
        raise ValueError(f"colour: expected one of {tuple(PALETTE)}, got {colour!r}")
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image: expected (H, W, 3), got {img.shape}")
    # Squared distances to every palette colour, (H, W, n_colours), as |p|² - 2 p·c + |c|².
    d2 = (img * img).sum(-1, keepdims=True) - 2.0 * (img @ _PALETTE_RGB.T) + (_PALETTE_RGB**2).sum(-1)
    k = _PALETTE_NAMES.index(colour)
    return (d2.argmin(axis=-1) == k) & (d2[..., k] < tol * tol)


def centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y): the mean pixel position of a boolean mask (x = column, y = row), or None if it is empty."""
    rows, cols = np.nonzero(np.asarray(mask))
    if rows.size == 0:
        return None
    return float(cols.mean()), float(rows.mean())


# Area of each shape at size 1 (radius / half-side): fits a segment's area to a size for ``classify_shape``.
_UNIT_AREA = {"disk": math.pi, "square": 4.0, "diamond": 2.0, "triangle": 3.0 * math.sqrt(3.0) / 4.0}


def classify_shape(mask: np.ndarray, min_pixels: int = 20) -> tuple[str | None, float]:
    """(shape, IoU): the shape that best explains a segment, or (None, 0.0) for fewer than ``min_pixels``.

    Each candidate is placed at the segment's centroid with the size that gives it the segment's area (the
    world draws shapes axis-aligned, triangles apex up), and scored by intersection over union.
    """
    m = np.asarray(mask, dtype=bool)
    area = int(m.sum())
    c = centroid(m)
    if area < min_pixels or c is None:
        return None, 0.0
    rows, cols = np.indices(m.shape, dtype=np.float64)
    u, v = cols - c[0], rows - c[1]
    best: tuple[str | None, float] = (None, 0.0)
    for shape in SHAPES:
        fitted = _inside_shape(shape, math.sqrt(area / _UNIT_AREA[shape]), u, v)
        iou = float((fitted & m).sum() / (fitted | m).sum())
        if iou > best[1]:
            best = (shape, iou)
    return best


def make_dataset(
    n: int, seed: int = 0, size: int = 128, max_objects: int = 3
) -> tuple[np.ndarray, list[str], list[Scene]]:
    """``n`` training examples: images float32 (n, size, size, 3) in [0, 1], their captions and scenes."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    captions: list[str] = []
    scenes: list[Scene] = []
    for k in range(n):
        scene = sample_scene(rng, size, max_objects)
        images[k] = render(scene)
        captions.append(caption(scene))
        scenes.append(scene)
    return images, captions, scenes
