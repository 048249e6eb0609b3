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

    runs: np.ndarray  # every run of every mask
    mask: np.ndarray  # the mask each run belongs to
    index: np.ndarray  # the run's index within its mask
    first: np.ndarray  # (n + 1,) index of each mask's first run; first[-1] == len(runs)
    bad_character: np.ndarray  # per mask
    unterminated: np.ndarray  # per mask
    too_long: np.ndarray  # per mask


def counts_from_string(counts: str | bytes) -> np.ndarray:
    """The run lengths of one compressed string (exactly what pycocotools decodes)."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    buffer = np.frombuffer(data, dtype=np.uint8)
    return _decode_runs(buffer, np.array([len(buffer)], dtype=np.int64)).runs


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
    runs = decoded.runs
    odd_runs = runs * (decoded.index & 1)
    # Sums in float64 are exact here (< 2**53) and bincount is one pass.
    total = np.bincount(decoded.mask, weights=runs, minlength=n).astype(np.int64)
    area = np.bincount(decoded.mask, weights=odd_runs, minlength=n).astype(np.int64)
    error = np.zeros(n, dtype=np.int8)  # lowest priority first: later assignments win
    error[total != h * w] = WRONG_TOTAL
    if runs.min(initial=0) < 0:
        error[_any_per_mask(decoded.mask[runs < 0], n)] = NEGATIVE_RUN
    error[decoded.too_long] = NUMBER_TOO_LONG
    error[decoded.unterminated] = UNTERMINATED
    error[decoded.bad_character] = BAD_CHARACTER
    return MaskStats(error=error, total=total, area=area, bbox=_bbox(decoded, h, n))


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
    first_chars = np.empty_like(last_chars)
    first_chars[:1] = 0
    first_chars[1:] = last_chars[:-1] + 1
    numbers = (value[first_chars] & 0x1F).astype(np.int64)
    groups = last_chars - first_chars + 1
    for k in range(1, MAX_GROUPS):
        longer = (groups > k).nonzero()[0]
        if not len(longer):
            break
        numbers[longer] |= (value[first_chars[longer] + k] & 0x1F).astype(np.int64) << (5 * k)
    negative = (value[last_chars] & 0x10).nonzero()[0]
    numbers[negative] -= np.int64(1) << (5 * np.minimum(groups[negative], MAX_GROUPS))

    first = np.zeros(n + 1, dtype=np.int64)
    first[1:] = last_chars.searchsorted(string_end, side="left")
    run_mask = np.repeat(np.arange(n, dtype=np.int64), first[1:] - first[:-1])
    if groups.max(initial=0) > MAX_GROUPS:
        too_long = _any_per_mask(run_mask[groups > MAX_GROUPS], n)
    mask_first = first[run_mask]
    index = np.arange(len(numbers), dtype=np.int64) - mask_first

    # Undo the delta coding: count[i] += count[i - 2] for i > 2 within a mask. A
    # running sum with stride 2 over all numbers, minus its value just before the
    # chain starts (index 1 for odd, index 2 for even), restarts it per mask.
    stride2 = np.zeros(len(numbers) + 1, dtype=np.int64)  # stride2[i + 1]: numbers[i] + [i - 2] + ...
    stride2[1::2] = numbers[0::2].cumsum()
    stride2[2::2] = numbers[1::2].cumsum()
    runs = stride2[1:] - stride2[mask_first - (index & 1) + 1]  # odd: from index 1, even: from index 2
    runs[first[:-1][first[:-1] < first[1:]]] = numbers[first[:-1][first[:-1] < first[1:]]]
    return _Runs(runs, run_mask, index, first, bad_character, unterminated, too_long)


def _bbox(decoded: _Runs, h: np.ndarray, n: int) -> np.ndarray:
    """pycocotools ``rleToBbox``: x from the foreground pixels; full height if a run spans columns."""
    bbox = np.zeros((n, 4), dtype=np.float64)
    paired = (decoded.first[1:] - decoded.first[:-1]) // 2 * 2  # a trailing run of zeros does not count
    keep = (decoded.index < paired[decoded.mask]).nonzero()[0]
    if not len(keep):
        return bbox
    running = decoded.runs.cumsum()
    end = running - (running - decoded.runs)[decoded.first[:-1]][decoded.mask]  # position after each run
    # Even index: first pixel of the following run of ones; odd index: last pixel of that run.
    pixel = end[keep] - (decoded.index[keep] & 1)
    mask_of = decoded.mask[keep]
    height = np.maximum(h[mask_of], 1)
    x = pixel // height
    y = pixel - x * height
    with_runs = (paired > 0).nonzero()[0]
    starts = np.zeros(len(with_runs), dtype=np.int64)
    starts[1:] = paired[with_runs][:-1].cumsum()
    x_min = np.minimum.reduceat(x, starts)
    x_max = np.maximum.reduceat(x, starts)
    y_min = np.minimum.reduceat(y, starts)
    y_max = np.maximum.reduceat(y, starts)
    spans = _any_per_mask(mask_of[0::2][x[1::2] > x[0::2]], n)[with_runs]
    y_min[spans] = 0
    y_max[spans] = h[with_runs][spans] - 1
    bbox[with_runs, 0] = x_min
    bbox[with_runs, 1] = y_min
    bbox[with_runs, 2] = x_max - x_min + 1
    bbox[with_runs, 3] = y_max - y_min + 1
    return bbox
