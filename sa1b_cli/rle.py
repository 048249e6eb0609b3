"""COCO compressed RLE: run lengths, area, bbox and validity of many masks at once, without bitmaps.

An SA-1B image holds about 100 masks whose ``counts`` strings run to hundreds of
characters each, 40-65k runs per image. Decoding them one character at a time in
Python, or with a handful of numpy calls per mask, caps a deep verify at a few
images a second. Three decoders, each takes the masks of one or more images at once:

- ``native`` (``sa1b_cli._rlestats``, a small C extension built at install time
  where a C compiler is present): one pass over each string that keeps only a
  running position, no array of counts. It takes only well-formed masks (the
  same rules as the pycocotools path below); a batch with anything unusual goes
  to the general decoder, which says what is wrong.
- ``pycocotools`` (when the extension is not built but pycocotools' compiled
  ``_mask`` module exports its C functions, as the Linux and macOS wheels do): one
  ``rleFrString`` call decodes all strings laid end to end, numpy undoes the
  chaining across masks and computes sums, area and bbox in a fixed number of
  passes. Well-formed masks only (see ``fast_mask_stats``; the code is in ``_rle_pycocotools``).
- ``numpy`` (``numpy_mask_stats``): a vectorised decoder for any input, the
  reference the others are tested against, and the fallback for unusual batches.

``BACKEND`` is the fastest one loaded; ``use_backend`` chooses a slower one (for comparison, or to
rule a decoder out). The cli edge calls it from ``SA1B_RLE_BACKEND``: this module reads no environment.

The string format (pycocotools ``rleToString`` / ``rleFrString``): each count is
written as little-endian 5-bit groups plus 48; bit 0x20 of a character says "more
groups follow", bit 0x10 of the last group is the sign. From the fourth count on
(index > 2) the stored value is the difference to the count two places back.
Counts alternate zeros and ones in column-major order, starting with zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sa1b_cli import _rle_pycocotools

# A count of an image up to 2**34 pixels needs at most 7 groups; more means garbage
# (and would overflow the 64-bit arithmetic pycocotools itself uses).
MAX_GROUPS = 7

OK = 0
BAD_CHARACTER = 1
UNTERMINATED = 2
NUMBER_TOO_LONG = 3
NEGATIVE_RUN = 4
WRONG_TOTAL = 5

ERROR_TEXT = {
    BAD_CHARACTER: "counts string has a character outside the RLE alphabet ('0'..'o')",
    UNTERMINATED: "counts string ends in the middle of a number",
    NUMBER_TOO_LONG: f"counts string has a number longer than {MAX_GROUPS} characters",
    NEGATIVE_RUN: "a run length is negative",
    WRONG_TOTAL: "run lengths do not sum to height x width",
}


@dataclass
class MaskStats:
    """Per-mask results, one array entry per mask (all arrays have the same length)."""

    error: np.ndarray  # int8: OK or the first error code above that applies
    total: np.ndarray  # int64: sum of all runs (must be height * width)
    area: np.ndarray  # int64: sum of the runs of ones (pycocotools ``area``)
    bbox: np.ndarray  # float64 (n, 4): x, y, w, h as pycocotools ``toBbox`` computes it

    def __len__(self) -> int:
        return len(self.error)


@dataclass
class _Runs:
    """Decoded run lengths of several masks, laid end to end."""

    runs: np.ndarray  # every run of every mask (int32, or int64 when a number is too long for it)
    first: np.ndarray  # (n + 1,) index of each mask's first run; first[-1] == len(runs)
    ones: np.ndarray  # indices of the runs of ones (odd index within their mask)
    bad_character: np.ndarray  # per mask
    unterminated: np.ndarray  # per mask
    too_long: np.ndarray  # per mask

    def mask_of(self, run_indices: np.ndarray) -> np.ndarray:
        """The mask of each given run (for the rare error paths; the common ones use ``np.repeat``)."""
        return self.first.searchsorted(run_indices, side="right") - 1


def counts_from_string(counts: str | bytes) -> np.ndarray:
    """The run lengths of one compressed string (exactly what pycocotools decodes)."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    buffer = np.frombuffer(data, dtype=np.uint8)
    return _decode_runs(buffer, np.array([len(buffer)], dtype=np.int64), wide=True).runs


def mask_stats(counts: Sequence[str], heights: Sequence[int] | np.ndarray,
               widths: Sequence[int] | np.ndarray) -> MaskStats:
    """Decode many masks (strings, each with its own size) with the fastest decoder that takes them.

    Raises UnicodeEncodeError when a string is not ASCII (the caller names the mask).
    """
    stats = None
    if BACKEND == NATIVE:
        stats = native_mask_stats(counts, heights, widths)
    elif BACKEND == PYCOCOTOOLS:
        stats = fast_mask_stats(counts, heights, widths)
    return stats if stats is not None else numpy_mask_stats(counts, heights, widths)


def numpy_mask_stats(counts: Sequence[str], heights: Sequence[int] | np.ndarray,
                     widths: Sequence[int] | np.ndarray) -> MaskStats:
    """The general decoder: any input, every error found and named, in one vectorised pass.

    Raises UnicodeEncodeError when a string is not ASCII (the caller names the mask).
    """
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    buffer = np.frombuffer("".join(counts).encode("ascii"), dtype=np.uint8)
    return mask_stats_from_buffer(buffer, lengths, heights, widths)


def mask_stats_from_buffer(buffer: np.ndarray, lengths: np.ndarray, heights: Sequence[int] | np.ndarray,
                           widths: Sequence[int] | np.ndarray) -> MaskStats:
    """Like ``numpy_mask_stats`` for the strings already concatenated into one uint8 array."""
    n = len(lengths)
    h = np.asarray(heights, dtype=np.int64).reshape(n)
    w = np.asarray(widths, dtype=np.int64).reshape(n)
    decoded = _decode_runs(buffer, lengths, wide=bool(n) and int((h * w).max()) >= 2**31)
    runs, first = decoded.runs, decoded.first
    # Running sums wrap in int32 for long batches; differences of them are still exact
    # (modulo 2**32) for every value that fits, which all valid runs and positions do.
    running = np.zeros(len(runs) + 1, dtype=runs.dtype)  # running[i]: sum of runs[:i]
    np.cumsum(runs, out=running[1:])
    before = running[first]  # before[m]: sum of all runs before mask m
    total = (before[1:] - before[:-1]).astype(np.int64)
    error = np.zeros(n, dtype=np.int8)  # lowest priority first: later assignments win
    error[total != h * w] = WRONG_TOTAL
    if len(runs) and runs.min() < 0:
        error[_any_per_mask(decoded.mask_of(np.flatnonzero(runs < 0)), n)] = NEGATIVE_RUN
    error[decoded.too_long] = NUMBER_TOO_LONG
    error[decoded.unterminated] = UNTERMINATED
    error[decoded.bad_character] = BAD_CHARACTER

    # Each run of ones: its first pixel (where the zeros before it end) and one past its last.
    per_mask = (first[1:] - first[:-1]) // 2  # runs of ones (a trailing run of zeros has no partner)
    base = np.repeat(before[:-1], per_mask)
    start = running[decoded.ones] - base  # gathers: much faster than a boolean mask alternating every run
    end = running[decoded.ones + 1] - base
    size = end - start
    if len(size) and size.min() <= 0:  # empty (or, in invalid masks, negative) runs of ones: skipped
        nonempty = size > 0
        per_mask = np.bincount(decoded.mask_of(decoded.ones[nonempty]), minlength=n)
        start, end, size = start[nonempty], end[nonempty], size[nonempty]
    area = np.zeros(n, dtype=np.int64)
    bbox = np.zeros((n, 4), dtype=np.float64)
    with_ones = np.flatnonzero(per_mask)
    if len(with_ones):
        starts = np.zeros(len(with_ones), dtype=np.int64)  # where each mask's runs of ones begin
        np.cumsum(per_mask[with_ones][:-1], out=starts[1:])
        area[with_ones] = np.add.reduceat(size, starts, dtype=np.int64)
        bbox[with_ones] = _bbox(start, end - 1, h[with_ones], per_mask[with_ones], starts)
    return MaskStats(error=error, total=total, area=area, bbox=bbox)


def _any_per_mask(mask_ids: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(mask_ids, minlength=n)[:n] > 0


def _decode_runs(buffer: np.ndarray, lengths: np.ndarray, wide: bool = False) -> _Runs:
    """Run lengths in int32 (half the memory traffic of int64), or int64 when ``wide``
    (an image of 2**31 pixels or more) or when a number needs more than 6 groups.

    Per-mask values reach the runs through ``np.repeat`` (a sequential write), never
    by indexing with a per-run mask number (a gather, about ten times slower).
    """
    n = len(lengths)
    string_end = lengths.cumsum()  # one past each string's last character
    value = np.asarray(buffer, dtype=np.uint8) - np.uint8(48)  # bytes below '0' wrap to > 63
    none = np.zeros(n, dtype=bool)
    bad_character = unterminated = too_long = none
    if len(value) and value.max() > 63:
        bad_character = _any_per_mask(string_end.searchsorted((value > 63).nonzero()[0], side="right"), n)
    # A character below 32 (no 0x20 bit) is the last 5-bit group of a number. Every
    # string must end on one; force a boundary there so that numbers never run into
    # the next mask, and flag the string.
    is_last = value < 32
    string_last = string_end[lengths > 0] - 1
    open_ends = string_last[~is_last[string_last]]
    if len(open_ends):
        unterminated = _any_per_mask(string_end.searchsorted(open_ends, side="right"), n)
        is_last[open_ends] = True
    last_chars = is_last.nonzero()[0]
    first = np.zeros(n + 1, dtype=np.int64)
    first[1:] = last_chars.searchsorted(string_end, side="left")

    # Numbers of several groups are rare: find them from their leading characters.
    leading = (~is_last).nonzero()[0]
    several = leading
    longest = 1
    if len(leading):
        owner = last_chars.searchsorted(leading)  # the number each leading character belongs to (sorted)
        first_leading = np.flatnonzero(np.diff(owner, prepend=-1))
        several = owner[first_leading]
        groups = last_chars[several] - leading[first_leading] + 1
        longest = int(groups.max())
        if longest > MAX_GROUPS:
            too_long = _any_per_mask(first.searchsorted(several[groups > MAX_GROUPS], side="right") - 1, n)
    dtype = np.int32 if longest <= 6 and not wide else np.int64  # 6 groups: 30 bits and the sign
    # The last group carries the number's top bits and its sign (bit 0x10): sign-extend its
    # 5 bits in one byte (shift them to the top, read as int8, shift back arithmetically).
    numbers = ((value[last_chars] << np.uint8(3)).view(np.int8) >> np.int8(3)).astype(dtype)
    if len(several):
        below = np.minimum(groups, MAX_GROUPS) - 1  # groups below the last one
        low = np.zeros(len(several), dtype=dtype)
        for k in range(int(below.max())):
            has = (below > k).nonzero()[0]
            low[has] |= (value[leading[first_leading[has]] + k] & 0x1F).astype(dtype) << (5 * k)
        numbers[several] = (numbers[several] << (5 * below)) | low

    if not len(numbers):  # only empty strings: nothing to undo (and no chain to index below)
        return _Runs(numbers, first, numbers.astype(np.int64), bad_character, unterminated, too_long)
    # Undo the delta coding: count[i] += count[i - 2] for i > 2 within a mask. A
    # running sum with stride 2 over all numbers, minus its value just before the
    # chain starts (index 1 for odd, index 2 for even), restarts it per mask.
    stride2 = np.zeros(len(numbers) + 1, dtype=dtype)  # stride2[i + 1]: numbers[i] + [i - 2] + ...
    np.cumsum(numbers[0::2], dtype=dtype, out=stride2[1::2])
    np.cumsum(numbers[1::2], dtype=dtype, out=stride2[2::2])
    per_mask = first[1:] - first[:-1]
    odd = np.zeros(len(numbers), dtype=bool)  # the run's index within its mask is odd
    odd[1::2] = True
    odd ^= np.repeat((first[:-1] & 1).astype(bool), per_mask)
    second = np.minimum(first[:-1] + 1, len(numbers))  # (clipped: a trailing empty string has no second run)
    chain_start = np.where(odd, np.repeat(stride2[first[:-1]], per_mask), np.repeat(stride2[second], per_mask))
    runs = stride2[1:] - chain_start
    heads = first[:-1][per_mask > 0]
    runs[heads] = numbers[heads]
    return _Runs(runs, first, odd.nonzero()[0], bad_character, unterminated, too_long)


def _bbox(start: np.ndarray, last: np.ndarray, h: np.ndarray, per_mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """pycocotools ``rleToBbox`` (2.0.7+) from the first and last pixel of every non-empty run
    of ones, grouped per mask at ``starts``: x from the first and the last run; y from all, or
    the full height once one run spans two columns."""
    h = np.maximum(h, 1)  # a mask of height 0 with pixels is invalid anyway (wrong total): no division by 0
    height: np.ndarray | int = int(h[0]) if h.min() == h.max() else np.repeat(h, per_mask)
    x0 = start // height
    x1 = last // height
    spans = np.logical_or.reduceat(x1 > x0, starts)
    x_min, x_max = x0[starts], x1[starts + per_mask - 1]  # positions only grow within a valid mask
    y_min = np.minimum.reduceat(start - x0 * height, starts)
    y_max = np.maximum.reduceat(last - x1 * height, starts)
    y_min[spans] = 0
    y_max[spans] = h[spans] - 1
    return np.stack([x_min, y_min, x_max - x_min + 1, y_max - y_min + 1], axis=1)


# ------------------------------------------------------------------ choice of decoder

NATIVE = "native"
PYCOCOTOOLS = "pycocotools"
NUMPY = "numpy"
BACKENDS = (NATIVE, PYCOCOTOOLS, NUMPY)  # fastest first


# ------------------------------------------------------------------ native fast path

try:
    from sa1b_cli import _rlestats
except ImportError:  # built at install time only where a C compiler is present
    _rlestats = None  # type: ignore[assignment]


def native_mask_stats(counts: Sequence[str], heights: Sequence[int] | np.ndarray,
                      widths: Sequence[int] | np.ndarray) -> MaskStats | None:
    """``mask_stats`` of well-formed masks through the C extension; None when it is not built or
    any mask is unusual (the same rules as ``fast_mask_stats``: then ``numpy_mask_stats`` finds and
    names the problem). On all it accepts, it gives what ``numpy_mask_stats`` gives."""
    if _rlestats is None or len(counts) == 0:
        return None
    n = len(counts)
    try:
        height = np.ascontiguousarray(heights, dtype=np.int64).reshape(n)
        width = np.ascontiguousarray(widths, dtype=np.int64).reshape(n)
    except OverflowError:  # a size beyond 64 bits: the general decoder reports it
        return None
    area = np.empty(n, dtype=np.int64)
    bbox = np.empty((n, 4), dtype=np.float64)
    if not _rlestats.mask_stats(counts if type(counts) is list else list(counts), height, width, area, bbox):
        return None
    return MaskStats(error=np.zeros(n, dtype=np.int8), total=height * width, area=area, bbox=bbox)


@dataclass
class AnnotationColumns:
    """The fields of SA-1B annotations that a deep check compares, one entry per annotation."""

    ids: np.ndarray  # float64
    sizes: np.ndarray  # int64 (n, 2): segmentation.size, [height, width]
    bbox: np.ndarray  # float64 (n, 4): the stored bbox
    area: np.ndarray  # float64: the stored area
    stats: MaskStats  # what the masks themselves hold


def native_annotation_stats(files: list[list[Any]]) -> AnnotationColumns | None:
    """Columns and mask stats of the ``annotations`` lists of several SA-1B documents in one C pass.

    None when the extension is not built or anything is unusual: an annotation not exactly as
    SA-1B writes it (e.g. a bool or a string where a number belongs), or a mask that
    ``native_mask_stats`` would decline. The caller then takes its general path, which
    describes the problem; on everything this accepts, both give the same columns.
    """
    if BACKEND != NATIVE:  # not built, or a slower decoder chosen
        return None
    n = sum(map(len, files))
    ids, area = np.empty(n), np.empty(n)
    bbox, mask_bbox = np.empty((n, 4)), np.empty((n, 4))
    sizes = np.empty((n, 2), dtype=np.int64)
    mask_area = np.empty(n, dtype=np.int64)
    if not _rlestats.annotation_stats(files, ids, area, bbox, sizes, mask_area, mask_bbox):
        return None
    stats = MaskStats(error=np.zeros(n, dtype=np.int8), total=sizes[:, 0] * sizes[:, 1], area=mask_area,
                      bbox=mask_bbox)
    return AnnotationColumns(ids=ids, sizes=sizes, bbox=bbox, area=area, stats=stats)


# ------------------------------------------------------------------ pycocotools fast path

_c_functions = _rle_pycocotools.load()


def use_backend(requested: str = "") -> str:
    """Make ``mask_stats`` decode with ``requested`` (one of ``BACKENDS``), or the next slower one loaded
    when it is not; ``""``: the fastest loaded. Returns the one in use.

    One choice per process, made by the cli edge (``SA1B_RLE_BACKEND``) before any work starts; verify's
    pool hands it to its workers (their initializer), spawned ones too.
    """
    global BACKEND
    loaded = {NATIVE: _rlestats is not None, PYCOCOTOOLS: _c_functions is not None, NUMPY: True}
    allowed = BACKENDS[BACKENDS.index(requested):] if requested else BACKENDS
    BACKEND = next(backend for backend in allowed if loaded[backend])
    return BACKEND


# What ``mask_stats`` uses: the fastest decoder loaded, until ``use_backend`` chooses another.
BACKEND = use_backend()


def fast_mask_stats(counts: Sequence[str], heights: Sequence[int] | np.ndarray,
                    widths: Sequence[int] | np.ndarray) -> MaskStats | None:
    """``mask_stats`` of well-formed masks through pycocotools' C decoder, about twice as fast as
    ``numpy_mask_stats``; None when that backend is not loaded or any mask is unusual (then
    ``numpy_mask_stats`` finds and names the problem). On all it accepts, both give identical results.

    Unusual: an empty string, a character outside the alphabet, a string ending inside a
    number, a number of more than 6 groups, a size of 0 or of 2**29 pixels or more, a negative
    run, an empty run of ones, runs not summing to height x width. The string checks come first:
    ``rleFrString`` reads up to the terminating NUL and would run past it on an unterminated
    number. Raises UnicodeEncodeError when a string is not ASCII.
    """
    if _c_functions is None or len(counts) == 0:
        return None
    found = _rle_pycocotools.pair_stats(_c_functions, counts, heights, widths)
    if found is None:
        return None
    pixels, area, bbox = found
    return MaskStats(error=np.zeros(len(counts), dtype=np.int8), total=pixels, area=area, bbox=bbox)
