"""Running a verify: the tasks of all parts (listing, deep-check chunks, tar checks) over one executor
with bounded work in flight; each part's result put together, saved in its verify receipt, announced.

The parent holds only per-part results with capped problem lists, so 11 million files never sit in memory.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from sa1b_cli import rle
from sa1b_cli.checksums import ChecksumList
from sa1b_cli.events import Reporter
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import ReceiptStore, Stage
from sa1b_cli.verify.cache import (cached_tar, deep_findings, folder_stamp, receipt_holds, tar_key, unchanged_listing,
                                   verify_receipt)
from sa1b_cli.verify.deep import CHUNK_PAIRS, ChunkResult, check_pairs
from sa1b_cli.verify.listing import Listing
from sa1b_cli.verify.plan import Unit
from sa1b_cli.verify.results import (CORRUPT, DEEP, DOWNLOADING, INCOMPLETE, NOT_EXTRACTED, OK, PARTIAL, QUICK,
                                     WITHOUT_FILES, Level, PartResult, PartStatus, Problem, Problems, TarResult)
from sa1b_cli.verify.tars import DAMAGE_KINDS, check_tar, listed_for


class _InlineExecutor(Executor):
    """Runs each task at once in this process (``--jobs 1``): no pool, same scheduling code."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future


def make_executor(jobs: int) -> Executor:
    if jobs <= 1:
        return _InlineExecutor()
    # fork on Linux: workers start at once and need no importable __main__ (library callers
    # without a main guard); they only run the pure task functions. spawn elsewhere.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method),
                               initializer=rle.use_backend, initargs=(rle.BACKEND,))  # spawned: the decoder chosen


@dataclass
class _Open:
    """A part being checked: what came back so far and how many tasks are out."""

    unit: Unit
    started: float
    outstanding: int = 0
    listing: Listing | None = None
    deep: ChunkResult | None = None
    cached: bool = False
    level: Level | None = None
    tar: TarResult | None = None
    stamp: list[list[int]] | None = None  # of the unit's folders, taken before listing them


@dataclass(frozen=True)
class RunOptions:
    """How deep a run checks and what it may reuse."""

    deep: bool = False
    tars: bool = False
    force: bool = False  # read everything again
    rescan: bool = False  # list every part's files again
    checksums: ChecksumList | None = None  # what tars are compared with besides their receipts

    @property
    def level(self) -> Level:
        return DEEP if self.deep else QUICK


class Run:
    """Schedules the tasks of all parts over one executor with bounded work in flight."""

    def __init__(self, executor: Executor, jobs: int, options: RunOptions, paths: RootPaths, reporter: Reporter,
                 total_files: int | None) -> None:
        self.executor = executor
        self.limit = 2 * jobs
        self.options = options
        self.level = options.level
        self.rescan = options.rescan or options.force
        self.receipts = ReceiptStore(paths)
        self.reporter = reporter
        self.progress = reporter.files("verify", total_files)
        self.pending: deque[Unit] = deque()
        self.ready: deque[tuple[Callable[..., Any], tuple[Any, ...], str, _Open]] = deque()
        self.in_flight: dict[Future[Any], tuple[str, _Open]] = {}
        self.open_parts = 0
        self.cache_warned = False

    def run(self, units: Iterable[Unit]) -> list[PartResult]:
        self.pending.extend(units)
        results: list[PartResult] = []
        try:
            while self.pending or self.ready or self.in_flight:
                results.extend(self._submit())
                if self.in_flight:
                    results.extend(self._collect())
        finally:
            self.progress.close()
        return results

    def _submit(self) -> list[PartResult]:
        """Fill the executor up to the limit: queued tasks first, then new parts (which may finish at once)."""
        finished = []
        while len(self.in_flight) < self.limit:
            if self.ready:
                fn, args, kind, part = self.ready.popleft()
                self.in_flight[self.executor.submit(fn, *args)] = (kind, part)
            elif self.pending and self.open_parts < self.limit:
                opened = self._open(self.pending.popleft())
                if opened.outstanding == 0:
                    finished.append(self._finish(opened))
            else:
                break
        return finished

    def _collect(self) -> list[PartResult]:
        finished = []
        done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            kind, part = self.in_flight.pop(future)
            part.outstanding -= 1
            self._take(kind, part, future.result())
            if part.outstanding == 0:
                finished.append(self._finish(part))
        return finished

    def _open(self, unit: Unit) -> _Open:
        part = _Open(unit, time.monotonic())
        self.open_parts += 1
        if unit.scan is not None:
            part.stamp = folder_stamp(unit.stamp_paths)
            unchanged = None if self.rescan else unchanged_listing(unit.previous, part.stamp, self.level)
            if unchanged is not None:
                part.listing = unchanged
                self._reuse(part, files=unchanged.files)
            else:
                self._queue(unit.scan[0], unit.scan[1], "scan", part)
        if self.options.tars and unit.tar_path is not None:
            listed = listed_for(self.options.checksums, unit.name)
            key = tar_key(unit.tar_path, unit.download, listed)
            part.tar = cached_tar(unit.previous, key, self.options.force)
            if part.tar is None:
                self._queue(check_tar, (unit.tar_path, unit.download, listed, key), "tar", part)
            else:
                self._withdraw_if_damaged(part)
        return part

    def _withdraw_if_damaged(self, part: _Open) -> None:
        """A tar whose bytes changed since its download (size or hash against its receipt) loses that
        receipt: it no longer proves anything, and `download` then fetches the part again."""
        damage = next((p for p in part.tar.problems.listed if p.kind in DAMAGE_KINDS), None) if part.tar else None
        if damage is None or part.unit.download is None:
            return
        reason = f"verify --tars found the tar damaged: {damage.message}"
        try:
            self.receipts.withdraw(Stage.DOWNLOAD, part.unit.name, reason)
        except OSError as exc:
            self._cache_unwritable(exc)
            return
        self.reporter.event("receipt_withdrawn", f"{part.unit.name}: {reason}; its download receipt is withdrawn, "
                            "`sa1b download` fetches it again", part=part.unit.name, level="warning")

    def _queue(self, fn: Callable[..., Any], args: tuple[Any, ...], kind: str, part: _Open) -> None:
        self.ready.append((fn, args, kind, part))
        part.outstanding += 1

    def _take(self, kind: str, part: _Open, result: Any) -> None:
        if kind == "tar":
            part.tar = result
            self.progress.advance(0, result.size or 0)
            self._withdraw_if_damaged(part)
        elif kind == "scan":
            part.listing = result
            result.listed = True
            self._after_scan(part, result)
        else:
            assert part.deep is not None
            part.deep.pairs += result.pairs
            part.deep.masks += result.masks
            part.deep.bytes += result.bytes
            part.deep.problems.merge(result.problems)
            self.progress.advance(2 * result.pairs, result.bytes)

    def _after_scan(self, part: _Open, listing: Listing) -> None:
        if not self.options.force and receipt_holds(part.unit.previous, listing, self.level):
            self._reuse(part, files=listing.files)
            return
        part.level = self.level
        if self.level == QUICK:
            self.progress.advance(listing.files)
            return
        part.deep = ChunkResult(0, 0, 0, Problems())
        for start in range(0, len(listing.paired), CHUNK_PAIRS):
            chunk = listing.paired[start:start + CHUNK_PAIRS]
            self._queue(check_pairs, (part.unit.image_dir, part.unit.annotation_dir, chunk), "pairs", part)

    def _reuse(self, part: _Open, files: int) -> None:
        """The part's verify receipt still holds: take its findings instead of reading files."""
        previous = part.unit.previous
        assert previous is not None
        part.cached = True
        part.level = Level(previous.level)
        if part.level == DEEP:
            part.deep = deep_findings(previous)
        self.progress.advance(files)

    def _finish(self, part: _Open) -> PartResult:
        self.open_parts -= 1
        result = _result_of(part)
        try:
            self._save(part, result)
        except OSError as exc:  # the receipts are a cache: a read-only or full ROOT still gets its verdict
            self._cache_unwritable(exc)
        self._announce(result)
        return result

    def _save(self, part: _Open, result: PartResult) -> None:
        """Keep the verdict in the part's verify receipt when anything in it is new; drop the receipt
        of a part whose files are gone (the old verdict no longer holds)."""
        unit, listing = part.unit, part.listing
        if listing is None:
            if unit.previous is not None:
                self.receipts.remove(Stage.VERIFY, unit.name)
            return
        if unit.receipt_name is None:
            return
        stamp_moved = (unit.previous.folder_stamp if unit.previous is not None else None) != part.stamp
        if not part.cached or (part.tar is not None and not part.tar.cached) or stamp_moved:
            deep_problems = part.deep.problems if part.deep is not None else None
            self.receipts.write(verify_receipt(unit.receipt_name, result, listing, part.stamp, deep_problems))

    def _cache_unwritable(self, exc: OSError) -> None:
        if self.cache_warned:
            return
        self.cache_warned = True
        self.reporter.event(
            "cache_unwritable",
            f"cannot save verify results ({exc.strerror or exc}: {exc.filename or 'ROOT/.sa1b'}); "
            "the dataset is checked all the same, the next run checks everything again",
            level="warning",
        )

    def _announce(self, result: PartResult) -> None:
        if result.ok or result.status in WITHOUT_FILES:  # those are summed up at the end
            return
        first = result.problems.listed[0] if result.problems.listed else None
        more = f" (+{result.problems.total - 1} more)" if result.problems.total > 1 else ""
        self.reporter.event(
            "part_problems", f"{result.name}: {result.status}: {first}{more}",
            level="error" if result.problems.corrupt else "warning",
            part=result.name, status=result.status.value, problems=result.problems.total,
        )


def _result_of(part: _Open) -> PartResult:
    """A part's result from what its tasks (or its receipt) gave."""
    unit, listing = part.unit, part.listing
    result = PartResult(name=unit.name, path=unit.path, level=part.level, cached=part.cached,
                        expected=unit.expected, expected_from=unit.expected_from, tar=part.tar)
    if listing is None:
        result.note, result.awaited = unit.note, unit.awaited
        if not unit.awaited:
            result.problems.add(_without_files(unit))
    else:
        result.images, result.annotations, result.listed = listing.images, listing.annotations, listing.listed
        result.problems.merge(listing.problems)
        if not listing.used_manifest:
            check_counts(result, unit.path)
    if part.deep is not None:
        result.pairs_checked, result.masks_checked = part.deep.pairs, part.deep.masks
        result.problems.merge(part.deep.problems)
    if part.tar is not None:
        result.problems.merge(part.tar.problems)
    result.status = status_of(result, listing is not None, unit.status_without_files)
    result.awaited = result.awaited and result.status in WITHOUT_FILES  # a damaged tar is no part to wait for
    result.seconds = time.monotonic() - part.started
    return result


def _without_files(unit: Unit) -> Problem:
    """The problem of a part with no files to check (in a check of all parts, or one extracted once)."""
    kinds = {NOT_EXTRACTED: "not-extracted", PARTIAL: "partial-download", DOWNLOADING: "partial-download"}
    kind = kinds.get(unit.status_without_files, "missing-part")
    text = "its extract receipt exists but the extracted files are gone" if unit.extracted_before else unit.note
    return Problem(unit.path, kind, text)


def check_counts(result: PartResult, path: str) -> None:
    """Without a manifest: the pairs found against what the part's receipts record."""
    expected = result.expected
    found = max(result.images, result.annotations)
    if expected is None:
        if found == 0:
            result.problems.add(Problem(path, "count", "holds no images and no annotations"))
        return
    for what, count in (("images", result.images), ("annotations", result.annotations)):
        if count != expected:
            result.problems.add(Problem(path, "count", f"{count:,} {what}, but the {result.expected_from} "
                                        f"records {expected:,} ({count - expected:+,})"))


def status_of(result: PartResult, has_files: bool, without_files: PartStatus) -> PartStatus:
    if result.problems.corrupt:
        return CORRUPT
    if not has_files:
        return without_files
    return INCOMPLETE if result.problems.total else OK
