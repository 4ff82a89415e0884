"""Zoom crops for the side-by-side viewer, chosen once per case on the reference.

The windows where a decoder can invent detail (most texture, most disagreement between decoders,
most text), shown on every decoder's output (docs/reports.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

STROKE_CONTRAST = 0.2
STROKE_WIDTH_PX = 9  # structuring element: strokes thinner than this count
FLAT_GRADIENT = 0.04  # |∂x| + |∂y| below this is flat background
GLYPH_MIN_AREA = 4  # smaller stroke components are specks (stars, noise)
TEXT_MIN_GLYPHS = 12  # glyphs in a line with a neighbour, per window
TEXT_MIN_ALIGNED = 0.5  # share of a window's glyph-sized components that sit in lines
TEXT_MIN_DENSITY = 0.12  # stroke pixels per window pixel
TEXT_MIN_FLATNESS = 0.5  # flat pixels per background pixel
ANALYSIS_MAX_SIDE = 1024
NEIGHBOURS = 6  # nearest components examined per glyph
MAX_OVERLAP = 0.5  # the detail crop moves when the text crop covers more of it than this


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    size: int
    reason: str  # "detail" | "text"


def crop_side(width: int, height: int) -> int:
    short = min(width, height)
    return short if short < 16 else int(np.clip(short // 4, 16, 192))


@dataclass(frozen=True)
class _Grid:
    """Windows of the analysis image and their crops in reference pixels."""

    window: int
    stride: int
    factor: int
    side: int
    width: int
    height: int

    def crop(self, flat_index: int, scores: np.ndarray, reason: str) -> Crop:
        iy, ix = np.unravel_index(flat_index, scores.shape)
        x = min(int(ix) * self.stride * self.factor, self.width - self.side)
        y = min(int(iy) * self.stride * self.factor, self.height - self.side)
        return Crop(max(0, x), max(0, y), self.side, reason)


def _analysis_grid(height: int, width: int) -> _Grid:
    """Windows of crop_side() reference pixels, on an image block-averaged to ANALYSIS_MAX_SIDE."""
    side = crop_side(width, height)
    factor = max(1, int(np.ceil(max(height, width) / ANALYSIS_MAX_SIDE)))
    stride = max(1, side // factor // 4)
    window = side // factor // stride * stride  # a whole number of strides
    return _Grid(window, stride, factor, window * factor, width, height)


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return values
    h, w = values.shape[0] // factor * factor, values.shape[1] // factor * factor
    return values[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def choose_crops(image: np.ndarray) -> list[Crop]:
    """image: uint8 HxW luminance (or HxWx3, averaged). A detail crop, and a text crop where there is text."""
    gray = (image.mean(axis=2, dtype=np.float32) if image.ndim == 3 else image.astype(np.float32)) / 255
    grid = _analysis_grid(*gray.shape)
    gray = _block_mean(gray, grid.factor)
    gradient = _gradient(gray)
    detail = _window_sums(gradient, grid)
    text = _text_scores(gray, gradient, grid)
    if text is None:
        return [grid.crop(int(np.argmax(detail)), detail, "detail")]
    text_crop = grid.crop(int(np.argmax(text)), text, "text")
    for flat_index in np.argsort(detail, axis=None)[::-1]:
        detail_crop = grid.crop(int(flat_index), detail, "detail")
        if _overlap(detail_crop, text_crop) <= MAX_OVERLAP:
            return [detail_crop, text_crop]
    return [text_crop]


def disagreement_crop(outputs: list[np.ndarray], taken: list[Crop]) -> Crop | None:
    """The window where ≥ 2 decoders' outputs (uint8 luminance, one size) disagree most, moving on
    when an already chosen crop covers more than MAX_OVERLAP of it; None when they agree."""
    if len(outputs) < 2 or len({o.shape for o in outputs}) != 1:
        return None
    grid = _analysis_grid(*outputs[0].shape)
    spread = np.stack([o.astype(np.float32) / 255 for o in outputs]).std(axis=0)
    scores = _window_sums(_block_mean(spread, grid.factor), grid)
    if scores.max() <= 0:
        return None
    for flat_index in np.argsort(scores, axis=None)[::-1]:
        crop = grid.crop(int(flat_index), scores, "disagreement")
        if all(_overlap(crop, other) <= MAX_OVERLAP for other in taken):
            return crop
    return None


def _gradient(gray: np.ndarray) -> np.ndarray:
    gx = np.abs(np.diff(gray, axis=1, append=gray[:, -1:]))
    gy = np.abs(np.diff(gray, axis=0, append=gray[-1:, :]))
    return gx + gy


def _window_sums(values: np.ndarray, grid: _Grid) -> np.ndarray:
    """Sum of `values` over every window×window square on the grid: sums of stride×stride
    blocks first, then windows of blocks from an integral image of the (small) block grid."""
    stride, blocks = grid.stride, grid.window // grid.stride
    rows, cols = values.shape[0] // stride, values.shape[1] // stride
    block_sums = values[:rows * stride, :cols * stride].reshape(rows, stride, cols, stride).sum(
        axis=(1, 3), dtype=np.float64)
    integral = np.pad(block_sums, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)
    top = np.arange(rows - blocks + 1)[:, None]
    left = np.arange(cols - blocks + 1)[None, :]
    return (integral[top + blocks, left + blocks] - integral[top, left + blocks]
            - integral[top + blocks, left] + integral[top, left])


def _text_scores(gray: np.ndarray, gradient: np.ndarray, grid: _Grid) -> np.ndarray | None:
    """Glyph counts of text-like windows (0 elsewhere) for the ink polarity with more text."""
    surround = ndimage.uniform_filter(gray, size=STROKE_WIDTH_PX)
    dark = surround - gray > STROKE_CONTRAST
    light = gray - surround > STROKE_CONTRAST
    best: np.ndarray | None = None
    for strokes in (dark, light):
        scores = _text_like(strokes, gradient, grid)
        if scores is not None and (best is None or scores.max() > best.max()):
            best = scores
    return best


def _text_like(strokes: np.ndarray, gradient: np.ndarray, grid: _Grid) -> np.ndarray | None:
    # Ink density and flat paper first (cheap); glyphs only where both allow text.
    density = _window_sums(strokes.astype(np.float32), grid) / grid.window**2
    if not (density >= TEXT_MIN_DENSITY).any():
        return None
    near_strokes = ndimage.binary_dilation(strokes)
    flat = (gradient < FLAT_GRADIENT) & ~near_strokes
    background = _window_sums((~near_strokes).astype(np.float32), grid)
    flatness = _window_sums(flat.astype(np.float32), grid) / np.maximum(background, 1)
    candidates = (density >= TEXT_MIN_DENSITY) & (flatness >= TEXT_MIN_FLATNESS)
    if not candidates.any():
        return None
    centres, aligned = _glyphs(strokes, grid.window)
    if aligned.sum() < TEXT_MIN_GLYPHS:
        return None
    glyph_count = _count_map(centres[aligned], strokes.shape, grid)
    blobs = _count_map(centres, strokes.shape, grid)
    text_like = (candidates & (glyph_count >= TEXT_MIN_GLYPHS)
                 & (glyph_count >= TEXT_MIN_ALIGNED * np.maximum(blobs, 1)))
    return np.where(text_like, glyph_count, 0.0) if text_like.any() else None


def _count_map(centres: np.ndarray, shape: tuple[int, ...], grid: _Grid) -> np.ndarray:
    """How many of `centres` (row, col) fall in each window."""
    points = np.zeros(shape, dtype=np.float32)
    np.add.at(points, (centres[:, 0], centres[:, 1]), 1)
    return _window_sums(points, grid)


def _glyphs(strokes: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (row, col) of glyph-sized stroke components, and which of them sit in a line.

    Printed text is glyphs side by side on a baseline: a component counts when another one of
    similar height (0.5-2×) lies beside it — vertical offset under half its height, horizontal
    distance within 2.5 heights — and none sits right above or below it (lines of text are
    separated by blank space). Texture blobs rarely line up like that.
    """
    none = (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=bool))
    labels, count = ndimage.label(strokes)
    if count < 2:
        return none
    spans = np.array([[b[0].start, b[0].stop, b[1].start, b[1].stop]
                      for b in ndimage.find_objects(labels)])
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    heights, widths = spans[:, 1] - spans[:, 0], spans[:, 3] - spans[:, 2]
    keep = (heights >= 2) & (heights <= window // 4) & (widths <= window // 2) & (areas >= GLYPH_MIN_AREA)
    spans, heights = spans[keep], heights[keep].astype(np.float64)
    if len(spans) < 2:
        return none
    rows = (spans[:, 0] + spans[:, 1]) / 2
    cols = (spans[:, 2] + spans[:, 3]) / 2
    k = min(NEIGHBOURS, len(rows))
    # Beside: |dy| < h/2 and |dx| < 2.5h, a ball of radius 2.5h once rows are scaled by 5.
    beside_points = np.stack([rows * 5, cols], axis=1)
    distances, neighbours = cKDTree(beside_points).query(beside_points, k=k)
    found = neighbours < len(rows)
    ratios = heights[np.where(found, neighbours, 0)] / heights[:, None]
    beside = found & (distances < 2.5 * heights[:, None]) & (ratios >= 0.5) & (ratios <= 2)
    # Stacked: |dx| < h/2 and |dy| < h, a ball of radius h once columns are scaled by 2. Lines of
    # text are separated by blank space; dense texture has neighbours above and below too.
    stacked_points = np.stack([rows, cols * 2], axis=1)
    distances, neighbours = cKDTree(stacked_points).query(stacked_points, k=k)
    stacked = (neighbours < len(rows)) & (distances < heights[:, None])
    aligned = beside[:, 1:].any(axis=1) & ~stacked[:, 1:].any(axis=1)  # column 0 is the glyph itself
    return np.stack([rows, cols], axis=1).astype(np.int64), aligned


def _overlap(a: Crop, b: Crop) -> float:
    """Intersection over the area of one crop (both have the same size)."""
    w = max(0, min(a.x + a.size, b.x + b.size) - max(a.x, b.x))
    h = max(0, min(a.y + a.size, b.y + b.size) - max(a.y, b.y))
    return w * h / (a.size * a.size)
