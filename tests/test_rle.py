"""The vectorised RLE decoder against pycocotools: area, bbox, run lengths and validity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco

from sa1b_cli import rle
from sa1b_cli.testing.generator import decode_counts, encode_counts


def coco_string(bitmap: np.ndarray) -> str:
    return coco.encode(np.asfortranarray(bitmap.astype(np.uint8)))["counts"].decode("ascii")


def coco_area_bbox(counts: str, height: int, width: int) -> tuple[int, list[float]]:
    segmentation = {"size": [height, width], "counts": counts.encode("ascii")}
    return int(coco.area(segmentation)), [float(v) for v in coco.toBbox(segmentation)]


def edge_case_bitmaps() -> list[np.ndarray]:
    """Empty, full, single pixels in every corner, border lines, runs spanning columns, thin images."""
    cases = []
    for h, w in ((1, 1), (1, 9), (9, 1), (7, 5), (48, 64)):
        cases.append(np.zeros((h, w)))
        cases.append(np.ones((h, w)))
        for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)):
            single = np.zeros((h, w))
            single[y, x] = 1
            cases.append(single)
        for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
            line = np.zeros((h, w))
            line[edge] = 1
            cases.append(line)
        band = np.zeros((h, w))
        band[:, w // 3: w // 3 + 2] = 1  # full-height columns: one run spans two columns
        cases.append(band)
        wrap = np.zeros((h, w))
        wrap[h - 1, 0] = wrap[0, min(1, w - 1)] = 1  # bottom of one column, top of the next
        cases.append(wrap)
    return cases


def random_bitmaps(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(1, 60, size=2))
        density = rng.choice([0.02, 0.3, 0.7, 0.98])
        bitmap = rng.random((h, w)) < density
        if rng.random() < 0.3:  # blobs: long runs, several groups per number
            bitmap = np.zeros((h, w), bool)
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            bitmap[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
        out.append(bitmap)
    return out


def test_matches_pycocotools_on_edge_cases_and_random_masks() -> None:
    bitmaps = edge_case_bitmaps() + random_bitmaps(1500, seed=7)
    strings = [coco_string(b) for b in bitmaps]
    heights = [b.shape[0] for b in bitmaps]
    widths = [b.shape[1] for b in bitmaps]
    stats = rle.mask_stats(strings, heights, widths)
    assert len(stats) == len(bitmaps)
    assert (stats.error == rle.OK).all()
    assert (stats.total == np.array(heights) * np.array(widths)).all()
    for i, (s, h, w) in enumerate(zip(strings, heights, widths)):
        area, bbox = coco_area_bbox(s, h, w)
        assert stats.area[i] == area == int(bitmaps[i].sum()), i
        assert stats.bbox[i].tolist() == bbox, (i, s, h, w)


def test_one_mask_at_a_time_equals_the_batch() -> None:
    bitmaps = random_bitmaps(60, seed=3)
    strings = [coco_string(b) for b in bitmaps]
    heights, widths = [b.shape[0] for b in bitmaps], [b.shape[1] for b in bitmaps]
    batch = rle.mask_stats(strings, heights, widths)
    for i in range(len(bitmaps)):
        one = rle.mask_stats([strings[i]], [heights[i]], [widths[i]])
        assert one.area[0] == batch.area[i] and one.bbox[0].tolist() == batch.bbox[i].tolist()


def test_run_lengths_equal_the_bitmap_runs() -> None:
    for bitmap in edge_case_bitmaps() + random_bitmaps(200, seed=11):
        flat = bitmap.flatten(order="F").astype(np.int8)
        changes = np.flatnonzero(np.diff(flat)) + 1
        expected = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
        if flat[0] == 1:
            expected = [0, *expected]
        assert rle.counts_from_string(coco_string(bitmap)).tolist() == expected


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(0, 3000), min_size=0, max_size=40),
    height=st.integers(1, 90),
)
def test_any_counts_list_matches_pycocotools(counts: list[int], height: int) -> None:
    """Arbitrary run lists (empty runs, long numbers, odd and even lengths) as pycocotools reads them."""
    total = sum(counts)
    width = max(1, -(-total // height))
    counts = counts + [height * width - total] if height * width > total else counts
    string = encode_counts(counts)
    assert rle.counts_from_string(string).tolist() == decode_counts(string) == counts
    stats = rle.mask_stats([string], [height], [width])
    area, bbox = coco_area_bbox(string, height, width)
    assert stats.error[0] == rle.OK
    assert stats.area[0] == area
    if area:  # of an empty mask pycocotools gives [0, 0, 0, 0] or, with empty runs of ones, unsigned garbage
        assert stats.bbox[0].tolist() == bbox
    else:
        assert stats.bbox[0].tolist() == [0, 0, 0, 0]


def test_big_numbers_use_wide_integers() -> None:
    """Runs beyond 2**30 need 7 groups; images beyond 2**31 pixels need 64-bit sums."""
    height, width = 65_000, 65_000  # 4.2e9 pixels
    counts = [1_000, height * width - 2_000, 1_000]
    string = encode_counts(counts)
    stats = rle.mask_stats([string, encode_counts([5, 7, 3])], [height, 3], [width, 5])
    assert stats.error.tolist() == [rle.OK, rle.OK]
    assert stats.total.tolist() == [height * width, 15]
    assert stats.area.tolist() == [height * width - 2_000, 7]
    assert stats.bbox[1].tolist() == [1.0, 0.0, 3.0, 3.0]  # pixels 5..11 of 3-high columns: columns 1-3


@pytest.mark.parametrize(
    ("string", "size", "error"),
    [
        ("6:1!1", (4, 4), rle.BAD_CHARACTER),  # '!' is below '0'
        ("6:1~1", (4, 4), rle.BAD_CHARACTER),  # '~' is above 'o'
        ("6:1P", (4, 4), rle.UNTERMINATED),  # 'P' has the "more groups" bit and nothing follows
        ("PPPPPPP0", (4, 4), rle.NUMBER_TOO_LONG),  # 8 groups
        ("1O`0", (4, 4), rle.NEGATIVE_RUN),  # runs 1, -1, 16: "O" is -1 (sign bit 0x10, no "more" bit)
        ("6:1", (5, 5), rle.WRONG_TOTAL),  # 6 + 10 + 1 = 17, not 25
        ("", (2, 2), rle.WRONG_TOTAL),  # no runs at all for 4 pixels
    ],
)
def test_invalid_strings_are_flagged(string: str, size: tuple[int, int], error: int) -> None:
    good = coco_string(np.eye(4))
    stats = rle.mask_stats([good, string, good], [4, size[0], 4], [4, size[1], 4])
    assert stats.error.tolist() == [rle.OK, error, rle.OK]  # neighbours are unaffected
    assert stats.area[0] == stats.area[2] == 4


def test_negative_run_from_a_negative_delta() -> None:
    counts = [2, 3, 4, 4, 1]
    string = encode_counts(counts)
    broken = encode_counts([2, 3, 4, -9, 14])  # a negative run that still sums to 14
    stats = rle.mask_stats([string, broken], [7, 7], [2, 2])
    assert stats.error.tolist() == [rle.OK, rle.NEGATIVE_RUN]


def test_empty_string_of_an_empty_image_and_empty_input() -> None:
    stats = rle.mask_stats([], [], [])
    assert len(stats) == 0
    zero = rle.mask_stats(["0"], [3], [0])  # one run of 0 zeros: a 3x0 image
    assert zero.error.tolist() == [rle.OK] and zero.bbox[0].tolist() == [0, 0, 0, 0]


def test_non_ascii_strings_raise() -> None:
    with pytest.raises(UnicodeEncodeError):
        rle.mask_stats(["6:é1"], [4], [4])
