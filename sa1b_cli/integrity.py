"""Reading a part through to its end: its md5 and sha256, and its tar walked by :mod:`sa1b_cli.tarwalk`.

The tar is read by the one walker extract writes through (:class:`~sa1b_cli.tarwalk.TarReader`, over
:func:`~sa1b_cli.tarwalk.open_part_stream`), so a part this check accepts is a part extract accepts.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sa1b_cli.tarwalk import TarReader, TarRefused, open_part_stream

try:
    from sa1b_cli import _hashlanes  # built at install time where a C compiler is at hand
except ImportError:  # pragma: no cover - the wheel-less install without a compiler
    _hashlanes = None

CHUNK = 4 << 20
LANES_FROM = 4  # files from which hashing them in SIMD lanes (``_hashlanes``) costs less CPU than hashlib
OTHER_NAMES_KEPT = 20  # names of members that are neither images nor annotations, for the message


class ArchiveError(Exception):
    """The part is not a readable (optionally gzip-compressed) tar to its end."""


class ParallelHasher:
    """sha256 (and md5 when asked) of a byte stream, each in its own thread.

    hashlib releases the GIL on large buffers, so md5 (~400 MB/s here), sha256 (~1 GB/s)
    and the inflate of the caller run on separate cores instead of one after the other.
    md5 is only worth its CPU (a quarter of a check's) against an md5 checksum list.
    """

    def __init__(self, md5: bool = True) -> None:
        self.md5 = hashlib.md5() if md5 else None
        self.sha256 = hashlib.sha256()
        self._queues: list[queue.Queue[bytes | None]] = []
        self._threads: list[threading.Thread] = []
        for digest in (self.md5, self.sha256) if self.md5 is not None else (self.sha256,):
            chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
            thread = threading.Thread(target=self._consume, args=(digest, chunks), daemon=True)
            thread.start()
            self._queues.append(chunks)
            self._threads.append(thread)

    @staticmethod
    def _consume(digest: "hashlib._Hash", chunks: "queue.Queue[bytes | None]") -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    def update(self, data: bytes) -> None:
        for chunks in self._queues:
            chunks.put(data)

    def finish(self) -> tuple[str | None, str]:
        """Wait for the threads; (md5 hex or None when not asked for, sha256 hex)."""
        for chunks in self._queues:
            chunks.put(None)
        for thread in self._threads:
            thread.join()
        return (self.md5.hexdigest() if self.md5 is not None else None), self.sha256.hexdigest()


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes (and counts) every byte read through it."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None] | None = None, *, md5: bool = True) -> None:
        self.raw = raw
        self.hasher = ParallelHasher(md5)
        self.count = 0
        self.on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.hasher.update(bytes(memoryview(buffer)[:n]))
            self.count += n
            if self.on_bytes is not None:
                self.on_bytes(n)
        return n or 0

    def drain(self) -> None:
        """Hash whatever the decompressor left unread (trailer, padding)."""
        buffer = bytearray(CHUNK)
        while self.readinto(buffer):
            pass


@dataclass
class PartCheck:
    """What reading a part through to its end found."""

    size: int
    md5: str | None  # None when not computed (no checksum list to compare with)
    sha256: str
    compressed: bool
    members: int = 0
    images: int = 0
    annotations: int = 0
    others: int = 0  # files that are neither images nor annotations
    other: list[str] = field(default_factory=list)  # the first OTHER_NAMES_KEPT of their names
    member_sizes: list[tuple[str, int]] = field(default_factory=list, repr=False)  # every file, in tar order


def check_part(path: Path, on_bytes: Callable[[int], None] | None = None, *, md5: bool = True) -> PartCheck:
    """Read the whole part once: hash it (sha256, and md5 unless ``md5=False``) and walk the tar to its end.

    Raises ArchiveError when the walker refuses the tar: truncated or corrupt (bad gzip CRC,
    broken tar header, missing end of archive) or holding a member extract would refuse.
    """
    with open(path, "rb", buffering=0) as raw_file:
        return _check_raw(raw_file, on_bytes, md5, threaded=True)


def _check_raw(raw_file: BinaryIO, on_bytes: Callable[[int], None] | None, md5: bool, *, threaded: bool) -> PartCheck:
    """The check itself, over any raw reader that can go back to its start once (after the magic bytes)."""
    hashing = HashingReader(raw_file, on_bytes, md5=md5)
    buffered = io.BufferedReader(hashing, buffer_size=CHUNK)
    check = PartCheck(size=0, md5=None, sha256="", compressed=False)
    try:
        stream, check.compressed = open_part_stream(raw_file, through=lambda _raw: buffered,  # type: ignore[arg-type,return-value]
                                                    threaded=threaded)
        try:
            _count_members(TarReader(stream, compressed=check.compressed), check)
        except TarRefused as exc:
            raise ArchiveError(str(exc)) from None
        finally:
            if stream is not buffered:
                stream.close()  # the inflater (and its thread), not the part
        buffered.read()
        hashing.drain()
    finally:
        md5_hex, sha256_hex = hashing.hasher.finish()  # also ends the hash threads when the check failed
    check.size = hashing.count
    check.md5, check.sha256 = md5_hex, sha256_hex
    if check.images + check.annotations + check.others == 0:
        raise ArchiveError("archive holds no files")  # extract would refuse it too
    return check


def _count_members(reader: TarReader, check: PartCheck) -> None:
    """Walk the tar to its end, skipping member data, counting what extract would write."""
    for member in reader.members():
        if member.is_dir:
            continue
        check.member_sizes.append((member.name, member.size))
        kind = member.kind
        if kind == "image":
            check.images += 1
        elif kind == "annotation":
            check.annotations += 1
        else:
            check.others += 1
            if len(check.other) < OTHER_NAMES_KEPT:
                check.other.append(member.name)
    reader.finish()
    check.members = reader.member_count


class StreamAborted(Exception):
    """The part is being fetched again (or the run stops): what was read so far no longer counts."""


class GrowingFile(io.RawIOBase):
    """A part file aria2c is still writing, readable only up to the length known to be written.

    The caller (which sees aria2's piece bitfield) raises that length with :meth:`advance` and
    gives the final size with :meth:`finish`; reads block until bytes are known to be there.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._pos = 0
        self._ready = 0
        self._final: int | None = None
        self._aborted = False
        self._cond = threading.Condition()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset < 0:
            raise io.UnsupportedOperation("a growing file seeks only to absolute offsets")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def advance(self, ready: int) -> None:
        """The first ``ready`` bytes of the file are written (complete pieces, no disk cache in between)."""
        with self._cond:
            if ready > self._ready:
                self._ready = ready
                self._cond.notify_all()

    def finish(self, size: int) -> None:
        """The file is complete at ``size`` bytes: read to there, then end of file."""
        with self._cond:
            self._final = self._ready = size
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        with self._cond:
            while not self._aborted and self._pos >= self._ready and self._final is None:
                self._cond.wait()
            if self._aborted:
                raise StreamAborted()
            limit = min(len(buffer), self._ready - self._pos)
        if limit <= 0:
            return 0  # at the final size
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
            st = os.fstat(self._fd)
            self._identity = (st.st_dev, st.st_ino)
        n = os.preadv(self._fd, [memoryview(buffer)[:limit]], self._pos)
        if n <= 0:
            raise OSError(f"{self.path.name}: the file is shorter than the bytes aria2 reported written")
        self._pos += n
        return n

    def same_file(self) -> bool:
        """Is the path still the file that was read (not deleted or replaced meanwhile)?"""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return self._identity == (st.st_dev, st.st_ino)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()


class StreamingCheck:
    """:func:`check_part` run while aria2c downloads the part, on the bytes known to be written.

    A thread reads each newly completed prefix as it grows (from the page cache, where aria2c
    just wrote it), so the check ends soon after the last byte. :meth:`result` gives the check, or
    None whenever it cannot be trusted (read error, aborted, file replaced, any archive error):
    the caller then runs the full :func:`check_part` after completion, which also names the fault.
    """

    def __init__(self, path: Path, on_bytes: Callable[[int], None] | None = None, *, md5: bool = True) -> None:
        self.file = GrowingFile(path)
        self._on_bytes = on_bytes
        self._md5 = md5
        self._check: PartCheck | None = None
        self._thread = threading.Thread(target=self._run, name=f"sa1b-stream-{path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            # Inflate in this thread: ISA-L's threaded reader polls its queue 100 times a second,
            # for the whole download while it waits for bytes; the parts streamed at once run in parallel.
            self._check = _check_raw(self.file, self._on_bytes, self._md5, threaded=False)  # type: ignore[arg-type]
        except BaseException:  # noqa: BLE001 - any doubt falls back to the full check after completion
            self._check = None
        finally:
            self.file.close()

    def advance(self, ready: int) -> None:
        self.file.advance(ready)

    def result(self, size: int) -> PartCheck | None:
        """The part is complete at ``size`` bytes: finish reading it; its check, or None (run check_part)."""
        self.file.finish(size)
        self._thread.join()
        check = self._check
        if check is None or check.size != size or not self.file.same_file():
            return None
        return check

    def abort(self) -> None:
        """Stop reading; the thread ends on its own (nothing waits for it)."""
        self.file.abort()


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None, *, md5: bool = True) -> tuple[int, str | None, str]:
    """(size, md5 or None when ``md5=False``, sha256) of a file, read once."""
    hasher = ParallelHasher(md5)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    md5_hex, sha256_hex = hasher.finish()
    return size, md5_hex, sha256_hex


def hash_files(paths: Sequence[Path], workers: int = 1) -> list[tuple[int, str | None, str]]:
    """(size, md5, sha256) of each file.

    Both hashes are chains of dependent steps (md5 ~1.2 ns a byte, sha256 ~0.5 with SHA-NI: as much
    CPU as inflating the bytes), but the files are independent streams: from LANES_FROM files on,
    ``_hashlanes`` reads each once and hashes them side by side, one SIMD lane a file (16 files:
    about a third of hashlib's CPU). Without the C extension, or for fewer files, each is
    :func:`hash_file`'d, ``workers`` at a time.
    """
    if _hashlanes is None or len(paths) < LANES_FROM:
        with ThreadPoolExecutor(workers, thread_name_prefix="sa1b-hash") as pool:
            return list(pool.map(hash_file, paths))
    return [(size, md5.hex(), sha256.hex()) for size, md5, sha256 in _hashlanes.hash_files(paths)]
