"""COCO compressed RLE: run lengths, area, bbox and validity of many masks at once, without bitmaps.

An SA-1B image holds about 100 masks whose ``counts`` strings run to hundreds of
characters each. Decoding them one character at a time in Python, or with a
handful of numpy calls per mask, caps a deep verify at a few hundred images a
second. Here every mask of an image is decoded in one vectorised pass over the
concatenated strings, so the cost is a fixed number of numpy calls per image.

The string format (pycocotools ``rleToString`` / ``rleFrString``): each count is
written as little-endian 5-bit groups plus 48; bit 0x20 of a character says "more
groups follow", bit 0x10 of the last group is the sign. From the fourth count on
(index > 2) the stored value is the difference to the count two places back.
Counts alternate zeros and ones in column-major order, starting with zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    mask: np.ndarray  # the mask each run belongs to
    first: np.ndarray  # (n + 1,) index of each mask's first run; first[-1] == len(runs)
    ones: np.ndarray  # indices of the runs of ones (odd index within their mask)
    bad_character: np.ndarray  # per mask
    unterminated: np.ndarray  # per mask
    too_long: np.ndarray  # per mask


def counts_from_string(counts: str | bytes) -> np.ndarray:
    """The run lengths of one compressed string (exactly what pycocotools decodes)."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    buffer = np.frombuffer(data, dtype=np.uint8)
    return _decode_runs(buffer, np.array([len(buffer)], dtype=np.int64)).runs.astype(np.int64)


def mask_stats(counts: Sequence[str], heights: Sequence[int] | np.ndarray,
               widths: Sequence[int] | np.ndarray) -> MaskStats:
    """Decode many masks (strings, each with its own size) in one pass.

    Raises UnicodeEncodeError when a string is not ASCII (the caller names the mask).
    """
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    buffer = np.frombuffer("".join(counts).encode("ascii"), dtype=np.uint8)
    return mask_stats_from_buffer(buffer, lengths, heights, widths)


def mask_stats_from_buffer(buffer: np.ndarray, lengths: np.ndarray, heights: Sequence[int] | np.ndarray,
                           widths: Sequence[int] | np.ndarray) -> MaskStats:
    """Like ``mask_stats`` for the strings already concatenated into one uint8 array."""
    n = len(lengths)
    h = np.asarray(heights, dtype=np.int64).reshape(n)
    w = np.asarray(widths, dtype=np.int64).reshape(n)
    decoded = _decode_runs(buffer, lengths)
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
        error[_any_per_mask(decoded.mask[runs < 0], n)] = NEGATIVE_RUN
    error[decoded.too_long] = NUMBER_TOO_LONG
    error[decoded.unterminated] = UNTERMINATED
    error[decoded.bad_character] = BAD_CHARACTER
    area = np.zeros(n, dtype=np.int64)
    bbox = np.zeros((n, 4), dtype=np.float64)
    pairs = (first[1:] - first[:-1]) // 2  # runs of ones per mask (a trailing run of zeros has no partner)
    with_ones = np.flatnonzero(pairs)
    if len(with_ones):
        starts = np.zeros(len(with_ones), dtype=np.int64)  # where each mask's runs of ones begin in ``ones``
        np.cumsum(pairs[with_ones][:-1], out=starts[1:])
        area[with_ones] = np.add.reduceat(runs[decoded.ones], starts, dtype=np.int64)
        bbox[with_ones] = _bbox(decoded, running, before, h, with_ones, starts, pairs)
    return MaskStats(error=error, total=total, area=area, bbox=bbox)


def _any_per_mask(mask_ids: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(mask_ids, minlength=n)[:n] > 0


def _decode_runs(buffer: np.ndarray, lengths: np.ndarray) -> _Runs:
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
    extra = np.empty_like(last_chars)  # groups of each number beyond its last one
    extra[:1] = last_chars[:1]
    np.subtract(last_chars[1:], last_chars[:-1] + 1, out=extra[1:])
    longest = int(extra.max(initial=0)) + 1
    dtype = np.int32 if longest <= 6 else np.int64  # 6 groups: 30 bits and the sign
    # The last group carries the number's top bits and its sign (bit 0x10): sign-extend it.
    numbers = ((value[last_chars] & 0x1F) ^ 0x10).astype(dtype) - 16
    if longest > 1:
        several = extra.nonzero()[0]
        several_extra = np.minimum(extra[several], MAX_GROUPS)
        several_first = last_chars[several] - extra[several]
        low = np.zeros(len(several), dtype=dtype)
        for k in range(min(longest, MAX_GROUPS) - 1):
            lower = (several_extra > k).nonzero()[0]
            low[lower] |= (value[several_first[lower] + k] & 0x1F).astype(dtype) << (5 * k)
        numbers[several] = (numbers[several] << (5 * several_extra)) | low

    first = np.zeros(n + 1, dtype=np.int64)
    first[1:] = last_chars.searchsorted(string_end, side="left")
    run_mask = np.repeat(np.arange(n, dtype=np.int32), first[1:] - first[:-1])
    if longest > MAX_GROUPS:
        too_long = _any_per_mask(run_mask[extra >= MAX_GROUPS], n)
    mask_first = first.astype(np.int32)[run_mask] if len(numbers) < 2**31 else first[run_mask]
    odd = (np.arange(len(numbers), dtype=mask_first.dtype) ^ mask_first) & 1  # index within the mask is odd

    # Undo the delta coding: count[i] += count[i - 2] for i > 2 within a mask. A
    # running sum with stride 2 over all numbers, minus its value just before the
    # chain starts (index 1 for odd, index 2 for even), restarts it per mask.
    stride2 = np.zeros(len(numbers) + 1, dtype=dtype)  # stride2[i + 1]: numbers[i] + [i - 2] + ...
    np.cumsum(numbers[0::2], dtype=dtype, out=stride2[1::2])
    np.cumsum(numbers[1::2], dtype=dtype, out=stride2[2::2])
    runs = stride2[1:] - stride2[mask_first - odd + 1]  # odd: from index 1, even: from index 2
    heads = first[:-1][first[:-1] < first[1:]]
    runs[heads] = numbers[heads]
    return _Runs(runs, run_mask, first, odd.nonzero()[0], bad_character, unterminated, too_long)


def _bbox(decoded: _Runs, running: np.ndarray, before: np.ndarray, h: np.ndarray, with_ones: np.ndarray,
          starts: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """pycocotools ``rleToBbox`` of the masks ``with_ones``: x and y from the first and last
    pixel of every run of ones; the full height as soon as one run spans two columns."""
    ones = decoded.ones
    mask_of = decoded.mask[ones]
    base = before[:-1][mask_of]
    start = running[ones] - base  # first pixel of each run of ones
    last = running[ones + 1] - base - 1  # its last pixel (the one before it when the run is empty)
    height: np.ndarray | int = int(h[0]) if h.min() == h.max() else h[mask_of]
    x0 = start // height
    x1 = last // height
    y0 = start - x0 * height
    y1 = last - x1 * height
    spans = np.logical_or.reduceat(x1 > x0, starts)
    if (last < start).any():  # empty runs of ones: pycocotools counts the pixel before them
        x0, x1, y0, y1 = np.minimum(x0, x1), np.maximum(x0, x1), np.minimum(y0, y1), np.maximum(y0, y1)
    ends = starts + pairs[with_ones] - 1
    # Positions only grow within a valid mask: x from its first and last run of ones.
    x_min, x_max = x0[starts], x1[ends]
    y_min = np.minimum.reduceat(y0, starts)
    y_max = np.maximum.reduceat(y1, starts)
    y_min[spans] = 0
    y_max[spans] = h[with_ones][spans] - 1
    return np.stack([x_min, y_min, x_max - x_min + 1, y_max - y_min + 1], axis=1)
