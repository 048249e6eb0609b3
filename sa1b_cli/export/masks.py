"""COCO RLE masks to numpy bool arrays, several times faster than ``pycocotools.mask.decode``.

pycocotools writes every pixel of every mask, one byte at a time. An SA-1B mask covers a few
percent of its image on average, so here each mask starts as zeros from ``np.zeros`` (fresh pages
the kernel hands out already zeroed) and only its runs of ones are set, each as one slice. The run
lengths come from :func:`sa1b_cli.rle.counts_from_string`, the project's decoder of the compressed
strings (the same runs pycocotools decodes); uncompressed RLE (``counts`` as a list) is taken as is.

Masks are column-major in COCO: each mask is filled as a (width, height) array and returned
transposed, a (height, width) view, exactly as pycocotools returns Fortran-ordered arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sa1b_cli.rle import counts_from_string


def mask_runs(segmentation: dict[str, Any]) -> tuple[int, int, np.ndarray]:
    """(height, width, run lengths) of one ``segmentation``; raises ValueError when the runs do not
    cover the image exactly (a damaged annotation, which pycocotools would decode to garbage)."""
    height, width = (int(v) for v in segmentation["size"])
    counts = segmentation["counts"]
    runs = counts_from_string(counts) if isinstance(counts, (str, bytes)) else np.asarray(counts, dtype=np.int64)
    if len(runs) and (int(runs.min()) < 0 or int(runs.sum(dtype=np.int64)) != height * width):
        raise ValueError(f"mask runs do not sum to its size {height}x{width}")
    return height, width, runs


def _fill(flat: np.ndarray, runs: np.ndarray) -> None:
    """Set the runs of ones (odd runs) of a zeroed column-major mask."""
    ends = np.cumsum(runs, dtype=np.int64)
    for start, stop in zip(ends[0:-1:2].tolist(), ends[1::2].tolist()):
        flat[start:stop] = True


def decode_mask(segmentation: dict[str, Any]) -> np.ndarray:
    """One mask as a (height, width) bool array, equal to ``pycocotools.mask.decode(segmentation)``."""
    height, width, runs = mask_runs(segmentation)
    columns = np.zeros((width, height), dtype=bool)
    _fill(columns.reshape(-1), runs)
    return columns.T


def decode_masks(annotations: Sequence[dict[str, Any]]) -> np.ndarray:
    """The masks of one image's ``annotations`` as an (n, height, width) bool array (n may be 0: then
    the shape is (0, 0, 0)). All masks of an SA-1B image share its size; a different size raises ValueError."""
    decoded = [mask_runs(a["segmentation"]) for a in annotations]
    if not decoded:
        return np.zeros((0, 0, 0), dtype=bool)
    height, width = decoded[0][0], decoded[0][1]
    if any((h, w) != (height, width) for h, w, _runs in decoded):
        raise ValueError("the masks of one image differ in size")
    stack = np.zeros((len(decoded), width, height), dtype=bool)
    for layer, (_h, _w, runs) in zip(stack, decoded):
        _fill(layer.reshape(-1), runs)
    return stack.transpose(0, 2, 1)
