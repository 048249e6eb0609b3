"""Many parts at once: which parts a run works on, and the pool of threads that extracts them.

ISA-L releases the GIL while it inflates, so parts run in threads (one per ``jobs``) rather than
processes; each part holds its own lock, and one failing part never stops the others.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sa1b_cli.events import FileProgress, NullReporter, Reporter
from sa1b_cli.extract.job import Job, temp_dirs
from sa1b_cli.extract.part import already, is_extracted, not_downloaded, with_lock
from sa1b_cli.extract.results import ExtractResult, PartExtractResult
from sa1b_cli.links import PART_NAME
from sa1b_cli.selection import Shard, select_names
from sa1b_cli.store import DownloadReceipt, ExtractReceipt, LockKeeper, ReceiptStore, RootPaths, part_state
from sa1b_cli.store.layout import ensure_layout, resolve_layout

PROGRESS_EVERY = 0.25  # seconds between progress forwards from the workers


def parts_on_disk(paths: RootPaths) -> list[str]:
    """Every part name ROOT knows of: download and extract receipts and tars in ``tars/``."""
    receipts = ReceiptStore(paths)
    names = set(receipts.all(DownloadReceipt)) | set(receipts.all(ExtractReceipt))
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

    Parts without a download receipt are reported as not downloaded, parts
    locked by another live run as locked; neither stops the others. A layout
    conflict raises LayoutError before anything is touched. On KeyboardInterrupt the
    running parts stop, leave nothing behind, and the interrupt is re-raised.
    """
    reporter = reporter or NullReporter()
    layout = resolve_layout(paths, layout)
    started = time.monotonic()
    results, pending, total_files = _settle_without_lock(paths, names, layout, remove_tars, reporter)
    if pending:
        ensure_layout(paths, layout)
        progress = _SharedProgress(reporter.files("extract", total_files or None))
        try:
            jobs_to_run = [Job(paths, name, layout, reporter, progress.add, remove_tar=remove_tars, durable=durable)
                           for name in pending]
            results.update(_run_jobs(jobs_to_run, jobs or os.cpu_count() or 1))
        finally:
            progress.close()
    return ExtractResult(layout, [results[n] for n in names], time.monotonic() - started)


def _settle_without_lock(paths: RootPaths, names: list[str], layout: str, remove_tars: bool,
                         reporter: Reporter) -> tuple[dict[str, PartExtractResult], list[str], int]:
    """(results of the parts with nothing to do, the parts to work on, the files expected of them)."""
    receipts = ReceiptStore(paths)
    results: dict[str, PartExtractResult] = {}
    pending: list[str] = []
    total_files = 0
    for name in names:
        part = part_state(receipts, name)
        if part.download is None:
            results[name] = not_downloaded(reporter, name)
            continue
        extracted = is_extracted(paths, part, layout)
        if extracted and not temp_dirs(paths, name) and not (remove_tars and part.tar.size is not None):
            results[name] = already(reporter, name, False)  # nothing to do: no lock needed
            continue
        pending.append(name)
        if not extracted:
            total_files += (part.download.images or 0) + (part.download.annotations or 0)
    return results, pending, total_files


def _run_jobs(jobs: list[Job], threads: int) -> dict[str, PartExtractResult]:
    """Each job in the pool with its lock; on any interruption the running parts stop and nothing waits."""
    stop = threading.Event()
    results: dict[str, PartExtractResult] = {}
    with LockKeeper() as keeper, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sa1b-extract") as pool:
        futures = {}
        for job in jobs:
            job.stop = stop
            futures[job.name] = pool.submit(with_lock, job, keeper)
        try:
            for name, future in futures.items():
                results[name] = future.result()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results
