"""One part's whole extraction with its lock held: already done, unpack (or resume a dead run's), publish.

Whether the part may be read at all is the store's word (:func:`sa1b_cli.store.part_state`): a
download receipt, and the tar as that receipt describes it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from sa1b_cli.console import human_bytes
from sa1b_cli.events import FileProgress, NullReporter, Reporter
from sa1b_cli.extract.job import FILES_DIR, MANIFEST_NAME, Job, PartFailed, SourceCheck, Stopped, discard, discard_temp_dirs, temp_dirs
from sa1b_cli.extract.publish import publish, remove_tar
from sa1b_cli.extract.results import ALREADY, EXTRACTED, FAILED, INTERRUPTED, LOCKED, NOT_DOWNLOADED, PartExtractResult
from sa1b_cli.extract.unpack import unpack
from sa1b_cli.store import LockKeeper, PartLock, PartState, RootPaths, Stage, part_state
from sa1b_cli.store.layout import ManifestEntry, ensure_layout, part_file_locations, read_manifest, resolve_layout

PRESENCE_SAMPLE = 64  # files stat()ed to confirm an extracted part is still there (verify checks all)


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
    job = Job(paths, name, layout, reporter, on_file, remove_tar=remove_tar, durable=durable, stop=stop,
              source_check=source_check)
    if lock_held:
        return _extract_locked(job)
    return with_lock(job, None)


def with_lock(job: Job, keeper: LockKeeper | None) -> PartExtractResult:
    """Take the part's lock (kept fresh by ``keeper``, or by a keeper of its own), extract, release."""
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


def not_downloaded(reporter: Reporter, name: str) -> PartExtractResult:
    reporter.event("part_skipped", f"{name}: not downloaded (no complete download receipt)",
                   part=name, reason="not_downloaded")
    return PartExtractResult(name, NOT_DOWNLOADED, "not downloaded")


def already(reporter: Reporter, name: str, tar_removed: bool) -> PartExtractResult:
    reporter.event("part_skipped", f"{name}: already extracted" + (", tar removed" if tar_removed else ""),
                   part=name, reason="already_extracted", tar_removed=tar_removed)
    return PartExtractResult(name, ALREADY, "already extracted", tar_removed=tar_removed)


def is_extracted(paths: RootPaths, part: PartState, layout: str) -> bool:
    """An extract receipt for this layout and this download, and (a sample of) the files still there."""
    receipt, download = part.extract, part.download
    if receipt is None or download is None or receipt.layout != layout or receipt.source_sha256 != download.sha256:
        return False
    locations = part_file_locations(paths, layout, part.name)
    entries = locations.entries()
    if entries is None or len(entries) != receipt.files:
        return False
    step = max(1, len(entries) // PRESENCE_SAMPLE)
    sample = entries[::step] + entries[-1:]
    return all(_size_or_none(locations.path_of(entry.name)) == entry.size for entry in sample)


def _extract_locked(job: Job) -> PartExtractResult:
    """The whole life of one part, with its lock held."""
    paths, name = job.paths, job.name
    started = time.monotonic()
    part = None if job.source_check is not None else part_state(job.receipts, name)
    if part is not None and part.download is None:
        return not_downloaded(job.reporter, name)
    if part is not None and is_extracted(paths, part, job.layout):
        discard_temp_dirs(paths, name)
        return already(job.reporter, name, remove_tar(job))
    try:
        header, entries = _unpack_or_resume(job, part)
        publish(job, header, entries)
    except Stopped:
        discard_temp_dirs(paths, name)
        job.reporter.event("part_skipped", f"{name}: interrupted before it was complete", level="warning",
                           part=name, reason="interrupted")
        return PartExtractResult(name, INTERRUPTED, "interrupted")
    except (PartFailed, OSError) as exc:
        discard_temp_dirs(paths, name)
        reason = str(exc)
        if job.source_check is not None:
            return PartExtractResult(name, FAILED, reason)  # the caller checks the part and says what is wrong
        job.receipts.write_failure(Stage.EXTRACT, name, reason)
        job.reporter.event("part_failed", f"{name}: extraction failed: {reason}",
                           level="error", part=name, reason=reason)
        return PartExtractResult(name, FAILED, reason)
    return _extracted(job, header, started)


def _extracted(job: Job, header: dict[str, Any], started: float) -> PartExtractResult:
    """The result and event of a part this call published (its tar removed first when asked)."""
    result = PartExtractResult(
        job.name, EXTRACTED, "", files=header["files"], images=header["images"], annotations=header["annotations"],
        bytes=header["bytes"], seconds=time.monotonic() - started,
    )
    result.tar_removed = remove_tar(job)
    job.reporter.event(
        "part_extracted",
        f"{job.name}: extracted {result.files} files ({human_bytes(result.bytes)}) in {result.seconds:.1f}s"
        + (", tar removed" if result.tar_removed else ""),
        part=job.name, files=result.files, images=result.images, annotations=result.annotations,
        bytes=result.bytes, seconds=round(result.seconds, 3), layout=job.layout, tar_removed=result.tar_removed,
    )
    return result


def _unpack_or_resume(job: Job, part: PartState | None) -> tuple[dict[str, Any], list[ManifestEntry]]:
    """A ready temporary directory for the part: one a dead run finished unpacking, or a fresh one."""
    source_sha256 = part.download.sha256 if part is not None and part.download is not None else None
    ready: tuple[dict[str, Any], list[ManifestEntry]] | None = None
    for leftover in sorted(temp_dirs(job.paths, job.name)):
        found = read_manifest(leftover / MANIFEST_NAME)
        if (ready is None and found is not None and found[0].get("layout") == job.layout
                and found[0].get("source_sha256") == source_sha256 and _resumable(job, leftover, found[1])):
            ready = ({**found[0], "temp_dir": str(leftover)}, found[1])
        else:
            discard(leftover)
    return ready if ready is not None else unpack(job, part)


def _resumable(job: Job, temp_dir: Path, entries: list[ManifestEntry]) -> bool:
    """Every file is still in the temporary directory, or (layout parts) the folder was already renamed."""
    files_dir = temp_dir / FILES_DIR
    if files_dir.is_dir():
        return all(os.path.isfile(files_dir / e.name) for e in entries)
    locations = job.locations
    return job.layout == "parts" and all(_size_or_none(locations.path_of(e.name), follow=False) == e.size
                                         for e in entries)


def _size_or_none(path: Path, *, follow: bool = True) -> int | None:
    try:
        return os.stat(path, follow_symlinks=follow).st_size
    except OSError:
        return None
