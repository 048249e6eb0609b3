"""``sa1b verify`` on real generated parts: sound sets pass, every kind of damage is found and named."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from PIL import Image

from sa1b_cli.cli import cli
from sa1b_cli.errors import ExitStatus, UsageError
from sa1b_cli.extract import extract_parts
from sa1b_cli.integrity import check_part, hash_file
from sa1b_cli.jpeg import JpegError, check_jpeg
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore, VerifyReceipt
from sa1b_cli.testing.generator import decode_counts, encode_counts, make_jpeg, make_parts, truncate_file
from sa1b_cli.verify import cache
from sa1b_cli.verify import (
    ALL_UNIT,
    FULL_DATASET_PAIRS,
    Problem,
    VerifyReport,
    deep_check_pair,
    verify_dataset,
    verify_directory,
)

N_PARTS, PAIRS, MASKS = 3, 6, 5
TOTAL = N_PARTS * PAIRS


def _download_receipt(paths: RootPaths, tar: Path) -> None:
    check = check_part(tar)
    ReceiptStore(paths).write(DownloadReceipt(
        part=tar.name, size=check.size, md5=check.md5, sha256=check.sha256, compressed=check.compressed,
        members=check.members, images=check.images, annotations=check.annotations,
    ))


def _build(root: Path, layout: str) -> Path:
    paths = RootPaths(root)
    paths.tars.mkdir(parents=True)
    parts = make_parts(paths.tars, N_PARTS, PAIRS, masks_per_image=MASKS, seed=5)
    for info in parts:
        _download_receipt(paths, info.path)
    result = extract_parts(paths, [p.name for p in parts], layout, jobs=1, durable=False)
    assert all(p.ok for p in result.parts), result.summary()
    return root


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("verify") / "root", "parts")


@pytest.fixture(scope="module")
def split_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("verify_split") / "root", "split")


@pytest.fixture
def root(master: Path, tmp_path: Path) -> Path:
    """A private copy of the extracted dataset (3 parts of 6 pairs, receipts, manifests, tars)."""
    return Path(shutil.copytree(master, tmp_path / "root"))


def run(root: Path, **options: object) -> VerifyReport:
    options.setdefault("expected", TOTAL)
    options.setdefault("jobs", 1)
    return verify_dataset(RootPaths(root), **options)  # type: ignore[arg-type]


def all_problems(report: VerifyReport) -> list[Problem]:
    return [*report.problems.listed, *(p for part in report.parts for p in part.problems.listed)]


def find(report: VerifyReport, kind: str) -> list[Problem]:
    return [p for p in all_problems(report) if p.kind == kind]


def part_dir(root: Path, index: int = 0) -> Path:
    return root / "extracted" / f"sa_{index:06d}"


def first_pair(root: Path, index: int = 0) -> tuple[Path, Path]:
    image_id = min(int(p.stem[3:]) for p in part_dir(root, index).glob("*.jpg"))
    return part_dir(root, index) / f"sa_{image_id}.jpg", part_dir(root, index) / f"sa_{image_id}.json"


def edit_annotation(path: Path, change: Callable[[dict], None]) -> None:
    doc = orjson.loads(path.read_bytes())
    change(doc)
    path.write_bytes(orjson.dumps(doc))


def part_result(report: VerifyReport, index: int):  # type: ignore[no-untyped-def]
    return next(p for p in report.parts if p.name == f"sa_{index:06d}.tar")


# --------------------------------------------------------------------------- sound data


def test_sound_dataset_passes_deep_with_worker_processes(root: Path) -> None:
    report = run(root, deep=True, jobs=2)
    assert report.exit_status == ExitStatus.OK, all_problems(report)
    assert [p.status for p in report.parts] == ["ok"] * N_PARTS
    assert (report.images, report.annotations) == (TOTAL, TOTAL)
    summary = report.summary()
    assert summary["pairs_checked"] == TOTAL and summary["masks_checked"] == TOTAL * MASKS
    receipt = ReceiptStore(RootPaths(root)).read(VerifyReceipt, "sa_000001.tar")
    assert receipt is not None and receipt.ok is True and receipt.level == "deep"


def test_cli_quick_check_exits_zero(root: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", "-d", str(root), "--expected", str(TOTAL), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "all sound" in result.output


# --------------------------------------------------------------------------- damage


def _replace_jpeg_with_other_size(jpg: Path, _json: Path) -> None:
    jpg.write_bytes(make_jpeg(int(jpg.stem[3:]), width=32, height=24))


def _bad_counts(jpg: Path, json_path: Path) -> None:
    def change(doc: dict) -> None:
        segmentation = doc["annotations"][0]["segmentation"]
        runs = decode_counts(segmentation["counts"])
        runs[-1] += 1
        segmentation["counts"] = encode_counts(runs)
    edit_annotation(json_path, change)


def _set(field: str, value: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    def damage(_jpg: Path, json_path: Path) -> None:
        edit_annotation(json_path, lambda doc: doc["annotations"][2].__setitem__(field, value(doc["annotations"][2])))
    return damage


DAMAGE: dict[str, tuple[Callable[[Path, Path], None], str, str, ExitStatus]] = {
    # name: (damage, problem kind, file named ("jpg" or "json"), exit status)
    "missing image": (lambda jpg, _: jpg.unlink(), "missing-image", "jpg", ExitStatus.INCOMPLETE),
    "missing json": (lambda _, js: js.unlink(), "missing-annotation", "json", ExitStatus.INCOMPLETE),
    "truncated jpeg": (lambda jpg, _: truncate_file(jpg, -100), "jpeg", "jpg", ExitStatus.CORRUPT),
    "json not parseable": (lambda _, js: truncate_file(js, -30), "json", "json", ExitStatus.CORRUPT),
    "wrong area": (_set("area", lambda a: a["area"] + 7), "area", "json", ExitStatus.CORRUPT),
    "wrong bbox": (_set("bbox", lambda a: [a["bbox"][0] + 3, *a["bbox"][1:]]), "bbox", "json", ExitStatus.CORRUPT),
    "wrong mask size": (_set("segmentation", lambda a: {**a["segmentation"], "size": [49, 64]}), "mask-size", "json",
                        ExitStatus.CORRUPT),
    "rle not summing to h*w": (_bad_counts, "rle", "json", ExitStatus.CORRUPT),
    "image size differs": (_replace_jpeg_with_other_size, "image-size", "jpg", ExitStatus.CORRUPT),
    "schema field missing": (lambda _, js: edit_annotation(js, lambda d: d["annotations"][1].pop("predicted_iou")),
                             "schema", "json", ExitStatus.CORRUPT),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_each_kind_of_damage_is_found_and_named(root: Path, name: str) -> None:
    damage, kind, named, status = DAMAGE[name]
    jpg, json_path = first_pair(root, 1)
    damage(jpg, json_path)
    report = run(root, deep=True)
    found = find(report, kind)
    assert found, f"{name}: no {kind} problem in {all_problems(report)}"
    assert found[0].path == str(jpg if named == "jpg" else json_path)
    assert report.exit_status == status
    assert part_result(report, 1).status == ("corrupt" if status == ExitStatus.CORRUPT else "incomplete")
    assert part_result(report, 0).ok and part_result(report, 2).ok


def test_problem_messages_say_what_is_wrong(root: Path) -> None:
    jpg, json_path = first_pair(root, 0)
    edit_annotation(json_path, lambda d: d["annotations"][1].pop("crop_box"))
    _, other = first_pair(root, 2)
    _set("area", lambda a: a["area"] + 7)(jpg, other)
    report = run(root, deep=True)
    (schema,) = find(report, "schema")
    assert "crop_box missing" in schema.message and "annotations[1]" in schema.message
    assert {p.path for p in find(report, "size-changed")} == {str(json_path), str(other)}  # seen by the quick check
    (area,) = find(report, "area")
    annotation = orjson.loads(other.read_bytes())["annotations"][2]
    assert area.path == str(other)
    assert f"annotation id {annotation['id']} (mask 3)" in area.message
    assert f"area is {annotation['area']} but the mask has {annotation['area'] - 7} pixels" in area.message


def test_same_size_damage_is_only_seen_by_deep_check(root: Path) -> None:
    _, json_path = first_pair(root, 0)
    data = bytearray(json_path.read_bytes())
    position = data.index(b'"counts": "') + len(b'"counts": "')
    data[position] = ord("~")  # outside the RLE alphabet; same size, still valid JSON
    json_path.write_bytes(bytes(data))
    assert run(root).exit_status == ExitStatus.OK
    report = run(root, deep=True)
    (problem,) = find(report, "rle")
    assert "outside the RLE alphabet" in problem.message and problem.path == str(json_path)


def test_zero_filled_and_garbage_jpegs(tmp_path: Path) -> None:
    good = make_jpeg(3, width=40, height=30)
    path = tmp_path / "x.jpg"
    path.write_bytes(good)
    assert (check_jpeg(path).width, check_jpeg(path).height) == (40, 30)
    damaged = (
        (good[:-500] + bytes(500), "end-of-image"),  # zero-filled tail (preallocated, never written)
        (b"GIF89a" + good[6:], "start-of-image"),
        (good[:2] + bytes(len(good) - 4) + good[-2:], "expected a marker"),
        (b"\xff\xd8", "too short"),
    )
    for broken, words in damaged:
        path.write_bytes(broken)
        with pytest.raises(JpegError, match=words):
            check_jpeg(path)


def test_jpeg_headers_longer_than_the_first_read_and_progressive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    image = Image.new("RGB", (33, 17), (10, 20, 30))
    image.save(buffer, "JPEG", icc_profile=bytes(200_000), progressive=True)  # ICC split over 4 APP2 segments
    path = tmp_path / "big_header.jpg"
    path.write_bytes(buffer.getvalue())
    info = check_jpeg(path)
    assert (info.width, info.height) == (33, 17)


# --------------------------------------------------------------------------- completeness


def test_missing_parts_and_files_are_incomplete(root: Path) -> None:
    shutil.rmtree(part_dir(root, 1))
    report = run(root, parts=[f"sa_{i:06d}.tar" for i in range(4)], expected=None)
    assert report.exit_status == ExitStatus.INCOMPLETE
    statuses = {p.name: p.status for p in report.parts}
    assert statuses == {"sa_000000.tar": "ok", "sa_000001.tar": "not-extracted", "sa_000002.tar": "ok",
                        "sa_000003.tar": "missing"}
    assert "extracted files are gone" in part_result(report, 1).problems.listed[0].message
    assert report.missing_parts == ["sa_000001.tar", "sa_000003.tar"]


def test_whole_dataset_is_expected_without_a_selection(root: Path) -> None:
    report = run(root, expected=None)
    assert report.exit_status == ExitStatus.INCOMPLETE
    assert len(report.parts) == 1000 and len(report.missing_parts) == 1000 - N_PARTS
    total = find(report, "count")[0]
    assert total.path == str(root) and f"expected {FULL_DATASET_PAIRS:,}" in total.message


def test_arrived_checks_the_parts_there_and_awaits_the_rest(root: Path) -> None:
    sound = run(root, expected=None, arrived=True)
    assert sound.arrived_only and sound.expected_total is None and sound.checked_parts == N_PARTS
    assert sound.exit_status == ExitStatus.PARTIAL and sound.problems_total == 0
    assert len(sound.not_arrived) == 1000 - N_PARTS and sound.missing_parts == []
    shutil.rmtree(part_dir(root, 1))  # extracted once, gone: a problem even while parts are still to come
    report = run(root, expected=None, arrived=True)
    assert report.missing_parts == ["sa_000001.tar"] and "sa_000001.tar" not in report.not_arrived
    assert report.exit_status == ExitStatus.INCOMPLETE
    with pytest.raises(UsageError):
        run(root, arrived=True)  # with --expected: what must all be there


def test_extra_files_and_wrong_totals(root: Path) -> None:
    (part_dir(root, 0) / "notes.txt").write_text("hello")
    (root / "extracted" / "stray").mkdir()
    report = run(root, expected=TOTAL + 1)
    extras = {p.path for p in find(report, "extra-file")}
    assert extras == {str(part_dir(root, 0) / "notes.txt"), str(root / "extracted" / "stray")}
    assert any(f"{TOTAL:,} images" in p.message and "+" not in p.message for p in find(report, "count"))
    assert report.exit_status == ExitStatus.INCOMPLETE


def test_a_fifo_named_like_an_image_is_named_as_such(tmp_path: Path, master: Path) -> None:
    """Never opened (a read would block); reported as what it is, and its partner as unpaired."""
    root = tmp_path / "fifo"
    with tarfile.open(sorted((master / "tars").glob("*.tar"))[0]) as archive:
        archive.extractall(root / "extracted", filter="data")
    image = root / "extracted" / "sa_1.jpg"
    image.unlink()
    os.mkfifo(image)
    report = run(root, deep=True)
    (extra,) = find(report, "extra-file")
    assert extra.path == str(image) and extra.message == "extra: named like an SA-1B file but a FIFO"
    assert [p.path for p in find(report, "missing-image")] == [str(image)]
    assert report.exit_status != ExitStatus.OK


def test_unpaired_files_without_manifest_or_receipts(tmp_path: Path, master: Path) -> None:
    """Parts unpacked by hand with tar: pairs and counts are still checked, from the files alone."""
    root = tmp_path / "by_hand"
    for tar in sorted((master / "tars").glob("*.tar")):
        with tarfile.open(tar) as archive:
            archive.extractall(root / "extracted" / tar.stem, filter="data")
    (root / "extracted" / "sa_000000" / "sa_1.json").unlink()
    report = run(root)
    (problem,) = find(report, "missing-annotation")
    assert problem.path == str(root / "extracted" / "sa_000000" / "sa_1.json")
    assert "sa_1.jpg has no annotation" in problem.message
    assert report.exit_status == ExitStatus.INCOMPLETE


def test_flat_folder_without_manifests_is_one_unit(tmp_path: Path, master: Path) -> None:
    root = tmp_path / "flat"
    for tar in sorted((master / "tars").glob("*.tar")):
        with tarfile.open(tar) as archive:
            archive.extractall(root / "extracted", filter="data")
    report = run(root, deep=True)
    assert report.layout == "flat" and [p.name for p in report.parts] == [ALL_UNIT]
    assert report.exit_status == ExitStatus.OK and report.parts[0].pairs_checked == TOTAL
    (root / "extracted" / "sa_999.jpg").write_bytes(make_jpeg(999))
    report = run(root)
    assert [p.path for p in find(report, "missing-annotation")] == [str(root / "extracted" / "sa_999.json")]


def test_split_layout_uses_each_parts_manifest(split_master: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(split_master, tmp_path / "split"))
    report = run(root, deep=True)
    assert report.layout == "split" and report.exit_status == ExitStatus.OK
    assert [p.images for p in report.parts] == [PAIRS] * N_PARTS
    victim = sorted((root / "annotations").glob("*.json"))[0]
    victim.unlink()
    (root / "images" / "sa_999.jpg").write_bytes(make_jpeg(999))  # in no part's manifest
    (root / "annotations" / "notes.txt").write_text("hello")
    report = run(root)
    (problem,) = find(report, "missing-annotation")
    assert problem.path == str(victim) and "extraction manifest" in problem.message
    extras = {p.path: p.message for p in find(report, "extra-file")}
    assert set(extras) == {str(root / "images"), str(root / "annotations" / "notes.txt")}
    assert "1 images here belong to no extracted part" in extras[str(root / "images")]


# --------------------------------------------------------------------------- receipts, cache


def test_second_run_uses_receipts_until_a_file_changes(root: Path) -> None:
    first = run(root, deep=True)
    assert not any(p.cached for p in first.parts)
    second = run(root, deep=True)
    assert all(p.cached for p in second.parts)
    assert second.summary()["pairs_checked"] == TOTAL  # from the receipts
    jpg, _ = first_pair(root, 2)
    truncate_file(jpg, -50)
    third = run(root, deep=True)
    assert [p.cached for p in third.parts] == [True, True, False]
    assert find(third, "jpeg")[0].path == str(jpg)
    assert run(root, deep=True, force=True).parts[0].cached is False


def _after_a_clock_tick() -> None:
    """File systems stamp with a coarse clock (a few ms): let a change land in a later tick than the stamp."""
    time.sleep(0.05)


def test_unchanged_folders_are_not_listed_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """O(parts): a rerun reuses receipts by folder stamp alone; an added file changes its folder's
    stamp; a file truncated in place does not (its folder is untouched): --rescan finds it."""
    monkeypatch.setattr(cache, "STAMP_SETTLE_NS", 0)  # the copies were just made: trust their stamps at once
    first = run(root, deep=True)
    assert all(p.listed and not p.cached for p in first.parts) and first.exit_status == ExitStatus.OK
    second = run(root, deep=True)
    assert all(p.cached and not p.listed for p in second.parts)
    assert second.summary()["pairs_checked"] == TOTAL and second.summary()["listed"] == 0
    assert second.exit_status == ExitStatus.OK

    _after_a_clock_tick()
    (part_dir(root, 1) / "notes.txt").write_text("hello")
    third = run(root, deep=True)
    assert [p.listed for p in third.parts] == [False, True, False]
    assert [p.path for p in find(third, "extra-file")] == [str(part_dir(root, 1) / "notes.txt")]

    jpg, _ = first_pair(root, 2)
    truncate_file(jpg, -50)
    assert run(root, deep=True).exit_status == ExitStatus.INCOMPLETE  # only the extra file: part 2 not listed
    rescan = run(root, deep=True, rescan=True)
    assert all(p.listed for p in rescan.parts)
    assert [p.path for p in find(rescan, "size-changed")] == [str(jpg)]
    assert find(rescan, "jpeg")[0].path == str(jpg)  # the changed file was read again
    assert rescan.exit_status == ExitStatus.CORRUPT


def test_folders_changed_moments_ago_are_always_listed(root: Path) -> None:
    """A stamp taken right after a change could match a later change in the same clock tick: not kept."""
    run(root)
    again = run(root)
    assert all(p.listed and p.cached for p in again.parts)
    receipt = ReceiptStore(RootPaths(root)).all(VerifyReceipt)["sa_000000.tar"]
    assert receipt.folder_stamp is None


def test_cli_rescan_option(root: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", "-d", str(root), "--expected", str(TOTAL), "--rescan", "--json", "-j", "1"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.output.strip().splitlines()[-1])
    assert summary["listed"] == 3


def test_a_quick_receipt_does_not_satisfy_a_deep_check(root: Path) -> None:
    run(root)
    deep = run(root, deep=True)
    assert not any(p.cached for p in deep.parts) and deep.summary()["pairs_checked"] == TOTAL
    quick = run(root)
    assert all(p.cached and p.level == "deep" for p in quick.parts)  # a deep receipt satisfies a quick check


# --------------------------------------------------------------------------- tars


def test_tars_against_receipts_and_a_checksum_list(root: Path, tmp_path: Path) -> None:
    report = run(root, tars=True)
    assert report.exit_status == ExitStatus.OK
    assert report.parts[0].tar is not None and report.parts[0].tar.checked == ["size", "md5", "sha256"]
    assert run(root, tars=True).parts[0].tar.cached  # type: ignore[union-attr]

    tar = root / "tars" / "sa_000001.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    tar.write_bytes(bytes(data))
    report = run(root, tars=True)
    (problem,) = find(report, "tar-hash")[:1]
    assert problem.path == str(tar) and "changed after download" in problem.message
    assert report.exit_status == ExitStatus.CORRUPT

    md5s = {p.name: hash_file(p)[1] for p in sorted((root / "tars").glob("*.tar"))}
    md5s["sa_000002.tar"] = "0" * 32
    listing = tmp_path / "checklist.txt"
    listing.write_text("".join(f"{md5}  {name}\n" for name, md5 in md5s.items()))
    report = run(root, checksums=listing)
    (listed,) = find(report, "tar-checksum")
    assert listed.path == str(root / "tars" / "sa_000002.tar") and "checksum list" in listed.message
    assert not find(report, "tar-checksum")[1:] and report.tars


# --------------------------------------------------------------------------- output


def test_json_lines_and_report_file(root: Path, tmp_path: Path) -> None:
    jpg, _ = first_pair(root, 0)
    truncate_file(jpg, -10)
    report_file = tmp_path / "out" / "verify.json"
    result = CliRunner().invoke(cli, ["verify", "-d", str(root), "--deep", "--json", "--expected", str(TOTAL),
                                      "-j", "1", "--report", str(report_file)])
    assert result.exit_code == ExitStatus.CORRUPT, result.output
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    parts = [r for r in records if r["type"] == "part"]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["command"] == "verify" and summary["exit_code"] == 6
    assert len(parts) == N_PARTS and parts[0]["status"] == "corrupt"
    assert any(p["path"] == str(jpg) and p["kind"] == "jpeg" for p in parts[0]["problems"])
    written = orjson.loads(report_file.read_bytes())
    assert written["exit_code"] == 6 and len(written["part_results"]) == N_PARTS


def test_plain_output_names_the_problems(root: Path) -> None:
    _, json_path = first_pair(root, 1)
    json_path.unlink()
    result = CliRunner().invoke(cli, ["verify", "-d", str(root), "--parts", "0-3", "-j", "1"])
    assert result.exit_code == ExitStatus.INCOMPLETE
    assert f"incomplete: {json_path}: missing" in result.output
    assert "missing: 1 part: sa_000003.tar" in result.output


# --------------------------------------------------------------------------- library helpers


def test_single_pair_and_directory_helpers(master: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(part_dir(master, 0), tmp_path / "folder"))
    assert verify_directory(folder).ok
    json_path = sorted(folder.glob("*.json"))[0]
    jpg = json_path.with_suffix(".jpg")
    assert deep_check_pair(jpg, json_path).ok
    os.truncate(json_path, 10)
    checked = deep_check_pair(jpg, json_path)
    assert [p.kind for p in checked.problems.listed] == ["json"]
    assert verify_directory(folder).status == "corrupt"
