"""Writing shards: uncompressed tars with each sample's members side by side, one folder chunk, the
``wids`` index and the sha256 manifest.

A tar shard is written under a temporary name in OUT, fsynced and renamed into place, then its
record (size, md5, sha256, samples) is written to ``OUT/.sa1b-export/shards/``: a record next to a
file of its size is the proof the shard is done. Tar headers are built here (plain ustar, fixed
owner and time), so a shard's bytes depend only on its samples: an export killed and run again
gives the same shards, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sa1b_cli.export.plan import TAR_BLOCK, Sample, ShardPlan
from sa1b_cli.store.atomic import atomic_write_json, atomic_write_text, read_json

HEADER_MTIME = 1_680_000_000  # every member's time: shards are reproducible
FLUSH_BYTES = 4 << 20
MAX_MEMBER_SIZE = 8**11 - 1  # what ustar's 11 octal digits hold
WIDS_INDEX = "shardindex.json"
SHA256_MANIFEST = "sha256sums.txt"
_END_OF_ARCHIVE = bytes(2 * TAR_BLOCK)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

# (image path, offset, size), (annotation path, offset, size) of a sample
Locate = Callable[[Sample], tuple[tuple[Path, int, int], tuple[Path, int, int]]]


def tar_header(name: str, size: int) -> bytes:
    """A ustar header for a regular file (mode 0644, owner 0, fixed time)."""
    encoded = name.encode("utf-8")
    if len(encoded) > 100 or size > MAX_MEMBER_SIZE:
        raise ValueError(f"{name!r} ({size} bytes) does not fit a ustar header")
    header = bytearray(TAR_BLOCK)
    header[0:len(encoded)] = encoded
    header[100:108] = b"0000644\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"%011o\0" % HEADER_MTIME
    header[148:156] = b" " * 8
    header[156:157] = b"0"
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def read_range(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise OSError(f"source file ends {size - len(data)} bytes early")
        data += more
    return data


class _Sources:
    """Open source files: a part's spill stays open for the whole shard, extracted files are opened per read."""

    def __init__(self) -> None:
        self.open: dict[Path, int] = {}

    def read(self, path: Path, offset: int, size: int, keep_open: bool) -> bytes:
        fd = self.open.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if not keep_open:
                try:
                    return read_range(fd, offset, size)
                finally:
                    os.close(fd)
            self.open[path] = fd
        return read_range(fd, offset, size)

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()


class _HashingFile:
    """A file written in large blocks, md5 (in a helper thread) and sha256 taken on the way."""

    def __init__(self, fd: int, helper: ThreadPoolExecutor) -> None:
        self.fd = fd
        self.helper = helper
        self.buffer = bytearray()
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def add(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        view = memoryview(self.buffer)
        md5 = self.helper.submit(self.md5.update, view)
        self.sha256.update(view)
        while view:
            view = view[os.write(self.fd, view):]
        md5.result()
        self.size += len(self.buffer)
        self.buffer = bytearray()


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard (or folder chunk): what the index, the manifest and the receipt say of it."""

    name: str
    samples: int
    first_id: int
    last_id: int
    size: int
    md5: str | None  # tar shards only (the wids index wants it)
    sha256: str | None  # tar shards only
    files: list[list[Any]] | None = None  # folder chunks: [relative name, size, sha256] per file

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Any) -> "ShardRecord | None":
        if not isinstance(data, dict):
            return None
        try:
            return cls(**{key: data[key] for key in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None


def record_path(work: Path, plan: ShardPlan) -> Path:
    return work / "shards" / f"{plan.name[:-4]}.json"


def finished_record(out: Path, work: Path, plan: ShardPlan) -> ShardRecord | None:
    """The shard's record when an earlier run finished it and its output is still as recorded."""
    record = ShardRecord.from_dict(read_json(record_path(work, plan)))
    if record is None or record.samples != len(plan.samples) or record.first_id != plan.samples[0].image_id:
        return None
    if record.files is None:
        return record if _size(out / record.name) == record.size else None
    return record if all(_size(out / name) == size for name, size, _digest in record.files) else None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def write_tar_shard(out: Path, work: Path, plan: ShardPlan, locate: Locate, helper: ThreadPoolExecutor,
                    spills: set[Path]) -> ShardRecord:
    """Write, fsync and publish one tar shard, then its record. ``spills``: sources read whole (kept open)."""
    final = out / plan.name
    temporary = out / f".{plan.name}.partial"
    sources = _Sources()
    fd = os.open(temporary, _OPEN_FLAGS, 0o644)
    try:
        sink = _HashingFile(fd, helper)
        for sample in plan.samples:
            for (path, offset, size), suffix in zip(locate(sample), (".jpg", ".json")):
                sink.add(tar_header(f"sa_{sample.image_id}{suffix}", size))
                sink.add(sources.read(path, offset, size, path in spills))
                sink.add(bytes(-size % TAR_BLOCK))
        sink.add(_END_OF_ARCHIVE)
        sink.flush()
        os.fsync(fd)
    finally:
        os.close(fd)
        sources.close()
    os.replace(temporary, final)
    record = ShardRecord(plan.name, len(plan.samples), plan.samples[0].image_id, plan.samples[-1].image_id,
                         sink.size, sink.md5.hexdigest(), sink.sha256.hexdigest())
    atomic_write_json(record_path(work, plan), record.to_dict())
    return record


def write_folder_chunk(out: Path, work: Path, plan: ShardPlan, locate: Locate, spills: set[Path]) -> ShardRecord:
    """Write one chunk's samples as ``images/sa_<id>.jpg`` and ``annotations/sa_<id>.json`` (the ``split``
    layout), flush them to disk, then the chunk's record. A chunk without a record is written again."""
    sources = _Sources()
    files: list[list[Any]] = []
    try:
        for sample in plan.samples:
            for (path, offset, size), folder, suffix in zip(locate(sample), ("images", "annotations"), (".jpg", ".json")):
                data = sources.read(path, offset, size, path in spills)
                relative = f"{folder}/sa_{sample.image_id}{suffix}"
                fd = os.open(out / relative, _OPEN_FLAGS, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                files.append([relative, size, hashlib.sha256(data).hexdigest()])
    finally:
        sources.close()
    os.sync()  # one flush per chunk rather than an fsync per file
    record = ShardRecord(plan.name, len(plan.samples), plan.samples[0].image_id, plan.samples[-1].image_id,
                         sum(size for _name, size, _digest in files), None, None, files)
    atomic_write_json(record_path(work, plan), record.to_dict())
    return record


def write_wids_index(out: Path, records: Iterable[ShardRecord]) -> Path:
    """``shardindex.json`` in the ``wids`` format, shard URLs relative to OUT."""
    shardlist = [{"url": r.name, "md5sum": r.md5, "nsamples": r.samples, "filesize": r.size} for r in records]
    path = out / WIDS_INDEX
    atomic_write_json(path, {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "sa1b",
                             "shardlist": shardlist})
    return path


def write_sha256_manifest(out: Path, records: Iterable[ShardRecord]) -> Path:
    """``sha256sums.txt`` (``sha256sum -c`` format) of every shard, or every file of a folder export."""
    lines: list[str] = []
    for record in records:
        if record.files is None:
            lines.append(f"{record.sha256}  {record.name}\n")
        else:
            lines.extend(f"{digest}  {name}\n" for name, _size, digest in record.files)
    path = out / SHA256_MANIFEST
    atomic_write_text(path, "".join(lines))
    return path
