"""The ``pycocotools`` decoder of :mod:`sa1b_cli.rle`: pycocotools' own C ``rleFrString``, called through
ctypes on all strings of a batch laid end to end, and numpy passes that undo the chaining across masks
and compute area and bbox. Well-formed masks only; ``sa1b_cli.rle.fast_mask_stats`` is its entry point.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence

import numpy as np

CFunctions = tuple[Callable[..., None], Callable[..., None]]  # rleFrString, rleFree

# The fast path takes images below 2**29 pixels: every valid count and every difference
# of two then fits 6 groups (30 bits with the sign), which pycocotools decodes without
# overflow, and a position that runs past 2**31 shows as a negative int32.
FAST_PIXELS = 1 << 29
FAST_GROUPS = 6
_MORE = 48 + 0x20  # characters from here on carry the "more groups follow" bit
_SIZE_GROUPS = 8  # runs of masks of one height in a batch, beyond which division goes per pair
_PREFIX = "00"  # two zero counts: every mask's two chains then have a predecessor
_SELF_TEST = ("0`[T25hPOLjclMoeak2", [0, 0, 0, 70000, 5, 69000, 1, 2, 3000000])  # prefix, signs, 5 groups


class _Rle(ctypes.Structure):
    """pycocotools ``RLE`` (maskApi.h): ``siz`` is C ``unsigned long``, counts are 32-bit."""

    _fields_ = [("h", ctypes.c_ulong), ("w", ctypes.c_ulong), ("m", ctypes.c_ulong), ("cnts", ctypes.c_void_p)]


class _CountsView:
    """A zero-copy numpy view of ``m`` int32 counts in C memory (``np.ctypeslib.as_array``
    builds a ctypes type per length, which costs more than the decoding)."""

    def __init__(self, address: int, length: int) -> None:
        self.__array_interface__ = {"data": (address, True), "shape": (length,),
                                    "typestr": np.dtype(np.int32).str, "version": 3}


def load() -> CFunctions | None:
    """``rleFrString`` and ``rleFree`` from pycocotools' compiled module, if it exports them (a
    Windows DLL may export only the module's init function) and they decode a known string right."""
    try:
        from pycocotools import _mask

        library = ctypes.CDLL(_mask.__file__)
        from_string, free = library.rleFrString, library.rleFree
    except (ImportError, OSError, AttributeError):
        return None
    from_string.argtypes = [ctypes.POINTER(_Rle), ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong]
    from_string.restype = None
    free.argtypes = [ctypes.POINTER(_Rle)]
    free.restype = None
    sample, expected = _SELF_TEST
    rle = _Rle()
    from_string(ctypes.byref(rle), (_PREFIX + sample).encode("ascii"), 1, 1)
    try:
        decoded = np.asarray(_CountsView(rle.cnts, rle.m)).tolist() if rle.m == len(expected) else None
    finally:
        free(ctypes.byref(rle))
    return (from_string, free) if decoded == expected else None


def pair_stats(c_functions: CFunctions, counts: Sequence[str], heights: Sequence[int] | np.ndarray,
               widths: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(pixels, area, bbox) of each mask of a non-empty batch of well-formed masks; None for anything
    unusual (see ``sa1b_cli.rle.fast_mask_stats``). Raises UnicodeEncodeError when a string is not ASCII."""
    n = len(counts)
    height = np.asarray(heights, dtype=np.int64).reshape(n)
    width = np.asarray(widths, dtype=np.int64).reshape(n)
    pixels = height * width
    if height.min() < 1 or width.min() < 1 or int(pixels.max()) >= FAST_PIXELS:
        return None
    text = "".join(counts)
    buffer = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=n)
    if lengths.min() < 1 or buffer.min() < 48 or buffer.max() > 48 + 63:
        return None
    numbers = _numbers_per_string(buffer, lengths)
    if numbers is None:
        return None
    padded_masks = np.flatnonzero(numbers & 1)
    if len(padded_masks):
        # A zero count after every odd-length mask: each mask then is whole (zeros, ones)
        # pairs, and every per-run quantity is a contiguous array over pairs.
        parts = list(counts)
        for index in padded_masks.tolist():
            parts[index] += "0"
        text = "".join(parts)
    pairs = (numbers + 1) >> 1
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(pairs, out=first[1:])
    runs = _decode_pairs(c_functions, (_PREFIX + text).encode("ascii"), first[:-1], pairs, int(first[-1]))
    if runs is None:
        return None
    found = _area_and_bbox(runs, pixels, first, numbers, height, padded_masks)
    return None if found is None else (pixels, *found)


def _numbers_per_string(buffer: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
    """How many numbers each string holds (one per character without the "more" bit); None when a
    string ends inside a number or a number has more than ``FAST_GROUPS`` groups."""
    more = np.flatnonzero(buffer >= _MORE)
    if not len(more):
        return lengths
    string_end = lengths.cumsum()
    if buffer[string_end - 1].max() >= _MORE:
        return None
    span = FAST_GROUPS - 1  # FAST_GROUPS consecutive "more" characters: a number too long
    if len(more) > span and (more[span:] - more[:-span]).min() == span:
        return None
    numbers_before = np.zeros(len(lengths) + 1, dtype=np.int64)  # numbers in all strings before each
    np.subtract(string_end, more.searchsorted(string_end), out=numbers_before[1:])
    return numbers_before[1:] - numbers_before[:-1]


def _area_and_bbox(runs: np.ndarray, pixels: np.ndarray, first: np.ndarray, numbers: np.ndarray,
                   height: np.ndarray, padded_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Area and bbox of each mask from its (zeros, ones) pairs; None when a run is negative, a run of
    ones empty, or a mask's runs do not sum to its pixels."""
    starts = first[:-1]  # each mask's first pair
    ones = runs[:, 1].copy()  # contiguous: the passes below run several times faster than on a strided view
    pads = (first[1:] - 1)[padded_masks]
    ones[pads] = 1  # so that only a real empty run of ones fails the test
    if runs.view(np.uint32).max() >= FAST_PIXELS or ones.min() < 1:  # negative runs are huge as uint32
        return None
    ones[pads] = 0

    # End of each pair's run of ones, counted from its mask's first pixel: one running sum
    # over all masks, restarted at each mask by taking the previous mask's pixels off its
    # first step. That holds once every mask's runs are seen to sum to its pixels; until
    # then int32 wraps, and a position past 2**31 (steps are below 2**30) shows negative.
    end = runs[:, 0] + ones
    end[starts[1:]] -= pixels[:-1].astype(np.int32)
    np.add.accumulate(end, out=end)
    if end.min() < 0 or not np.array_equal(end[first[1:] - 1], pixels):
        return None
    area = np.add.reduceat(ones, starts).astype(np.int64)
    return area, _pair_bbox(end, ones, starts, first, numbers, height, pads, padded_masks)


def _decode_pairs(c_functions: CFunctions, data: bytes, starts: np.ndarray, pairs: np.ndarray,
                  total_pairs: int) -> np.ndarray | None:
    """The run lengths of every (zeros, ones) pair of every mask: int32, shape (pairs, 2).

    ``rleFrString`` sees one string, so its chains run across masks: count i > 2 holds
    its number plus count i - 2 of the whole string. Differences along a chain within a
    mask are exact (modulo 2**32, like pycocotools' own unsigned counts), so a mask's runs
    are its chained values minus the chain's value just before the mask; its first zeros
    stand alone in the format (index 0), hence their own difference.
    """
    from_string, free = c_functions
    rle = _Rle()
    from_string(ctypes.byref(rle), data, 0, 0)
    try:
        if rle.m != 2 * total_pairs + 2:  # the character count above disagrees: never trust the layout
            return None
        chained = np.asarray(_CountsView(rle.cnts, rle.m)).reshape(-1, 2)  # the prefix pair first
        before = np.empty((len(starts), 2), dtype=np.int32)
        before[:, 0] = chained[starts + 1, 0]  # zeros 2, 4, ... chain on from the mask's first zeros
        before[:, 1] = chained[starts, 1]
        runs = np.repeat(before, pairs, axis=0)
        np.subtract(chained[1:], runs, out=runs)  # one contiguous pass for both chains
        runs[starts, 0] = chained[starts + 1, 0] - chained[starts, 0]
    finally:
        free(ctypes.byref(rle))
    return runs


def _pair_bbox(end: np.ndarray, ones: np.ndarray, starts: np.ndarray, first: np.ndarray, numbers: np.ndarray,
               height: np.ndarray, pads: np.ndarray, padded_masks: np.ndarray) -> np.ndarray:
    """pycocotools ``rleToBbox`` from whole masks laid out as pairs: x from the first and the
    last run of ones, y from all, or the full height once one run spans two columns."""
    row = end - ones  # first pixel of each run of ones, then its row
    column = np.empty_like(row)
    change = (np.flatnonzero(height[1:] != height[:-1]) + 1).tolist()
    if len(change) < _SIZE_GROUPS:  # division by a scalar (libdivide) is several times faster
        groups = [(int(first[a]), int(first[b]), int(height[a])) for a, b in zip([0, *change], [*change, len(height)])]
        for a, b, h in groups:
            np.floor_divide(row[a:b], h, out=column[a:b])
        x_min = column[starts]
        for a, b, h in groups:
            column[a:b] *= h
    else:
        pair_height = np.repeat(height.astype(np.int32), first[1:] - starts)
        np.floor_divide(row, pair_height, out=column)
        x_min = column[starts]
        column *= pair_height
    row -= column
    x_max = (end[starts + (numbers >> 1) - 1] - 1) // height  # last pixel of the last run of ones
    past = row + ones  # one past the row of the run's last pixel, above the height if it spans columns
    row[pads] = height[padded_masks]
    past[pads] = 0
    y_min = np.minimum.reduceat(row, starts)
    y_past = np.maximum.reduceat(past, starts)
    spans = y_past > height
    y_min[spans] = 0
    y_past[spans] = height[spans]
    bbox = np.empty((len(starts), 4))
    bbox[:, 0] = x_min
    bbox[:, 1] = y_min
    bbox[:, 2] = x_max - x_min + 1
    bbox[:, 3] = y_past - y_min
    bbox[numbers < 2] = 0  # no run of ones: pycocotools gives [0, 0, 0, 0]
    return bbox
