"""A part's tar read once into a fresh temporary directory it owns, with the manifest that marks it ready.

The tar is walked by :class:`sa1b_cli.tarwalk.TarReader`, the walker download's check uses too, so
everything layout-independent (names, member types, duplicates, truncation, gzip bombs) is refused
the same way there; the rules of the layout (``split`` holds only images and annotations, ``flat``
and ``split`` keep no folders) are applied here. Files are written with plain ``os.open``/``os.write``
from the walker's one reused buffer while ISA-L inflates in its own thread.
"""

from __future__ import annotations

import errno
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sa1b_cli.extract.disk import start_writeback
from sa1b_cli.extract.job import FILES_DIR, MANIFEST_NAME, OWNER_NAME, Job, PartFailed, Stopped
from sa1b_cli.integrity import CHUNK, HashingReader, PartCheck
from sa1b_cli.store import DownloadReceipt, PartState, atomic_write_json, host_tag, part_stem
from sa1b_cli.store.atomic import utc_now_iso
from sa1b_cli.store.layout import ManifestEntry, write_manifest
from sa1b_cli.tarwalk import MAX_MEMBERS, STREAM_ERRORS, Member, TarReader, TarRefused, describe_stream_error, open_part_stream

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


@dataclass
class Unpacked:
    """What one read of a part wrote."""

    members: int = 0
    images: int = 0
    annotations: int = 0
    bytes: int = 0
    entries: list[ManifestEntry] = field(default_factory=list)


@dataclass
class _Read:
    """A part read through: what it wrote, whether it was compressed, and (with a source check) its check."""

    unpacked: Unpacked
    compressed: bool
    check: PartCheck | None = None


def unpack(job: Job, part: PartState | None) -> tuple[dict[str, Any], list[ManifestEntry]]:
    """Unpack the part into a fresh temporary directory; (its manifest header with ``temp_dir``, its entries).

    ``part`` is the store's state of a downloaded part; None with a ``job.source_check`` (no receipt yet).
    """
    size = _tar_size(job, part)
    temp_dir = job.paths.tmp / f"extract-{part_stem(job.name)}-{host_tag()}"
    (temp_dir / FILES_DIR).mkdir(parents=True)
    atomic_write_json(temp_dir / OWNER_NAME, {"part": job.name, "host_pid": host_tag(), "started": utc_now_iso()})
    read = _read_part(job, temp_dir / FILES_DIR)
    unpacked = read.unpacked
    if not unpacked.entries:
        raise PartFailed("the archive holds no files")
    download = _accepted(job, read, size) if part is None else part.download
    if download is not None and download.members is not None and download.members != unpacked.members:
        raise PartFailed(f"the tar holds {unpacked.members} members but its download receipt says "
                         f"{download.members}; it changed since the download, download it again")
    header = {
        "part": job.name, "layout": job.layout, "source_sha256": download.sha256 if download else None,
        "source_size": size, "compressed": read.compressed, "members": unpacked.members,
        "files": len(unpacked.entries), "images": unpacked.images, "annotations": unpacked.annotations,
        "bytes": unpacked.bytes,
    }
    write_manifest(temp_dir / MANIFEST_NAME, header, unpacked.entries)
    return {**header, "temp_dir": str(temp_dir)}, unpacked.entries


def _tar_size(job: Job, part: PartState | None) -> int:
    """The tar's size, once the store agrees it is the tar that was downloaded."""
    tar_path = job.paths.tar(job.name)
    try:
        size = tar_path.stat().st_size
    except FileNotFoundError:
        raise PartFailed(f"{tar_path} is missing although its download receipt says complete; download it again") from None
    problem = part.download_problem if part is not None else None
    if problem is not None:
        raise PartFailed(f"{tar_path}: {problem}; it changed since the download, download it again")
    return size


def _accepted(job: Job, read: _Read, size: int) -> DownloadReceipt:
    """A part read without a receipt: the source check's verdict on what the read found."""
    check = read.check
    assert job.source_check is not None and check is not None
    if check.size != size or not job.source_check.accept(check):
        raise PartFailed("the download check refused the part")
    return DownloadReceipt(job.name, sha256=check.sha256)


def _read_part(job: Job, files_dir: Path) -> _Read:
    """Read the tar once, writing its files under ``files_dir``; hashed on the way with a source check."""
    source = job.source_check
    compressed = False
    hashing: HashingReader | None = None
    digests: tuple[str | None, str] | None = None
    try:
        with open(job.paths.tar(job.name), "rb", buffering=0) as raw:
            hashing = HashingReader(raw, md5=source.md5) if source is not None else None
            through = (lambda _raw: io.BufferedReader(hashing, buffer_size=CHUNK)) if hashing is not None else None
            stream, compressed = open_part_stream(raw, through=through)  # type: ignore[arg-type]
            with stream:
                reader = TarReader(stream, max_members=MAX_MEMBERS, compressed=compressed)
                unpacked = write_members(reader, files_dir, job.layout, job.on_file, job.stop)
            if hashing is not None:
                hashing.drain()  # whatever follows the gzip stream belongs to the part's hashes too
    except TarRefused as exc:
        raise PartFailed(str(exc)) from None
    except STREAM_ERRORS as exc:
        raise PartFailed(describe_stream_error(exc, compressed)) from None
    finally:
        digests = hashing.hasher.finish() if hashing is not None else None  # ends the hash threads on every path
    if hashing is None or digests is None:
        return _Read(unpacked, compressed)
    check = PartCheck(size=hashing.count, md5=digests[0], sha256=digests[1], compressed=compressed,
                      members=unpacked.members, images=unpacked.images, annotations=unpacked.annotations,
                      others=len(unpacked.entries) - unpacked.images - unpacked.annotations,
                      member_sizes=[(entry.name, entry.size) for entry in unpacked.entries])
    return _Read(unpacked, compressed, check)


def write_members(reader: TarReader, dest: Path, layout: str, on_file: Callable[[int], None],
                  stop: threading.Event | None) -> Unpacked:
    """Every regular file of the tar written under ``dest`` (which the caller owns), by the layout's rules."""
    done = Unpacked()
    made_dirs: set[str] = set()
    for member in reader.members():
        if stop is not None and stop.is_set():
            raise Stopped()
        if member.is_dir:
            continue
        _check_layout(member, layout)
        _write_file(reader, member, dest, made_dirs)
        done.entries.append(ManifestEntry(member.name, member.size))
        done.bytes += member.size
        kind = member.kind
        done.images += kind == "image"
        done.annotations += kind == "annotation"
        on_file(member.size)
    reader.finish()
    done.members = reader.member_count
    return done


def _check_layout(member: Member, layout: str) -> None:
    if "/" in member.name and layout != "parts":
        raise PartFailed(f"member {member.name!r} is inside a folder; this layout keeps every file in one folder")
    if layout == "split" and member.kind == "other":
        raise PartFailed(f"member {member.name!r}: layout 'split' only holds .jpg images and .json annotations")


def _write_file(reader: TarReader, member: Member, dest: Path, made_dirs: set[str]) -> None:
    parent, _, _ = member.name.rpartition("/")
    if parent and parent not in made_dirs:
        try:
            os.makedirs(dest / parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PartFailed(f"member {member.name!r}: its folder clashes with a file of the same name") from None
        made_dirs.add(parent)
    target = dest / member.name
    try:
        fd = os.open(target, _CREATE_FLAGS, 0o644)
    except (FileExistsError, IsADirectoryError):
        raise PartFailed(f"member {member.name!r} appears twice in the archive (or clashes with a folder)") from None
    except OSError as exc:
        raise PartFailed(_write_error(target, exc)) from None
    try:
        reader.copy_to(member, fd)  # the stream's own failures come as TarRefused: an OSError here is the write
        start_writeback(fd)
    except OSError as exc:
        raise PartFailed(_write_error(target, exc)) from None
    finally:
        os.close(fd)


def _write_error(target: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device while writing {target}"
    return f"cannot write {target}: {exc.strerror or exc}"
