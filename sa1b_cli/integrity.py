"""Reading a part through to its end: compression by content, tar structure, md5 and sha256.

Real parts are gzip-compressed despite the ``.tar`` name, so compression is
detected from the first bytes, never from the name. ISA-L (``isal``) inflates
about 1.5x faster than zlib; zlib is the fallback where ``isal`` is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from sa1b_cli.errors import InputFileError

try:  # ISA-L: measurably faster inflate (see docs/benchmarks.md)
    from isal import igzip as _fast_gzip
except ImportError:  # pragma: no cover - isal has wheels for the common platforms
    _fast_gzip = None  # type: ignore[assignment]

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 4 << 20
_MD5_LINE = re.compile(r"^([0-9a-fA-F]{32})\s+\*?(.+?)\s*$")


class ArchiveError(Exception):
    """The part is not a readable (optionally gzip-compressed) tar to its end."""


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes (and counts) every byte read through it."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> None:
        self.raw = raw
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()
        self.count = 0
        self.on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            view = memoryview(buffer)[:n]
            self.md5.update(view)
            self.sha256.update(view)
            self.count += n
            if self.on_bytes is not None:
                self.on_bytes(n)
        return n or 0

    def drain(self) -> None:
        """Hash whatever the decompressor left unread (trailer, padding)."""
        buffer = bytearray(CHUNK)
        while self.readinto(buffer):
            pass


def open_decompressed(raw: IO[bytes], compressed: bool) -> IO[bytes]:
    """A reader of the tar bytes: inflated with ISA-L (or zlib) when gzip, else the raw stream."""
    if not compressed:
        return raw
    if _fast_gzip is not None:
        return _fast_gzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return gzip.GzipFile(fileobj=raw, mode="rb")


@dataclass
class PartCheck:
    """What reading a part through to its end found."""

    size: int
    md5: str
    sha256: str
    compressed: bool
    members: int = 0
    images: int = 0
    annotations: int = 0
    other: list[str] = field(default_factory=list)


def check_part(path: Path, on_bytes: Callable[[int], None] | None = None) -> PartCheck:
    """Read the whole part once: hash it and walk the tar to its end.

    Raises ArchiveError when the archive is truncated or corrupt (bad gzip CRC,
    broken tar header, missing end of archive).
    """
    with open(path, "rb", buffering=0) as raw_file:
        head = raw_file.read(2)
        raw_file.seek(0)
        compressed = head == GZIP_MAGIC
        hashing = HashingReader(raw_file, on_bytes)  # type: ignore[arg-type]
        buffered = io.BufferedReader(hashing, buffer_size=CHUNK)
        check = PartCheck(size=0, md5="", sha256="", compressed=compressed)
        try:
            stream = open_decompressed(buffered, compressed)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    check.members += 1
                    name = member.name[2:] if member.name.startswith("./") else member.name
                    if member.isdir():
                        continue
                    if name.endswith(".jpg"):
                        check.images += 1
                    elif name.endswith(".json"):
                        check.annotations += 1
                    elif len(check.other) < 20:
                        check.other.append(name)
            # tarfile stops at the end-of-archive blocks; read on so the gzip CRC is checked.
            while stream.read(CHUNK):
                pass
        except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
            raise ArchiveError(_describe(exc, compressed)) from None
        buffered_rest = buffered.read()
        del buffered_rest
        hashing.drain()
        check.size = hashing.count
        check.md5 = hashing.md5.hexdigest()
        check.sha256 = hashing.sha256.hexdigest()
        if check.members == 0:
            raise ArchiveError("archive holds no members")
        return check


def _describe(exc: BaseException, compressed: bool) -> str:
    kind = "gzip-compressed tar" if compressed else "tar"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "end-of-stream" in text or "unexpected end" in text.lower():
        return f"truncated {kind}: {text}"
    return f"corrupt {kind}: {text}"


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[int, str, str]:
    """(size, md5, sha256) of a file, read once."""
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            md5.update(view[:n])
            sha256.update(view[:n])
            size += n
            if on_bytes is not None:
                on_bytes(n)
    return size, md5.hexdigest(), sha256.hexdigest()


def parse_checksums(path: Path) -> dict[str, str]:
    """An ``md5sum``-format list (``<md5>  sa_000000.tar``) as {file name: md5}."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(str(path), None, "checksum list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(str(path), None, f"cannot read checksum list: {exc}") from None
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _MD5_LINE.match(line.strip())
        if not match:
            raise InputFileError(str(path), number, f"expected '<32 hex md5>  <file name>', got {line.strip()[:60]!r}")
        name = match.group(2).replace("\\", "/").rsplit("/", 1)[-1]
        md5 = match.group(1).lower()
        if name in result and result[name] != md5:
            raise InputFileError(str(path), number, f"{name} listed twice with different checksums")
        result[name] = md5
    if not result:
        raise InputFileError(str(path), None, "no checksums found")
    return result
