"""The RLE decoders (native C extension, pycocotools fast path, numpy reference) against pycocotools and each other."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco

from sa1b_cli import rle, verify
from sa1b_cli.cli.edge import RLE_BACKEND_VARIABLE
from sa1b_cli.errors import ExitStatus
from sa1b_cli.verify.masks import MaskBatch, annotation_columns
from sa1b_cli.testing.generator import decode_counts, encode_counts, make_annotation
from sa1b_cli.testing.processes import run_sa1b

needs_fast_path = pytest.mark.skipif(rle._c_functions is None, reason="pycocotools' C functions not loadable")
needs_native = pytest.mark.skipif(rle._rlestats is None, reason="the C extension sa1b_cli._rlestats is not built")
DECODERS = [pytest.param(rle.mask_stats, id="mask_stats"), pytest.param(rle.numpy_mask_stats, id="numpy")]
# The decoders that take only well-formed masks (None for anything else).
FAST_DECODERS = [pytest.param(rle.fast_mask_stats, id="pycocotools", marks=needs_fast_path),
                 pytest.param(rle.native_mask_stats, id="native", marks=needs_native)]
FIELDS = ("error", "total", "area", "bbox")


def coco_string(bitmap: np.ndarray) -> str:
    return coco.encode(np.asfortranarray(bitmap.astype(np.uint8)))["counts"].decode("ascii")


def coco_area_bbox(counts: str, height: int, width: int) -> tuple[int, list[float]]:
    segmentation = {"size": [height, width], "counts": counts.encode("ascii")}
    return int(coco.area(segmentation)), [float(v) for v in coco.toBbox(segmentation)]


def assert_same(a: rle.MaskStats, b: rle.MaskStats) -> None:
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), (name, getattr(a, name), getattr(b, name))


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


def batch_of(bitmaps: list[np.ndarray]) -> tuple[list[str], list[int], list[int]]:
    return [coco_string(b) for b in bitmaps], [b.shape[0] for b in bitmaps], [b.shape[1] for b in bitmaps]


@pytest.mark.parametrize("decode", DECODERS)
def test_matches_pycocotools_on_edge_cases_and_random_masks(decode) -> None:
    bitmaps = edge_case_bitmaps() + random_bitmaps(1500, seed=7)
    strings, heights, widths = batch_of(bitmaps)
    stats = decode(strings, heights, widths)
    assert len(stats) == len(bitmaps)
    assert (stats.error == rle.OK).all()
    assert (stats.total == np.array(heights) * np.array(widths)).all()
    for i, (s, h, w) in enumerate(zip(strings, heights, widths)):
        area, bbox = coco_area_bbox(s, h, w)
        assert stats.area[i] == area == int(bitmaps[i].sum()), i
        assert stats.bbox[i].tolist() == bbox, (i, s, h, w)


@pytest.mark.parametrize("fast_decode", FAST_DECODERS)
def test_fast_path_takes_well_formed_masks_and_equals_the_numpy_decoder(fast_decode) -> None:
    """Mixed image sizes in one batch (one division per size), odd and even run counts."""
    strings, heights, widths = batch_of(edge_case_bitmaps() + random_bitmaps(600, seed=5))
    fast = fast_decode(strings, heights, widths)
    assert fast is not None
    assert_same(fast, rle.numpy_mask_stats(strings, heights, widths))


@pytest.mark.parametrize("fast_decode", FAST_DECODERS)
def test_sa1b_size_masks_of_two_image_shapes(fast_decode) -> None:
    """Full-size masks (hundreds of runs, numbers of several groups) of a portrait and a landscape image."""
    strings, heights, widths = [], [], []
    for image_id, (width, height) in enumerate(((1500, 2250), (2250, 1500)), start=1):
        doc = json.loads(make_annotation(image_id, width=width, height=height, masks_per_image=12))
        for ann in doc["annotations"]:
            strings.append(ann["segmentation"]["counts"])
            heights.append(height)
            widths.append(width)
    fast = fast_decode(strings, heights, widths)
    assert fast is not None
    assert_same(fast, rle.numpy_mask_stats(strings, heights, widths))
    for i, (s, h, w) in enumerate(zip(strings, heights, widths)):
        area, bbox = coco_area_bbox(s, h, w)
        assert fast.area[i] == area and fast.bbox[i].tolist() == bbox, i


@pytest.mark.parametrize("decode", DECODERS)
def test_one_mask_at_a_time_equals_the_batch(decode) -> None:
    strings, heights, widths = batch_of(random_bitmaps(60, seed=3))
    batch = decode(strings, heights, widths)
    for i in range(len(strings)):
        one = decode([strings[i]], [heights[i]], [widths[i]])
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
    assert_same(stats, rle.numpy_mask_stats([string], [height], [width]))
    area, bbox = coco_area_bbox(string, height, width)
    assert stats.error[0] == rle.OK
    assert stats.area[0] == area
    if area:  # of an empty mask pycocotools gives [0, 0, 0, 0] or, with empty runs of ones, unsigned garbage
        assert stats.bbox[0].tolist() == bbox
    else:
        assert stats.bbox[0].tolist() == [0, 0, 0, 0]


# Characters of the alphabet, mostly, and a few that are not (NUL, '!', '~', DEL).
STRING_CHARACTERS = st.one_of(st.characters(min_codepoint=48, max_codepoint=111),
                              st.sampled_from(["\x00", "!", "~", "\x7f"]))


@settings(max_examples=400, deadline=None)
@given(
    masks=st.lists(st.tuples(st.text(STRING_CHARACTERS, max_size=12), st.integers(0, 6), st.integers(0, 6)),
                   min_size=1, max_size=6),
    valid=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=6), max_size=3),
)
def test_any_strings_give_the_numpy_results_and_never_crash(masks: list[tuple[str, int, int]],
                                                            valid: list[list[int]]) -> None:
    """Garbage (unterminated numbers, NUL, bad sizes) next to valid masks: the fast path declines
    or agrees, field for field, with the general decoder."""
    strings = [s for s, _, _ in masks] + [encode_counts(runs) for runs in valid]
    heights = [h for _, h, _ in masks] + [1] * len(valid)
    widths = [w for _, _, w in masks] + [sum(runs) for runs in valid]
    reference = rle.numpy_mask_stats(strings, heights, widths)
    assert_same(rle.mask_stats(strings, heights, widths), reference)
    for fast_decode in (rle.fast_mask_stats, rle.native_mask_stats):
        try:
            fast = fast_decode(strings, heights, widths)
        except UnicodeEncodeError:  # never, but the general decoder would raise too
            continue
        if fast is not None:
            assert_same(fast, reference)


@pytest.mark.parametrize("decode", DECODERS)
def test_big_numbers_use_wide_integers(decode) -> None:
    """Runs beyond 2**30 need 7 groups; images beyond 2**31 pixels need 64-bit sums."""
    height, width = 65_000, 65_000  # 4.2e9 pixels
    counts = [1_000, height * width - 2_000, 1_000]
    string = encode_counts(counts)
    stats = decode([string, encode_counts([5, 7, 3])], [height, 3], [width, 5])
    assert stats.error.tolist() == [rle.OK, rle.OK]
    assert stats.total.tolist() == [height * width, 15]
    assert stats.area.tolist() == [height * width - 2_000, 7]
    assert stats.bbox[1].tolist() == [1.0, 0.0, 3.0, 3.0]  # pixels 5..11 of 3-high columns: columns 1-3


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    ("string", "size", "error"),
    [
        ("6:1!1", (4, 4), rle.BAD_CHARACTER),  # '!' is below '0'
        ("6:1~1", (4, 4), rle.BAD_CHARACTER),  # '~' is above 'o'
        ("6:\x001", (4, 4), rle.BAD_CHARACTER),  # NUL would end the string for C
        ("6:1P", (4, 4), rle.UNTERMINATED),  # 'P' has the "more groups" bit and nothing follows
        ("PPPPPPP0", (4, 4), rle.NUMBER_TOO_LONG),  # 8 groups
        ("1O`0", (4, 4), rle.NEGATIVE_RUN),  # runs 1, -1, 16: "O" is -1 (sign bit 0x10, no "more" bit)
        ("6:1", (5, 5), rle.WRONG_TOTAL),  # 6 + 10 + 1 = 17, not 25
        (encode_counts([10, 10]), (4, 4), rle.WRONG_TOTAL),  # 20, more than 16
        ("", (2, 2), rle.WRONG_TOTAL),  # no runs at all for 4 pixels
    ],
)
def test_invalid_strings_are_flagged(decode, string: str, size: tuple[int, int], error: int) -> None:
    good = coco_string(np.eye(4))
    stats = decode([good, string, good], [4, size[0], 4], [4, size[1], 4])
    assert stats.error.tolist() == [rle.OK, error, rle.OK]  # neighbours are unaffected
    assert stats.area[0] == stats.area[2] == 4


@pytest.mark.parametrize("fast_decode", FAST_DECODERS)
@pytest.mark.parametrize(
    ("string", "size"),
    [
        ("`PPPPP0", (4, 4)),  # 16 zeros written in 7 groups: valid, but beyond what the C decoder takes
        (encode_counts([2, 0, 3, 4, 7]), (4, 4)),  # an empty run of ones inside the mask
        ("6:1P", (4, 4)),  # unterminated: rleFrString would read past the string's end
        ("6:\x001", (4, 4)),
        ("1O`0", (4, 4)),
        ("6:1", (5, 5)),
        ("", (2, 2)),
        ("0", (3, 0)),  # an empty image
        (encode_counts([5, 2**29 - 10, 5]), (2**15, 2**14)),  # 2**29 pixels
    ],
)
def test_unusual_masks_go_to_the_numpy_decoder(fast_decode, string: str, size: tuple[int, int]) -> None:
    strings, heights, widths = [coco_string(np.eye(4)), string], [4, size[0]], [4, size[1]]
    assert fast_decode(strings, heights, widths) is None
    assert_same(rle.mask_stats(strings, heights, widths), rle.numpy_mask_stats(strings, heights, widths))


@needs_fast_path
def test_strings_reach_the_c_decoder_only_when_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """rleFrString reads past the end of an unterminated number (and writes past its buffer):
    such a batch must never get to it; a sound one gets there in a single call."""
    from_string, free = rle._c_functions
    passed: list[bytes] = []

    def recording(rle_struct, data: bytes, height: int, width: int) -> None:
        passed.append(data)
        from_string(rle_struct, data, height, width)

    monkeypatch.setattr(rle, "_c_functions", (recording, free))
    good = coco_string(np.eye(4))
    for broken in ("6:1P", "6:\x001", "`PPPPPP0"):
        assert rle.fast_mask_stats([good, broken, good], [4, 4, 4], [4, 4, 4]) is None
    assert passed == []
    assert rle.fast_mask_stats([good, good], [4, 4], [4, 4]) is not None
    assert passed == [("00" + good + good).encode()]  # 8 runs each: no padding needed


def test_negative_run_from_a_negative_delta() -> None:
    counts = [2, 3, 4, 4, 1]
    string = encode_counts(counts)
    broken = encode_counts([2, 3, 4, -9, 14])  # a negative run that still sums to 14
    for decode in (rle.mask_stats, rle.numpy_mask_stats):
        stats = decode([string, broken], [7, 7], [2, 2])
        assert stats.error.tolist() == [rle.OK, rle.NEGATIVE_RUN]


@pytest.mark.parametrize("decode", DECODERS)
def test_empty_string_of_an_empty_image_and_empty_input(decode) -> None:
    assert len(decode([], [], [])) == 0
    zero = decode(["0"], [3], [0])  # one run of 0 zeros: a 3x0 image
    assert zero.error.tolist() == [rle.OK] and zero.bbox[0].tolist() == [0, 0, 0, 0]


@needs_native
def test_native_decoder_declines_what_is_not_an_ascii_string() -> None:
    good = coco_string(np.eye(4))
    for odd in ("6:é1", "6:\ud8001", b"6:1"):
        assert rle.native_mask_stats([good, odd], [4, 4], [4, 4]) is None
    assert rle.native_mask_stats([good], [2**40], [2**40]) is None  # beyond the fast limit, no overflow
    assert rle.native_mask_stats([good, good], [4, 4], [4, 4]) is not None


@needs_native
def test_native_decoder_checks_its_buffers() -> None:
    area, bbox = np.empty(2, np.int64), np.empty((2, 4))
    with pytest.raises(ValueError, match="heights holds 8 bytes, expected 16"):
        rle._rlestats.mask_stats(["6:1", "6:1"], np.array([17], np.int64), np.array([1, 1], np.int64), area, bbox)


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")) or not sysconfig.get_config_var("CC"),
                    reason="no C compiler: the extension is optional and not built")
def test_native_extension_is_built_where_a_compiler_is_present() -> None:
    """An optional build fails quietly; where a compiler exists, a failure here means it broke."""
    assert rle._rlestats is not None, "sa1b_cli._rlestats did not build"
    assert rle.use_backend() == rle.NATIVE  # the fastest loaded, whatever SA1B_RLE_BACKEND says: the cli chooses


@pytest.mark.parametrize("decode", [*DECODERS, pytest.param(rle.fast_mask_stats, id="fast")])
def test_non_ascii_strings_raise(decode) -> None:
    with pytest.raises(UnicodeEncodeError):
        decode(["6:é1"], [4], [4])


@needs_fast_path
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident size from /proc")
def test_fast_path_frees_what_pycocotools_allocates() -> None:
    """Each call has rleFrString allocate the counts of the whole batch (here ~0.6 MB); none may stay."""
    rng = np.random.default_rng(1)
    strings, heights, widths = batch_of([rng.random((60, 60)) < 0.3 for _ in range(100)])

    def resident_bytes() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    for _ in range(20):  # warm up allocator and caches
        assert rle.fast_mask_stats(strings, heights, widths) is not None
    before = resident_bytes()
    for _ in range(150):
        rle.fast_mask_stats(strings, heights, widths)
    assert resident_bytes() - before < 20 * 2**20  # a leak would hold ~90 MB


def test_use_backend_chooses_a_slower_decoder_and_the_deep_check_follows() -> None:
    files = [json.loads(make_annotation(1, masks_per_image=3))["annotations"]]
    fastest = rle.BACKEND
    try:
        assert rle.use_backend(rle.NUMPY) == rle.BACKEND == rle.NUMPY
        assert rle.native_annotation_stats(files) is None  # verify's columns then come from the chosen decoder
        assert rle.mask_stats(["6:1"], [17], [1]).area.tolist() == [10]
        expected = rle.PYCOCOTOOLS if rle._c_functions is not None else rle.NUMPY
        assert rle.use_backend(rle.PYCOCOTOOLS) == expected  # not loaded: the next slower one
        assert rle.use_backend(rle.NATIVE) == fastest == rle.use_backend("")
    finally:
        rle.use_backend()


@pytest.fixture
def extracted_root(links_file: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root, "--extract")
    assert result.returncode == 0, result.stderr
    return root


def _deep_verify_backend(root: Path, env: dict[str, str]) -> str | None:
    result = run_sa1b("verify", "-d", root, "--deep", "--json", "--jobs", "2", env=env)
    [summary] = [r for r in map(json.loads, result.stdout.splitlines()) if r["type"] == "summary"]
    return summary["rle_backend"]


def test_the_backend_variable_reaches_verify_through_the_cli_edge(extracted_root: Path) -> None:
    assert _deep_verify_backend(extracted_root, {RLE_BACKEND_VARIABLE: "numpy"}) == rle.NUMPY
    assert _deep_verify_backend(extracted_root, {RLE_BACKEND_VARIABLE: " NumPy "}) == rle.NUMPY
    if rle._c_functions is not None:
        assert _deep_verify_backend(extracted_root, {RLE_BACKEND_VARIABLE: "pycocotools"}) == rle.PYCOCOTOOLS
    assert _deep_verify_backend(extracted_root, {RLE_BACKEND_VARIABLE: ""}) == rle.BACKEND


def test_an_unknown_backend_is_a_usage_error_naming_the_variable(extracted_root: Path) -> None:
    result = run_sa1b("verify", "-d", extracted_root, "--deep", env={RLE_BACKEND_VARIABLE: "numpyy"})
    assert result.returncode == ExitStatus.USAGE
    assert "SA1B_RLE_BACKEND='numpyy'" in result.stderr and "native, pycocotools, numpy" in result.stderr
    record = json.loads(run_sa1b("--json", "verify", "-d", extracted_root, env={RLE_BACKEND_VARIABLE: "x"}).stdout)
    assert record["type"] == "error" and record["exit_code"] == ExitStatus.USAGE


def test_verify_summary_names_the_backend() -> None:
    deep = verify.VerifyReport(root="/data", layout=None, level=verify.DEEP, tars=False)
    quick = verify.VerifyReport(root="/data", layout=None, level=verify.QUICK, tars=False)
    assert deep.summary()["rle_backend"] == rle.BACKEND
    assert quick.summary()["rle_backend"] is None


# ------------------------------------------------------------------ native annotation columns

def _general_columns(files: list[list]) -> rle.AnnotationColumns | None:
    paths = [f"f{i}.json" for i in range(len(files))]
    return annotation_columns(MaskBatch(paths, [(0, 0)] * len(files), files))


def assert_same_columns(a: rle.AnnotationColumns, b: rle.AnnotationColumns) -> None:
    for name in ("ids", "sizes", "bbox", "area"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert_same(a.stats, b.stats)


@needs_native
def test_native_annotation_stats_equal_the_general_path_on_sa1b_documents() -> None:
    files = [json.loads(make_annotation(i, width=w, height=h, masks_per_image=30))["annotations"]
             for i, (w, h) in enumerate([(1500, 2250), (2250, 1500), (64, 48), (1500, 2250)], start=1)]
    native = rle.native_annotation_stats(files)
    assert native is not None and len(native.ids) == 120
    assert_same_columns(native, _general_columns(files))
    assert rle.native_annotation_stats([]) is not None  # no files: empty columns
    assert rle.native_annotation_stats([[], files[2]]) is not None  # a file without annotations


ODD_VALUES = [True, None, "7", 7.5, 2**70, -1, 0, [], {}, [1, 2, 3], [1, 2, 3, 4, 5], [1.5, 2, 3, 4],
              [True, 2, 3, 4], ["1", 2, 3, 4], "6:1", "6:é1", [17, 1], [17.0, 1], [2**70, 1], [17], (17, 1)]


@needs_native
@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from([("id",), ("area",), ("bbox",), ("crop_box",), ("point_coords",), ("predicted_iou",),
                             ("stability_score",), ("segmentation",), ("segmentation", "size"),
                             ("segmentation", "counts")]),
       value=st.sampled_from([*ODD_VALUES, "missing"]),
       index=st.integers(0, 2))
def test_native_annotation_stats_decline_or_agree_on_odd_annotations(path: tuple[str, ...], value, index: int) -> None:
    """A field changed to a value of another type, or removed: the native path declines the
    batch, or (for values of a type it takes) gives exactly the general path's columns."""
    annotations = [json.loads(make_annotation(1, width=17, height=1, masks_per_image=3))["annotations"]][0]
    target = annotations[index]
    for key in path[:-1]:
        target = target[key]
    if value == "missing":
        del target[path[-1]]
    else:
        target[path[-1]] = value
    native = rle.native_annotation_stats([annotations])
    general = _general_columns([annotations])
    if native is not None:
        assert general is not None
        assert_same_columns(native, general)
    assert native is None or general is not None


@needs_native
def test_native_annotation_stats_take_exact_types_only() -> None:
    files = [json.loads(make_annotation(1, masks_per_image=2))["annotations"]]
    assert rle.native_annotation_stats(files) is not None
    files[0][1]["id"] = 5.0  # integral, but not an int: the general path decides
    assert rle.native_annotation_stats(files) is None
    assert rle.native_annotation_stats([("not", "a list")]) is None
    with pytest.raises(TypeError):
        rle._rlestats.annotation_stats((), *[np.empty(0)] * 6)
