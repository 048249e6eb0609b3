"""The whole pipeline under faults: `sa1b download --extract`, then a deep verify of the result.

Every test runs the real CLI as a process against the loopback CDN with the real aria2c, injects
a fault (kills, signals, stalls, expiry, corruption, a full disk, a dead aria2c, a second run) and
checks the end state: every selected part complete and verified, or, where it cannot be, a
per-part reason and a non-zero exit. Never a part marked complete that is not; never a good
file deleted. Parts hold real JPEGs and real SA-1B annotation JSON so that verify can check them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

from sa1b_cli.store import DownloadReceipt, ExtractReceipt, ReceiptStore, Reservation, Stage
from sa1b_cli.errors import ExitStatus
from sa1b_cli.extract import part_file_locations
from sa1b_cli.store.locks import is_stale, read_holder
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import make_annotation, make_jpeg
from sa1b_cli.testing.processes import aria2c_pids, run_sa1b, start_sa1b, wait_for
from sa1b_cli.verify import verify_dataset

WIDTH, HEIGHT = 320, 240


# -- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A part as the CDN serves it, and what a correct download and extraction of it must hold."""

    path: Path
    pairs: int

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @cached_property
    def members(self) -> dict[str, bytes]:
        with tarfile.open(self.path) as tar:
            return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """A few real 320x240 JPEGs (about 50 KB each) shared by every image: parts of a few MB build in milliseconds."""
    return [make_jpeg(i, width=WIDTH, height=HEIGHT, noise=60, jpeg_quality=95) for i in range(6)]


def build_part(directory: Path, index: int, pairs: int, jpegs: list[bytes], *, compress: bool = True) -> Source:
    """``sa_{index:06d}.tar`` shaped like Meta's: ``.``, then ``./sa_<id>.jpg``/``.json`` pairs with real annotations."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dot = tarfile.TarInfo(".")
        dot.type = tarfile.DIRTYPE
        tar.addfile(dot)
        for image_id in range(index * 1000 + 1, index * 1000 + 1 + pairs):
            for member, data in ((f"./sa_{image_id}.jpg", jpegs[image_id % len(jpegs)]),
                                 (f"./sa_{image_id}.json", make_annotation(image_id, width=WIDTH, height=HEIGHT,
                                                                          masks_per_image=3))):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path = directory / f"sa_{index:06d}.tar"
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1, mtime=0) if compress else raw.getvalue())
    return Source(path, pairs)


@pytest.fixture
def three_parts(tmp_path: Path, jpegs: list[bytes]) -> list[Source]:
    """Three gzip parts of about 2-3 MB each."""
    return [build_part(tmp_path / "src", i, pairs, jpegs) for i, pairs in enumerate((40, 50, 60))]


@pytest.fixture
def server(three_parts: list[Source]) -> Iterator[FakeCDN]:
    with FakeCDN(three_parts[0].path.parent) as cdn:
        yield cdn


# -- running the CLI ------------------------------------------------------------------------------


def pipeline(links: Path, root: Path, *extra: str | Path) -> list[str]:
    """The download-and-extract command every test runs (its arguments, for run/start)."""
    return [*map(str, ("download", links, "-d", root, "--extract", "--retry-wait", "0.2", "--log-interval", "0.5")),
            *map(str, extra)]


def extracting(root: Path, name: str) -> bool:
    """Has the extraction of ``name`` started writing files into its temporary directory?"""
    tmp = RootPaths(root).tmp
    return tmp.is_dir() and any(any(d.iterdir()) for d in tmp.glob(f"extract-{name[:-4]}-*/files"))


# -- what must always hold ----------------------------------------------------------------------------


def assert_nothing_false_marked_complete(root: Path, sources: list[Source]) -> None:
    """Every download receipt names the server's exact bytes; every extract receipt names files that are all there."""
    paths = RootPaths(root)
    for source in sources:
        download = ReceiptStore(paths).read(DownloadReceipt, source.name)
        if download is not None:
            assert download is not None and download.sha256 == source.sha256, source.name
            tar = paths.tar(source.name)
            if tar.exists():
                assert hashlib.sha256(tar.read_bytes()).hexdigest() == source.sha256, f"{source.name} changed on disk"
        extracted = ReceiptStore(paths).read(ExtractReceipt, source.name)
        if extracted is not None:
            assert download is not None, f"{source.name} extracted without a download receipt"
            files = {entry.name: path for entry, path in part_file_locations(paths, extracted.layout, source.name).files()}
            assert set(files) == set(source.members), source.name
            for member, data in source.members.items():
                assert files[member].read_bytes() == data, f"{source.name}: {member} differs"


def assert_all_done(root: Path, sources: list[Source]) -> None:
    """Downloaded, extracted, verified deep (the same code as `sa1b verify --deep --tars`), nothing left behind."""
    paths = RootPaths(root)
    for source in sources:
        assert ReceiptStore(paths).read(DownloadReceipt, source.name) is not None, source.name
        assert ReceiptStore(paths).read(ExtractReceipt, source.name) is not None, source.name
    assert_nothing_false_marked_complete(root, sources)
    report = verify_dataset(paths, deep=True, tars=True, expected=sum(s.pairs for s in sources), jobs=1)
    assert report.exit_status == ExitStatus.OK, report.summary()
    assert report.summary()["statuses"] == {"ok": len(sources)}
    assert not paths.tmp.exists() or not any(paths.tmp.iterdir()), "temporary extraction directories left behind"
    # a run killed with -9 leaves its lock files; they are stale (dead holder) and broken when needed
    held = [lock for lock in (paths.locks.glob("*.lock") if paths.locks.exists() else [])
            if (holder := read_holder(lock)) is not None and not is_stale(holder, 120)]
    assert not held, f"locks still held: {held}"
    assert not list(paths.tars.glob("*.aria2")), "aria2 control files left behind"
    assert not aria2c_pids(root), "aria2c still running"


def assert_no_traceback(*results: subprocess.CompletedProcess[str] | tuple[str, str]) -> None:
    for result in results:
        out, err = (result.stdout, result.stderr) if isinstance(result, subprocess.CompletedProcess) else result
        assert "Traceback" not in out + err, err[-3000:]


# -- kills and signals --------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_random_points_then_reruns_finish_the_pipeline(three_parts: list[Source], server: FakeCDN,
                                                                 tmp_path: Path) -> None:
    links = server.write_links(tmp_path / "links.txt")
    server.set_faults(None, Faults(rate_limit_bytes_per_s=1_500_000))  # about 2 s per part and connection
    root = tmp_path / "root"
    rng = random.Random(20261126)
    kills, runs = 0, 0
    while True:
        runs += 1
        assert runs <= 8, "the pipeline did not finish within 8 runs"
        proc = start_sa1b(*pipeline(links, root, "-j", "2", "-x", "2", "--min-split-size", "1M"))
        if kills < 4:
            try:
                proc.wait(timeout=rng.uniform(0.4, 2.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            out, err = proc.communicate(timeout=30)
            wait_for(lambda: not aria2c_pids(root), timeout=15, what="aria2c gone after the kill")
            assert_nothing_false_marked_complete(root, three_parts)
            if proc.returncode == 0:
                break
            continue
        out, err = proc.communicate(timeout=90)
        assert_no_traceback((out, err))
        if proc.returncode == 0:
            break
    assert kills >= 2, "the seeded delays should interrupt at least two runs"
    assert_all_done(root, three_parts)


@pytest.mark.slow
def test_sigint_mid_download_stops_within_seconds_and_the_rerun_resumes(tmp_path: Path, jpegs: list[bytes]) -> None:
    source = build_part(tmp_path / "src", 0, 120, jpegs)  # about 6 MB
    with FakeCDN(source.path.parent) as cdn:
        links = cdn.write_links(tmp_path / "links.txt")
        cdn.set_faults(None, Faults(rate_limit_bytes_per_s=1_000_000))
        root = tmp_path / "root"
        proc = start_sa1b(*pipeline(links, root, "-x", "1"))
        wait_for(lambda: cdn.bytes_sent() > 1_500_000, what="1.5 MB transferred")
        time.sleep(1.2)  # aria2 saves its control file every second
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - asked < 5, "SIGINT must stop the run within a few seconds"
        assert proc.returncode == ExitStatus.INTERRUPTED, err
        assert "resume" in err
        assert_no_traceback((out, err))
        assert not aria2c_pids(root)
        paths = RootPaths(root)
        assert paths.control_file(source.name).exists(), "aria2's progress must be saved"
        assert not list(paths.locks.glob("*.lock")) and ReceiptStore(paths).read(DownloadReceipt, source.name) is None
        cdn.clear_faults()
        cdn.reset_log()
        rerun = run_sa1b(*pipeline(links, root))
        assert rerun.returncode == 0, rerun.stderr
        # aria2's first request carries no Range (it learns the length first) and is closed at once;
        # then it asks for the rest from where its control file says.
        assert max(r.range_start or 0 for r in cdn.log if r.method == "GET") >= 1_000_000, "the rerun must resume"
    assert_all_done(root, [source])


@pytest.fixture(scope="module")
def slow_to_extract(tmp_path_factory: pytest.TempPathFactory, jpegs: list[bytes]) -> Source:
    """About 25 MB in 500 pairs: its extraction takes long enough to be interrupted."""
    return build_part(tmp_path_factory.mktemp("big"), 7, 500, jpegs)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_extraction_keeps_nothing_half_done_and_the_rerun_extracts(
        slow_to_extract: Source, tmp_path: Path, signum: int) -> None:
    with FakeCDN(files={slow_to_extract.name: slow_to_extract.path}) as cdn:
        links = cdn.write_links(tmp_path / "links.txt")
        root = tmp_path / "root"
        proc = start_sa1b(*pipeline(links, root))
        wait_for(lambda: extracting(root, slow_to_extract.name), timeout=60, what="extraction started")
        asked = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - asked < 5, "a signal must stop the extraction within a few seconds"
        assert proc.returncode == ExitStatus.INTERRUPTED, err
        assert_no_traceback((out, err))
        paths = RootPaths(root)
        # The download is whole; its receipt comes from the read that extracts it, which was cut short.
        assert paths.tar(slow_to_extract.name).stat().st_size == slow_to_extract.path.stat().st_size
        assert not paths.control_file(slow_to_extract.name).exists()
        assert ReceiptStore(paths).read(ExtractReceipt, slow_to_extract.name) is None
        assert not (root / "extracted").exists() or not any((root / "extracted").rglob("*.jpg"))
        assert not any(paths.tmp.iterdir()), "a half-extracted part was left behind"
        gets = len([r for r in cdn.log if r.method == "GET"])
        rerun = run_sa1b(*pipeline(links, root))
        assert rerun.returncode == 0, rerun.stderr
        assert len([r for r in cdn.log if r.method == "GET"]) == gets, "the rerun must not download again"
        assert "extracted" in rerun.stderr
    assert_all_done(root, [slow_to_extract])


def test_aria2c_killed_from_outside_is_restarted_and_the_run_completes(three_parts: list[Source], server: FakeCDN,
                                                                      tmp_path: Path) -> None:
    links = server.write_links(tmp_path / "links.txt")
    server.set_faults(None, Faults(rate_limit_bytes_per_s=1_000_000))
    root = tmp_path / "root"
    proc = start_sa1b(*pipeline(links, root, "-x", "1"))
    wait_for(lambda: server.bytes_sent() > 1_500_000, what="1.5 MB transferred")
    time.sleep(1.1)  # a saved control file to resume from
    (pid,) = aria2c_pids(root)
    os.kill(pid, signal.SIGKILL)
    server.clear_faults()
    server.reset_log()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "aria2c stopped unexpectedly" in err and "restarting" in err
    assert_no_traceback((out, err))
    assert max(r.range_start or 0 for r in server.log if r.method == "GET") >= 500_000, "the new aria2c must resume"
    assert_all_done(root, three_parts)


# -- the server misbehaves --------------------------------------------------------------------------


@pytest.mark.slow
def test_slow_server_and_a_stalled_connection_are_retried_to_completion(three_parts: list[Source], server: FakeCDN,
                                                                        tmp_path: Path) -> None:
    links = server.write_links(tmp_path / "links.txt")
    server.set_faults("sa_000000.tar", Faults(rate_limit_bytes_per_s=600_000))  # slow but steady
    server.set_faults("sa_000001.tar", Faults(stall_after_bytes=300_000, stall_seconds=120, stall_count=1))
    root = tmp_path / "root"
    started = time.monotonic()
    result = run_sa1b(*pipeline(links, root, "-x", "1", "--stall-timeout", "5"), timeout=90)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 45, "a stall must be cut after --stall-timeout, not wait for the server"
    stalled = [r for r in server.requests_for("sa_000001.tar") if r.method == "GET"]
    assert stalled[0].fault == "stall" and stalled[0].bytes_sent == 300_000
    assert len(stalled) >= 2, "the stalled connection must be given up and the part asked for again"
    assert_all_done(root, three_parts)


def test_links_expiring_mid_run_then_a_fresh_file_completes(three_parts: list[Source], server: FakeCDN,
                                                            tmp_path: Path) -> None:
    links = server.write_links(tmp_path / "links.txt")
    # Every response is cut after 400 KB, so aria2 must come back with a new request: after the
    # expiry that request gets 403, as on Meta's CDN when the links run out mid-download.
    server.set_faults(None, Faults(rate_limit_bytes_per_s=800_000, drop_after_bytes=400_000, drop_count=None))
    root = tmp_path / "root"
    proc = start_sa1b(*pipeline(links, root, "-x", "1", "-j", "3"))
    wait_for(lambda: server.bytes_sent() > 600_000, what="600 KB transferred")
    server.expire_all()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.LINKS_EXPIRED, err
    assert "fresh links file" in err
    assert_no_traceback((out, err))
    paths = RootPaths(root)
    expired = [s.name for s in three_parts if ReceiptStore(paths).read(DownloadReceipt, s.name) is None]
    assert expired, "the expiry came too late to test anything"
    for name in expired:
        assert "expired" in ReceiptStore(paths).read_failure(Stage.DOWNLOAD, name).reason
    assert_nothing_false_marked_complete(root, three_parts)
    kept = sum(paths.tar(name).stat().st_size for name in expired if paths.tar(name).exists())
    assert kept > 0 and any(paths.control_file(n).exists() for n in expired), "partial downloads must be kept"

    server.clear_faults()
    server.reset_log()
    fresh = server.write_links(tmp_path / "fresh-links.txt")
    rerun = run_sa1b(*pipeline(fresh, root))
    assert rerun.returncode == 0, rerun.stderr
    resumed = [r for n in expired for r in server.requests_for(n) if r.method == "GET" and (r.range_start or 0) > 0]
    assert resumed, "a fresh links file must resume the partial parts"
    assert_all_done(root, three_parts)


def test_silently_corrupted_gzip_part_fails_alone_and_is_never_extracted(three_parts: list[Source], server: FakeCDN,
                                                                          tmp_path: Path) -> None:
    links = server.write_links(tmp_path / "links.txt")
    bad = three_parts[1]
    server.set_faults(bad.name, Faults(corrupt_offsets=(bad.path.stat().st_size // 2,)))
    root = tmp_path / "root"
    result = run_sa1b(*pipeline(links, root))
    assert result.returncode == ExitStatus.PARTS_FAILED
    assert f"{bad.name}: archive check failed" in result.stderr
    assert_no_traceback(result)
    paths = RootPaths(root)
    assert ReceiptStore(paths).read(DownloadReceipt, bad.name) is None and ReceiptStore(paths).read(ExtractReceipt, bad.name) is None
    assert not (root / "extracted" / bad.name[:-4]).exists()
    assert_nothing_false_marked_complete(root, three_parts)  # (test_download checks that a rerun then completes)


def test_flipped_byte_in_a_plain_tar_is_caught_only_against_a_known_good_hash(tmp_path: Path, jpegs: list[bytes]) -> None:
    """Without checksums a flipped byte inside a JPEG is invisible (a plain tar has no CRC; JPEG data has none).

    It is caught by a checksum list (download --checksums, verify --checksums) and, once a
    good copy has a receipt, by `verify --tars` when the tar on disk later changes.
    """
    source = build_part(tmp_path / "src", 3, 20, jpegs, compress=False)
    first_jpeg_data = 512 * 3 + 1000  # header of ".", header of the first JPEG, then its data
    good_list = tmp_path / "checklist.txt"
    good_list.write_text(f"{hashlib.md5(source.path.read_bytes()).hexdigest()}  {source.name}\n")
    with FakeCDN(source.path.parent) as cdn:
        links = cdn.write_links(tmp_path / "links.txt")
        cdn.set_faults(None, Faults(corrupt_offsets=(first_jpeg_data,)))
        root = tmp_path / "root"
        silent = run_sa1b(*pipeline(links, root))
        assert silent.returncode == 0, "no check can see this without a known-good hash"
        caught = run_sa1b("verify", "-d", root, "--deep", "--checksums", good_list, "--expected", 20, "-j", "1")
        assert caught.returncode == ExitStatus.CORRUPT and source.name in caught.stdout + caught.stderr
        assert_no_traceback(caught)

        cdn.clear_faults()
        clean = tmp_path / "clean"
        assert run_sa1b(*pipeline(links, clean, "--checksums", good_list)).returncode == 0
        tar = RootPaths(clean).tar(source.name)
        data = bytearray(tar.read_bytes())
        data[first_jpeg_data] ^= 0xFF  # bit rot, or a bad copy from a mirror, after a good download
        tar.write_bytes(bytes(data))
        rotted = run_sa1b("verify", "-d", clean, "--tars", "--expected", 20, "-j", "1")
        assert rotted.returncode == ExitStatus.CORRUPT and source.name in rotted.stdout + rotted.stderr


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """``tmp_path/disk``: a tmpfs of 18 MB; call the fixture's value with a size such as '64m' to grow it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=18m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root in a mount namespace): {made.stderr.strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True, capture_output=True)

    try:
        yield resize
    finally:
        for pid in aria2c_pids(mount / "root"):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("left_free", [2_000_000, 0], ids=["nearly-full", "full"])
def test_disk_full_while_downloading_fails_clearly_and_resumes_once_space_is_freed(
        small_disk: Callable[[str], None], tmp_path: Path, jpegs: list[bytes], left_free: int) -> None:
    """Nearly full: aria2 cannot reserve the next part (and leaves a broken progress file behind).
    Full: not even a lock file or a receipt can be written. Either way: a reason per part, no traceback."""
    sources = [build_part(tmp_path / "src", i, 60, jpegs) for i in range(2)]  # about 3 MB each
    root = tmp_path / "disk" / "root"
    filler = tmp_path / "disk" / "filler"
    with FakeCDN(sources[0].path.parent) as cdn:
        links = cdn.write_links(tmp_path / "links.txt")
        cdn.set_faults("sa_000000.tar", Faults(rate_limit_bytes_per_s=2_000_000))
        proc = start_sa1b("download", links, "-d", root, "-j", "1", "-x", "1", "--retry-wait", "0.1")
        first = RootPaths(root).tar("sa_000000.tar")
        size = sources[0].path.stat().st_size
        # aria2 reserves the whole file first (falloc): fill the disk only after that
        wait_for(lambda: first.exists() and first.stat().st_blocks * 512 >= size, what="the first part allocated")
        with open(filler, "wb", buffering=0) as handle:  # someone else fills the disk
            try:
                handle.write(b"\0" * max(0, shutil.disk_usage(root).free - left_free))
                while left_free == 0:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == ExitStatus.PARTS_FAILED, err
        # aria2 reports ENOSPC as "disk full" (error 9); where sa1b itself hits it, the OS's words show
        needles = ("disk full", "No space left on device")
        assert any("sa_000001.tar" in line and any(n in line for n in needles) for line in err.splitlines()), err
        assert_no_traceback((out, err))
        assert_nothing_false_marked_complete(root, sources)
        assert all(lock.stat().st_size for lock in RootPaths(root).locks.glob("*.lock")), "an empty lock file blocks a part"
        filler.unlink()
        cdn.clear_faults()
        gets = len(cdn.requests_for("sa_000000.tar"))
        rerun = run_sa1b("download", links, "-d", root)
        assert rerun.returncode == 0, rerun.stderr
        assert not [r for r in cdn.requests_for("sa_000000.tar")[gets:] if r.method == "GET"], "part 0 was whole: keep it"
        for source in sources:
            assert hashlib.sha256(RootPaths(root).tar(source.name).read_bytes()).hexdigest() == source.sha256


def test_disk_full_while_extracting_keeps_the_download_and_finishes_after_the_disk_grows(
        small_disk: Callable[[str], None], tmp_path: Path, jpegs: list[bytes]) -> None:
    # About 5.3 MB each: both tars fit in 14 MB, an extracted part on top of them does not.
    sources = [build_part(tmp_path / "src", i, 100, jpegs) for i in range(2)]
    small_disk("14m")
    root = tmp_path / "disk" / "root"
    with FakeCDN(sources[0].path.parent) as cdn:
        links = cdn.write_links(tmp_path / "links.txt")
        refused = run_sa1b(*pipeline(links, root))
        assert refused.returncode == ExitStatus.NO_SPACE, refused.stderr
        assert "not enough free space" in refused.stderr and not [r for r in cdn.log if r.method == "GET"]
        squeezed = run_sa1b(*pipeline(links, root, "-j", "2", "--ignore-disk-space", "--remove-tars"))
        assert squeezed.returncode == ExitStatus.PARTS_FAILED, squeezed.stderr
        assert "no space left" in squeezed.stderr
        assert_no_traceback(squeezed)
        assert_nothing_false_marked_complete(root, sources)
        paths = RootPaths(root)
        assert all(ReceiptStore(paths).read(DownloadReceipt, s.name) for s in sources), "downloads must be kept"
        assert not [s for s in sources if ReceiptStore(paths).read(ExtractReceipt, s.name)]
        assert all(paths.tar(s.name).exists() for s in sources), "a tar is removed only once its part is extracted"
        assert not any(paths.tmp.iterdir()), "the failed extraction must clean up after itself"
        small_disk("64m")
        gets = len([r for r in cdn.log if r.method == "GET"])
        rerun = run_sa1b(*pipeline(links, root, "--remove-tars"))
        assert rerun.returncode == 0, rerun.stderr
        assert len([r for r in cdn.log if r.method == "GET"]) == gets, "the rerun only extracts, it fetches nothing"
        assert not list(paths.tars.glob("*.tar")), "both tars removed once their parts are extracted"
    assert_all_done(root, sources)


def fill_disk(filler: Path) -> None:
    """Write ``filler`` until its file system is full."""
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass


def test_a_reserved_receipt_is_written_on_a_disk_that_filled_up(small_disk: Callable[[str], None], tmp_path: Path) -> None:
    """download --extract takes its receipt's space before the extraction that may fill the disk: a
    part downloaded and checked keeps its receipt however full the disk got (before, the disk-full test
    below lost it once in twelve full-suite runs: the other part's extraction had filled the disk first)."""
    paths = RootPaths(tmp_path / "disk" / "root")
    receipts = ReceiptStore(paths)
    reserved = Reservation(paths.receipt("download", "sa_000000.tar"))
    fill_disk(tmp_path / "disk" / "filler")
    with pytest.raises(OSError):
        receipts.write(DownloadReceipt("sa_000001.tar", size=1))
    receipts.write(DownloadReceipt("sa_000000.tar", size=1), reserved)
    assert ReceiptStore(paths).read(DownloadReceipt, "sa_000000.tar") is not None
    assert [p.name for p in paths.receipts_dir("download").iterdir()] == ["sa_000000.json"], "no temporary file left"


def test_extract_on_a_completely_full_disk_fails_the_part_clearly(small_disk: Callable[[str], None], tmp_path: Path,
                                                                  three_parts: list[Source], server: FakeCDN) -> None:
    links = server.write_links(tmp_path / "links.txt")
    root = tmp_path / "disk" / "root"
    assert run_sa1b("download", links, "-d", root, "--parts", "0").returncode == 0
    fill_disk(tmp_path / "disk" / "filler")
    result = run_sa1b("extract", "-d", root)
    assert result.returncode in (ExitStatus.PARTS_FAILED, ExitStatus.NO_SPACE), result.stderr
    assert "No space left" in result.stderr or "no space left" in result.stderr
    assert_no_traceback(result)
    assert "internal error" not in result.stderr


# -- two runs at once -----------------------------------------------------------------------------


def test_two_extract_runs_at_once_share_the_parts_without_corruption(three_parts: list[Source], server: FakeCDN,
                                                                       tmp_path: Path) -> None:
    links = server.write_links(tmp_path / "links.txt")
    root = tmp_path / "root"
    assert run_sa1b("download", links, "-d", root).returncode == 0
    first = start_sa1b("extract", "-d", root, "--jobs", "1", "--layout", "split")
    second = start_sa1b("extract", "-d", root, "--jobs", "1", "--layout", "split")
    results = [(p, *p.communicate(timeout=60)) for p in (first, second)]
    for proc, out, err in results:
        assert proc.returncode in (ExitStatus.OK, ExitStatus.LOCKED), err
        assert "failed" not in err.lower() or " 0 failed" in err, err
        assert_no_traceback((out, err))
    assert_nothing_false_marked_complete(root, three_parts)
    again = run_sa1b("extract", "-d", root)
    assert again.returncode == 0 and "already" in again.stdout + again.stderr
    assert not list(RootPaths(root).state.glob("failures/extract/*.json"))
    assert_all_done(root, three_parts)
