"""The one tar walker: every reader of a part (download's check, extract, export) reads it through here.

A part is read once, as a stream: :func:`open_part_stream` gives its tar bytes (gzip detected by
content, never by the ``.tar`` name; ISA-L inflating in its own thread when installed), and
:class:`TarReader` walks the headers over that stream. Whatever the walker refuses (an unsafe name,
a link or device, a sparse file, a duplicate or a case collision, a truncated or corrupt tar, a gzip
bomb) it refuses for every caller, so a part the download check accepts is a part extract accepts.
Rules that depend on where files go (layout ``split`` holds only images and annotations, ``flat``
keeps no folders) belong to extract, not here.

The walker is our own (over ``tarfile.TarInfo.frombuf``, which checks header checksums) because
``tarfile``'s stream mode reads member data 16 KiB at a time; here data is skipped or copied in
large reads into one reused buffer.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

try:  # ISA-L: measurably faster inflate (see docs/benchmarks.md)
    from isal import igzip as _fast_gzip
    from isal import igzip_threaded as _threaded_gzip
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - isal has wheels for the common platforms
    _fast_gzip = None  # type: ignore[assignment]
    _threaded_gzip = None  # type: ignore[assignment]
    _IsalError = zlib.error  # type: ignore[assignment,misc]

GZIP_MAGIC = b"\x1f\x8b"
BLOCK = tarfile.BLOCKSIZE
COPY_BUFFER = 4 << 20
INFLATE_BLOCK = 1 << 20
MAX_MEMBERS = 1_000_000  # real parts hold about 22,400 members
MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255
MAX_EXTENDED_HEADER = 1 << 20  # pax / GNU long-name payloads
# A gzip bomb: SA-1B's JPEGs do not compress (a part inflates to about 1.0x its size), so a stream
# that inflates to more than this many times the compressed bytes read, beyond a slack for small
# and highly compressible parts, is refused rather than written out.
MAX_INFLATE_RATIO = 10
INFLATE_SLACK = 128 << 20

STREAM_ERRORS = (OSError, EOFError, zlib.error, _IsalError, ValueError)
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE}  # contiguous files are plain files
_PAX_TYPES = {tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE}
_REFUSED_TYPES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


class TarRefused(Exception):
    """The part's tar is refused: an unsafe or unsupported member, a corrupt or truncated tar.
    str() says why and where (member name, byte offset)."""


@dataclass(frozen=True)
class Member:
    """One regular file or folder of a tar, its name already checked safe."""

    name: str  # relative, without "./"; pax path and GNU long names honoured
    size: int  # data bytes (the pax "size" honoured)
    is_dir: bool
    offset: int  # byte offset of its header in the tar stream

    @property
    def kind(self) -> str:
        """"image" (.jpg), "annotation" (.json) or "other": the one rule every reader counts by."""
        lowered = self.name.lower()
        if lowered.endswith(".jpg"):
            return "image"
        if lowered.endswith(".json"):
            return "annotation"
        return "other"


class _BombGuard:
    """Counts the compressed bytes the inflater reads and the tar bytes it gives, and refuses a bomb."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.compressed = 0
        self.inflated = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.compressed += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.compressed += n or 0
        return n or 0

    def readable(self) -> bool:
        return True

    def count(self, n: int) -> None:
        self.inflated += n
        if self.inflated > MAX_INFLATE_RATIO * self.compressed + INFLATE_SLACK:
            raise TarRefused(f"gzip bomb: {self.compressed} compressed bytes inflate to more than {self.inflated}; "
                             f"refusing a part that expands more than {MAX_INFLATE_RATIO}x")


class _GuardedStream:
    """The inflated stream, with every byte it yields counted against its :class:`_BombGuard`."""

    def __init__(self, inflated: IO[bytes], guard: _BombGuard) -> None:
        self.inflated = inflated
        self.guard = guard

    def read(self, n: int = -1) -> bytes:
        data = self.inflated.read(n)
        self.guard.count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.inflated.readinto(buffer)  # type: ignore[attr-defined]
        self.guard.count(n or 0)
        return n or 0

    def close(self) -> None:
        self.inflated.close()

    def __enter__(self) -> "_GuardedStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_part_stream(raw: IO[bytes], *, through: Callable[[IO[bytes]], IO[bytes]] | None = None,
                     threaded: bool = True) -> tuple[IO[bytes], bool]:
    """(the part's tar bytes, whether they were gzip-compressed), from ``raw`` at its start.

    ``raw`` must seek back to 0 once (after its first two bytes are looked at). ``through``
    wraps ``raw`` before anything is read for the tar (e.g. a hashing reader). ``threaded``
    inflates in ISA-L's own thread (the walker runs meanwhile); a caller already in its own
    thread that waits on a growing file passes False (ISA-L's reader polls while it waits).
    """
    head = b""
    while len(head) < 2 and (more := raw.read(2 - len(head))):
        head += more
    raw.seek(0)
    compressed = head == GZIP_MAGIC
    source = through(raw) if through is not None else raw
    if not compressed:
        return source, False
    guard = _BombGuard(source)
    if threaded and _threaded_gzip is not None:
        inflated = _threaded_gzip.open(guard, "rb", threads=1, block_size=INFLATE_BLOCK)
    elif _fast_gzip is not None:
        inflated = _fast_gzip.IGzipFile(fileobj=guard, mode="rb")  # type: ignore[arg-type]
    else:
        inflated = gzip.GzipFile(fileobj=guard, mode="rb")  # type: ignore[arg-type]
    return _GuardedStream(inflated, guard), True  # type: ignore[return-value]


def describe_stream_error(exc: BaseException, compressed: bool) -> str:
    """A reader's exception (inflate, I/O) as "truncated ..." or "corrupt ..." of a (gzip) tar."""
    kind = "gzip-compressed tar" if compressed else "tar"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "end-of-stream" in text or "unexpected end" in text.lower():
        return f"truncated {kind}: {text}"
    return f"corrupt {kind}: {text}"


class TarReader:
    """Walks a tar stream once: its members in order, their data read, copied or skipped."""

    def __init__(self, stream: IO[bytes], *, max_members: int = MAX_MEMBERS, compressed: bool = False) -> None:
        """``stream``: the uncompressed tar bytes (an object with read/readinto, e.g. an inflating reader).
        ``compressed`` only words the message when the stream itself fails ("truncated gzip-compressed tar")."""
        self.stream = stream
        self.max_members = max_members
        self.compressed = compressed
        self.offset = 0
        self.member_count = 0  # member headers read, the "." entry included (what receipts call "members")
        self._headers = 0
        self._left = 0  # data bytes of the current member not consumed yet
        self._padding = 0
        self._current: Member | None = None
        self._files: dict[str, str] = {}  # casefolded file name -> its name
        self._folders: dict[str, str] = {}  # casefolded folder name -> its name
        self._view = memoryview(bytearray(COPY_BUFFER))

    # -- reading the stream (its failures become TarRefused)

    def _read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except TarRefused:
            raise
        except STREAM_ERRORS as exc:
            raise TarRefused(describe_stream_error(exc, self.compressed)) from None

    def _readinto(self, view: memoryview) -> int:
        try:
            return self.stream.readinto(view) or 0  # type: ignore[attr-defined]
        except TarRefused:
            raise
        except STREAM_ERRORS as exc:
            raise TarRefused(describe_stream_error(exc, self.compressed)) from None

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        while len(data) < n:
            more = self._read(n - len(data))
            if not more:
                if not data and what == "a member header":
                    raise TarRefused("truncated: the archive ends without its end-of-archive marker")
                raise TarRefused(f"truncated: the archive ends inside {what} (byte {self.offset + len(data)})")
            data += more
        self.offset += n
        return data

    def _skip(self, n: int) -> None:
        while n:
            got = self._readinto(self._view[: min(n, COPY_BUFFER)])
            if not got:
                raise TarRefused(f"truncated: the archive ends inside a member (byte {self.offset})")
            n -= got
            self.offset += got

    def _skip_rest(self) -> None:
        """Whatever the caller left of the current member (data and padding)."""
        left, self._left = self._left, 0
        padding, self._padding = self._padding, 0
        self._skip(left + padding)
        self._current = None

    # -- members

    def members(self) -> Iterator[Member]:
        """Regular files and folders in order; the "." entry skipped; raises TarRefused on any refused
        member type (links, devices, fifos, sparse files, pax global headers that set path/size, ...),
        on a hostile name, on a duplicate name or a case collision, or on a truncated/corrupt tar. Data
        a caller did not consume is skipped before the next member is read."""
        long_name: str | None = None
        pax: dict[str, str] = {}
        while True:
            self._skip_rest()
            header_offset = self.offset
            block = self._read_exact(BLOCK, "a member header")
            if block == _ZERO_BLOCK:
                return
            self._headers += 1
            if self._headers > 2 * self.max_members:
                raise TarRefused(f"more than {self.max_members} members; refusing an archive this large")
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise TarRefused(f"corrupt tar header at byte {header_offset} of the tar stream: {exc}") from None
            if info.type in _PAX_TYPES or info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                                                        tarfile.XGLTYPE):
                long_name, pax = self._extended(info, long_name, pax)
                continue
            name = pax.get("path", long_name if long_name is not None else info.name)
            size = _pax_size(pax, info.size)
            long_name, pax = None, {}
            self.member_count += 1
            if self.member_count > self.max_members:
                raise TarRefused(f"more than {self.max_members} members; refusing an archive this large")
            member = self._member(info.type, name, size, header_offset)
            if member is not None:
                self._current = member
                yield member

    def _extended(self, info: tarfile.TarInfo, long_name: str | None,
                  pax: dict[str, str]) -> tuple[str | None, dict[str, str]]:
        """Read an extended header: (the long name, the pax records) that apply to the next member."""
        if info.size > MAX_EXTENDED_HEADER:
            raise TarRefused(f"an extended header of {info.size} bytes (more than {MAX_EXTENDED_HEADER}); refusing")
        payload = self._read_exact(info.size + (-info.size % BLOCK), "an extended header")[: info.size]
        if info.type == tarfile.GNUTYPE_LONGNAME:
            return payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"), pax
        if info.type == tarfile.XGLTYPE:
            if {"path", "size"} & _parse_pax(payload).keys():
                raise TarRefused("a pax global header sets names or sizes for all members; not supported")
            return long_name, pax
        if info.type == tarfile.GNUTYPE_LONGLINK:  # a link's target: the link itself is refused
            return long_name, pax
        return long_name, _parse_pax(payload)

    def _member(self, kind: bytes, raw_name: str, size: int, offset: int) -> Member | None:
        """The member a header describes (None for the "." entry); refuses types and names."""
        if kind in _REFUSED_TYPES:
            raise TarRefused(f"member {raw_name!r} is {_REFUSED_TYPES[kind]}; only regular files are extracted")
        is_dir = kind == tarfile.DIRTYPE
        if not is_dir and kind not in _REGULAR_TYPES:
            raise TarRefused(f"member {raw_name!r} has tar type {kind!r}; only regular files are extracted")
        self._left, self._padding = size, -size % BLOCK
        name = safe_name(raw_name.rstrip("/") or raw_name if is_dir else raw_name)
        if name is None:
            if size and not is_dir:
                raise TarRefused(f"member {raw_name!r} is a regular file without a name")
            return None  # the "." entry (a folder, or an empty file as some writers emit it)
        self._claim(name, is_dir, raw_name)
        return Member(name, size, is_dir, offset)

    def _claim(self, name: str, is_dir: bool, raw_name: str) -> None:
        """Refuse a second member of the same name, a name differing only in case, a file where a folder is."""
        folded = name.casefold()
        parts = folded.split("/")
        for depth in range(1, len(parts) + (1 if is_dir else 0)):
            folder = "/".join(parts[:depth])
            if folder in self._files:
                raise TarRefused(f"member {raw_name!r}: its folder clashes with the file {self._files[folder]!r}")
            self._folders.setdefault(folder, name)
        if is_dir:
            return
        if folded in self._folders:
            raise TarRefused(f"member {raw_name!r} clashes with a folder of the same name")
        seen = self._files.get(folded)
        if seen == name:
            raise TarRefused(f"member {raw_name!r} appears twice in the archive")
        if seen is not None:
            raise TarRefused(f"members {seen!r} and {name!r} differ only in case; they would overwrite each other")
        self._files[folded] = name

    # -- member data

    def _check_current(self, member: Member) -> None:
        if member is not self._current or member.is_dir:
            raise ValueError(f"{member.name!r} is not the file member being read")

    def read(self, member: Member) -> bytes:
        """The member's whole data (what is left of it)."""
        self._check_current(member)
        data = self._read_exact(self._left, f"member {member.name!r}") if self._left else b""
        self._left = 0
        return data

    def copy_to(self, member: Member, fd: int, at: int | None = None) -> None:
        """The member's data written to ``fd`` through one large reused buffer: where ``fd`` stands, or
        (``at``) from that offset of the file on, leaving ``fd``'s position alone."""
        self._check_current(member)
        view = self._view
        while self._left:
            n = self._readinto(view[: min(self._left, COPY_BUFFER)])
            if not n:
                raise TarRefused(f"truncated: the archive ends inside member {member.name!r} "
                                 f"({member.size - self._left} of {member.size} bytes)")
            written = 0
            while written < n:
                if at is None:
                    written += os.write(fd, view[written:n])
                else:
                    written += os.pwrite(fd, view[written:n], at + member.size - self._left + written)
            self._left -= n
            self.offset += n

    def finish(self) -> None:
        """Read past the end-of-archive marker to EOF (so gzip's CRC and length are checked)."""
        self._skip_rest()
        while n := self._readinto(self._view):
            self.offset += n


def safe_name(raw: str) -> str | None:
    """``./sa_1.jpg`` -> ``sa_1.jpg``; None for the ``.`` entry; refuses anything unsafe."""
    if raw.startswith("/"):
        raise TarRefused(f"member {raw!r} has an absolute path")
    name = raw
    while name.startswith("./"):
        name = name[2:]
    if name in ("", "."):
        return None
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise TarRefused(f"member name longer than {MAX_NAME_BYTES} bytes: {raw[:80]!r}...")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise TarRefused(f"member {raw!r} has control characters in its name")
    parts = name.split("/")
    if ".." in parts:
        raise TarRefused(f"member {raw!r} contains '..'")
    if any(p in ("", ".") for p in parts):
        raise TarRefused(f"member {raw!r} has an empty or '.' path component")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for p in parts):
        raise TarRefused(f"member {raw[:80]!r}: a path component is longer than {MAX_COMPONENT_BYTES} bytes")
    return name


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else -1
        except ValueError:
            length = -1
        record = data[space + 1:pos + length] if length > 0 else b""
        if length <= 0 or pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise TarRefused(f"malformed pax extended header near {data[pos:pos + 40]!r}")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    if any(key.startswith("GNU.sparse") for key in records):
        raise TarRefused("a member is a sparse file; only regular files are extracted")
    return records


def _pax_size(pax: dict[str, str], header_size: int) -> int:
    if "size" not in pax:
        return header_size
    if not pax["size"].isdigit():
        raise TarRefused(f"pax header has a bad size {pax['size'][:40]!r}")
    return int(pax["size"])
