"""Writing shards: uncompressed tars with each sample's members side by side, one folder chunk, the
``wids`` index and the sha256 manifest.

A tar shard is written under a temporary name in OUT, synced and renamed into place, then its
record (size, md5, sha256, samples) is written to ``OUT/.sa1b-export/shards/``: a record next to a
file of its size is the proof the shard is done. Tar headers are built here (plain ustar, fixed
owner and time), so a shard's bytes depend only on its samples: an export killed and run again
gives the same shards, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sa1b_cli.export.memory import HeldMembers
from sa1b_cli.export.plan import TAR_BLOCK, Sample
from sa1b_cli.extract.disk import start_writeback, sync_filesystem
from sa1b_cli.store.atomic import atomic_write_json, atomic_write_text, read_json

WRITEBACK_EVERY = 32 << 20
HEADER_MTIME = 1_680_000_000  # every member's time: shards are reproducible
MAX_MEMBER_SIZE = 8**11 - 1  # what ustar's 11 octal digits hold
WIDS_INDEX = "shardindex.json"
SHA256_MANIFEST = "sha256sums.txt"
_END_OF_ARCHIVE = bytes(2 * TAR_BLOCK)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC



@dataclass(frozen=True)
class Located:
    """Where a sample's bytes are: (path, offset, size) of its image and of its annotation, ranges of a
    part's spill (``spilled``), whole extracted files, or members ``held`` in memory (paths unused)."""

    jpg: tuple[Path, int, int]
    annotation: tuple[Path, int, int]
    spilled: bool
    held: HeldMembers | None = None


Locate = Callable[[Sample], Located]


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
    """Open source files. A part's spill stays open for the whole shard; an extracted file is read whole
    and closed."""

    def __init__(self) -> None:
        self.open: dict[Path, int] = {}

    def read(self, path: Path, offset: int, size: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return read_range(fd, offset, size)
        finally:
            os.close(fd)

    def spilled(self, path: Path, offset: int, size: int) -> bytes:
        """A range of a spill file (its pages are usually still in the page cache)."""
        if path not in self.open:
            self.open[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return read_range(self.open[path], offset, size)

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_pieces(fd: int, pieces: list[bytes]) -> None:
    """``pieces`` written in one ``writev``; after a short write, the rest piece by piece."""
    written = os.writev(fd, pieces)
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
            continue
        _write_all(fd, memoryview(piece)[written:])
        written = 0


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


def record_path(work: Path, name: str) -> Path:
    return work / "shards" / f"{name[:-4]}.json"


def finished_record(out: Path, work: Path, name: str, first_id: int) -> ShardRecord | None:
    """The record of shard ``name`` when an earlier run finished it, starting at ``first_id``, and its
    output is still as recorded."""
    record = ShardRecord.from_dict(read_json(record_path(work, name)))
    if record is None or record.first_id != first_id:
        return None
    if record.files is None:
        return record if _size(out / record.name) == record.size else None
    return record if all(_size(out / file) == size for file, size, _digest in record.files) else None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class KeptShard:
    """A shard an earlier run published: its samples are counted through, nothing is written."""

    def __init__(self, record: ShardRecord) -> None:
        self.record = record
        self.samples = 0
        self.last_id: int | None = None

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.last_id = sample.image_id

    def finish(self) -> ShardRecord:
        if (self.samples, self.last_id) != (self.record.samples, self.record.last_id):
            raise ValueError(f"{self.record.name}: its record holds samples {self.record.first_id}..{self.record.last_id} "
                             f"({self.record.samples}), this export cuts {self.samples} up to {self.last_id}")
        return self.record

    def abort(self) -> None:
        """Nothing was written."""


class TarShardWriter:
    """One tar shard written sample by sample, as parts are read: each sample's headers, members (held in
    memory, or read from the spill or the extracted files) and padding in one ``writev``, and hashed from
    those same bytes (md5 in ``helper``, sha256 here) rather than read back. On ``finish`` it is synced
    (``fdatasync``) and renamed into place, then its record is written."""

    def __init__(self, out: Path, work: Path, name: str, locate: Locate, helper: ThreadPoolExecutor) -> None:
        self.out, self.work, self.name, self.locate, self.helper = out, work, name, locate, helper
        self.temporary = out / f".{name}.partial"
        self.fd = os.open(self.temporary, _OPEN_FLAGS, 0o644)
        self.sources = _Sources()
        self.md5, self.sha256 = hashlib.md5(), hashlib.sha256()
        self.pending: list[Future[None]] = []  # md5 updates, in order (one helper thread)
        self.samples, self.size, self.flushed = 0, 0, 0
        self.first_id = self.last_id = -1

    def add(self, sample: Sample) -> None:
        pieces = _sample_pieces(sample, self.locate(sample), self.sources)
        self._hash(pieces)  # md5 starts in the helper before the write
        _write_pieces(self.fd, pieces)
        if self.size - self.flushed >= WRITEBACK_EVERY:
            start_writeback(self.fd)  # the disk works while parts are read; the sync at the end finds little left
            self.flushed = self.size
        self.samples += 1
        self.first_id = sample.image_id if self.first_id < 0 else self.first_id
        self.last_id = sample.image_id

    def _hash(self, pieces: list[bytes]) -> None:
        self.pending.append(self.helper.submit(_update, self.md5, pieces))
        _update(self.sha256, pieces)
        self.size += sum(len(piece) for piece in pieces)

    def finish(self) -> ShardRecord:
        try:
            _write_all(self.fd, _END_OF_ARCHIVE)
            self._hash([_END_OF_ARCHIVE])
            os.fdatasync(self.fd)  # data and size, all a rename needs to publish a whole shard (while md5 ends)
            self._settle()
        except BaseException:
            self.abort()
            raise
        os.close(self.fd)
        self.fd = -1
        os.replace(self.temporary, self.out / self.name)
        record = ShardRecord(self.name, self.samples, self.first_id, self.last_id, self.size,
                             self.md5.hexdigest(), self.sha256.hexdigest())
        atomic_write_json(record_path(self.work, self.name), record.to_dict())
        return record

    def _settle(self) -> None:
        """Wait for the md5 updates, then close the sources. The helper has one thread and runs in order, so
        once a no-op submitted now is done, so is every update (even one an interrupt kept out of ``pending``)."""
        self.helper.submit(int).result()
        for future in self.pending:
            future.result()
        self.sources.close()

    def abort(self) -> None:
        """Drop the unfinished shard (nothing when it was published or dropped already)."""
        if self.fd < 0:
            return
        try:
            self._settle()
        finally:
            os.close(self.fd)
            self.fd = -1
            self.temporary.unlink(missing_ok=True)


def _sample_pieces(sample: Sample, located: Located, sources: _Sources) -> list[bytes]:
    """A sample's tar bytes, for one ``writev`` and the hashes: each member's header, its bytes, its padding."""
    pieces: list[bytes] = []
    for (path, offset, size), suffix in ((located.jpg, ".jpg"), (located.annotation, ".json")):
        pieces += [tar_header(f"sa_{sample.image_id}{suffix}", size), _member_bytes(sources, located, path, offset, size),
                   bytes(-size % TAR_BLOCK)]
    return pieces


def _member_bytes(sources: _Sources, located: Located, path: Path, offset: int, size: int) -> bytes:
    """One member's bytes: held in memory, a range of the part's spill, or a whole extracted file."""
    if located.held is not None:
        return located.held.member(offset, size)
    if located.spilled:
        return sources.spilled(path, offset, size)
    return sources.read(path, offset, size)


def _update(digest: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)


class FolderChunkWriter:
    """One chunk of ``--format folders``: each sample as ``images/sa_<id>.jpg`` and ``annotations/sa_<id>.json``
    (the ``split`` layout), written as it comes; on ``finish`` flushed to disk, then the chunk's record.
    A chunk without a record is written again by the next run."""

    def __init__(self, out: Path, work: Path, name: str, locate: Locate) -> None:
        self.out, self.work, self.name, self.locate = out, work, name, locate
        self.sources = _Sources()
        self.digests: dict[str, str] = {}  # sha256 of each file written
        self.samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        located = self.locate(sample)
        for (path, offset, size), folder, suffix in ((located.jpg, "images", ".jpg"),
                                                     (located.annotation, "annotations", ".json")):
            relative = f"{folder}/sa_{sample.image_id}{suffix}"
            self.digests[relative] = _write_file(self.out / relative, self.sources, located, path, offset, size)
        self.samples.append(sample)

    def finish(self) -> ShardRecord:
        self.sources.close()
        sync_filesystem(self.out)  # one flush per chunk rather than an fsync per file
        return folder_chunk_record(self.work, self.name, self.samples, self.digests)

    def abort(self) -> None:
        self.sources.close()


def _write_file(target: Path, sources: _Sources, located: Located, path: Path, offset: int, size: int) -> str:
    """One file of a folder chunk, from held bytes, a spill or an extracted file; its sha256."""
    return write_folder_file(target, _member_bytes(sources, located, path, offset, size))


def write_folder_file(target: Path, data: bytes) -> str:
    """One file of a folder chunk written (replacing what an interrupted run left); its sha256."""
    fd = os.open(target, _OPEN_FLAGS, 0o644)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    return hashlib.sha256(data).hexdigest()


def folder_chunk_record(work: Path, name: str, samples: list[Sample], digests: dict[str, str]) -> ShardRecord:
    """The record of a folder chunk whose files are all written and flushed (``digests``: sha256 by file)."""
    files = [[relative, size, digests[relative]] for sample in samples
             for relative, size in ((f"images/sa_{sample.image_id}.jpg", sample.jpg_size),
                                    (f"annotations/sa_{sample.image_id}.json", sample.json_size))]
    record = ShardRecord(name, len(samples), samples[0].image_id, samples[-1].image_id,
                         sum(size for _name, size, _digest in files), None, None, files)
    atomic_write_json(record_path(work, name), record.to_dict())
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
