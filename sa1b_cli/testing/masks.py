"""SA-1B masks as COCO run lengths, built without bitmaps, and the pools of ready-made annotations.

Masks are COCO run lengths in column-major order whose first run counts zeros. :func:`column_mask`
builds one from per-column row intervals in O(columns); :func:`encode_counts` / :func:`decode_counts`
are the pycocotools ``rleToString`` / ``rleFrString`` string codec. :func:`annotation_templates`
renders a pool of varied masks (rectangles, ellipses, triangles, full-height bands, edge-touching
shapes) once per image size: images draw their masks from it, so that generating 10,000 images x
100 masks costs seconds, not minutes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

_TEMPLATE_POOL = 512  # distinct masks per image size; enough variety, cheap to build


@dataclass(frozen=True)
class MaskRLE:
    """One mask as COCO run lengths plus the stats pycocotools would compute."""

    height: int
    width: int
    counts: tuple[int, ...]
    area: int
    bbox: tuple[float, float, float, float]
    point: tuple[float, float]

    @property
    def counts_string(self) -> str:
        """The COCO compressed string (what SA-1B stores in ``segmentation.counts``)."""
        return encode_counts(self.counts)

    def segmentation(self) -> dict[str, object]:
        """The ``segmentation`` object of an SA-1B annotation."""
        return {"size": [self.height, self.width], "counts": self.counts_string}


def column_mask(height: int, width: int, x0: int, tops: Sequence[int] | np.ndarray,
                bottoms: Sequence[int] | np.ndarray) -> MaskRLE:
    """Mask that covers rows ``[tops[i], bottoms[i])`` of column ``x0 + i``.

    Built straight as run lengths (no bitmap), so it costs O(columns) even for
    2250x1500 images. Columns must be non-empty (``bottom > top``); runs that
    touch across a column boundary are merged so the RLE is canonical, i.e.
    identical to what ``pycocotools.mask.encode`` would produce.
    """
    top = np.asarray(tops, dtype=np.int64)
    bot = np.asarray(bottoms, dtype=np.int64)
    n = len(top)
    if n == 0 or len(bot) != n:
        raise ValueError("tops and bottoms must be non-empty and of equal length")
    if x0 < 0 or x0 + n > width or top.min() < 0 or bot.max() > height or np.any(bot <= top):
        raise ValueError("mask intervals out of bounds or empty")
    base = (x0 + np.arange(n, dtype=np.int64)) * height
    bounds = np.empty(2 * n, dtype=np.int64)
    bounds[0::2] = base + top
    bounds[1::2] = base + bot
    # A run of ones ending exactly where the next starts (bottom of one column,
    # top of the next) is one run in canonical RLE: drop both boundaries.
    touch = np.flatnonzero(bounds[1:-1:2] == bounds[2::2])
    if touch.size:
        drop = np.concatenate([2 * touch + 1, 2 * touch + 2])
        bounds = np.delete(bounds, drop)
    total = height * width
    counts = np.diff(np.concatenate([[0], bounds, [total]]))
    if counts[-1] == 0:  # mask reaches the last pixel: no trailing zero run
        counts = counts[:-1]
    mid = n // 2
    return MaskRLE(
        height=height,
        width=width,
        counts=tuple(int(c) for c in counts),
        area=int((bot - top).sum()),
        bbox=(float(x0), float(top.min()), float(n), float(bot.max() - top.min())),
        point=(float(x0 + mid), float((top[mid] + bot[mid] - 1) // 2)),
    )


def encode_counts(counts: Sequence[int] | np.ndarray) -> str:
    """Encode run lengths as pycocotools ``rleToString`` does (vectorised).

    Each count (minus the count two places back, for index > 2) is written as
    little-endian 5-bit groups; 0x20 marks "more groups follow", 0x10 in the last
    group is the sign, and 48 is added to make it printable.
    """
    x = np.asarray(counts, dtype=np.int64)
    if x.size == 0:
        return ""
    x = x.copy()
    if x.size > 3:
        x[3:] -= np.asarray(counts, dtype=np.int64)[1:-2]
    groups = 7  # 35 bits: enough for any image up to 2**34 pixels
    shifts = 5 * np.arange(groups + 1, dtype=np.int64)
    shifted = x[:, None] >> shifts[None, :]  # arithmetic shift, like C's long >>
    chunks = shifted[:, :groups] & 0x1F
    rest = shifted[:, 1:]
    more = np.where((chunks & 0x10) != 0, rest != -1, rest != 0)
    # number of groups emitted = index of the first group with more == False, + 1
    length = np.argmin(more, axis=1) + 1
    emit = np.arange(groups)[None, :] < length[:, None]
    chars = chunks + 48 + np.where(more & emit, 0x20, 0)
    out: bytes = chars[emit].astype(np.uint8).tobytes()
    return out.decode("ascii")


def decode_counts(s: str | bytes) -> list[int]:
    """Decode a COCO compressed RLE string (pycocotools ``rleFrString``)."""
    data = s.encode("ascii") if isinstance(s, str) else s
    counts: list[int] = []
    p = 0
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _random_mask(rng: np.random.Generator, height: int, width: int) -> MaskRLE:
    """One varied shape: rectangles, ellipses, triangles, bands, edge cases."""
    kind = rng.integers(0, 10)
    if kind == 0:  # full-height band: runs merge across columns
        x0 = int(rng.integers(0, width))
        n = int(rng.integers(1, width - x0 + 1))
        return column_mask(height, width, x0, np.zeros(n, np.int64), np.full(n, height))
    # bounding box; sometimes pinned to an image edge
    bw = int(rng.integers(1, max(1, width // 2) + 1))
    bh = int(rng.integers(1, max(1, height // 2) + 1))
    x0 = int(rng.integers(0, width - bw + 1))
    y0 = int(rng.integers(0, height - bh + 1))
    if kind == 1:
        x0, y0 = 0, 0
    elif kind == 2:
        x0, y0 = width - bw, height - bh
    cols = np.arange(bw, dtype=np.float64) + 0.5
    if kind in (3, 4, 5):  # ellipse inscribed in the box
        rx, ry = bw / 2.0, bh / 2.0
        half = ry * np.sqrt(np.clip(1.0 - ((cols - rx) / rx) ** 2, 0.0, 1.0))
        top = np.floor(y0 + ry - half + 0.5).astype(np.int64)
        bot = np.floor(y0 + ry + half + 0.5).astype(np.int64)
    elif kind in (6, 7):  # right triangle growing left to right
        heights = np.ceil(bh * cols / bw).astype(np.int64)
        bot = np.full(bw, y0 + bh, np.int64)
        top = bot - heights
    else:  # rectangle
        top = np.full(bw, y0, np.int64)
        bot = np.full(bw, y0 + bh, np.int64)
    top = np.clip(top, 0, height - 1)
    bot = np.clip(np.maximum(bot, top + 1), 1, height)
    return column_mask(height, width, x0, top, bot)


@lru_cache(maxsize=64)
def annotation_templates(width: int, height: int) -> tuple[str, ...]:
    """Pre-rendered annotation bodies (everything after ``"id"``) for one image size.

    Rendering JSON per mask per image is the slow part; a pool of ready strings
    makes a 100-mask annotation file a single join.
    """
    rng = np.random.default_rng([width, height, 0x5A1B])
    crop = json.dumps([0.0, 0.0, float(width), float(height)])
    scores = (0.75 + 0.25 * rng.random(size=(_TEMPLATE_POOL, 2))).round(6).tolist()
    out = []
    for (iou, stability) in scores:
        m = _random_mask(rng, height, width)
        out.append(
            f'"segmentation": {json.dumps(m.segmentation())}, "bbox": {json.dumps(list(m.bbox))}, '
            f'"area": {m.area}, "predicted_iou": {iou!r}, "stability_score": {stability!r}, '
            f'"point_coords": [{json.dumps(list(m.point))}], "crop_box": {crop}}}'
        )
    return tuple(out)
