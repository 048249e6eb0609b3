"""``sa1b export``: parts read in parallel, shards written in order, resumable, with a receipt.

Parts are read by a pool of threads (ISA-L inflates outside the GIL); the calling thread cuts the
samples, in order, into shards and writes each as soon as the parts it needs are read, then deletes
the spills no later shard needs, so the disk holds about ``jobs`` parts' worth of spill at a time.
Parts whose kept members fit the run's memory budget (:mod:`.memory`) are held in memory instead,
and given back as soon as their samples are written.

Everything the run knows sits in ``OUT/.sa1b-export/``: the settings (a second export with other
settings into the same OUT is refused), each part's index, each shard's record, a lock. A run
killed at any point is resumed by running it again: parts with an index are not read again,
shards with a record are kept, and the plan, a pure function of the settings and the indices,
cuts the same shards. ``OUT/sa1b-export.json`` (the receipt) is written last.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sa1b_cli import __version__
from sa1b_cli.errors import ExitStatus, Sa1bError, UsageError
from sa1b_cli.events import FileProgress, NullReporter, Reporter
from sa1b_cli.export import placed, read
from sa1b_cli.export.memory import MEMORY_BUDGET, MemoryBudget
from sa1b_cli.export.plan import Sample, Settings, ShardCut, Subset, shard_name
from sa1b_cli.export.read import PartIndex, PartSource, PartUnreadable, choose_sources
from sa1b_cli.export.shards import (
    FolderChunkWriter,
    KeptShard,
    Located,
    ShardRecord,
    TarShardWriter,
    finished_record,
    write_sha256_manifest,
    write_wids_index,
)
from sa1b_cli.extract import select_parts
from sa1b_cli.selection import Shard
from sa1b_cli.store.atomic import atomic_write_json, read_json, utc_now_iso
from sa1b_cli.store.locks import LockKeeper, PartLock
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore

RECEIPT_NAME = "sa1b-export.json"
RECEIPT_SCHEMA = 1
WORK_DIR = ".sa1b-export"
Writer = KeptShard | TarShardWriter | FolderChunkWriter
PROGRESS_EVERY = 0.25  # seconds between progress forwards from the readers


class ExportConflict(UsageError):
    """OUT holds (part of) an export made with other settings."""


class ExportFailed(Sa1bError):
    """A part could not be read; the shards written so far are kept for the rerun."""

    exit_status = ExitStatus.PARTS_FAILED


@dataclass(frozen=True)
class ExportRequest:
    """What the user asked for (the command's options, parsed)."""

    out: Path
    format: str = "webdataset"
    parts_spec: str | None = None
    shard: Shard | None = None
    source: str = "auto"
    subset: Subset = field(default_factory=Subset)
    shard_size: int | None = None
    samples_per_shard: int | None = None
    jobs: int = 2
    dry_run: bool = False
    memory_budget: int = MEMORY_BUDGET  # bytes of kept members held in memory rather than spilled (0: always spill)


@dataclass
class ExportResult:
    """A finished (or planned, with ``dry_run``) export."""

    out: Path
    settings: Settings
    records: list[ShardRecord] = field(default_factory=list)
    parts_read: int = 0
    shards_written: int = 0
    shards_kept: int = 0
    ids_missing: list[int] = field(default_factory=list)
    skipped_parts: list[dict[str, str]] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # annotations a mask filter could not parse
    other_members: int = 0
    already: bool = False
    planned: bool = False  # every shard planned from the parts' member lists, each member written in place
    seconds: float = 0.0
    estimate: dict[str, Any] | None = None  # --dry-run: what the export would hold

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.records)

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.records)

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.INCOMPLETE if self.ids_missing else ExitStatus.OK

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "out": str(self.out), "format": self.settings.format, "parts": len(self.settings.parts),
            "samples": self.samples, "bytes": self.bytes, "shards": len(self.records),
            "shards_written": self.shards_written, "shards_kept": self.shards_kept, "parts_read": self.parts_read,
            "already": self.already, "planned_from_member_lists": self.planned,
            "ids_missing": self.ids_missing[:1000], "ids_missing_count": len(self.ids_missing),
            "skipped_parts": self.skipped_parts, "unpaired": self.unpaired[:1000],
            "unreadable": self.unreadable[:1000], "other_members": self.other_members,
            "subset": self.settings.subset.describe(), "seconds": round(self.seconds, 3),
            "exit_code": int(self.exit_status),
        }
        if self.estimate is not None:
            data = {"out": str(self.out), "format": self.settings.format, "parts": len(self.settings.parts),
                    "dry_run": True, **self.estimate, "skipped_parts": self.skipped_parts,
                    "subset": self.settings.subset.describe(), "exit_code": 0}
        return data


def export(paths: RootPaths, request: ExportRequest, reporter: Reporter | None = None) -> ExportResult:
    """Run (or with ``dry_run`` only plan) the export ``request`` of ROOT's parts."""
    reporter = reporter or NullReporter()
    started = time.monotonic()
    sources, skipped = choose_sources(paths, select_parts(paths, request.parts_spec, request.shard), request.source)
    if not sources:
        raise UsageError(f"nothing to export: no downloaded part under {paths.root} matches"
                         + (f" --parts {request.parts_spec}" if request.parts_spec else ""))
    settings = Settings(request.format, tuple(s.name for s in sources), request.subset,
                        request.shard_size, request.samples_per_shard)
    if request.dry_run:
        from sa1b_cli.export import estimate

        placement = _plan(paths, request.out, settings, sources)
        figures = estimate.exact(placement) if placement is not None else estimate.estimate(paths, sources, settings)
        return ExportResult(request.out, settings, skipped_parts=skipped, estimate=figures)
    out, work = request.out, request.out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    lock = PartLock(work / "lock")
    with LockKeeper() as keeper:
        lock.acquire()
        keeper.add("export", lock)
        previous = _check_settings(out, work, settings)
        if previous is not None:
            return _from_receipt(out, settings, previous, skipped)
        result = _export(paths, out, settings, sources, request, reporter)
        result.skipped_parts, result.seconds = skipped, time.monotonic() - started
        _write_receipt(out, result, sources)
        _clear_work(work)
    try:
        work.rmdir()
    except OSError:
        pass
    return result


def _export(paths: RootPaths, out: Path, settings: Settings, sources: list[PartSource], request: ExportRequest,
            reporter: Reporter) -> ExportResult:
    """Straight into place when the member lists plan it all (:mod:`.placed`), else parts read first."""
    placement = _plan(paths, out, settings, sources)
    if placement is None:
        return _Run(paths, out, settings, sources, request.jobs, reporter, MemoryBudget(request.memory_budget)).execute()
    run = placed.PlacedExport(placement, sources, out, out / WORK_DIR, request.jobs, reporter)
    progress = _Progress(reporter.files("export", sum(placement.members.values()) or None))
    try:
        records = run.run(progress.member)
    except PartUnreadable as exc:
        raise _part_failed(exc) from None
    finally:
        progress.close()
    result = ExportResult(out, settings, records, parts_read=run.parts_read, shards_written=run.shards_written,
                          shards_kept=len(records) - run.shards_written, planned=True)
    return _conclude(result, list(placement.indices.values()))


def _plan(paths: RootPaths, out: Path, settings: Settings, sources: list[PartSource]) -> placed.Placement | None:
    try:
        return placed.plan(paths, sources, settings, out, out / WORK_DIR)
    except ValueError as exc:
        raise _state_mismatch(out, exc) from None


def _state_mismatch(out: Path, exc: ValueError) -> ExportConflict:
    return ExportConflict(f"{out}: {exc}; the export state in {out / WORK_DIR} does not match these settings: "
                          "remove the folder and export again")


def _part_failed(exc: PartUnreadable) -> ExportFailed:
    return ExportFailed(f"{exc}; the shards written so far are kept: run the export again once the part is fixed "
                        "(sa1b verify / download)")


def _canonical(settings: Settings) -> dict[str, Any]:
    return json.loads(json.dumps(settings.describe()))


def _check_settings(out: Path, work: Path, settings: Settings) -> dict[str, Any] | None:
    """Refuse OUT when it holds another export; the finished receipt when this one is done already."""
    wanted = _canonical(settings)
    receipt = read_json(out / RECEIPT_NAME)
    if isinstance(receipt, dict):
        if receipt.get("settings") != wanted:
            raise ExportConflict(f"{out} holds an export with other settings ({out / RECEIPT_NAME}); "
                                 "export into another folder, or remove that one first")
        return receipt
    recorded = read_json(work / "settings.json")
    if recorded is None:
        atomic_write_json(work / "settings.json", wanted)
    elif recorded != wanted:
        raise ExportConflict(f"{out} holds an unfinished export with other settings ({work / 'settings.json'}); "
                             "run that export again to finish it, or export into another folder")
    for leftover in out.glob(".sa1b-*.tar.partial"):
        leftover.unlink(missing_ok=True)
    return None


def _from_receipt(out: Path, settings: Settings, receipt: dict[str, Any], skipped: list[dict[str, str]]) -> ExportResult:
    records = [r for r in (ShardRecord.from_dict({**d, "files": None}) for d in receipt.get("shards", [])) if r]
    return ExportResult(out, settings, records, shards_kept=len(records), already=True,
                        ids_missing=list(receipt.get("ids_missing", [])), skipped_parts=skipped)


class _Progress:
    """Members read by the pool's threads, forwarded to one progress display at most every PROGRESS_EVERY s."""

    def __init__(self, progress: FileProgress) -> None:
        self.progress = progress
        self.guard = threading.Lock()
        self.files = self.nbytes = 0
        self.last = time.monotonic()

    def member(self, nbytes: int) -> None:
        with self.guard:
            self.files += 1
            self.nbytes += nbytes
            if time.monotonic() - self.last < PROGRESS_EVERY:
                return
            self._forward()

    def _forward(self) -> None:
        self.last = time.monotonic()
        files, nbytes, self.files, self.nbytes = self.files, self.nbytes, 0, 0
        self.progress.advance(files, nbytes)

    def close(self) -> None:
        with self.guard:
            self._forward()
        self.progress.close()


class _Run:
    """One export's work: the read pool, the writer, the spills."""

    def __init__(self, paths: RootPaths, out: Path, settings: Settings, sources: list[PartSource], jobs: int,
                 reporter: Reporter, budget: MemoryBudget) -> None:
        self.out, self.work, self.settings, self.reporter = out, out / WORK_DIR, settings, reporter
        self.receipts = ReceiptStore(paths)
        self.sources = {s.name: s for s in sources}
        self.jobs, self.budget = jobs, budget
        self.indices: dict[str, PartIndex] = {}
        self.futures: dict[str, Future[PartIndex]] = {}
        self.stop = threading.Event()
        self.result = ExportResult(out, settings)
        self.read_subset = self._read_subset()

    def _read_subset(self) -> Subset:
        """What parts are filtered by while read. ``--sample N`` keeps the N lowest draws of all images: reading
        only images below a draw that about 1.25 N + 200 of them pass (from the receipts' image counts) keeps
        them all, without spilling every part first; ``_samples`` reads again in full in the rare case it did not."""
        subset = self.settings.subset
        if subset.count is None:
            return subset
        total = sum(self._members(name) for name in self.sources) // 2
        fraction = (subset.count * 1.25 + 200) / total if total else 1.0
        return dataclasses.replace(subset, fraction=fraction) if fraction < 1 else subset

    def execute(self) -> ExportResult:
        for source in self.sources.values():
            index = read.load_index(source, self.work, self.read_subset, self.settings.subset.count is not None)
            if index is not None:
                self.indices[source.name] = index
        if self.settings.format == "folders":
            (self.out / "images").mkdir(parents=True, exist_ok=True)
            (self.out / "annotations").mkdir(parents=True, exist_ok=True)
        progress = _Progress(self.reporter.files("export", self._files_to_read()))
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="sa1b-export") as pool, \
                    ThreadPoolExecutor(1, thread_name_prefix="sa1b-md5") as helper:
                for name, source in self.sources.items():
                    if name not in self.indices:
                        self.futures[name] = pool.submit(read.read_part, source, self.work, self.read_subset,
                                                         self.stop, progress.member, self.budget)
                try:
                    self._write_all(helper)
                except BaseException:
                    self.stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        finally:
            progress.close()
        return self._finish()

    def _files_to_read(self) -> int | None:
        """Members of the parts still to read (the progress total)."""
        return sum(self._members(name) for name in self.sources if name not in self.indices) or None

    def _members(self, name: str) -> int:
        """A part's images and annotations, from its extraction manifest or its download receipt."""
        source = self.sources[name]
        if source.files is not None:
            return len(source.files.entries() or [])
        receipt = self.receipts.read(DownloadReceipt, name)
        return (receipt.images or 0) + (receipt.annotations or 0) if receipt is not None else 0

    def _index(self, name: str) -> PartIndex:
        index = self.indices.get(name)
        if index is None:
            try:
                index = self.futures[name].result()
            except PartUnreadable as exc:
                raise _part_failed(exc) from None
            self.indices[name] = index
            self.result.parts_read += 1
            self.reporter.event("part", f"{name}: {len(index.samples)} samples kept", part=name,
                                samples=len(index.samples))
            if not index.samples:
                self._release(name)
        return index

    def _samples(self) -> Any:
        chosen: set[int] | None = None
        if self.settings.subset.count is not None:
            candidates = [s.image_id for name in self.sources for s in self._index(name).samples]
            if len(candidates) < self.settings.subset.count and self.read_subset.fraction is not None:
                self.read_subset = self.settings.subset  # the draw kept too few (mask filters): every image
                for name, source in self.sources.items():
                    self._release(name)
                    self.indices[name] = read.read_part(source, self.work, self.read_subset, self.stop)
                candidates = [s.image_id for name in self.sources for s in self._index(name).samples]
            chosen = self.settings.subset.chosen_by_count(candidates)
        for name in self.sources:
            for sample in self._index(name).samples:
                if chosen is None or sample.image_id in chosen:
                    yield sample

    def _write_all(self, helper: ThreadPoolExecutor) -> None:
        """Samples in order into shards, each written as the parts it needs are read."""
        cut = ShardCut(self.settings)
        writer: Writer | None = None
        parts: set[str] = set()  # parts with samples in the open shard
        last_part: str | None = None
        try:
            for sample in self._samples():
                if writer is not None and cut.starts_new(sample):
                    finished, writer = writer, None
                    self._close(finished, parts - {sample.part})
                    parts = set()
                if writer is None:
                    writer = self._open(shard_name(len(self.result.records)), sample, helper)
                if last_part is not None and sample.part != last_part:
                    self._drop_held(last_part)  # every sample of a part comes before the next part's
                if sample.part not in parts and not isinstance(writer, KeptShard):
                    self._ensure_spill(sample.part)
                writer.add(sample)
                cut.add(sample)
                parts.add(sample.part)
                last_part = sample.part
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            self._close(writer, parts)

    def _open(self, name: str, first: Sample, helper: ThreadPoolExecutor) -> Writer:
        kept = finished_record(self.out, self.work, name, first.image_id)
        if kept is not None:
            return KeptShard(kept)
        if self.settings.format == "folders":
            return FolderChunkWriter(self.out, self.work, name, self._locate)
        return TarShardWriter(self.out, self.work, name, self._locate, helper)

    def _close(self, writer: Writer, finished_parts: set[str]) -> None:
        """Finish (publish) the shard, then delete the spills no later shard reads (samples come part by part)."""
        try:
            record = writer.finish()
        except ValueError as exc:
            raise _state_mismatch(self.out, exc) from None
        if isinstance(writer, KeptShard):
            self.result.shards_kept += 1
        else:
            self.result.shards_written += 1
            self.reporter.event("shard", f"{record.name}: {record.samples} samples published", shard=record.name,
                                samples=record.samples, bytes=record.size)
        self.result.records.append(record)
        for part in finished_parts:
            self._release(part)

    def _ensure_spill(self, part: str) -> None:
        """Read a part again when a shard still needs its spill and an earlier run deleted it (or held it in memory)."""
        source = self.sources[part]
        index = self._index(part)
        if source.kind == read.TAR and index.held is None and not source.spill_path(self.work).exists():
            self.indices[part] = read.read_part(source, self.work, self.read_subset, self.stop, budget=self.budget)

    def _locate(self, sample: Sample) -> Located:
        source = self.sources[sample.part]
        jpg, annotation = source.paths_of(sample, self.work)
        return Located((jpg, sample.jpg_offset, sample.jpg_size), (annotation, sample.json_offset, sample.json_size),
                       source.kind == read.TAR, self.indices[sample.part].held)

    def _drop_held(self, part: str) -> None:
        """Give a written part's memory back to the budget (hashes still reading its bytes keep them alive)."""
        index = self.indices.get(part)
        if index is not None and index.held is not None:
            index.held.release()
            index.held = None

    def _release(self, part: str) -> None:
        self._drop_held(part)
        self.sources[part].spill_path(self.work).unlink(missing_ok=True)

    def _finish(self) -> ExportResult:
        return _conclude(self.result, [self._index(name) for name in self.sources])


def _conclude(result: ExportResult, indices: list[PartIndex]) -> ExportResult:
    """What the parts' indices tell of the export (ids not found, unpaired members...), then the wids index
    and the sha256 manifest of its shards."""
    subset = result.settings.subset
    if subset.ids is not None:
        found = {image_id for index in indices for image_id in index.listed_found}
        result.ids_missing = sorted(subset.ids - found)
    result.unpaired = [f"{i.part}: {name}" for i in indices for name in i.unpaired]
    result.unreadable = [f"{i.part}: {name}" for i in indices for name in i.unreadable]
    result.other_members = sum(i.other for i in indices)
    if result.settings.format == "webdataset" and result.records:
        write_wids_index(result.out, result.records)
    write_sha256_manifest(result.out, result.records)
    return result


def _write_receipt(out: Path, result: ExportResult, sources: list[PartSource]) -> None:
    atomic_write_json(out / RECEIPT_NAME, {
        "schema": RECEIPT_SCHEMA, "kind": "sa1b-export", "sa1b_version": __version__, "time": utc_now_iso(),
        "settings": _canonical(result.settings), "sources": {s.name: s.kind for s in sources},
        "samples": result.samples, "bytes": result.bytes,
        "shards": [{k: v for k, v in r.to_dict().items() if k != "files"} for r in result.records],
        "ids_missing": result.ids_missing, "unpaired": result.unpaired, "unreadable": result.unreadable,
        "other_members": result.other_members,
        "skipped_parts": result.skipped_parts, "seconds": round(result.seconds, 3),
    })


def _clear_work(work: Path) -> None:
    """Everything of the finished run but its lock (released by the caller)."""
    for entry in work.iterdir():
        if entry.name == "lock":
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
