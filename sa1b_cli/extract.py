"""Unpacking downloaded parts into ROOT: fast, safe against hostile archives, atomic per part.

Why it is built this way
------------------------
- Speed. Inflating dominates. ISA-L inflates in a background thread
  (``isal.igzip_threaded``) while the calling thread walks the tar and writes each
  file with plain ``os.open``/``os.write`` from one reusable buffer; ISA-L releases the
  GIL, so parts run in threads (one per ``jobs``) rather than processes, and one part
  extracts faster than GNU ``tar -xzf`` (which pipes through ``gzip``).
- Safety. The tar walker is our own (a few dozen lines over ``tarfile.TarInfo.frombuf``,
  which checks header checksums): it accepts only regular files (and ignores
  directory entries), refuses absolute names, ``..``, symlinks, hard links,
  devices, FIFOs and sparse files, caps name lengths, extended-header sizes and
  member counts, and writes only into a fresh temporary directory it owns. A
  truncated or corrupt archive fails that part alone.
- Atomicity. A part is unpacked into ``ROOT/.sa1b/tmp/extract-<part>-<host>-<pid>/files``,
  then a manifest (``manifest.tsv``) is written there to mark it complete, and only
  then is it published: layout ``parts`` renames the whole folder into place;
  ``split`` and ``flat`` (all parts share folders) hard-link file by file with
  ``os.link`` (which never replaces an existing file) and keep the temporary copy
  until the receipt is written. A rerun after a crash finds the ready temporary
  directory and finishes the publication (a destination that is the same inode as
  the temporary file is already ours); a name that exists with other content, or
  that another part owns, is a collision: the part fails and what it linked is
  removed again. The extract receipt is written last and is the proof of a part.
- One read. ``download --extract`` hands a freshly downloaded part over with a
  ``source_check``: the bytes read for unpacking are hashed on the way (sha256, and md5
  against a checksum list, in their own threads), and the download receipt is written
  from that read, before the part is published, instead of inflating the part once to
  check it and again to unpack it.

Where files go (see :func:`part_file_locations`)::

    parts (default)  ROOT/extracted/sa_000000/sa_1.jpg, .../sa_1.json
    split            ROOT/images/sa_1.jpg, ROOT/annotations/sa_1.json
    flat             ROOT/extracted/sa_1.jpg, ROOT/extracted/sa_1.json

Each extracted part also has a manifest, ``ROOT/.sa1b/manifests/extract/sa_000000.tsv``:
a first line holding a JSON object (part, layout, counts, source sha256), then one
``<name>\\t<size>`` line per file, the name relative to the part (``sa_1.jpg``).
"""

from __future__ import annotations

import ctypes
import errno
import filecmp
import io
import json
import os
import shutil
import stat
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sa1b_cli.store import legacy as state
from sa1b_cli.console import human_bytes
from sa1b_cli.errors import DiskSpaceError, ExitStatus, LayoutError, UsageError
from sa1b_cli.events import FileProgress, NullReporter, Reporter
from sa1b_cli.integrity import CHUNK, HashingReader, PartCheck
from sa1b_cli.tarwalk import open_part_stream
from sa1b_cli.links import PART_NAME
from sa1b_cli.store.locks import LockKeeper, PartLock
from sa1b_cli.store.paths import RootPaths, host_tag, part_stem
from sa1b_cli.selection import Shard, select_names

try:  # ISA-L inflating in its own thread: the walker and the inflater overlap
    from isal import igzip_threaded as _threaded_gzip
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - isal has wheels for the common platforms
    _threaded_gzip = None  # type: ignore[assignment]
    _IsalError = zlib.error  # type: ignore[assignment,misc]

LAYOUTS = ("parts", "split", "flat")
DEFAULT_LAYOUT = "parts"

# Result statuses of one part.
EXTRACTED = "extracted"  # unpacked by this call
ALREADY = "already"  # a receipt and the files were there already
FAILED = "failed"
LOCKED = "locked"  # another live run holds the part's lock
NOT_DOWNLOADED = "not_downloaded"  # no complete download receipt
INTERRUPTED = "interrupted"  # the run was stopped; nothing of the part was kept

BLOCK = tarfile.BLOCKSIZE
COPY_BUFFER = 4 << 20
INFLATE_BLOCK = 1 << 20
MAX_MEMBERS = 1_000_000  # real parts hold about 22,400 members
MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255
MAX_EXTENDED_HEADER = 1 << 20  # pax / GNU long-name payloads
PRESENCE_SAMPLE = 64  # files stat()ed to confirm an extracted part is still there (verify checks all)
PROGRESS_EVERY = 0.25  # seconds between progress forwards from the workers

_MANIFEST_NAME = "manifest.tsv"
_OWNER_NAME = "part.json"
_FILES_DIR = "files"
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE}
_PAX_TYPES = {tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE}
_REFUSED_TYPES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_READ_ERRORS = (OSError, EOFError, zlib.error, _IsalError, ValueError)


# --------------------------------------------------------------------------- layout


def read_layout(paths: RootPaths) -> str | None:
    """The layout recorded for ROOT, or None when nothing was extracted there yet."""
    try:
        text = paths.layout_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LayoutError(f"{paths.layout_file}: cannot read the recorded layout: {exc}") from None
    try:
        layout = json.loads(text).get("layout")
    except (ValueError, AttributeError):
        layout = None
    if layout not in LAYOUTS:
        raise LayoutError(
            f"{paths.layout_file}: not a valid layout record (expected {{\"layout\": one of {', '.join(LAYOUTS)}}}); "
            "fix or remove it by hand"
        )
    return str(layout)


def resolve_layout(paths: RootPaths, requested: str | None) -> str:
    """The layout a run must use: the recorded one; ``requested`` must agree with it.

    Call this before any work (the download command too, before downloading) so a
    conflict is refused at once. Nothing is written.
    """
    if requested is not None and requested not in LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(LAYOUTS)}, got {requested!r}")
    recorded = read_layout(paths)
    if recorded is None:
        return requested or DEFAULT_LAYOUT
    if requested is not None and requested != recorded:
        raise LayoutError(
            f"{paths.root} was extracted with --layout {recorded} (recorded in {paths.layout_file}); "
            f"refusing --layout {requested}, which would spread the dataset over two layouts. "
            f"Leave out --layout (or pass --layout {recorded}), or use another ROOT."
        )
    return recorded


def ensure_layout(paths: RootPaths, layout: str) -> str:
    """Record ``layout`` for ROOT unless one is recorded; refuse a different recorded one.

    The record is written to a temporary file and hard-linked into place, so it is
    created exactly once, complete, and two hosts racing cannot both win.
    """
    resolve_layout(paths, layout)
    if paths.layout_file.exists():
        return layout
    scratch = paths.state / f".layout.{host_tag()}-{threading.get_ident()}.tmp"
    try:
        paths.state.mkdir(parents=True, exist_ok=True)
        scratch.write_text(json.dumps({"layout": layout, "created": state.utc_now_iso()}) + "\n", encoding="utf-8")
        try:
            os.link(scratch, paths.layout_file)
        except FileExistsError:
            pass
        except OSError as exc:  # a file system without hard links: fall back to O_EXCL
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            _create_exclusive(paths.layout_file, scratch.read_bytes())
    except OSError as exc:
        error = DiskSpaceError if exc.errno == errno.ENOSPC else UsageError
        raise error(f"{paths.layout_file}: cannot record the layout ({exc.strerror or exc})") from None
    finally:
        try:
            scratch.unlink(missing_ok=True)
        except OSError:
            pass
    return resolve_layout(paths, layout)  # another host may have recorded another layout first


def _create_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


# ------------------------------------------------------------------------ locations


@dataclass(frozen=True)
class ManifestEntry:
    name: str  # relative to the part: "sa_1.jpg" (layout "parts" may hold "sub/x.jpg")
    size: int


@dataclass(frozen=True)
class PartFiles:
    """Where one part's files live; for ``verify`` and ``status``.

    ``path_of(name)`` maps a member name (``sa_1.jpg``) to its file. ``entries()``
    lists what the part's extraction wrote (from its manifest), or None when the
    part was not extracted by this tool. In layouts ``split`` and ``flat`` the
    folders are shared by all parts, so the manifest is the only way to know which
    files belong to a part.
    """

    part: str
    layout: str
    folder: Path  # "parts": the part's own folder; "flat": the shared folder; "split": the images folder
    image_dir: Path
    annotation_dir: Path
    manifest: Path

    def path_of(self, name: str) -> Path:
        if self.layout == "split":
            return (self.image_dir if name.lower().endswith(".jpg") else self.annotation_dir) / name
        return self.folder / name

    def entries(self) -> list[ManifestEntry] | None:
        header_and_entries = read_manifest(self.manifest)
        return None if header_and_entries is None else header_and_entries[1]

    def files(self) -> Iterator[tuple[ManifestEntry, Path]]:
        """Every (entry, path) of the part; nothing when it has no manifest."""
        for entry in self.entries() or []:
            yield entry, self.path_of(entry.name)


def extracted_dir(paths: RootPaths) -> Path:
    return paths.root / "extracted"


def manifest_path(paths: RootPaths, name: str) -> Path:
    """The manifest of an extracted part: which files it wrote, with sizes."""
    return paths.state / "manifests" / "extract" / f"{part_stem(name)}.tsv"


def part_file_locations(paths: RootPaths, layout: str | None, name: str) -> PartFiles:
    """Where part ``name``'s files are in ``layout`` (None: the layout recorded for ROOT, else the default)."""
    layout = layout or read_layout(paths) or DEFAULT_LAYOUT
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    images, annotations = paths.root / "images", paths.root / "annotations"
    if layout == "parts":
        folder = extracted_dir(paths) / part_stem(name)
        images = annotations = folder
    elif layout == "flat":
        folder = images = annotations = extracted_dir(paths)
    else:
        folder = images
    return PartFiles(name, layout, folder, images, annotations, manifest_path(paths, name))


def read_manifest(path: Path) -> tuple[dict[str, Any], list[ManifestEntry]] | None:
    """(header, entries) of a manifest; None when missing or damaged (treated as not extracted)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            header = json.loads(handle.readline())
            entries = []
            for line in handle:
                entry_name, _, size = line.rstrip("\n").rpartition("\t")
                entries.append(ManifestEntry(entry_name, int(size)))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or len(entries) != header.get("files"):
        return None
    return header, entries


def _write_manifest(path: Path, header: dict[str, Any], entries: list[ManifestEntry]) -> None:
    """Atomically: temp file, fsync, rename (a torn manifest must never look complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{host_tag()}.tmp")
    with open(scratch, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(json.dumps(header, sort_keys=True) + "\n")
        handle.writelines(f"{e.name}\t{e.size}\n" for e in entries)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


# -------------------------------------------------------------------------- results


@dataclass
class PartExtractResult:
    """What happened to one part."""

    part: str
    status: str  # EXTRACTED | ALREADY | FAILED | LOCKED | NOT_DOWNLOADED | INTERRUPTED
    message: str = ""
    files: int = 0
    images: int = 0
    annotations: int = 0
    bytes: int = 0
    seconds: float = 0.0
    tar_removed: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (EXTRACTED, ALREADY)


@dataclass
class ExtractResult:
    """A whole ``extract`` run."""

    layout: str
    parts: list[PartExtractResult] = field(default_factory=list)
    seconds: float = 0.0

    def with_status(self, status: str) -> list[PartExtractResult]:
        return [p for p in self.parts if p.status == status]

    @property
    def exit_status(self) -> ExitStatus:
        if self.with_status(FAILED):
            return ExitStatus.PARTS_FAILED
        if self.with_status(INTERRUPTED):
            return ExitStatus.INTERRUPTED
        if self.with_status(LOCKED):
            return ExitStatus.LOCKED
        return ExitStatus.OK

    def summary(self) -> dict[str, Any]:
        """The numbers of the run, as the JSON summary record carries them."""
        extracted = self.with_status(EXTRACTED)
        return {
            "layout": self.layout,
            "selected": len(self.parts),
            "extracted": len(extracted),
            "already": len(self.with_status(ALREADY)),
            "failed": len(self.with_status(FAILED)),
            "locked": len(self.with_status(LOCKED)),
            "not_downloaded": len(self.with_status(NOT_DOWNLOADED)),
            "interrupted": len(self.with_status(INTERRUPTED)),
            "files": sum(p.files for p in extracted),
            "bytes": sum(p.bytes for p in extracted),
            "tars_removed": sum(p.tar_removed for p in self.parts),
            "seconds": round(self.seconds, 3),
            "failed_parts": [{"part": p.part, "reason": p.message} for p in self.with_status(FAILED)],
            "locked_parts": [{"part": p.part, "reason": p.message} for p in self.with_status(LOCKED)],
            "not_downloaded_parts": [p.part for p in self.with_status(NOT_DOWNLOADED)],
            "exit_code": int(self.exit_status),
        }


class _PartFailed(Exception):
    """This part cannot be extracted; the message says why (without the part name)."""


class _Stopped(Exception):
    """The run was asked to stop."""


# ------------------------------------------------------------------------ tar walker


@dataclass
class _Unpacked:
    members: int = 0
    images: int = 0
    annotations: int = 0
    bytes: int = 0
    entries: list[ManifestEntry] = field(default_factory=list)


def _open_tar_stream(raw: IO[bytes], hashing: HashingReader | None = None) -> tuple[IO[bytes], bool]:
    """The tar bytes of a part (gzip detected by content) and whether it was compressed;
    read through ``hashing`` (wrapping ``raw``) when given."""
    through = (lambda _raw: io.BufferedReader(hashing, buffer_size=CHUNK)) if hashing is not None else None
    return open_part_stream(raw, through=through)  # type: ignore[arg-type]


class _TarWalker:
    """Reads a tar stream once and writes its regular files under ``dest`` (which it owns)."""

    def __init__(self, stream: IO[bytes], dest: Path, layout: str, on_file: Callable[[int], None],
                 stop: threading.Event | None) -> None:
        self.stream = stream
        self.dest = dest
        self.layout = layout
        self.on_file = on_file
        self.stop = stop
        self.offset = 0
        self.buffer = bytearray(COPY_BUFFER)
        self.view = memoryview(self.buffer)
        self.made_dirs: set[str] = set()

    def run(self) -> _Unpacked:
        done = _Unpacked()
        headers = 0
        long_name: str | None = None
        pax: dict[str, str] = {}
        while True:
            header_offset = self.offset
            block = self._read_exact(BLOCK, "a member header")
            if block == _ZERO_BLOCK:
                break
            headers += 1
            if headers > 2 * MAX_MEMBERS:
                raise _PartFailed(f"more than {MAX_MEMBERS} members; refusing an archive this large")
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise _PartFailed(f"corrupt tar header at byte {header_offset} of the tar stream: {exc}") from None
            if info.type in _PAX_TYPES or info.type == tarfile.GNUTYPE_LONGNAME:
                payload = self._read_extended(info.size)
                if info.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                else:
                    pax = _parse_pax(payload)
                continue
            if info.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):
                global_keys = _parse_pax(self._read_extended(info.size)) if info.type == tarfile.XGLTYPE else {}
                if {"path", "size"} & global_keys.keys():
                    raise _PartFailed("a pax global header sets names or sizes for all members; not supported")
                continue
            name = pax.get("path", long_name if long_name is not None else info.name)
            size = _pax_size(pax, info.size)
            long_name, pax = None, {}
            done.members += 1
            if done.members > MAX_MEMBERS:
                raise _PartFailed(f"more than {MAX_MEMBERS} members; refusing an archive this large")
            self._handle(info.type, name, size, done)
        self._drain()
        return done

    def _handle(self, kind: bytes, name: str, size: int, done: _Unpacked) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stopped()
        if kind in _REFUSED_TYPES:
            raise _PartFailed(f"member {name!r} is {_REFUSED_TYPES[kind]}; only regular files are extracted")
        if kind == tarfile.DIRTYPE:
            _relative_name(name.rstrip("/") or name, allow_folders=True)  # hostile names are refused even here
            self._skip(size)
            return
        if kind not in _REGULAR_TYPES:
            raise _PartFailed(f"member {name!r} has tar type {kind!r}; only regular files are extracted")
        relative = _relative_name(name, allow_folders=self.layout == "parts")
        if relative is None:
            raise _PartFailed(f"member {name!r} is a regular file without a name")
        lowered = relative.lower()
        if self.layout == "split" and not lowered.endswith((".jpg", ".json")):
            raise _PartFailed(f"member {name!r}: layout 'split' only holds .jpg images and .json annotations")
        self._write(relative, size)
        done.entries.append(ManifestEntry(relative, size))
        done.bytes += size
        if lowered.endswith(".jpg"):
            done.images += 1
        elif lowered.endswith(".json"):
            done.annotations += 1
        self.on_file(size)

    def _write(self, relative: str, size: int) -> None:
        parent, _, _ = relative.rpartition("/")
        if parent and parent not in self.made_dirs:
            try:
                os.makedirs(self.dest / parent, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise _PartFailed(f"member {relative!r}: its folder clashes with a file of the same name") from None
            self.made_dirs.add(parent)
        target = self.dest / relative
        try:
            fd = os.open(target, _CREATE_FLAGS, 0o644)
        except (FileExistsError, IsADirectoryError):
            raise _PartFailed(f"member {relative!r} appears twice in the archive (or clashes with a folder)") from None
        except OSError as exc:
            raise _PartFailed(_write_error(target, exc)) from None
        try:
            left = size
            view = self.view
            while left:
                n = self.stream.readinto(view[: min(left, COPY_BUFFER)])  # type: ignore[attr-defined]
                if not n:
                    raise _PartFailed(f"truncated: the archive ends inside member {relative!r} "
                                      f"({size - left} of {size} bytes)")
                written = 0
                try:
                    while written < n:
                        written += os.write(fd, view[written:n])
                except OSError as exc:
                    raise _PartFailed(_write_error(target, exc)) from None
                left -= n
                self.offset += n
            _start_writeback(fd)
        finally:
            os.close(fd)
        self._skip(-size % BLOCK)

    def _read_extended(self, size: int) -> bytes:
        if size > MAX_EXTENDED_HEADER:
            raise _PartFailed(f"an extended header of {size} bytes (more than {MAX_EXTENDED_HEADER}); refusing")
        data = self._read_exact(size + (-size % BLOCK), "an extended header")
        return data[:size]

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        while len(data) < n:
            more = self.stream.read(n - len(data))
            if not more:
                if not data and what == "a member header":
                    raise _PartFailed("truncated: the archive ends without its end-of-archive marker")
                raise _PartFailed(f"truncated: the archive ends inside {what} (byte {self.offset + len(data)})")
            data += more
        self.offset += n
        return data

    def _skip(self, n: int) -> None:
        while n:
            got = self.stream.readinto(self.view[: min(n, COPY_BUFFER)])  # type: ignore[attr-defined]
            if not got:
                raise _PartFailed(f"truncated: the archive ends inside a member (byte {self.offset})")
            n -= got
            self.offset += got

    def _drain(self) -> None:
        """Read past the end-of-archive marker to the end, so gzip's CRC and length are checked."""
        while self.stream.readinto(self.view):  # type: ignore[attr-defined]
            pass


def _write_error(target: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device while writing {target}"
    return f"cannot write {target}: {exc.strerror or exc}"


def _relative_name(raw: str, *, allow_folders: bool) -> str | None:
    """``./sa_1.jpg`` -> ``sa_1.jpg``; None for the ``.`` entry; refuses anything unsafe."""
    if raw.startswith("/"):
        raise _PartFailed(f"member {raw!r} has an absolute path")
    name = raw
    while name.startswith("./"):
        name = name[2:]
    if name in ("", "."):
        return None
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise _PartFailed(f"member name longer than {MAX_NAME_BYTES} bytes: {raw[:80]!r}...")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _PartFailed(f"member {raw!r} has control characters in its name")
    parts = name.split("/")
    if ".." in parts:
        raise _PartFailed(f"member {raw!r} contains '..'")
    if any(p in ("", ".") for p in parts):
        raise _PartFailed(f"member {raw!r} has an empty or '.' path component")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for p in parts):
        raise _PartFailed(f"member {raw[:80]!r}: a path component is longer than {MAX_COMPONENT_BYTES} bytes")
    if len(parts) > 1 and not allow_folders:
        raise _PartFailed(f"member {raw!r} is inside a folder; this layout keeps every file in one folder")
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
            raise _PartFailed(f"malformed pax extended header near {data[pos:pos + 40]!r}")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    if any(key.startswith("GNU.sparse") for key in records):
        raise _PartFailed("a member is a sparse file; only regular files are extracted")
    return records


def _pax_size(pax: dict[str, str], header_size: int) -> int:
    if "size" not in pax:
        return header_size
    if not pax["size"].isdigit():
        raise _PartFailed(f"pax header has a bad size {pax['size'][:40]!r}")
    return int(pax["size"])


def _describe_read_error(exc: BaseException, compressed: bool) -> str:
    kind = "gzip-compressed tar" if compressed else "tar"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError):
        return f"truncated {kind}: {text}"
    return f"corrupt {kind}: {text}"


# ------------------------------------------------------------------------ one part


@dataclass
class SourceCheck:
    """A part handed over without a download receipt (``download --extract`` just fetched it): the read
    that unpacks it also checks it, and ``accept`` writes the receipt (see :func:`extract_part`)."""

    accept: Callable[[PartCheck], bool]
    md5: bool = True  # also md5 (for a checksum list), beside sha256


@dataclass
class _Job:
    """One part's extraction and the run it belongs to."""

    paths: RootPaths
    name: str
    layout: str
    reporter: Reporter
    on_file: Callable[[int], None]
    remove_tar: bool = False
    durable: bool = True
    stop: threading.Event | None = None
    lock_lost: Callable[[], bool] = lambda: False
    source_check: SourceCheck | None = None

    @property
    def locations(self) -> PartFiles:
        return part_file_locations(self.paths, self.layout, self.name)


def extract_part(paths: RootPaths, name: str, layout: str | None = None, reporter: Reporter | None = None, *,
                 lock_held: bool = False, remove_tar: bool = False, durable: bool = True,
                 progress: FileProgress | None = None, stop: threading.Event | None = None,
                 source_check: SourceCheck | None = None) -> PartExtractResult:
    """Extract one downloaded part (the download command calls this as soon as a part is complete).

    ``layout`` None means the recorded layout (or the default); a conflicting one
    raises LayoutError. With ``lock_held=True`` the caller holds the part's
    ``PartLock`` and keeps it fresh (the download command does); otherwise this takes
    the lock (result LOCKED if another live run has it), refreshes it while working
    and releases it. ``durable`` flushes the file system before the receipt is
    written (``syncfs``), so a receipt never outlives its files in a power cut.
    Events ``part_extracted`` / ``part_failed`` / ``part_skipped`` go to ``reporter``;
    files and bytes go to ``progress`` when given.

    ``source_check``: the part has no download receipt yet (``download --extract`` just fetched
    it). The read that unpacks it also checks it: once the part is read to its end, its ``accept``
    is called with what the read found (sizes, hashes, counts) and writes the download receipt;
    False rejects the part. The part is then published against that receipt. Any failure is returned
    (FAILED) without an event or a failure record: the caller checks the part on its own and
    extracts it the ordinary way, which reports what went wrong.
    """
    layout = ensure_layout(paths, resolve_layout(paths, layout))
    reporter = reporter or NullReporter()
    on_file = (lambda nbytes: progress.advance(1, nbytes)) if progress is not None else (lambda nbytes: None)
    job = _Job(paths, name, layout, reporter, on_file, remove_tar=remove_tar, durable=durable, stop=stop,
               source_check=source_check)
    if lock_held:
        return _extract_locked(job)
    return _with_lock(job, None)


def _with_lock(job: _Job, keeper: LockKeeper | None) -> PartExtractResult:
    lock = PartLock(job.paths.lock(job.name))
    try:
        holder = lock.try_acquire()
    except OSError as exc:  # a full disk or read-only ROOT: fail this part, not the run
        reason = f"cannot create its lock file {job.paths.lock(job.name)} ({exc.strerror or exc})"
        job.reporter.event("part_failed", f"{job.name}: {reason}", level="error", part=job.name, reason=reason)
        return PartExtractResult(job.name, FAILED, reason)
    if holder is not None:
        message = f"locked by {holder.describe()}"
        job.reporter.event("part_skipped", f"{job.name}: skipped, {message}", level="warning",
                           part=job.name, reason="locked", holder=holder.describe())
        return PartExtractResult(job.name, LOCKED, message)
    if keeper is not None:
        keeper.add(job.name, lock)
        job.lock_lost = lambda: job.name in keeper.lost
        try:
            return _extract_locked(job)
        finally:
            keeper.release(job.name)
    with LockKeeper() as own_keeper:
        own_keeper.add(job.name, lock)
        job.lock_lost = lambda: job.name in own_keeper.lost
        return _extract_locked(job)


def _download_receipt(paths: RootPaths, name: str) -> dict[str, Any] | None:
    receipt = state.read_receipt(paths, "download", name)
    return receipt if receipt and receipt.get("complete") is True else None


def _not_downloaded(reporter: Reporter, name: str) -> PartExtractResult:
    reporter.event("part_skipped", f"{name}: not downloaded (no complete download receipt)",
                   part=name, reason="not_downloaded")
    return PartExtractResult(name, NOT_DOWNLOADED, "not downloaded")


def _already(reporter: Reporter, name: str, tar_removed: bool) -> PartExtractResult:
    reporter.event("part_skipped", f"{name}: already extracted" + (", tar removed" if tar_removed else ""),
                   part=name, reason="already_extracted", tar_removed=tar_removed)
    return PartExtractResult(name, ALREADY, "already extracted", tar_removed=tar_removed)


def _is_extracted(paths: RootPaths, name: str, layout: str, download: dict[str, Any]) -> bool:
    """A receipt for this layout and download, and (a sample of) the files still there."""
    receipt = state.read_receipt(paths, "extract", name)
    if not receipt or receipt.get("layout") != layout or receipt.get("source_sha256") != download.get("sha256"):
        return False
    locations = part_file_locations(paths, layout, name)
    entries = locations.entries()
    if entries is None or len(entries) != receipt.get("files"):
        return False
    step = max(1, len(entries) // PRESENCE_SAMPLE)
    sample = entries[::step] + entries[-1:]
    for entry in sample:
        try:
            if os.stat(locations.path_of(entry.name)).st_size != entry.size:
                return False
        except OSError:
            return False
    return True


def _temp_dirs(paths: RootPaths, name: str) -> list[Path]:
    """Temporary directories of this part left by any run (ours is made fresh afterwards)."""
    if not paths.tmp.is_dir():
        return []
    found = []
    for candidate in paths.tmp.glob(f"extract-{part_stem(name)}-*"):
        owner = state.read_json(candidate / _OWNER_NAME)
        if not isinstance(owner, dict) or owner.get("part") == name:
            found.append(candidate)
    return found


def _discard(directory: Path) -> None:
    """Remove a temporary directory, its manifest first (so it never looks ready half-deleted)."""
    (directory / _MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def _extract_locked(job: _Job) -> PartExtractResult:
    """The whole life of one part, with its lock held."""
    paths, name = job.paths, job.name
    started = time.monotonic()
    download = {} if job.source_check is not None else _download_receipt(paths, name)
    if download is None:
        return _not_downloaded(job.reporter, name)
    if job.source_check is None and _is_extracted(paths, name, job.layout, download):
        for leftover in _temp_dirs(paths, name):
            _discard(leftover)
        return _already(job.reporter, name, _remove_tar(job))
    try:
        header, entries = _unpack_or_resume(job, download)
        _publish(job, header, entries)
    except _Stopped:
        for leftover in _temp_dirs(paths, name):
            _discard(leftover)
        job.reporter.event("part_skipped", f"{name}: interrupted before it was complete", level="warning",
                           part=name, reason="interrupted")
        return PartExtractResult(name, INTERRUPTED, "interrupted")
    except (_PartFailed, OSError) as exc:
        for leftover in _temp_dirs(paths, name):
            _discard(leftover)
        reason = str(exc)
        if job.source_check is not None:
            return PartExtractResult(name, FAILED, reason)  # the caller checks the part and says what is wrong
        state.write_failure(paths, "extract", name, reason)
        job.reporter.event("part_failed", f"{name}: extraction failed: {reason}",
                           level="error", part=name, reason=reason)
        return PartExtractResult(name, FAILED, reason)
    result = PartExtractResult(
        name, EXTRACTED, "", files=header["files"], images=header["images"], annotations=header["annotations"],
        bytes=header["bytes"], seconds=time.monotonic() - started,
    )
    result.tar_removed = _remove_tar(job)
    job.reporter.event(
        "part_extracted",
        f"{name}: extracted {result.files} files ({human_bytes(result.bytes)}) in {result.seconds:.1f}s"
        + (", tar removed" if result.tar_removed else ""),
        part=name, files=result.files, images=result.images, annotations=result.annotations,
        bytes=result.bytes, seconds=round(result.seconds, 3), layout=job.layout, tar_removed=result.tar_removed,
    )
    return result


def _unpack_or_resume(job: _Job, download: dict[str, Any]) -> tuple[dict[str, Any], list[ManifestEntry]]:
    """A ready temporary directory for the part: one a dead run finished unpacking, or a fresh one."""
    ready: tuple[dict[str, Any], list[ManifestEntry]] | None = None
    for leftover in sorted(_temp_dirs(job.paths, job.name)):
        found = read_manifest(leftover / _MANIFEST_NAME)
        if (ready is None and found is not None and found[0].get("layout") == job.layout
                and found[0].get("source_sha256") == download.get("sha256")
                and _resumable(job, leftover, found[1])):
            ready = ({**found[0], "temp_dir": str(leftover)}, found[1])
        else:
            _discard(leftover)
    return ready if ready is not None else _unpack(job, download)


def _resumable(job: _Job, temp_dir: Path, entries: list[ManifestEntry]) -> bool:
    """Every file is still in the temporary directory, or (layout parts) the folder was already renamed."""
    files_dir = temp_dir / _FILES_DIR
    if files_dir.is_dir():
        return all(os.path.isfile(files_dir / e.name) for e in entries)
    locations = job.locations
    return job.layout == "parts" and all(_size_or_none(locations.path_of(e.name)) == e.size for e in entries)


def _size_or_none(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except OSError:
        return None


def _unpack(job: _Job, download: dict[str, Any]) -> tuple[dict[str, Any], list[ManifestEntry]]:
    paths, name = job.paths, job.name
    tar_path = paths.tar(name)
    try:
        size = tar_path.stat().st_size
    except FileNotFoundError:
        raise _PartFailed(f"{tar_path} is missing although its download receipt says complete; download it again") from None
    if isinstance(download.get("size"), int) and size != download["size"]:
        raise _PartFailed(f"{tar_path} is {size} bytes but its download receipt says {download['size']}; "
                          "it changed since the download, download it again")
    temp_dir = paths.tmp / f"extract-{part_stem(name)}-{host_tag()}"
    files_dir = temp_dir / _FILES_DIR
    files_dir.mkdir(parents=True)
    state.atomic_write_json(temp_dir / _OWNER_NAME, {"part": name, "host_pid": host_tag(), "started": state.utc_now_iso()})
    compressed = False
    hashing: HashingReader | None = None
    digests: tuple[str | None, str] | None = None
    try:
        with open(tar_path, "rb", buffering=0) as raw:
            source = job.source_check
            hashing = HashingReader(raw, md5=source.md5) if source is not None else None  # type: ignore[arg-type]
            stream, compressed = _open_tar_stream(raw, hashing)
            with stream:
                unpacked = _TarWalker(stream, files_dir, job.layout, job.on_file, job.stop).run()
            if hashing is not None:
                hashing.drain()  # whatever follows the gzip stream belongs to the part's hashes too
    except _READ_ERRORS as exc:
        raise _PartFailed(_describe_read_error(exc, compressed)) from None
    finally:
        digests = hashing.hasher.finish() if hashing is not None else None  # ends the hash threads on every path
    if not unpacked.entries:
        raise _PartFailed("the archive holds no files")
    if job.source_check is not None and hashing is not None and digests is not None:
        check = PartCheck(size=hashing.count, md5=digests[0], sha256=digests[1], compressed=compressed,
                          members=unpacked.members, images=unpacked.images, annotations=unpacked.annotations)
        if hashing.count != size or not job.source_check.accept(check):
            raise _PartFailed("the download check refused the part")
        download = {"sha256": check.sha256}
    expected_members = download.get("members")
    if isinstance(expected_members, int) and expected_members != unpacked.members:
        raise _PartFailed(f"the tar holds {unpacked.members} members but its download receipt says "
                          f"{expected_members}; it changed since the download, download it again")
    header = {
        "part": name, "layout": job.layout, "source_sha256": download.get("sha256"), "source_size": size,
        "compressed": compressed, "members": unpacked.members, "files": len(unpacked.entries),
        "images": unpacked.images, "annotations": unpacked.annotations, "bytes": unpacked.bytes,
    }
    _write_manifest(temp_dir / _MANIFEST_NAME, header, unpacked.entries)
    return {**header, "temp_dir": str(temp_dir)}, unpacked.entries


# ----------------------------------------------------------------------- publishing


def _publish(job: _Job, header: dict[str, Any], entries: list[ManifestEntry]) -> None:
    """Move a ready temporary directory into place, write the manifest and the receipt, clean up."""
    temp_dir = Path(header.pop("temp_dir"))
    files_dir = temp_dir / _FILES_DIR
    locations = job.locations
    final_manifest = locations.manifest
    try:
        previous = final_manifest.read_bytes()
    except FileNotFoundError:
        previous = None
    own_names = {e.name for e in (read_manifest(final_manifest) or ({}, []))[1]}
    if job.lock_lost():
        raise _PartFailed("another run took over this part's lock (ours went stale); leaving the part to it")
    _write_manifest(final_manifest, header, entries)
    try:
        if files_dir.is_dir():
            if job.layout == "parts" and not os.path.lexists(locations.folder):
                locations.folder.parent.mkdir(parents=True, exist_ok=True)
                os.rename(files_dir, locations.folder)
            else:
                _link_into_place(files_dir, entries, locations, own_names)
    except BaseException:
        if previous is None:
            final_manifest.unlink(missing_ok=True)
        else:
            _restore(final_manifest, previous)
        raise
    if job.durable:
        _sync_filesystem(job.paths.root)
    state.write_receipt(job.paths, "extract", job.name, {
        **header, "manifest": str(final_manifest.relative_to(job.paths.root)), "tar_removed": job.remove_tar,
    })
    _discard(temp_dir)


def _restore(path: Path, content: bytes) -> None:
    scratch = path.with_name(f".{path.name}.{host_tag()}.restore")
    scratch.write_bytes(content)
    os.replace(scratch, path)


def _link_into_place(files_dir: Path, entries: list[ManifestEntry], locations: PartFiles, own_names: set[str]) -> None:
    """Hard-link every file to its destination without ever replacing one; all or nothing.

    A destination that already exists is fine when it is the same inode as our
    temporary file (a crashed run linked it) or when this part wrote that name
    before and the content is identical; anything else is a collision. A first
    pass checks every destination so a collision usually fails before anything is
    visible; if one appears meanwhile, every destination that is one of our
    temporary files (linked now or by a crashed run) is unlinked again.
    """
    made_dirs: list[Path] = []
    try:
        claims = [_claim(files_dir / e.name, locations.path_of(e.name), e.name in own_names) for e in entries]
        for entry, claim in zip(entries, claims):
            source, target = files_dir / entry.name, locations.path_of(entry.name)
            if claim != "free":
                continue
            if not target.parent.is_dir():
                made_dirs.extend(_make_dirs(target.parent))
            try:
                os.link(source, target)
            except FileExistsError:
                _claim(source, target, entry.name in own_names)  # raced: ours, identical or a collision
            except OSError as exc:
                raise _PartFailed(_link_error(source, target, exc)) from None
    except BaseException:
        for entry in entries:
            source, target = files_dir / entry.name, locations.path_of(entry.name)
            if _same_inode(source, target):
                target.unlink()
        for directory in reversed(made_dirs):
            try:
                directory.rmdir()
            except OSError:
                pass
        raise


def _claim(source: Path, target: Path, own_name: bool) -> str:
    """"free" when ``target`` does not exist, "ours" when it holds our file; raises on a collision."""
    try:
        found = os.lstat(target)
    except FileNotFoundError:
        return "free"
    if _same_inode(source, target):
        return "ours"
    mine = os.lstat(source)
    if own_name and stat.S_ISREG(found.st_mode) and found.st_size == mine.st_size \
            and filecmp.cmp(source, target, shallow=False):
        return "ours"
    owner = "an earlier extraction of this part, with different content" if own_name else "another part or another source"
    raise _PartFailed(f"{target} already exists (from {owner}); not overwriting it")


def _same_inode(a: Path, b: Path) -> bool:
    try:
        first, second = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _make_dirs(directory: Path) -> list[Path]:
    """mkdir -p that returns the folders it created (to remove them again on failure)."""
    missing = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
    return list(reversed(missing))


def _link_error(source: Path, target: Path, exc: OSError) -> str:
    if exc.errno == errno.EXDEV:
        return (f"cannot hard-link {source} to {target}: they are on different file systems; "
                f"{target.parent} must be on the same file system as ROOT/.sa1b")
    if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
        return f"cannot hard-link {source} to {target} ({exc.strerror}); this file system needs --layout parts"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device of {target.parent}"
    return f"cannot link {source} to {target}: {exc}"


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError, TypeError):  # TypeError: no C library by that name (Windows)
        return None


_sync_file_range = _libc_function("sync_file_range")
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing a finished file to disk now, without waiting for it (Linux
    ``sync_file_range``): the disk then works while later members are inflated, and the
    ``syncfs`` before the receipt finds little left to do. A no-op elsewhere."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _sync_filesystem(directory: Path) -> None:
    """Flush the file system holding ``directory`` (Linux ``syncfs``; ``os.sync`` elsewhere)."""
    syncfs = _libc_function("syncfs")
    if syncfs is None:
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def _remove_tar(job: _Job) -> bool:
    """Delete the part's tar (only with --remove-tars, only once its extract receipt is written).

    The receipt says ``tar_removed`` before the tar goes, so the download command
    never mistakes a removed tar for a lost one, even after a crash in between.
    """
    receipt = state.read_receipt(job.paths, "extract", job.name)
    if not job.remove_tar or receipt is None:
        return False
    if receipt.get("tar_removed") is not True:
        state.write_receipt(job.paths, "extract", job.name, {**receipt, "tar_removed": True})
    try:
        job.paths.tar(job.name).unlink()
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------------------ many parts


def parts_on_disk(paths: RootPaths) -> list[str]:
    """Every part name ROOT knows of: download and extract receipts and tars in ``tars/``."""
    names = set(state.list_receipts(paths, "download")) | set(state.list_receipts(paths, "extract"))
    if paths.tars.is_dir():
        names.update(p.name for p in paths.tars.glob("*.tar"))
    return sorted(names)


def select_parts(paths: RootPaths, parts_spec: str | None, shard: Shard | None) -> list[str]:
    """The parts a run works on: ``--parts``/``--shard`` over the parts ROOT knows of (extras only when named)."""
    known = parts_on_disk(paths)
    if not known:
        return []
    names = select_names(known, parts_spec, shard)
    return names if parts_spec else [n for n in names if PART_NAME.match(n)]


class _SharedProgress:
    """Forwards workers' file counts to one progress display, at most every PROGRESS_EVERY seconds."""

    def __init__(self, progress: FileProgress) -> None:
        self.progress = progress
        self.guard = threading.Lock()
        self.files = 0
        self.nbytes = 0
        self.last = time.monotonic()

    def add(self, nbytes: int) -> None:
        with self.guard:
            self.files += 1
            self.nbytes += nbytes
            now = time.monotonic()
            if now - self.last < PROGRESS_EVERY:
                return
            self.last = now
            files, self.files, nbytes, self.nbytes = self.files, 0, self.nbytes, 0
            self.progress.advance(files, nbytes)

    def close(self) -> None:
        with self.guard:
            if self.files or self.nbytes:
                self.progress.advance(self.files, self.nbytes)
            self.files = self.nbytes = 0
        self.progress.close()


def extract_parts(paths: RootPaths, names: list[str], layout: str | None = None, jobs: int | None = None,
                  remove_tars: bool = False, reporter: Reporter | None = None, *,
                  durable: bool = True) -> ExtractResult:
    """Extract ``names`` in parallel (``jobs`` threads, default one per CPU); the ``extract`` command.

    Parts without a complete download receipt are reported as not downloaded, parts
    locked by another live run as locked; neither stops the others. A layout
    conflict raises LayoutError before anything is touched. On KeyboardInterrupt the
    running parts stop, leave nothing behind, and the interrupt is re-raised.
    """
    reporter = reporter or NullReporter()
    layout = resolve_layout(paths, layout)
    started = time.monotonic()
    results: dict[str, PartExtractResult] = {}
    pending: list[str] = []
    total_files = 0
    for name in names:
        download = _download_receipt(paths, name)
        if download is None:
            results[name] = _not_downloaded(reporter, name)
            continue
        extracted = _is_extracted(paths, name, layout, download)
        if extracted and not _temp_dirs(paths, name) and not (remove_tars and paths.tar(name).exists()):
            results[name] = _already(reporter, name, False)  # nothing to do: no lock needed
            continue
        pending.append(name)
        if not extracted:
            total_files += int(download.get("images", 0) or 0) + int(download.get("annotations", 0) or 0)
    if not pending:
        return ExtractResult(layout, [results[n] for n in names], time.monotonic() - started)
    ensure_layout(paths, layout)
    progress = _SharedProgress(reporter.files("extract", total_files or None))
    stop = threading.Event()
    try:
        with LockKeeper() as keeper, ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1,
                                                       thread_name_prefix="sa1b-extract") as pool:
            futures = {
                name: pool.submit(_with_lock, _Job(paths, name, layout, reporter, progress.add,
                                                   remove_tar=remove_tars, durable=durable, stop=stop), keeper)
                for name in pending
            }
            try:
                for name, future in futures.items():
                    results[name] = future.result()
            except BaseException:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        progress.close()
    return ExtractResult(layout, [results[n] for n in names], time.monotonic() - started)
