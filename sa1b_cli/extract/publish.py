"""Publishing a ready temporary directory: the files into place, the manifest, then the receipt (last).

Layout ``parts`` renames the whole folder into place; ``split`` and ``flat`` (all parts share
folders) hard-link file by file with ``os.link``, which never replaces an existing file, and keep
the temporary copy until the receipt is written. A rerun after a crash finds the ready temporary
directory and finishes the publication (a destination that is the same inode as the temporary file
is already ours); a name that exists with other content, or that another part owns, is a
collision: the part fails and what it linked is removed again.
"""

from __future__ import annotations

import dataclasses
import errno
import filecmp
import os
import stat
from pathlib import Path
from typing import Any

from sa1b_cli.extract.disk import sync_filesystem
from sa1b_cli.extract.job import FILES_DIR, Job, PartFailed, discard
from sa1b_cli.store import ExtractReceipt, host_tag
from sa1b_cli.store.layout import ManifestEntry, PartFiles, read_manifest, write_manifest


def publish(job: Job, header: dict[str, Any], entries: list[ManifestEntry]) -> None:
    """Move a ready temporary directory into place, write the manifest and the receipt, clean up."""
    temp_dir = Path(header.pop("temp_dir"))
    files_dir = temp_dir / FILES_DIR
    locations = job.locations
    final_manifest = locations.manifest
    try:
        previous = final_manifest.read_bytes()
    except FileNotFoundError:
        previous = None
    own_names = {e.name for e in (read_manifest(final_manifest) or ({}, []))[1]}
    if job.lock_lost():
        raise PartFailed("another run took over this part's lock (ours went stale); leaving the part to it")
    write_manifest(final_manifest, header, entries)
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
        sync_filesystem(job.paths.root)
    known = {f.name for f in dataclasses.fields(ExtractReceipt)}  # a resumed manifest may be an older sa1b's
    job.receipts.write(ExtractReceipt(**{k: v for k, v in header.items() if k in known},
                                      manifest=str(final_manifest.relative_to(job.paths.root)),
                                      tar_removed=job.remove_tar))
    discard(temp_dir)


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
                raise PartFailed(_link_error(source, target, exc)) from None
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
    raise PartFailed(f"{target} already exists (from {owner}); not overwriting it")


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


def remove_tar(job: Job) -> bool:
    """Delete the part's tar (only with --remove-tars, only once its extract receipt is written).

    The receipt says ``tar_removed`` before the tar goes, so the download command
    never mistakes a removed tar for a lost one, even after a crash in between.
    """
    receipt = job.receipts.read(ExtractReceipt, job.name)
    if not job.remove_tar or receipt is None:
        return False
    if not receipt.tar_removed:
        job.receipts.write(dataclasses.replace(receipt, tar_removed=True, time=""))
    try:
        job.paths.tar(job.name).unlink()
    except FileNotFoundError:
        return False
    return True
