"""``sa1b extract``: layouts, hostile and broken archives, crash safety, --remove-tars, CLI.

Everything runs on real tars written by ``sa1b_cli.testing.generator`` (real JPEGs,
real RLE JSON) or crafted with ``tarfile``; crashes are real SIGKILLs of a real
``sa1b extract`` process.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from isal import igzip

from sa1b_cli import extract
from sa1b_cli.cli import cli
from sa1b_cli.errors import ExitStatus, LayoutError
from sa1b_cli.events import RecordingReporter
from sa1b_cli.integrity import ArchiveError, check_part, hash_file
from sa1b_cli.store import DownloadReceipt, ExtractReceipt, ReceiptStore, Stage, atomic_write_json
from sa1b_cli.store.locks import PartLock
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.processes import sa1b_env
from sa1b_cli.testing.generator import (
    HOSTILE_KINDS, PartInfo, make_annotation, make_jpeg, make_parts, truncate_file, write_hostile_tar, write_part,
)


# ----------------------------------------------------------------------------- helpers


def tar_contents(path: Path) -> dict[str, bytes]:
    """Regular files of a tar (any compression), read independently with tarfile."""
    with tarfile.open(path) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def add_downloaded(paths: RootPaths, source: Path, name: str | None = None) -> str:
    """Put ``source`` into ROOT/tars with its download receipt, as ``sa1b download`` leaves it.

    A tar the download check refuses (a hostile one) gets a receipt made from its bytes alone,
    as if it was replaced after its download: extract must refuse it on its own.
    """
    name = name or source.name
    paths.tars.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, paths.tar(name))
    ReceiptStore(paths).write(DownloadReceipt(name, url="https://cdn.invalid/redacted", **receipt_fields(paths.tar(name))))
    return name


def receipt_fields(tar: Path) -> dict[str, object]:
    try:
        check = check_part(tar)
    except ArchiveError:
        size, md5, sha256 = hash_file(tar)
        return {"size": size, "md5": md5, "sha256": sha256, "compressed": tar.read_bytes()[:2] == b"\x1f\x8b"}
    return {"size": check.size, "md5": check.md5, "sha256": check.sha256, "compressed": check.compressed,
            "members": check.members, "images": check.images, "annotations": check.annotations}


def set_download_size(paths: RootPaths, name: str, size: int) -> None:
    """The download receipt of ``name`` rewritten to say ``size`` bytes (the tar was cut to that on purpose)."""
    store = ReceiptStore(paths)
    store.write(dataclasses.replace(store.read(DownloadReceipt, name), size=size, time=""))


def extract_receipt(paths: RootPaths, name: str) -> ExtractReceipt | None:
    return ReceiptStore(paths).read(ExtractReceipt, name)


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def visible_files(root: Path) -> list[Path]:
    """Every file a user sees (everything outside tars/ and .sa1b/)."""
    return [p for p in files_under(root) if p.relative_to(root).parts[0] not in ("tars", ".sa1b")]


def assert_no_leftovers(paths: RootPaths) -> None:
    assert not paths.tmp.exists() or not any(paths.tmp.iterdir()), list(paths.tmp.iterdir())


def assert_extracted(paths: RootPaths, layout: str, name: str, source: Path) -> None:
    """Every file of ``source`` is where the layout puts it, byte for byte, and the receipt/manifest say so."""
    expected = tar_contents(source)
    where = extract.part_file_locations(paths, layout, name)
    listed = {entry.name: path for entry, path in where.files()}
    assert set(listed) == set(expected)
    for member, data in expected.items():
        assert listed[member].read_bytes() == data
    receipt = extract_receipt(paths, name)
    assert receipt is not None and receipt.layout == layout
    assert receipt.files == len(expected)
    assert receipt.images == sum(m.endswith(".jpg") for m in expected)
    assert receipt.annotations == sum(m.endswith(".json") for m in expected)
    assert receipt.bytes == sum(len(d) for d in expected.values())
    assert receipt.source_sha256 == ReceiptStore(paths).read(DownloadReceipt, name).sha256


@pytest.fixture
def paths(tmp_path: Path) -> RootPaths:
    root = tmp_path / "root"
    root.mkdir()
    return RootPaths(root)


@pytest.fixture(scope="module")
def plain_parts(tmp_path_factory: pytest.TempPathFactory) -> list[PartInfo]:
    """Two uncompressed parts (ids 1..8)."""
    return make_parts(tmp_path_factory.mktemp("plain"), 2, 4, masks_per_image=3, seed=1, compress=False)


@pytest.fixture(scope="module")
def large_part(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~60 MB gzip part that takes a noticeable time to extract (real JPEGs, reused; stored blocks: quick to write)."""
    directory = tmp_path_factory.mktemp("large")
    jpegs = [make_jpeg(i, width=640, height=480, noise=60, jpeg_quality=95) for i in range(8)]
    path = directory / "sa_000009.tar"
    with igzip.open(path, "wb", compresslevel=0) as gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        dot = tarfile.TarInfo(".")
        dot.type = tarfile.DIRTYPE
        tar.addfile(dot)
        for image_id in range(1000, 1000 + 300):
            for member, data in ((f"./sa_{image_id}.jpg", jpegs[image_id % 8]),
                                 (f"./sa_{image_id}.json", make_annotation(image_id, width=640, height=480))):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def crafted_tar(path: Path, members: list[tuple[str, bytes]], *, fmt: int = tarfile.PAX_FORMAT) -> Path:
    """A gzip tar with exactly these regular files after a ``.`` entry (names as given)."""
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        dot = tarfile.TarInfo(".")
        dot.type = tarfile.DIRTYPE
        tar.addfile(dot)
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def run_cli(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(cli, list(args))
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, records, result.output


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("layout", extract.LAYOUTS)
def test_each_layout_puts_every_file_where_part_file_locations_says(
        paths: RootPaths, small_parts: list[PartInfo], layout: str) -> None:
    names = [add_downloaded(paths, p.path) for p in small_parts]
    reporter = RecordingReporter()
    result = extract.extract_parts(paths, names, layout, jobs=2, reporter=reporter)

    assert result.exit_status == ExitStatus.OK
    assert [p.status for p in result.parts] == [extract.EXTRACTED] * 3
    assert reporter.kinds().count("part_extracted") == 3
    for part, name in zip(small_parts, names):
        assert_extracted(paths, layout, name, part.path)
    expected_dirs = {"parts": {"extracted"}, "split": {"images", "annotations"}, "flat": {"extracted"}}[layout]
    assert {p.name for p in paths.root.iterdir()} == expected_dirs | {"tars", ".sa1b"}
    if layout == "parts":
        assert (paths.root / "extracted" / "sa_000000" / "sa_1.jpg").is_file()
    elif layout == "split":
        assert (paths.root / "images" / "sa_1.jpg").is_file() and (paths.root / "annotations" / "sa_1.json").is_file()
    else:
        assert (paths.root / "extracted" / "sa_1.jpg").is_file()
    assert json.loads(paths.layout_file.read_text())["layout"] == layout
    assert extract.read_layout(paths) == layout
    assert_no_leftovers(paths)


def test_plain_tar_is_extracted_like_gzip(paths: RootPaths, plain_parts: list[PartInfo]) -> None:
    names = [add_downloaded(paths, p.path) for p in plain_parts]
    result = extract.extract_parts(paths, names, "flat", jobs=1)
    assert [p.status for p in result.parts] == [extract.EXTRACTED] * 2
    for part, name in zip(plain_parts, names):
        assert_extracted(paths, "flat", name, part.path)
        assert extract_receipt(paths, name).compressed is False


def test_second_run_skips_finished_parts_and_refills_a_missing_file(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    names = [add_downloaded(paths, p.path) for p in small_parts]
    extract.extract_parts(paths, names, "split", jobs=2)
    kept = paths.root / "images" / "sa_2.jpg"
    inode = kept.stat().st_ino

    again = extract.extract_parts(paths, names, None, jobs=2)
    assert [p.status for p in again.parts] == [extract.ALREADY] * 3
    assert kept.stat().st_ino == inode

    (paths.root / "images" / "sa_1.jpg").unlink()
    repaired = extract.extract_parts(paths, names, None, jobs=2)
    assert [p.status for p in repaired.parts] == [extract.EXTRACTED, extract.ALREADY, extract.ALREADY]
    assert_extracted(paths, "split", names[0], small_parts[0].path)
    assert kept.stat().st_ino == inode  # identical files of the part itself are kept, never rewritten
    assert_no_leftovers(paths)


def test_layout_change_is_refused_and_the_recorded_layout_is_the_default(
        paths: RootPaths, small_parts: list[PartInfo]) -> None:
    name = add_downloaded(paths, small_parts[0].path)
    extract.extract_parts(paths, [name], "split")
    with pytest.raises(LayoutError, match="--layout split"):
        extract.extract_parts(paths, [name], "parts")

    code, _, output = run_cli("extract", "-d", str(paths.root), "--layout", "flat")
    assert code == ExitStatus.USAGE
    assert "extracted with --layout split" in output and "refusing --layout flat" in output

    add_downloaded(paths, small_parts[1].path)
    code, records, _ = run_cli("extract", "-d", str(paths.root), "--json")
    assert code == ExitStatus.OK
    assert records[-1]["layout"] == "split" and records[-1]["extracted"] == 1
    assert (paths.root / "images" / "sa_5.jpg").is_file()
    assert not (paths.root / "extracted").exists()


def test_not_downloaded_parts_are_reported_not_extracted(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    done = add_downloaded(paths, small_parts[0].path)
    shutil.copyfile(small_parts[1].path, paths.tar(small_parts[1].name))  # a tar without a receipt
    shutil.copyfile(small_parts[2].path, paths.tar(small_parts[2].name))  # a receipt an older sa1b left incomplete
    atomic_write_json(paths.receipt("download", small_parts[2].name), {"part": small_parts[2].name, "complete": False})

    reporter = RecordingReporter()
    result = extract.extract_parts(paths, extract.select_parts(paths, None, None), None, reporter=reporter)

    assert {p.part: p.status for p in result.parts} == {
        done: extract.EXTRACTED, small_parts[1].name: extract.NOT_DOWNLOADED, small_parts[2].name: extract.NOT_DOWNLOADED}
    assert result.exit_status == ExitStatus.OK
    assert not (paths.root / "extracted" / "sa_000001").exists() and not (paths.root / "extracted" / "sa_000002").exists()
    skipped = [data for kind, _, data in reporter.events if kind == "part_skipped"]
    assert {d["part"] for d in skipped} == {small_parts[1].name, small_parts[2].name}
    assert all(d["reason"] == "not_downloaded" for d in skipped)


# ----------------------------------------------------------------------- hostile tars


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_member_fails_the_part_and_leaves_nothing(
        paths: RootPaths, tmp_path: Path, small_parts: list[PartInfo], kind: str) -> None:
    absolute_target = Path("/tmp/sa1b_hostile_absolute.jpg")
    existed_before = absolute_target.exists()
    hostile = write_hostile_tar(tmp_path / "sa_000007.tar", kind)
    bad = add_downloaded(paths, tmp_path / "sa_000007.tar")
    good = add_downloaded(paths, small_parts[1].path)  # ids 5..8: no clash with the hostile part's sa_1
    reporter = RecordingReporter()

    result = extract.extract_parts(paths, [bad, good], "split", jobs=2, reporter=reporter)

    by_part = {p.part: p for p in result.parts}
    assert by_part[bad].status == extract.FAILED and by_part[good].status == extract.EXTRACTED
    assert result.exit_status == ExitStatus.PARTS_FAILED
    assert hostile.removeprefix("./") in by_part[bad].message or repr(hostile) in by_part[bad].message
    assert_extracted(paths, "split", good, small_parts[1].path)
    assert not (paths.root / "images" / "sa_1.jpg").exists() and not (paths.root / "annotations" / "sa_1.json").exists()
    assert not (paths.root / "images" / "sa_2.jpg").exists()
    assert not list(tmp_path.rglob("sa1b_hostile_*"))
    assert existed_before or not absolute_target.exists()
    assert extract_receipt(paths, bad) is None
    assert ReceiptStore(paths).read_failure(Stage.EXTRACT, bad).reason == by_part[bad].message
    assert [d["part"] for k, _, d in reporter.events if k == "part_failed"] == [bad]
    assert_no_leftovers(paths)


@pytest.mark.parametrize("layout", ["split", "flat"])
@pytest.mark.parametrize("same_content", [False, True])
def test_a_name_another_part_wrote_is_a_collision_never_overwritten(
        paths: RootPaths, tmp_path: Path, layout: str, same_content: bool) -> None:
    first = write_part(tmp_path, 0, 4, masks_per_image=2, seed=1)  # sa_1 .. sa_4
    second = write_part(tmp_path, 1, 4, first_image_id=4, masks_per_image=2, seed=1 if same_content else 2)  # sa_4 .. sa_7
    a, b = add_downloaded(paths, first.path), add_downloaded(paths, second.path)
    where = extract.part_file_locations(paths, layout, a)

    assert extract.extract_parts(paths, [a], layout).parts[0].status == extract.EXTRACTED
    original = where.path_of("sa_4.jpg").read_bytes()
    result = extract.extract_parts(paths, [b], layout)

    assert result.parts[0].status == extract.FAILED
    assert "sa_4.j" in result.parts[0].message and "already exists" in result.parts[0].message
    assert where.path_of("sa_4.jpg").read_bytes() == original
    for image_id in (5, 6, 7):
        assert not where.path_of(f"sa_{image_id}.jpg").exists() and not where.path_of(f"sa_{image_id}.json").exists()
    assert_extracted(paths, layout, a, first.path)
    assert extract_receipt(paths, b) is None
    assert extract.part_file_locations(paths, layout, b).entries() is None
    assert_no_leftovers(paths)


def test_overlapping_names_are_fine_in_the_parts_layout(paths: RootPaths, tmp_path: Path) -> None:
    first = write_part(tmp_path, 0, 3, masks_per_image=2, seed=1)
    second = write_part(tmp_path, 1, 3, first_image_id=3, masks_per_image=2, seed=2)
    names = [add_downloaded(paths, first.path), add_downloaded(paths, second.path)]
    result = extract.extract_parts(paths, names, "parts", jobs=2)
    assert [p.status for p in result.parts] == [extract.EXTRACTED] * 2
    assert_extracted(paths, "parts", names[1], second.path)


@pytest.mark.parametrize(("members", "layout", "problem"), [
    ([("./sub/sa_9.jpg", b"x")], "flat", "inside a folder"),
    ([("./sub/sa_9.jpg", b"x")], "split", "inside a folder"),
    ([("./sa_9.jpg", b"x"), ("./sa_9.jpg", b"y")], "parts", "appears twice"),
    ([("./" + "a" * 300 + ".jpg", b"x")], "parts", "longer than 255 bytes"),
    ([("./" + "d/" * 600 + "a.jpg", b"x")], "parts", "longer than 1024 bytes"),
    ([("./notes.txt", b"x")], "split", "only holds .jpg images and .json annotations"),
    ([("./sa_9\n.jpg", b"x")], "parts", "control characters"),
])
def test_unsafe_names_are_refused(paths: RootPaths, tmp_path: Path, members: list, layout: str, problem: str) -> None:
    name = add_downloaded(paths, crafted_tar(tmp_path / "sa_000003.tar", [("./sa_1.jpg", b"ok"), *members]))
    result = extract.extract_parts(paths, [name], layout)
    assert result.parts[0].status == extract.FAILED
    assert problem in result.parts[0].message
    assert visible_files(paths.root) == []
    assert_no_leftovers(paths)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu-longname", "pax-path"])
def test_long_names_are_read_from_extended_headers(paths: RootPaths, tmp_path: Path, fmt: int) -> None:
    long_name = "sa_" + "7" * 200 + ".json"
    source = crafted_tar(tmp_path / "sa_000003.tar", [("./sa_1.jpg", b"one"), (f"./{long_name}", b"{}")], fmt=fmt)
    name = add_downloaded(paths, source)
    assert extract.extract_parts(paths, [name], "flat").parts[0].status == extract.EXTRACTED
    assert (paths.root / "extracted" / long_name).read_bytes() == b"{}"
    assert_extracted(paths, "flat", name, source)


def test_folders_inside_a_part_are_kept_in_the_parts_layout(paths: RootPaths, tmp_path: Path) -> None:
    source = crafted_tar(tmp_path / "sa_000003.tar", [("./sa_1.jpg", b"one"), ("./sub/deeper/sa_2.json", b"{}")])
    name = add_downloaded(paths, source)
    assert extract.extract_parts(paths, [name], "parts").parts[0].status == extract.EXTRACTED
    assert (paths.root / "extracted" / "sa_000003" / "sub" / "deeper" / "sa_2.json").read_bytes() == b"{}"
    assert_extracted(paths, "parts", name, source)


# ------------------------------------------------------------------- broken archives


def _break(path: Path, how: str) -> None:
    if how == "truncated":
        truncate_file(path, path.stat().st_size // 2)
    elif how == "end-marker-missing":  # a plain tar cut exactly after its last member
        with tarfile.open(path) as tar:
            last = tar.getmembers()[-1]
        truncate_file(path, last.offset_data + -(-last.size // 512) * 512)
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(("how", "compress", "expected"), [
    ("truncated", True, "truncated gzip-compressed tar"),
    ("corrupt", True, "corrupt gzip-compressed tar"),
    ("truncated", False, "truncated"),
    ("end-marker-missing", False, "end-of-archive marker"),
])
def test_broken_archive_fails_only_that_part(paths: RootPaths, tmp_path: Path, how: str, compress: bool,
                                             expected: str) -> None:
    parts = make_parts(tmp_path / "src", 3, [4, 40, 4], masks_per_image=3, seed=5, compress=compress)
    names = [add_downloaded(paths, p.path) for p in parts]
    broken = paths.tar(names[1])
    _break(broken, how)
    set_download_size(paths, names[1], broken.stat().st_size)

    result = extract.extract_parts(paths, names, "flat", jobs=2)

    statuses = {p.part: p for p in result.parts}
    assert statuses[names[1]].status == extract.FAILED
    assert expected in statuses[names[1]].message
    for index in (0, 2):
        assert_extracted(paths, "flat", names[index], parts[index].path)
    visible = {p.name for p in visible_files(paths.root)}
    assert not any(f"sa_{i}." in n for n in visible for i in parts[1].image_ids)
    assert result.exit_status == ExitStatus.PARTS_FAILED
    assert_no_leftovers(paths)


def test_a_tar_that_changed_since_its_download_is_refused(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    name = add_downloaded(paths, small_parts[0].path)
    shutil.copyfile(small_parts[1].path, paths.tar(name))
    result = extract.extract_parts(paths, [name], "parts")
    assert result.parts[0].status == extract.FAILED and "download receipt says" in result.parts[0].message
    assert visible_files(paths.root) == []


# ---------------------------------------------------------------------- remove-tars


def test_remove_tars_removes_only_tars_of_extracted_parts(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    names = [add_downloaded(paths, p.path) for p in small_parts]
    truncate_file(paths.tar(names[1]), 300)
    set_download_size(paths, names[1], 300)
    undownloaded = paths.tars / "sa_000005.tar"
    shutil.copyfile(small_parts[0].path, undownloaded)
    bystanders = [paths.tars / "notes.txt", paths.tars / "sa_000005.tar.aria2"]
    for path in bystanders:
        path.write_text("keep me")

    result = extract.extract_parts(paths, extract.select_parts(paths, None, None), None, remove_tars=True)

    by_part = {p.part: p for p in result.parts}
    assert by_part[names[0]].tar_removed and by_part[names[2]].tar_removed
    assert by_part[names[1]].status == extract.FAILED and not by_part[names[1]].tar_removed
    assert sorted(p.name for p in paths.tars.iterdir()) == sorted([names[1], "sa_000005.tar", *(b.name for b in bystanders)])
    assert extract_receipt(paths, names[0]).tar_removed is True
    assert result.summary()["tars_removed"] == 2

    # An already extracted part's tar goes on a later --remove-tars run.
    extra = add_downloaded(paths, small_parts[1].path, name="sa_000006.tar")
    extract.extract_parts(paths, [extra], None)
    assert paths.tar(extra).exists()
    later = extract.extract_parts(paths, [extra], None, remove_tars=True)
    assert later.parts[0].status == extract.ALREADY and later.parts[0].tar_removed
    assert not paths.tar(extra).exists()


# ------------------------------------------------------------------------- crashes


def _extract_command(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sa1b_cli", "extract", "-d", str(root), "--jobs", "1", *extra]


# Send a signal to the extractor from inside, at its Nth os.write: an exact moment mid-unpacking, however
# fast or loaded the machine (polling its folder from outside raced with a part unpacked in ~0.1 s).
_SIGNAL_AT_WRITE = """
import os, sys
signum, after = int(sys.argv[1]), int(sys.argv[2])
real_write = os.write
calls = [0]
def write(fd, data):
    calls[0] += 1
    if calls[0] == after:
        os.kill(os.getpid(), signum)
    return real_write(fd, data)
os.write = write
sys.argv = ["sa1b"] + sys.argv[3:]
from sa1b_cli.cli import main
main()
"""


def _signal_while_unpacking(paths: RootPaths, signum: int) -> int:
    """Run ``sa1b extract`` and deliver ``signum`` once the large part (600 members) is half unpacked; its exit code."""
    command = _extract_command(paths.root, "--json")
    process = subprocess.run([sys.executable, "-c", _SIGNAL_AT_WRITE, str(int(signum)), "300", *command[3:]],
                             env=sa1b_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return process.returncode


def test_sigkill_mid_extraction_then_rerun_finishes(paths: RootPaths, small_parts: list[PartInfo], large_part: Path) -> None:
    small = add_downloaded(paths, small_parts[0].path)
    large = add_downloaded(paths, large_part)
    assert _signal_while_unpacking(paths, signal.SIGKILL) == -signal.SIGKILL
    assert list(paths.tmp.glob("extract-sa_000009-*")), "killed before the large part started"
    assert extract_receipt(paths, large) is None
    assert not (paths.root / "extracted" / "sa_000009").exists()  # nothing half-extracted is visible

    rerun = subprocess.run(_extract_command(paths.root, "--json"), env=sa1b_env(), capture_output=True, text=True, timeout=120)

    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert summary["type"] == "summary" and summary["failed"] == 0
    assert summary["extracted"] + summary["already"] == 2
    assert_extracted(paths, "parts", small, small_parts[0].path)
    assert_extracted(paths, "parts", large, large_part)
    assert_no_leftovers(paths)
    assert not list(paths.locks.glob("*.lock"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_cleanly(paths: RootPaths, large_part: Path, signum: int) -> None:
    large = add_downloaded(paths, large_part)
    assert _signal_while_unpacking(paths, signum) == ExitStatus.INTERRUPTED
    assert extract_receipt(paths, large) is None
    assert visible_files(paths.root) == []
    assert_no_leftovers(paths)
    assert not list(paths.locks.glob("*.lock"))


# Kill -9 the extractor at an exact moment: the Nth call of a function it uses (rmtree: before it runs).
_KILL_AT = """
import os, shutil, signal, sys
target, after = sys.argv[1], int(sys.argv[2])
module = shutil if target == "rmtree" else os
real = getattr(module, target)
calls = [0]
def wrapper(*args, **kwargs):
    calls[0] += 1
    if target == "rmtree" and calls[0] >= after:
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    if calls[0] >= after:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(module, target, wrapper)
sys.argv = ["sa1b"] + sys.argv[3:]
from sa1b_cli.cli import main
main()
"""


@pytest.mark.parametrize(("layout", "target", "after", "resumable"), [
    ("split", "write", 5, False),  # while unpacking into the temporary directory
    ("split", "link", 3, True),  # halfway through linking files into the shared folders
    ("parts", "rename", 1, True),  # right after the part's folder was renamed into place
    ("flat", "rmtree", 1, True),  # after the receipt, before the temporary directory is removed
])
def test_kill_at_each_step_then_rerun_completes(paths: RootPaths, small_parts: list[PartInfo], layout: str,
                                                target: str, after: int, resumable: bool) -> None:
    names = [add_downloaded(paths, p.path) for p in small_parts[:2]]
    crashed = subprocess.run([sys.executable, "-c", _KILL_AT, target, str(after),
                              *_extract_command(paths.root, "--layout", layout)[3:]],
                             env=sa1b_env(), capture_output=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    if target == "write":
        assert visible_files(paths.root) == []
    if resumable:  # the rerun must finish from the temporary directory, not unpack again
        paths.tar(names[0]).unlink()

    rerun = subprocess.run(_extract_command(paths.root, "--json"), env=sa1b_env(), capture_output=True, text=True, timeout=60)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for part, name in zip(small_parts, names):
        assert_extracted(paths, layout, name, part.path)
    assert_no_leftovers(paths)
    for path in visible_files(paths.root):
        assert path.stat().st_nlink == 1  # no temporary hard links left behind


def test_collision_found_when_resuming_removes_what_the_crashed_run_linked(
        paths: RootPaths, small_parts: list[PartInfo]) -> None:
    name = add_downloaded(paths, small_parts[0].path)
    crashed = subprocess.run([sys.executable, "-c", _KILL_AT, "link", "3",  # the first link records the layout
                              *_extract_command(paths.root, "--layout", "split")[3:]],
                             env=sa1b_env(), capture_output=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    (manifest,) = paths.tmp.glob("extract-sa_000000-*/manifest.tsv")
    order = [line.split("\t")[0] for line in manifest.read_text().splitlines()[1:]]
    where = extract.part_file_locations(paths, "split", name)
    assert [where.path_of(n).exists() for n in order[:3]] == [True, True, False]
    intruder = where.path_of(order[5])
    intruder.write_bytes(b"placed by someone else")

    code, records, _ = run_cli("extract", "-d", str(paths.root), "--json")

    assert code == ExitStatus.PARTS_FAILED
    assert f"{intruder} already exists" in records[-1]["failed_parts"][0]["reason"]
    assert visible_files(paths.root) == [intruder] and intruder.read_bytes() == b"placed by someone else"
    assert_no_leftovers(paths)


# ----------------------------------------------------------------- locks and the CLI


def test_part_locked_by_another_run_is_skipped_and_exit_is_locked(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    names = [add_downloaded(paths, p.path) for p in small_parts[:2]]
    other = PartLock(paths.lock(names[0]))
    assert other.try_acquire() is None
    try:
        code, records, _ = run_cli("extract", "-d", str(paths.root), "--json")
    finally:
        other.release()
    summary = records[-1]
    assert code == ExitStatus.LOCKED
    assert summary["locked"] == 1 and summary["extracted"] == 1
    assert summary["locked_parts"][0]["part"] == names[0]
    assert any(r.get("kind") == "part_skipped" and r.get("reason") == "locked" for r in records)
    assert not (paths.root / "extracted" / "sa_000000").exists()


def test_download_can_extract_while_holding_the_lock(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    name = add_downloaded(paths, small_parts[0].path)
    lock = PartLock(paths.lock(name))
    assert lock.try_acquire() is None
    result = extract.extract_part(paths, name, "parts", lock_held=True)
    assert result.status == extract.EXTRACTED
    assert lock.refresh()  # still ours
    lock.release()
    assert extract.extract_part(paths, name).status == extract.ALREADY


def test_cli_json_summary_and_exit_codes(paths: RootPaths, small_parts: list[PartInfo]) -> None:
    names = [add_downloaded(paths, p.path) for p in small_parts]
    truncate_file(paths.tar(names[2]), 200)
    set_download_size(paths, names[2], 200)

    code, records, _ = run_cli("extract", "-d", str(paths.root), "--parts", "0-1", "--json")
    assert code == ExitStatus.OK
    summary = records[-1]
    assert summary["type"] == "summary" and summary["command"] == "extract"
    assert (summary["selected"], summary["extracted"], summary["files"]) == (2, 2, 16)
    assert summary["exit_code"] == 0
    assert sorted(r["part"] for r in records if r.get("kind") == "part_extracted") == names[:2]
    assert any(r["type"] == "progress" and r["stage"] == "extract" for r in records)

    code, records, _ = run_cli("extract", "-d", str(paths.root), "--json")
    assert code == ExitStatus.PARTS_FAILED
    assert records[-1]["failed_parts"][0]["part"] == names[2] and records[-1]["already"] == 2

    code, _, output = run_cli("extract", "-d", str(paths.root), "--shard", "0/2", "--parts", "0-1")
    assert code == ExitStatus.OK and "0/1 parts extracted" in output and "1 already done" in output

    code, _, output = run_cli("extract", "-d", str(paths.root), "--shard", "3/2")
    assert code == ExitStatus.USAGE and "--shard" in output

    code, _, output = run_cli("extract", "-d", str(paths.root / "missing"))
    assert code == ExitStatus.USAGE and "no such directory" in output


def test_part_file_locations_without_a_manifest(paths: RootPaths) -> None:
    where = extract.part_file_locations(paths, "split", "sa_000000.tar")
    assert where.entries() is None and list(where.files()) == []
    assert where.path_of("sa_1.jpg") == paths.root / "images" / "sa_1.jpg"
    assert where.path_of("sa_1.json") == paths.root / "annotations" / "sa_1.json"
    assert extract.part_file_locations(paths, None, "sa_000003.tar").folder == paths.root / "extracted" / "sa_000003"
