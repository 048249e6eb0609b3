"""Download orchestration: plan, then drive the private aria2c daemon until every selected part is done.

Parts are fed to aria2c at most ``jobs`` at a time; a part's lock is taken only
when it is fed, so several hosts over one shared ROOT share the work part by part
and never fetch a part twice. Each finished part is read to its end (size,
archive structure, md5/sha256, optional checksum list) before its receipt is
written; only a receipt marks a part complete. A part is read while it downloads,
as far as aria2 reports its pieces complete from the start, so that little is left
to read when its last byte lands; on any doubt it is read again in full.
"""

from __future__ import annotations

import errno
import os
import random
import re
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sa1b_cli.store import legacy as state
from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.aria2_daemon import Aria2Daemon, DaemonSettings, InputEntry
from sa1b_cli.checksums import ChecksumList
from sa1b_cli.errors import (
    Aria2Error,
    Aria2RpcError,
    DiskSpaceError,
    ExitStatus,
    Interrupted,
    UsageError,
)
from sa1b_cli.events import PartTransfer, Reporter, TransferSnapshot
from sa1b_cli.integrity import (
    ArchiveError,
    PartCheck,
    StreamingCheck,
    check_part,
    hash_file,
)
from sa1b_cli.links import (
    PART_NAME,
    LinkEntry,
    LinksFile,
    parse_links,
    redact_text,
    redact_url,
)
from sa1b_cli.store.locks import LockKeeper, PartLock
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.probe import probe_links
from sa1b_cli.sources import (
    META,
    Mirror,
    PartSources,
    Source,
    copy_local,
    part_sources,
    plan_sources,
    probe_source,
    serving_label,
)

if TYPE_CHECKING:
    from sa1b_cli.aria2_client import PartEndListener

STATUS_KEYS = [
    "gid", "status", "totalLength", "completedLength", "downloadSpeed", "connections", "errorCode", "errorMessage",
    "bitfield", "pieceLength",
]
MAX_DAEMON_RESTARTS = 3
MAX_REDIRECT_RESTARTS = 5  # a mirror's expired redirect target, asked again this often before moving on
MAX_BACKOFF_SECONDS = 300.0
RUN_FILE_EVERY = 2.0
_ARIA2_SIZE = re.compile(r"^(\d+)([KkMm]?)$")
MIN_SPLIT_RANGE = (1 << 20, 1 << 30)  # what aria2c accepts for --min-split-size


@dataclass
class DownloadOptions:
    """What the user asked for; every field has a CLI option and an SA1B_* variable."""

    jobs: int = 4
    connections: int = 8
    max_speed: str = "0"
    min_split_size: str = "64M"
    retries: int = 5
    retry_wait: float = 10.0
    stall_timeout: int = 60
    checksums: ChecksumList | None = None  # the community reference unless replaced or switched off
    mirrors: list[Mirror] = field(default_factory=list)  # tried in order after Meta's link
    ignore_disk_space: bool = False
    extract_layout: str | None = None
    remove_tars: bool = False
    aria2c: str | None = None
    expiry_margin: float = 60.0
    poll_interval: float = 0.5
    lock_stale_after: float = 120.0
    lock_refresh_every: float = 15.0
    watch_links: bool = True
    check_while_downloading: bool = True  # stream each .tar part through the check as its pieces complete

    def __post_init__(self) -> None:
        # aria2c refuses these at start-up with an exit code only: check them here, before anything runs.
        aria2_size(self.max_speed, "--max-speed")
        low, high = MIN_SPLIT_RANGE
        if not low <= aria2_size(self.min_split_size, "--min-split-size") <= high:
            raise UsageError(f"--min-split-size {self.min_split_size}: must be between 1M and 1024M")


def aria2_size(value: str, option: str) -> int:
    """Bytes in an aria2c size such as ``50M``: a whole number with an optional K or M suffix."""
    match = _ARIA2_SIZE.match(value.strip())
    if not match:
        raise UsageError(f"{option} {value!r}: use a whole number of bytes with an optional K or M suffix, e.g. 50M")
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20}[match.group(2).lower()]


@dataclass
class PartPlan:
    """What the plan says about one selected part."""

    name: str
    url: str  # redacted
    expires_at: str | None
    action: str  # fetch | complete | expired | missing
    size: int | None = None
    on_disk: int = 0
    reason: str = ""
    source: str = "meta"  # the label(s) of the source that will serve it


@dataclass
class DownloadPlan:
    sources: dict[str, PartSources]  # per part still to fetch; holds signed URLs: never serialised
    parts: list[PartPlan]
    links_path: str
    expires_earliest: str | None
    expires_latest: str | None
    free_bytes: int
    need_bytes: int
    unknown_sizes: int

    @property
    def to_fetch(self) -> list[PartPlan]:
        return [p for p in self.parts if p.action == "fetch"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "links": self.links_path,
            "expires_earliest": self.expires_earliest,
            "expires_latest": self.expires_latest,
            "free_bytes": self.free_bytes,
            "need_bytes": self.need_bytes,
            "unknown_sizes": self.unknown_sizes,
            "parts": [asdict(p) for p in self.parts],
        }


@dataclass
class PartOutcome:
    name: str
    status: str  # complete | already | failed | expired | locked
    reason: str = ""
    size: int | None = None
    extracted: bool | None = None
    wrong_bytes: bool = False  # the bytes read differ from the checksum list or reference

@dataclass
class DownloadResult:
    plan: DownloadPlan
    outcomes: dict[str, PartOutcome] = field(default_factory=dict)
    elapsed: float = 0.0
    bytes_fetched: int = 0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)

    @property
    def exit_status(self) -> ExitStatus:
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        statuses = {o.status for o in self.outcomes.values()}
        if any(o.wrong_bytes for o in self.outcomes.values()):
            return ExitStatus.WRONG_BYTES
        if "failed" in statuses or any(o.extracted is False for o in self.outcomes.values()):
            return ExitStatus.PARTS_FAILED
        if "expired" in statuses:
            return ExitStatus.LINKS_EXPIRED
        if "locked" in statuses:
            return ExitStatus.LOCKED
        return ExitStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_status),
            "elapsed_seconds": round(self.elapsed, 3),
            "bytes_fetched": self.bytes_fetched,
            "parts": {name: asdict(o) for name, o in sorted(self.outcomes.items())},
            "complete": self.count("complete") + self.count("already"),
            "failed": self.count("failed"),
            "wrong_bytes": sum(1 for o in self.outcomes.values() if o.wrong_bytes),
            "expired": self.count("expired"),
            "locked": self.count("locked"),
            "selected": len(self.plan.parts),
        }


# -- planning -------------------------------------------------------------------------------


def is_complete(paths: RootPaths, name: str) -> bool:
    """A part is complete when its receipt says so and its tar is intact (or extracted and removed)."""
    receipt = state.read_receipt(paths, "download", name)
    if not receipt or not receipt.get("complete"):
        return False
    tar = paths.tar(name)
    try:
        return tar.stat().st_size == receipt.get("size") and not paths.control_file(name).exists()
    except FileNotFoundError:
        extracted = state.read_receipt(paths, "extract", name)
        return bool(extracted) and extracted.get("tar_removed", False) is True


def _allocated_bytes(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def plan_download(
    entries: list[LinkEntry], links: LinksFile, paths: RootPaths, options: DownloadOptions, reporter: Reporter,
) -> DownloadPlan:
    """Decide per part: already complete, expired, or to fetch (with its size from a HEAD request)."""
    _check_root_writable(paths)
    _check_list_covers(options.checksums, [e.name for e in entries], reporter)
    now = time.time()
    parts: list[PartPlan] = []
    to_probe: list[LinkEntry] = []
    sources: dict[str, PartSources] = {}
    for entry in entries:
        expires = entry.expires_at
        plan = PartPlan(entry.name, entry.redacted_url, expires.isoformat() if expires else None, "fetch")
        parts.append(plan)
        if is_complete(paths, entry.name):
            receipt = state.read_receipt(paths, "download", entry.name) or {}
            plan.action, plan.size, plan.source = "complete", receipt.get("size"), receipt.get("source", "meta")
            continue
        meta_usable = expires is None or expires.timestamp() > now + options.expiry_margin
        found = PartSources(entry.name, part_sources(entry, entry.name, options.mirrors, meta_usable=meta_usable))
        if not meta_usable:
            found.passed.append(f"link expired {expires:%Y-%m-%d %H:%M} UTC")
            found.expired, found.state = True, "expired"
        else:
            to_probe.append(entry)
        sources[entry.name] = found
    meta_results = {}
    if to_probe:
        reporter.event("probe", f"checking {len(to_probe)} link(s) for sizes (HEAD)")
        meta_results = {result.name: result for result in probe_links(to_probe)}
    if options.mirrors and sources:
        reporter.event("probe", f"checking {len(options.mirrors)} mirror(s) for the parts Meta's links cannot serve")
    listed = options.checksums
    plan_sources(list(sources.values()), meta_results, lambda name: listed is not None and listed.covers(name),
                 bool(options.mirrors))
    for plan in parts:
        found = sources.get(plan.name)
        if found is None:
            continue
        plan.size, plan.source = found.size, found.serving
        if not found.sources:
            plan.action = "expired" if found.expired else "missing"
            plan.reason = found.reason
    need = 0
    unknown = 0
    for plan in parts:
        if plan.action != "fetch":
            continue
        plan.on_disk = _allocated_bytes(paths.tar(plan.name))
        if plan.size is None:
            unknown += 1
        else:
            need += max(0, plan.size - plan.on_disk)
    if options.extract_layout:
        # JPEGs do not compress: extracted files take about what the part does.
        extract_need = sum(p.size or 0 for p in parts if p.action in ("fetch", "complete") and not _extracted(paths, p.name))
        if options.remove_tars:
            extract_need = max((p.size or 0 for p in parts), default=0) * max(1, options.jobs)
        need += extract_need
    paths.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(paths.root).free
    earliest, latest = links.expiry_range() if entries else (None, None)
    selected_expiry = [e.expires_at for e in entries if e.expires_at is not None]
    if selected_expiry:
        earliest, latest = min(selected_expiry), max(selected_expiry)
    return DownloadPlan(
        sources=sources,
        parts=parts,
        links_path=links.path,
        expires_earliest=earliest.isoformat() if earliest else None,
        expires_latest=latest.isoformat() if latest else None,
        free_bytes=free,
        need_bytes=need,
        unknown_sizes=unknown,
    )


def _check_list_covers(listed: ChecksumList | None, selected: list[str], reporter: Reporter) -> None:
    """A user's list for none of the selected parts is refused; one for only some: say which are not covered."""
    if listed is None or listed.is_reference:
        return
    missing = listed.uncovered(selected, "selected part(s)")
    if missing:
        reporter.event("checksums", f"{listed.origin} has no checksum for {len(missing)} of the {len(selected)} "
                       f"selected part(s) ({missing[0]}{' …' if len(missing) > 1 else ''}): those are checked by structure only",
                       level="warning")


def _check_root_writable(paths: RootPaths) -> None:
    """Refuse a ROOT we cannot write (read-only mount, a file in the way) before any request is made."""
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{paths.root}: cannot create the dataset ROOT here ({exc.strerror or exc})") from None
    if not paths.root.is_dir() or not os.access(paths.root, os.W_OK | os.X_OK):
        raise UsageError(f"{paths.root}: cannot write to the dataset ROOT (read-only or not permitted); choose another -d")


def _extracted(paths: RootPaths, name: str) -> bool:
    return state.read_receipt(paths, "extract", name) is not None


def check_disk_space(plan: DownloadPlan, options: DownloadOptions) -> None:
    if options.ignore_disk_space or plan.need_bytes <= plan.free_bytes:
        return
    from sa1b_cli.console import human_bytes

    raise DiskSpaceError(
        f"not enough free space: the plan needs {human_bytes(plan.need_bytes)} more, "
        f"{human_bytes(plan.free_bytes)} free; free some space, select fewer parts (--parts/--shard) "
        f"or pass --ignore-disk-space"
    )


# -- running --------------------------------------------------------------------------------


def make_daemon(paths: RootPaths, options: DownloadOptions) -> Aria2Daemon:
    """The aria2c daemon a download run drives (not started yet)."""
    settings = DaemonSettings(
        download_dir=paths.tars,
        max_concurrent=options.jobs,
        connections=options.connections,
        min_split_size=options.min_split_size,
        max_overall_speed=options.max_speed,
        timeout_seconds=options.stall_timeout,
        max_tries=3,
        retry_wait_seconds=2,
        # A piece aria2 reports complete must be in the file when the streaming check reads it. aria2
        # flushes a piece's write cache before it marks the piece complete (completeSegment in
        # src/DownloadCommand.cc); with no cache at all that holds whatever aria2 does inside
        # (measured: no throughput cost on loopback, 193 vs 192 MiB/s at 25 MB/s per connection).
        disk_cache="0" if options.check_while_downloading else DaemonSettings.disk_cache,
    )
    return Aria2Daemon(settings, options.aria2c)


@dataclass
class _Active:
    entry: LinkEntry
    lock: PartLock
    expected_size: int | None
    attempts: int = 1
    gid: str = ""
    completed: int = 0
    total: int | None = None
    speed: float = 0.0
    connections: int = 0
    status: str = "active"  # active | waiting | copying | checking | extracting
    start_completed: int = 0
    resume_mode: str = "default"  # default | restart (server ignores Range)
    queued: bool = False  # added, but waiting in aria2's queue for a free slot
    not_before: float = 0.0
    stream: StreamingCheck | None = None  # the check reading the part while aria2 writes it
    sources: list[Source] = field(default_factory=list)  # still to try; the first serves now
    mixed_with: Source | None = None  # a second source aria2 fetches from at the same time
    redirect_restarts: int = 0  # a mirror's signed redirect target expired: asked the mirror again
    wrong_bytes: int = 0  # reads that differed from the checksum list, from the current source
    refetched_damaged: bool = False  # a damaged download was fetched again once in this run

    @property
    def serving(self) -> str:
        return serving_label(self.sources, self.mixed_with, META)


class _Stop(Exception):
    """Raised inside a check when the run is being stopped."""


class DownloadRun:
    """One execution of a plan against one aria2c daemon."""

    def __init__(
        self, plan: DownloadPlan, links: LinksFile, paths: RootPaths, options: DownloadOptions, reporter: Reporter,
    ) -> None:
        self.plan = plan
        self.links = links
        self.links_mtime = _mtime(Path(links.path))
        self.paths = paths
        self.options = options
        self.reporter = reporter
        self.result = DownloadResult(plan=plan)
        self.entries = links.by_name()
        self.queue: deque[str] = deque(p.name for p in plan.to_fetch)
        self.sizes = {p.name: p.size for p in plan.parts}
        self.active: dict[str, _Active] = {}
        self.checks: dict[str, Future[PartOutcome]] = {}
        self.stop_event = threading.Event()
        self.wake = threading.Event()  # set when a part completes or fails in aria2, or a check ends: poll now
        self.listeners: list[PartEndListener] = []  # aria2's notifications, one per aria2c started
        self.head_start: list[InputEntry] | None = None  # collects the first parts before aria2c runs
        self.disk_full = False
        self.started = time.monotonic()
        self.last_run_file = 0.0
        self.speed_samples: deque[tuple[float, int]] = deque(maxlen=120)
        self.fetched_base = 0
        for p in plan.parts:
            if p.action == "complete" and self._extract_pending(p.name):
                self.queue.append(p.name)
            elif p.action == "complete":
                self.result.outcomes[p.name] = PartOutcome(p.name, "already", size=p.size)
            elif p.action == "expired":  # the plan line already says so, once for all of them
                self.result.outcomes[p.name] = PartOutcome(p.name, "expired", p.reason)
                state.write_failure(paths, "download", p.name, p.reason)
            elif p.action == "missing":
                self._record(PartOutcome(p.name, "failed", p.reason))

    # The loop -------------------------------------------------------------------------------
    def run(self) -> DownloadResult:
        if not self.queue:
            self.result.elapsed = time.monotonic() - self.started
            return self.result
        workers = max(1, min(self.options.jobs, os.cpu_count() or 1))
        with LockKeeper(self.options.lock_refresh_every) as keeper, ThreadPoolExecutor(workers, thread_name_prefix="sa1b-check") as pool:
            self.keeper, self.pool = keeper, pool
            self.daemon = daemon = make_daemon(self.paths, self.options)
            try:
                self._launch_with_head_start()
                daemon.start()
                self._listen()
                self._loop()
            except KeyboardInterrupt:
                self.result.interrupted = True
                self.reporter.event("interrupted", "stopping: saving aria2 control files, parts resume on the next run", level="warning")
            finally:
                self.stop_event.set()
                daemon.stop()
                for listener in self.listeners:
                    listener.close()
                for name, future in list(self.checks.items()):
                    try:
                        self._record(future.result())
                    except _Stop:
                        pass
                    except Exception as exc:  # noqa: BLE001 - report, never hide
                        self._record(PartOutcome(name, "failed", f"check failed: {exc}"))
                for name in list(self.active):
                    self._release(name)
                try:
                    self.paths.run_file().unlink()
                except FileNotFoundError:
                    pass
        self.result.elapsed = time.monotonic() - self.started
        if self.result.interrupted:
            raise Interrupted("interrupted; state saved, run the same command again to resume")
        return self.result

    def _loop(self) -> None:
        while self.queue or self.active:
            self._maybe_reload_links()
            self._drop_lost_locks()
            self._fill()
            self._poll()
            self._collect_checks()
            self._report()
            if self.queue or self.active:
                self.wake.wait(self.options.poll_interval)
                self.wake.clear()
        self._report(force=True)

    def _launch_with_head_start(self) -> None:
        """Launch aria2c with the first parts on its input file: they download from its first
        moment, while this process still imports aria2p (~0.2 s) and connects to it.

        Locks, file checks and gids are settled here exactly as for a part added later over RPC."""
        self.head_start = []
        try:
            self._fill()
            self.daemon.launch(self.head_start)
        finally:
            self.head_start = None

    def _listen(self) -> None:
        """Wake the loop the moment aria2 says a part completed or failed, instead of at the next poll.

        Connected before the loop's first poll and before any part is added over RPC: a head-start
        part that ended earlier is seen by that poll, any later end is notified. Events are only hints
        (what happened is always read from the poll).
        """
        from sa1b_cli.aria2_client import PartEndListener

        listener = PartEndListener.connect(self.daemon.api_client, self.wake.set)
        if listener is not None:
            self.listeners.append(listener)

    def _drop_lost_locks(self) -> None:
        """Another run broke our lock (we stalled past its timeout): stop writing that part at once."""
        for name in self.keeper.take_lost():
            a = self.active.get(name)
            if a is None or a.status not in ("active", "waiting"):
                continue
            if a.gid:
                try:
                    self.daemon.api_client.force_remove(a.gid)
                except Aria2RpcError:
                    pass
            _abort_stream(a)
            del self.active[name]
            self._record(PartOutcome(name, "locked", "lock lost: this run stalled past the lock timeout and another run took the part over"))

    # Feeding --------------------------------------------------------------------------------
    def _downloading(self) -> int:
        return sum(1 for a in self.active.values() if a.status in ("active", "waiting", "copying"))

    def _fill(self) -> None:
        # Keep twice --jobs parts in aria2: it runs --jobs of them (max-concurrent-downloads) and starts
        # the next the moment one finishes, instead of waiting for our next poll.
        while self.queue and self._downloading() < 2 * self.options.jobs:
            name = self.queue.popleft()
            if self.disk_full:
                self._record(PartOutcome(name, "failed", "not attempted: the disk is full"))
                continue
            lock = PartLock(self.paths.lock(name), stale_after=self.options.lock_stale_after)
            try:
                holder = lock.try_acquire()
            except OSError as exc:
                self.disk_full = self.disk_full or exc.errno == errno.ENOSPC
                self._record(PartOutcome(name, "failed", f"cannot create its lock file: {exc.strerror or exc}"))
                continue
            if holder is not None:
                self._record(PartOutcome(name, "locked", f"locked by {holder.describe()}"))
                continue
            self.keeper.add(name, lock)
            complete = is_complete(self.paths, name)
            if complete and self._extract_pending(name):  # downloaded by an earlier run, not extracted yet
                active = _Active(entry=self.entries[name], lock=lock, expected_size=self.sizes.get(name), status="extracting")
                self.active[name] = active
                self._submit(name, self._extract_only, name)
            elif complete:  # another host finished it meanwhile
                self.keeper.release(name)
                self._record(PartOutcome(name, "already", size=self.sizes.get(name)))
            else:
                active = _Active(entry=self.entries[name], lock=lock, expected_size=self.sizes.get(name))
                planned = self.plan.sources.get(name)
                if planned is not None and planned.sources:
                    active.sources, active.mixed_with = list(planned.sources), planned.mixed_with
                else:  # queued again after a fresh links file renewed its link
                    active.sources = part_sources(self.entries[name], name, self.options.mirrors, meta_usable=True)
                self.active[name] = active
                self._start(name, active)

    def _start(self, name: str, active: _Active) -> None:
        """Add a part to aria2 after making its file state safe to resume."""
        _abort_stream(active)  # whatever it read belongs to an earlier attempt: read this one from zero
        entry = self.entries[name]
        active.entry = entry
        if not active.sources:
            active.sources = [Source(META, entry.url)]
        source = active.sources[0]
        if source.is_meta:
            source = active.sources[0] = Source(META, entry.url)  # a fresh links file may have renewed it
            expires = entry.expires_at
            if expires is not None and expires.timestamp() <= time.time() + self.options.expiry_margin:
                self._next_source(name, active, PartOutcome(name, "expired", "link expired before it could be fetched; get a fresh links file"))
                return
        tar, control = self.paths.tar(name), self.paths.control_file(name)
        options: dict[str, Any] = {"out": name}
        progress = read_control_file(control) if control.exists() else None
        if progress is not None and active.expected_size is not None and progress.total_length != active.expected_size:
            # The file changed on the server while this part was partial: aria2 cannot resume it (error 1 on
            # every run) and its bytes belong to the old file. Start over.
            self.reporter.event("restart", f"{name}: the server's file is now {active.expected_size} bytes, the partial "
                                f"download was of a {progress.total_length}-byte file; discarding it and starting over",
                                level="warning", part=name)
            tar.unlink(missing_ok=True)
            control.unlink()
        elif control.exists() and progress is None:
            # A full disk leaves an empty control file next to a file of allocated, unwritten bytes:
            # aria2 aborts on it every time (error 1) and the bytes cannot be trusted. Start over.
            self.reporter.event("restart", f"{name}: aria2's progress file is damaged (was the disk full?); downloading this part again", level="warning")
            tar.unlink(missing_ok=True)
            control.unlink()
        if tar.exists() and not control.exists():
            size = tar.stat().st_size
            if active.expected_size is not None and size < active.expected_size and active.resume_mode == "default":
                # A partial file from another tool (wget -c, an interrupted copy): append to it.
                options["continue"] = "true"
                self.reporter.event("adopt", f"{name}: resuming a partial file without aria2 control file ({size} bytes)")
            else:
                # Full size (or unknown): it may be complete. Check it rather than refuse it (aria2 error 13).
                active.status = "checking"
                active.start_completed = size
                self.reporter.event("adopt", f"{name}: checking a file found without aria2 control file")
                self._submit(name, self._check, name, active, True)
                return
        elif control.exists() and not tar.exists():
            control.unlink()
        if source.local:
            active.status = "copying"
            self._submit(name, self._copy_then_check, name, active)
            return
        if source.headers:
            options["header"] = list(source.headers)  # aria2 takes a list: one header each
        if active.resume_mode == "restart":
            # The server ignores Range: the bytes on disk cannot be continued. Start over on one
            # connection (aria2c 1.37 aborts on always-resume=false with a control file present).
            tar.unlink(missing_ok=True)
            control.unlink(missing_ok=True)
            options.update({"split": "1"})
        # aria2's default piece order: its completed prefix grows all along on one connection, and for the
        # first of several. (stream-piece-selector=inorder would grow it on every connection, but aria2 then
        # re-requests each segment and drops connections with bytes in flight: measured 2% of the bytes
        # sent again at 25 MB/s per connection, 19% on unthrottled loopback, and a lower rate. geom grows it
        # too, with 0.1% sent again, but one 107 MB part on 8 connections at 0.7 MB/s each took 27.3 s
        # instead of 20.0 s: the late pieces end up on few connections.)
        streamed = self.options.check_while_downloading and name.endswith(".tar") and not self._checked_by_extraction(name)
        want_md5 = self._want_md5(name)
        fresh = not tar.exists()
        uris = [source.location] + ([active.mixed_with.location] if active.mixed_with is not None else [])
        if len(uris) > 1:  # --connections to each source: the point of fetching from two
            options["split"] = str(self.options.connections * len(uris))
        if self.head_start is not None:  # aria2c is not running yet: on its input file, with our gid
            active.gid = secrets.token_hex(8)
            self.head_start.append(InputEntry(uris, {"gid": active.gid, **options}))
        else:
            try:
                active.gid = self.daemon.api_client.add_uri(uris, options)
            except Aria2RpcError as exc:
                self._daemon_trouble(exc)
                return
        active.status = "active"
        if streamed:
            active.stream = StreamingCheck(tar, self._stop_check, md5=want_md5)
        # A fresh part starts from zero; a resumed one from what aria2 first reports (the bytes it resumed from).
        active.start_completed = 0 if fresh else -1

    # Polling --------------------------------------------------------------------------------
    def _poll(self) -> None:
        downloading = [(name, a) for name, a in self.active.items() if a.status == "active" and a.gid]
        now = time.time()
        for name, a in list(self.active.items()):
            if a.status == "waiting" and now >= a.not_before:
                self._start(name, a)
        if not downloading:
            return
        client = self.daemon.api_client
        try:
            replies = client.multicall2([(client.TELL_STATUS, [a.gid, STATUS_KEYS]) for _, a in downloading])
        except Aria2RpcError as exc:
            self._daemon_trouble(exc)
            return
        for (name, a), reply in zip(downloading, replies):
            if isinstance(reply, dict) and "code" in reply and "gid" not in reply:
                self._retry(name, a, f"aria2 lost the download ({reply.get('message', '')})", code="")
                continue
            status = reply[0] if isinstance(reply, list) else reply
            self._update(name, a, status)

    def _update(self, name: str, a: _Active, status: dict[str, Any]) -> None:
        a.completed = int(status.get("completedLength", 0))
        if a.start_completed < 0:
            a.start_completed = a.completed
        total = int(status.get("totalLength", 0))
        a.total = total or a.expected_size
        a.speed = float(status.get("downloadSpeed", 0))
        a.connections = int(status.get("connections", 0))
        state_name = status.get("status")
        a.queued = state_name in ("waiting", "paused")
        if a.stream is not None and total:
            a.stream.advance(completed_prefix(str(status.get("bitfield", "")), int(status.get("pieceLength", 0)), total))
        if state_name == "complete":
            self._forget(a.gid)
            if total and a.expected_size is not None and total != a.expected_size:
                self._finish(name, PartOutcome(name, "failed", f"size changed on the server: {total} bytes, HEAD said {a.expected_size}"))
                return
            a.expected_size = a.expected_size or total or None
            a.status = "checking"
            self._submit(name, self._check, name, a, False)
        elif state_name in ("error", "removed"):
            self._forget(a.gid)
            self._handle_error(name, a, str(status.get("errorCode", "")), str(status.get("errorMessage", "")))

    def _handle_error(self, name: str, a: _Active, code: str, message: str) -> None:
        message = redact_text(message)
        text = message.strip() or f"aria2 error {code}"
        source = a.sources[0] if a.sources else None
        if code == "22" and "403" in message and source is not None and not source.is_meta and a.redirect_restarts < MAX_REDIRECT_RESTARTS:
            # A mirror's short-lived signed redirect target expired: asking the mirror again gives a fresh one.
            a.redirect_restarts += 1
            self.reporter.event("source", f"{name}: {source.label} answered HTTP 403 (its signed redirect expired?); asking it again, progress is kept", level="warning")
            self._start(name, a)
        elif code == "22" and "403" in message:
            reason = "link expired or revoked (HTTP 403); get a fresh links file and run again, progress is kept"
            self._next_source(name, a, PartOutcome(name, "expired" if source is None or source.is_meta else "failed", reason))
        elif code == "3":
            self._next_source(name, a, PartOutcome(name, "failed", "not found on the server (HTTP 404)"))
        elif code == "24":
            self._next_source(name, a, PartOutcome(name, "failed", "authorization failed (HTTP 401); a --mirror-header with a token?"))
        elif code == "9":
            self.disk_full = True
            self._finish(name, PartOutcome(name, "failed", "disk full; free space and run again, progress is kept"))
        elif code == "8" and a.resume_mode == "default":
            # aria2's code 8 is "cannot resume"; its message is often only the last one ("No URI available.").
            self.reporter.event("no_range", f"{name}: the server ignored Range; restarting this part from zero on one connection", level="warning")
            a.resume_mode = "restart"
            self._start(name, a)
        elif code == "8":
            reason = f"cannot resume ({text}); the file on the server may have changed: delete {self.paths.tar(name)} and its .aria2 to restart"
            self._finish(name, PartOutcome(name, "failed", reason))
        elif code in ("13", "11"):
            self._finish(name, PartOutcome(name, "failed", f"aria2 refused the file ({text})"))
        else:
            self._retry(name, a, text, code)

    def _retry(self, name: str, a: _Active, reason: str, code: str) -> None:
        if a.attempts > self.options.retries:
            self._next_source(name, a, PartOutcome(name, "failed", f"gave up after {a.attempts} attempts: {reason}"))
            return
        delay = min(MAX_BACKOFF_SECONDS, self.options.retry_wait * (2 ** (a.attempts - 1))) * random.uniform(0.8, 1.2)
        a.attempts += 1
        a.status, a.gid, a.not_before = "waiting", "", time.time() + delay
        self.reporter.event("retry", f"{name}: {reason} (aria2 error {code or '?'}); retry {a.attempts - 1}/{self.options.retries} in {delay:.0f}s", level="warning")

    def _next_source(self, name: str, a: _Active, outcome: PartOutcome) -> None:
        """The serving source cannot give this part: go on with the next one, keeping the bytes fetched
        when it has the same size; with none left the part ends with ``outcome``."""
        passed = a.sources.pop(0) if a.sources else None
        a.mixed_with, a.attempts, a.redirect_restarts, a.wrong_bytes = None, 1, 0, 0
        while a.sources:
            source = a.sources[0]
            probed = probe_source(source, name)
            if probed.state == "live" and probed.status != 401:
                break
            self.reporter.event("source", f"{name}: {source.label} cannot serve it either ({probed.message or probed.state})", level="warning")
            a.sources.pop(0)
        else:
            self._finish(name, outcome)
            return
        kept = self._keep_bytes_for(name, a, probed.size)
        was = passed.label if passed is not None else "its source"
        self.reporter.event("source", f"{name}: {was}: {outcome.reason}; continuing from {source.label}"
                                      + (f", keeping the {kept} bytes fetched" if kept else ""), level="warning", part=name)
        self._start(name, a)

    def _keep_bytes_for(self, name: str, a: _Active, size: int | None) -> int:
        """Keep a partial part for a source of the same size (the bytes fetched so far); discard it otherwise."""
        tar, control = self.paths.tar(name), self.paths.control_file(name)
        progress = read_control_file(control) if control.exists() else None
        had = progress.total_length if progress is not None else a.expected_size
        if size is not None and had is not None and size == had:
            a.expected_size = size
            return progress.completed_length if progress is not None else (tar.stat().st_size if tar.exists() else 0)
        tar.unlink(missing_ok=True)
        control.unlink(missing_ok=True)
        a.expected_size, a.total, a.completed = size, size, 0
        return 0

    def _after_wrong_bytes(self, name: str, a: _Active, outcome: PartOutcome) -> None:
        """Bytes that differ from the checksum list are never kept. Fetch them once more from the same
        source (a byte may have flipped on the way), alone if two sources were mixed, then move on."""
        self.paths.tar(name).unlink(missing_ok=True)
        self.paths.control_file(name).unlink(missing_ok=True)
        a.completed, a.start_completed = 0, 0
        if a.mixed_with is not None:
            a.mixed_with = None
            self.reporter.event("source", f"{name}: {outcome.reason}; fetching it again from {a.serving} alone", level="warning", part=name)
            self._start(name, a)
        elif a.wrong_bytes == 0:
            a.wrong_bytes = 1
            self.reporter.event("source", f"{name}: {outcome.reason}; fetching it again", level="warning", part=name)
            self._start(name, a)
        else:
            self._next_source(name, a, outcome)

    def _forget(self, gid: str) -> None:
        try:
            self.daemon.api_client.remove_download_result(gid)
        except Aria2RpcError:
            pass

    def _daemon_trouble(self, exc: BaseException) -> None:
        """RPC failed: if aria2c died, restart it and re-add what was running (control files keep progress)."""
        if self.daemon.alive(grace=2.0):
            raise Aria2Error(f"aria2c stopped answering: {exc}") from exc
        code = self.daemon.proc.returncode if self.daemon.proc else None
        if self.daemon.starts > MAX_DAEMON_RESTARTS:
            raise Aria2Error(f"aria2c keeps dying (last exit code {code})")
        self.reporter.event("aria2_restart", f"aria2c stopped unexpectedly (exit code {code}); restarting it, parts resume from their control files", level="warning")
        self.daemon.restart()
        self._listen()
        for name, a in list(self.active.items()):
            if a.status == "active":
                a.gid = ""
                self._start(name, a)

    # Checking -------------------------------------------------------------------------------
    def _submit(self, name: str, work: Callable[..., PartOutcome], *args: Any) -> None:
        """Run a check (or extraction) in the pool; its end wakes the loop, which hands the part on at once."""
        future = self.pool.submit(work, *args)
        future.add_done_callback(lambda _future: self.wake.set())
        self.checks[name] = future

    def _copy_then_check(self, name: str, a: _Active) -> PartOutcome:
        """Runs in a worker thread: copy a part from a local mirror (only what is missing), then check it."""
        source, tar, control = a.sources[0], self.paths.tar(name), self.paths.control_file(name)
        progress = read_control_file(control) if control.exists() else None
        a.expected_size = a.total = os.stat(source.location).st_size
        a.completed = progress.completed_length if progress is not None else 0

        def on_bytes(n: int) -> None:
            self._stop_check(n)
            a.completed += n

        copied = copy_local(source, tar, progress, on_bytes)
        control.unlink(missing_ok=True)
        a.start_completed = a.expected_size - copied
        a.status = "checking"
        return self._check(name, a, False)

    def _check(self, name: str, a: _Active, adopting: bool) -> PartOutcome:
        """Runs in a worker thread: read the part to its end, then write its receipt (and extract)."""
        tar = self.paths.tar(name)
        stream, a.stream = a.stream, None
        size = tar.stat().st_size
        if a.expected_size is not None and size != a.expected_size:
            if stream is not None:
                stream.abort()
            if adopting:
                return PartOutcome(name, "refetch", f"file is {size} bytes, the server has {a.expected_size}")
            return PartOutcome(name, "failed", f"size {size} differs from Content-Length {a.expected_size}")
        if stream is None and self._checked_by_extraction(name):
            # The extraction may fill the disk: its download receipt's space is taken first.
            reserved = state.Reservation(self.paths.receipt("download", name))
            try:
                extracted = self._check_while_extracting(name, a, adopting, reserved)
                return extracted if extracted is not None else self._read_and_accept(name, a, None, adopting, reserved)
            finally:
                reserved.release()
        return self._read_and_accept(name, a, stream, adopting, None)

    def _read_and_accept(self, name: str, a: _Active, stream: StreamingCheck | None, adopting: bool,
                         reserved: state.Reservation | None) -> PartOutcome:
        """Check a downloaded part by reading it (or take the streaming check's result), then accept it."""
        tar = self.paths.tar(name)
        size = tar.stat().st_size
        streamed = None if stream is None or adopting else stream.result(size)
        if streamed is not None:
            check = streamed
        elif name.endswith(".tar"):  # adopted, or the streaming check could not be trusted: read it all now
            try:
                check = check_part(tar, self._stop_check, md5=self._want_md5(name))
            except ArchiveError as exc:
                if a.mixed_with is not None:  # two sources whose bytes do not fit together: each alone next
                    return PartOutcome(name, "failed", f"archive check failed: {exc}; {a.serving} disagree", wrong_bytes=True)
                if adopting or not a.refetched_damaged:  # damaged on the way, most likely: once more within this run
                    a.refetched_damaged = a.refetched_damaged or not adopting
                    return PartOutcome(name, "refetch", f"archive check failed: {exc}")
                return PartOutcome(name, "failed", f"archive check failed: {exc}")
        else:  # an extra such as sa_images_ids.txt: no structure to check, only hashes
            size, md5, sha256 = hash_file(tar, self._stop_check, md5=self._want_md5(name))
            check = PartCheck(size=size, md5=md5, sha256=sha256, compressed=False)
        outcome = self._accept(name, a, check, adopting=adopting, streamed=streamed is not None, reserved=reserved)
        if outcome.status == "complete" and self.options.extract_layout and PART_NAME.match(name):
            outcome.extracted = self._extract(name)
            if not outcome.extracted:
                outcome.reason = "downloaded, but extraction failed (see above)"
        return outcome

    def _want_md5(self, name: str) -> bool:
        """md5 only where the checksum list (or reference) gives one: sha256 identifies a part, md5 costs a
        quarter of a check's CPU."""
        return self.options.checksums is not None and self.options.checksums.wants_md5(name)

    def _checked_by_extraction(self, name: str) -> bool:
        """With --extract, a part not extracted yet is checked by the read that unpacks it (one read, not two)."""
        return bool(self.options.extract_layout) and PART_NAME.match(name) is not None and not _extracted(self.paths, name)

    def _check_while_extracting(self, name: str, a: _Active, adopting: bool, reserved: state.Reservation) -> PartOutcome | None:
        """Check a part by unpacking it: the extraction's read hashes it and the download receipt is written
        from that read. None when the extraction did not get through: the caller then checks the part on
        its own and extracts it the ordinary way, which tells a corrupt download from a failed extraction."""
        from sa1b_cli.extract import INTERRUPTED, SourceCheck, extract_part

        accepted: list[PartOutcome] = []

        def accept(check: PartCheck) -> bool:
            accepted.append(self._accept(name, a, check, adopting=adopting, streamed=False, extracting=True, reserved=reserved))
            return accepted[-1].status == "complete"

        result = extract_part(
            self.paths, name, self.options.extract_layout, self.reporter, lock_held=True,
            remove_tar=self.options.remove_tars, stop=self.stop_event, source_check=SourceCheck(accept, self._want_md5(name)),
        )
        if result.status == INTERRUPTED:
            raise _Stop()
        if accepted and accepted[-1].status != "complete":
            return accepted[-1]  # refused by the checksum list: failed, nothing extracted
        if not result.ok or not accepted:
            return None
        accepted[-1].extracted = True
        return accepted[-1]

    def _accept(self, name: str, a: _Active, check: PartCheck, *, adopting: bool, streamed: bool,
                extracting: bool = False, reserved: state.Reservation | None = None) -> PartOutcome:
        """Compare a read part with the checksum list and write its download receipt."""
        listed = self.options.checksums
        mismatch = listed.mismatch(name, check.md5, check.sha256) if listed is not None else None
        if mismatch:
            return PartOutcome(name, "failed", f"{mismatch}; {a.serving} sent other bytes", wrong_bytes=True)
        expected_md5 = listed.md5.get(name) if listed is not None else None
        receipt = {
            "complete": True,
            "size": check.size,
            "md5": check.md5,
            "sha256": check.sha256,
            "compressed": check.compressed,
            "members": check.members,
            "images": check.images,
            "annotations": check.annotations,
            "url": redact_url(a.entry.url) if not a.sources or a.sources[0].is_meta else a.sources[0].shown,
            "source": a.serving,
            "content_length": a.expected_size,
            "checksum_list_md5": expected_md5,
            "adopted": adopting,
            "checked_while_downloading": streamed,
            "checked_while_extracting": extracting,
        }
        state.write_receipt(self.paths, "download", name, receipt, reserved)
        return PartOutcome(name, "complete", size=check.size)

    def _stop_check(self, _n: int) -> None:
        """Called for every block a check reads: ends it at once when the run stops."""
        if self.stop_event.is_set():
            raise _Stop()

    def _extract_pending(self, name: str) -> bool:
        """With --extract: a part downloaded earlier whose extraction never finished (failed, killed, no space)."""
        return bool(self.options.extract_layout) and PART_NAME.match(name) is not None and not _extracted(self.paths, name)

    def _extract_only(self, name: str) -> PartOutcome:
        """Runs in a worker thread: extract a part that an earlier run downloaded."""
        outcome = PartOutcome(name, "already", size=self.sizes.get(name), extracted=self._extract(name))
        if not outcome.extracted:
            outcome.reason = "downloaded, but extraction failed (see above)"
        return outcome

    def _extract(self, name: str) -> bool:
        from sa1b_cli.extract import extract_part

        result = extract_part(
            self.paths, name, self.options.extract_layout, self.reporter, lock_held=True,
            remove_tar=self.options.remove_tars, stop=self.stop_event,
        )
        return result.ok

    def _collect_checks(self) -> None:
        for name, future in list(self.checks.items()):
            if not future.done():
                continue
            del self.checks[name]
            try:
                outcome = future.result()
            except _Stop:
                continue
            except Exception as exc:  # noqa: BLE001 - a failed check fails the part, never the run
                outcome = PartOutcome(name, "failed", f"check failed: {type(exc).__name__}: {exc}")
            a = self.active.get(name)
            if outcome.wrong_bytes and a is not None:
                self._after_wrong_bytes(name, a, outcome)
                continue
            if outcome.status == "refetch" and a is not None:
                self.reporter.event("refetch", f"{name}: {outcome.reason}; downloading it again", level="warning")
                self.paths.tar(name).unlink(missing_ok=True)
                self.paths.control_file(name).unlink(missing_ok=True)
                a.status = "active"
                self._start(name, a)
                continue
            self._finish(name, outcome)

    # Bookkeeping ----------------------------------------------------------------------------
    def _finish(self, name: str, outcome: PartOutcome) -> None:
        a = self.active.get(name)
        if a is not None and outcome.status == "complete":
            self.result.bytes_fetched += max(0, (outcome.size or 0) - max(0, a.start_completed))
        self._release(name)
        self._record(outcome)

    def _release(self, name: str) -> None:
        a = self.active.pop(name, None)
        if a is not None:
            _abort_stream(a)
            self.keeper.release(name)

    def _record(self, outcome: PartOutcome) -> None:
        self.result.outcomes[outcome.name] = outcome
        if outcome.status in ("failed", "expired"):
            try:
                state.write_failure(self.paths, "download", outcome.name, outcome.reason)
            except OSError:
                pass  # a full disk: the reason still goes to the console and the summary
            self.reporter.event(f"part_{outcome.status}", f"{outcome.name}: {outcome.reason}", level="error" if outcome.status == "failed" else "warning", part=outcome.name)
        elif outcome.status == "locked":
            self.reporter.event("part_locked", f"{outcome.name}: skipped, {outcome.reason}", level="warning", part=outcome.name)
        elif outcome.status == "complete":
            self.reporter.event("part_done", f"{outcome.name}: complete and checked", part=outcome.name, size=outcome.size)
        elif outcome.status == "already" and outcome.extracted is not None:
            done = "extracted now" if outcome.extracted else outcome.reason
            self.reporter.event("part_already", f"{outcome.name}: already downloaded; {done}", level="info" if outcome.extracted else "error", part=outcome.name)
        elif outcome.status == "already":
            self.reporter.event("part_already", f"{outcome.name}: already complete (finished by another run)", part=outcome.name)

    def _maybe_reload_links(self) -> None:
        """A fresh links file saved over the old one mid-run: swap URLs in place, retry expired parts."""
        if not self.options.watch_links:
            return
        path = Path(self.links.path)
        mtime = _mtime(path)
        if mtime is None or mtime == self.links_mtime:
            return
        self.links_mtime = mtime
        try:
            fresh = parse_links(path)
        except Exception as exc:  # noqa: BLE001 - a half-written file: keep the old links
            self.reporter.event("links_reload", f"links file changed but cannot be read yet: {exc}", level="warning")
            return
        renewed = 0
        for name, entry in fresh.by_name().items():
            old = self.entries.get(name)
            if old is None or old.url == entry.url:
                continue
            self.entries[name] = entry
            renewed += 1
            a = self.active.get(name)
            if a is not None and a.sources and a.sources[0].is_meta:
                if a.status == "active" and a.gid:
                    self._swap_uri(a, old.url, entry.url)
                a.sources[0] = Source(META, entry.url)
            outcome = self.result.outcomes.get(name)
            if outcome is not None and outcome.status == "expired" and name in {p.name for p in self.plan.parts}:
                del self.result.outcomes[name]
                state.clear_failure(self.paths, "download", name)
                self.queue.append(name)
        self.links = fresh
        self.reporter.event("links_reload", f"fresh links file loaded: {renewed} link(s) renewed")

    def _swap_uri(self, a: _Active, old_url: str, new_url: str) -> None:
        client = self.daemon.api_client
        try:
            current = [u["uri"] for u in client.get_uris(a.gid)]
            old = [u for u in current if u == old_url] or [u for u in current if a.mixed_with is None or u != a.mixed_with.location]
            client.change_uri(a.gid, 1, old, [new_url], 0)  # delete every copy: aria2 keeps one per connection
        except Aria2RpcError:
            pass

    def _report(self, force: bool = False) -> None:
        snapshot = self.snapshot()
        self.reporter.transfer(snapshot)
        now = time.monotonic()
        if force or now - self.last_run_file >= RUN_FILE_EVERY:
            self.last_run_file = now
            self._write_run_file(snapshot)

    def snapshot(self) -> TransferSnapshot:
        parts: list[PartTransfer] = []
        completed = 0
        for name, o in self.result.outcomes.items():
            if o.status in ("complete", "already"):
                completed += o.size or 0
        for name, a in self.active.items():
            total = a.total or a.expected_size
            done = total if a.status == "checking" and total else a.completed
            completed += done or 0
            if a.queued and a.status == "active":
                continue  # in aria2's queue: not started, nothing to show yet
            parts.append(PartTransfer(name, "active" if a.status != "waiting" else "waiting", done or 0, total, a.speed, a.connections, a.status if a.status != "active" else ""))
        known = [p.size for p in self.plan.parts if p.action in ("fetch", "complete")]
        total_bytes = sum(s for s in known if s is not None) if known and all(s is not None for s in known) else None
        speed = sum(a.speed for a in self.active.values())
        now = time.monotonic()
        self.speed_samples.append((now, completed))
        rate = speed
        if len(self.speed_samples) > 1 and now - self.speed_samples[0][0] > 1:
            rate = max(0.0, (completed - self.speed_samples[0][1]) / (now - self.speed_samples[0][0]))
        eta = (total_bytes - completed) / rate if total_bytes and rate > 0 else None
        done = self.count_outcomes("complete", "already")
        failed = self.count_outcomes("failed", "expired", "locked")
        return TransferSnapshot(parts, completed, total_bytes, speed, eta, done, failed, len(self.plan.parts))

    def count_outcomes(self, *statuses: str) -> int:
        return sum(1 for o in self.result.outcomes.values() if o.status in statuses)

    def _write_run_file(self, snapshot: TransferSnapshot) -> None:
        record = {
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "command": "download",
            "started": time.time() - (time.monotonic() - self.started),
            "updated": time.time(),
            "links_expire_earliest": self.plan.expires_earliest,
            "links_expire_latest": self.plan.expires_latest,
            "rate_bytes_per_s": snapshot.speed,
            "completed_bytes": snapshot.completed_bytes,
            "total_bytes": snapshot.total_bytes,
            "active_parts": [{"name": p.name, "status": p.message or p.status, "completed": p.completed, "total": p.total,
                              "speed": p.speed, "source": self.active[p.name].serving if p.name in self.active else None}
                             for p in snapshot.parts],
        }
        try:
            state.atomic_write_json(self.paths.run_file(), record)
        except OSError:
            pass  # status is a convenience; a full disk must not stop the download


def _abort_stream(a: _Active) -> None:
    if a.stream is not None:
        a.stream.abort()
        a.stream = None


def completed_prefix(bitfield: str, piece_length: int, total: int) -> int:
    """Bytes at the start of the file that lie in complete pieces, from aria2's hex bitfield
    (the high bit of the first digit is piece 0)."""
    full = len(bitfield) - len(bitfield.lstrip("fF"))
    pieces = 4 * full
    if full < len(bitfield):
        digit = int(bitfield[full], 16)
        for bit in (8, 4, 2, 1):
            if not digit & bit:
                break
            pieces += 1
    return min(total, pieces * piece_length)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def expiry_message(plan: DownloadPlan) -> str:
    """'links expire 2026-12-01 10:00 UTC (in 5d02h)' for the plan's selected parts."""
    from sa1b_cli.console import human_duration

    if not plan.expires_earliest:
        return "the links carry no expiry (no oe= parameter)"
    earliest = datetime.fromisoformat(plan.expires_earliest)
    left = earliest.timestamp() - time.time()
    when = earliest.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if left <= 0 and any(p.source != META for p in plan.to_fetch):
        return f"links expired at {when} ({human_duration(-left)} ago): the mirrors serve the parts"
    if left <= 0:
        return f"links expired at {when} ({human_duration(-left)} ago): get a fresh links file from Meta's download page"
    return f"links expire at {when} (in {human_duration(left)})"
