"""The part check run while aria2c downloads: same verdict as the full check, distrusted on any doubt."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from sa1b_cli.store import DownloadReceipt, ReceiptStore
from sa1b_cli.download import completed_prefix
from sa1b_cli.integrity import ArchiveError, StreamingCheck, check_part
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.store.members import read_member_list
from sa1b_cli.testing.generator import PartInfo, tar_member_sizes
from sa1b_cli.testing.processes import crash_download_midway, run_sa1b, wait_for


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_part(directory: Path, index: int, megabytes: int) -> Path:
    """A gzip part of incompressible members, big enough to be caught mid-transfer."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for member in range(megabytes):
            for suffix, size in ((".jpg", 1 << 20), (".json", 200)):
                info = tarfile.TarInfo(f"./sa_{index * 1000 + member}{suffix}")
                info.size = size
                tar.addfile(info, io.BytesIO(os.urandom(size)))
    path = directory / f"sa_{index:06d}.tar"
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1))
    return path


def _write_in_steps(src: Path, dest: Path, stream: StreamingCheck, steps: list[int]) -> None:
    """Write ``src`` into a full-size ``dest`` (as falloc leaves it) the way aria2c does, announcing each prefix."""
    data = src.read_bytes()
    with open(dest, "r+b") as out:
        done = 0
        for end in [*steps, len(data)]:
            out.seek(done)
            out.write(data[done:end])
            out.flush()
            stream.advance(end)
            done = end


def _allocated(dest: Path, size: int) -> Path:
    with open(dest, "wb") as out:
        out.truncate(size)
    return dest


def test_streamed_in_steps_the_check_equals_the_full_check(small_parts: list[PartInfo], tmp_path: Path) -> None:
    src = small_parts[0].path
    size = src.stat().st_size
    dest = _allocated(tmp_path / src.name, size)
    stream = StreamingCheck(dest)
    _write_in_steps(src, dest, stream, [1, 2, 700, 513, size // 3, size // 2, size - 1])  # a step back is ignored
    check = stream.result(size)
    assert check is not None
    assert asdict(check) == asdict(check_part(src))
    assert check.md5 == small_parts[0].md5 and check.sha256 == small_parts[0].sha256


def test_a_corrupt_byte_in_the_middle_is_not_trusted_and_the_full_check_names_it(small_parts: list[PartInfo], tmp_path: Path) -> None:
    src = tmp_path / "bad.tar"
    data = bytearray(small_parts[1].path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    src.write_bytes(bytes(data))
    dest = _allocated(tmp_path / "dest.tar", len(data))
    stream = StreamingCheck(dest)
    _write_in_steps(src, dest, stream, [len(data) // 4, len(data) // 2 + 10])
    assert stream.result(len(data)) is None
    with pytest.raises(ArchiveError):
        check_part(dest)


def test_a_truncated_part_is_not_trusted(small_parts: list[PartInfo], tmp_path: Path) -> None:
    src = small_parts[2].path
    short = src.stat().st_size - 100
    dest = tmp_path / "short.tar"
    dest.write_bytes(src.read_bytes()[:short])
    stream = StreamingCheck(dest)
    assert stream.result(short) is None


def test_an_aborted_stream_ends_its_thread(small_parts: list[PartInfo], tmp_path: Path) -> None:
    src = small_parts[0].path
    dest = _allocated(tmp_path / src.name, src.stat().st_size)
    stream = StreamingCheck(dest)
    _write_in_steps(src, dest, stream, [])  # all written, but never finished: the reader waits for more
    stream.advance(src.stat().st_size // 2)
    before = threading.active_count()
    stream.abort()
    stream._thread.join(timeout=30)
    assert not stream._thread.is_alive()
    assert threading.active_count() < before  # its hash threads ended with it


def test_a_file_replaced_while_streaming_is_not_trusted(small_parts: list[PartInfo], tmp_path: Path) -> None:
    src = small_parts[0].path
    size = src.stat().st_size
    dest = _allocated(tmp_path / src.name, size)
    stream = StreamingCheck(dest)
    _write_in_steps(src, dest, stream, [size // 2])
    wait_for(lambda: stream.file.tell() > 0)  # it has opened and read the first file
    replacement = tmp_path / "other.tar"
    shutil.copyfile(src, replacement)
    os.replace(replacement, dest)  # same bytes, another file: what was read is not what is there
    assert stream.result(size) is None


def test_completed_prefix_reads_aria2s_bitfield() -> None:
    assert completed_prefix("", 1 << 20, 5 << 20) == 0
    assert completed_prefix("00", 1 << 20, 8 << 20) == 0
    assert completed_prefix("e0", 1 << 20, 8 << 20) == 3 << 20  # pieces 0-2, high bit first
    assert completed_prefix("f8", 1 << 20, 8 << 20) == 5 << 20
    assert completed_prefix("f7", 1 << 20, 8 << 20) == 4 << 20  # piece 4 missing: the prefix stops there
    assert completed_prefix("ffff", 1 << 20, (13 << 20) + 5) == (13 << 20) + 5  # the last piece is short


# -- with aria2c and the loopback CDN --------------------------------------------------------------


def test_parts_are_checked_while_they_download(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root)
    assert result.returncode == 0, result.stderr
    for part in small_parts:
        rec = ReceiptStore(RootPaths(root)).read(DownloadReceipt, part.name)
        assert rec.checked_while_downloading is True
        assert (rec.md5, rec.sha256, rec.images, rec.annotations) == (None, part.sha256, part.n_pairs, part.n_pairs)
        listed = read_member_list(RootPaths(root), rec)  # what export plans from
        assert listed is not None and list(listed.members) == tar_member_sizes(part.path)


def test_a_corrupt_byte_in_the_middle_of_a_streamed_part_fails_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    part = random_part(src, 0, 8)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        # Slow enough that the check reads most of the part while it downloads.
        server.set_faults(None, Faults(rate_limit_bytes_per_s=4_000_000, corrupt_offsets=(part.stat().st_size // 2,)))
        root = tmp_path / "root"
        result = run_sa1b("download", links, "-d", root, "-x", "1")
        assert result.returncode == 3, result.stderr
        assert "archive check failed" in result.stderr
        assert not RootPaths(root).receipt("download", part.name).exists()


def test_a_part_restarted_from_zero_is_checked_from_zero(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 12)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=2_000_000))
        root = tmp_path / "root"
        crash_download_midway(root, links, "-x", "1", bytes_sent=server.bytes_sent, after_bytes=4_000_000, output=False)
        # The rerun resumes, is refused (error 8: the server ignores Range), deletes the file and starts over:
        # the stream of the first attempt must not count.
        server.set_faults(None, Faults(ignore_range=True, rate_limit_bytes_per_s=8_000_000))
        result = run_sa1b("download", links, "-d", root)
        assert result.returncode == 0, result.stderr
        assert "ignored Range" in result.stderr
        rec = ReceiptStore(RootPaths(root)).read(DownloadReceipt, big.name)
        assert rec.sha256 == sha256(big) == sha256(root / "tars" / big.name)
        assert rec.checked_while_downloading is True


def test_without_the_streaming_check_every_part_is_read_after_it_completes(
    small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path
) -> None:
    from sa1b_cli.download import DownloadOptions, DownloadRun, make_daemon, plan_download
    from sa1b_cli.events import NullReporter
    from sa1b_cli.links import parse_links

    root = tmp_path / "root"
    paths, options, reporter = RootPaths(root), DownloadOptions(check_while_downloading=False), NullReporter()
    assert make_daemon(paths, options).settings.disk_cache != "0"
    links = parse_links(links_file)
    plan = plan_download(links.parts, links, paths, options, reporter)
    assert DownloadRun(plan, links, paths, options, reporter).run().count("complete") == len(small_parts)
    for part in small_parts:
        rec = ReceiptStore(RootPaths(root)).read(DownloadReceipt, part.name)
        assert rec.checked_while_downloading is False and rec.sha256 == part.sha256
        listed = read_member_list(paths, rec)
        assert listed is not None and list(listed.members) == tar_member_sizes(part.path)
