"""One run of a plan: the part queue fed to aria2c, polled, retried and failed over between sources.

Parts are fed to aria2c at most twice ``jobs`` at a time; a part's lock is taken only when it is
fed, so several hosts over one shared ROOT share the work part by part and never fetch a part
twice. A finished part goes to the checker in a worker thread; only its receipt marks it
downloaded.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sa1b_cli.download.active import ActivePart, Step, completed_prefix
from sa1b_cli.download.checker import CheckStopped, PartChecker
from sa1b_cli.download.failover import Failover, Next, after_error
from sa1b_cli.download.files import OnDisk, prepare_files, resumable_bytes
from sa1b_cli.download.model import (DONE_BY_ANOTHER_RUN, DownloadOptions, DownloadPlan, DownloadResult, Outcome, PartOutcome,
                                    PlanAction)
from sa1b_cli.download.plan import expired_reason
from sa1b_cli.download.progress import RunProgress
from sa1b_cli.download.relink import LinksWatcher
from sa1b_cli.download.reports import OutcomeReports
from sa1b_cli.download.session import Aria2Session
from sa1b_cli.download.waits import LockedParts
from sa1b_cli.errors import Aria2RpcError, Interrupted
from sa1b_cli.events import Reporter
from sa1b_cli.integrity import StreamingCheck
from sa1b_cli.links import LinkEntry, LinksFile, redact_text
from sa1b_cli.sources import META, Source, part_sources
from sa1b_cli.store.knowledge import record_part_list, record_run_rate, record_sizes
from sa1b_cli.store.locks import LockKeeper, PartLock
from sa1b_cli.store.parts import part_state
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import ReceiptStore, Stage

LOST_LOCK = "lock lost: this run stalled past the lock timeout and another run took the part over"


class DownloadRun:
    """One execution of a plan against one aria2c daemon."""

    def __init__(
        self, plan: DownloadPlan, links: LinksFile, paths: RootPaths, options: DownloadOptions, reporter: Reporter,
    ) -> None:
        self.plan = plan
        self.links_watcher = LinksWatcher(Path(links.path), reporter, options.watch_links)
        self.paths = paths
        self.receipts = ReceiptStore(paths)
        self.options = options
        self.reporter = reporter
        self.result = DownloadResult(plan=plan, extracting=bool(options.extract_layout))
        self.entries = links.by_name()
        self.queue: deque[str] = deque(p.name for p in plan.to_fetch)
        self.sizes = {p.name: p.size for p in plan.parts}
        record_sizes(paths, self.sizes)  # kept for status: how much of the job is left, between runs too
        record_part_list(paths, [e.name for e in links.parts])
        self.active: dict[str, ActivePart] = {}
        self.checks: dict[str, Future[PartOutcome]] = {}
        self.stop_event = threading.Event()
        self.wake = threading.Event()  # set when a part completes or fails in aria2, or a check ends: poll now
        self.checker = PartChecker(paths, options, reporter, self.stop_event)
        self.progress = RunProgress(paths, plan, reporter)
        self.reports = OutcomeReports(reporter)
        self.locked = LockedParts(paths)
        self.failover = Failover(paths, options, reporter, self._start, self._finish)
        self.disk_full = False
        self.started = time.monotonic()
        for p in plan.parts:
            self._take_over_planned(p.name, p.action, p.reason, p.size)

    def _take_over_planned(self, name: str, action: PlanAction, reason: str, size: int | None) -> None:
        """Settle what the plan already decided: a downloaded part (queued only to extract it), an expired or
        missing one."""
        if action == PlanAction.COMPLETE and self.checker.extraction_pending(name):
            self.queue.append(name)
        elif action == PlanAction.COMPLETE:
            self.result.outcomes[name] = PartOutcome(name, Outcome.ALREADY, size=size)
        elif action == PlanAction.EXPIRED:  # said with the other parts whose links did the same, in one line
            self._record(PartOutcome(name, Outcome.EXPIRED, reason))
        elif action in (PlanAction.MISSING, PlanAction.UNREACHABLE):
            self._record(PartOutcome(name, Outcome.FAILED, reason))

    # The loop -------------------------------------------------------------------------------
    def run(self) -> DownloadResult:
        if not self.queue:
            self.reports.flush(force=True)
            self.result.elapsed = time.monotonic() - self.started
            return self.result
        workers = max(1, min(self.options.jobs, os.cpu_count() or 1))
        interrupted = False
        with LockKeeper(self.options.lock_refresh_every) as keeper, ThreadPoolExecutor(workers, thread_name_prefix="sa1b-check") as pool:
            self.keeper, self.pool = keeper, pool
            self.session = Aria2Session(self.paths, self.options, self.wake.set)
            try:
                with self.session.head_start():  # locks, file checks and gids settled as for a part added later
                    self._fill()
                self.session.start()
                self._loop()
            except KeyboardInterrupt:
                interrupted = True
                self.reporter.event("interrupted", "stopping: saving aria2 control files, parts resume on the next run", level="warning")
            finally:
                self.stop_event.set()
                self.session.stop()
                self._settle_checks()
                for name in list(self.active):
                    self._release(name)
                for name, reason in self.locked.give_up().items():
                    self._record(PartOutcome(name, Outcome.LOCKED, reason))
                self.reports.flush(force=True)
                self.progress.close()
        self.result.elapsed = time.monotonic() - self.started
        record_run_rate(self.paths, self.result.bytes_fetched, self.result.elapsed)
        if interrupted:
            raise Interrupted("interrupted; state saved, run the same command again to resume")
        return self.result

    def _settle_checks(self) -> None:
        """Record the checks still running when the run stops (a stopped check records nothing)."""
        for name, future in list(self.checks.items()):
            try:
                self._record(future.result())
            except CheckStopped:
                pass
            except Exception as exc:  # noqa: BLE001 - report, never hide
                self._record(PartOutcome(name, Outcome.FAILED, f"check failed: {exc}"))

    def _loop(self) -> None:
        while self._work_left():
            self._maybe_reload_links()
            self._drop_lost_locks()
            self.queue.extend(self.locked.due())
            self._fill()
            self._start_due()
            self._poll()
            self._collect_checks()
            self.reports.flush()
            self._report_progress()
            if self._work_left():
                self.wake.wait(self.options.poll_interval)
                self.wake.clear()
        self._report_progress(force=True)

    def _work_left(self) -> bool:
        """Parts to fetch, parts in hand, or parts another download run is working on (waited for: it may
        finish them, or fail them for this run to try)."""
        return bool(self.queue or self.active) or self.locked.worth_waiting()

    def _report_progress(self, force: bool = False) -> None:
        fetched = self.result.bytes_fetched + sum(a.fetched for a in self.active.values())
        self.progress.report(self.result.outcomes, self.active, fetched, len(self.locked), force=force)

    def _drop_lost_locks(self) -> None:
        """Another run broke our lock (we stalled past its timeout): stop writing that part at once."""
        for name in self.keeper.take_lost():
            a = self.active.get(name)
            if a is None or a.step not in (Step.ACTIVE, Step.WAITING):
                continue
            if a.gid:
                self.session.remove(a.gid)
            a.abort_stream()
            del self.active[name]
            self._record(PartOutcome(name, Outcome.LOCKED, LOST_LOCK))

    # Feeding --------------------------------------------------------------------------------
    def _fill(self) -> None:
        # Keep twice --jobs parts in aria2: it runs --jobs of them (max-concurrent-downloads) and starts
        # the next the moment one finishes, instead of waiting for our next poll.
        while self.queue and sum(1 for a in self.active.values() if a.downloading) < 2 * self.options.jobs:
            name = self.queue.popleft()
            lock = self._lock(name)
            if lock is not None:
                self._take(name, lock)

    def _lock(self, name: str) -> PartLock | None:
        """The part's lock, or None when the part is recorded as not attempted, failed or locked."""
        if self.disk_full:
            self._record(PartOutcome(name, Outcome.FAILED, "not attempted: the disk is full"))
            return None
        lock = PartLock(self.paths.lock(name), stale_after=self.options.lock_stale_after)
        try:
            holder = lock.try_acquire()
        except OSError as exc:
            self.disk_full = self.disk_full or exc.errno == errno.ENOSPC
            self._record(PartOutcome(name, Outcome.FAILED, f"cannot create its lock file: {exc.strerror or exc}"))
            return None
        if holder is not None:
            self.locked.add(name, holder)
            return None
        self.keeper.add(name, lock)
        return lock

    def _take(self, name: str, lock: PartLock) -> None:
        """Work on a locked part: extract it, skip it (another host finished it meanwhile) or fetch it."""
        active = ActivePart(entry=self.entries[name], lock=lock, expected_size=self.sizes.get(name))
        downloaded = part_state(self.receipts, name).downloaded
        if downloaded and self.checker.extraction_pending(name):  # downloaded by an earlier run, not extracted yet
            active.step = Step.EXTRACTING
            self.active[name] = active
            self._submit(name, self.checker.extract_only, name, self.sizes.get(name))
        elif downloaded:
            self.keeper.release(name)
            self._record(PartOutcome(name, Outcome.ALREADY, DONE_BY_ANOTHER_RUN, size=self.sizes.get(name)))
        else:
            planned = self.plan.sources.get(name)
            if planned is not None and planned.sources:
                active.sources, active.mixed_with = list(planned.sources), planned.mixed_with
            else:  # queued again after a fresh links file renewed its link
                active.sources = part_sources(self.entries[name], name, self.options.mirrors, meta_usable=True)
            self.active[name] = active
            self._start(name, active)

    def _start(self, name: str, a: ActivePart) -> None:
        """Hand a part to aria2 (or to the copy from a local mirror, or to the check) once its files are safe to resume."""
        a.abort_stream()  # whatever it read belongs to an earlier attempt: read this one from zero
        a.entry = self.entries[name]
        source = self._serving_source(name, a)
        if source is None:
            return
        options: dict[str, Any] = {"out": name}
        on_disk = prepare_files(self.paths, name, a, self.reporter)
        if on_disk is OnDisk.CHECK:
            a.step = Step.CHECKING
            self._submit(name, self.checker.check, name, a, True)
        elif source.local:
            a.step = Step.COPYING
            self._submit(name, self.checker.copy_then_check, name, a)
        else:
            if on_disk is OnDisk.CONTINUE:
                options["continue"] = "true"
            self._add(name, a, source, options)

    def _serving_source(self, name: str, a: ActivePart) -> Source | None:
        """The source to fetch from now; None when Meta's link expired meanwhile (the part moved on)."""
        if not a.sources:
            a.sources = [Source(META, a.entry.url)]
        if not a.sources[0].is_meta:
            return a.sources[0]
        a.sources[0] = Source(META, a.entry.url)  # a fresh links file may have renewed it
        expires = a.entry.expires_at
        now = time.time()
        if expires is not None and expires.timestamp() <= now + self.options.expiry_margin:
            why = expired_reason(expires.timestamp(), now, self.options.expiry_margin)
            self.failover.next_source(name, a, PartOutcome(name, Outcome.EXPIRED, f"{why}; get a fresh links file"))
            return None
        return a.sources[0]

    def _add(self, name: str, a: ActivePart, source: Source, options: dict[str, Any]) -> None:
        tar = self.paths.tar(name)
        if source.headers:
            options["header"] = list(source.headers)  # aria2 takes a list: one header each
        if a.ignores_range:
            # The server ignores Range: the bytes on disk cannot be continued. Start over on one
            # connection (aria2c 1.37 aborts on always-resume=false with a control file present).
            tar.unlink(missing_ok=True)
            self.paths.control_file(name).unlink(missing_ok=True)
            options["split"] = "1"
        # aria2's default piece order: its completed prefix grows all along on one connection, and for the
        # first of several. (stream-piece-selector=inorder would grow it on every connection, but aria2 then
        # re-requests each segment and drops connections with bytes in flight: measured 2% of the bytes
        # sent again at 25 MB/s per connection, 19% on unthrottled loopback, and a lower rate. geom grows it
        # too, with 0.1% sent again, but one 107 MB part on 8 connections at 0.7 MB/s each took 27.3 s
        # instead of 20.0 s: the late pieces end up on few connections.)
        streamed = self.options.check_while_downloading and name.endswith(".tar") and not self.checker.extraction_pending(name)
        resumed_from = resumable_bytes(self.paths, name)
        uris = [source.location] + ([a.mixed_with.location] if a.mixed_with is not None else [])
        if len(uris) > 1:  # --connections to each source: the point of fetching from two
            options["split"] = str(self.options.connections * len(uris))
        try:
            a.gid = self.session.add(uris, options)
        except Aria2RpcError as exc:
            self._daemon_trouble(exc)
            return
        a.step = Step.ACTIVE
        if streamed:
            a.stream = StreamingCheck(tar, self.checker.stop_check, md5=self.checker.want_md5(name))
        # Bytes crossed the network in this run from what was on disk when aria2 was handed the part.
        a.seen = resumed_from

    # Polling --------------------------------------------------------------------------------
    def _start_due(self) -> None:
        """Start again the parts whose back-off is over."""
        now = time.time()
        for name, a in list(self.active.items()):
            if a.step == Step.WAITING and now >= a.not_before:
                self._start(name, a)

    def _poll(self) -> None:
        downloading = [(name, a) for name, a in self.active.items() if a.step == Step.ACTIVE and a.gid]
        if not downloading:
            return
        try:
            replies = self.session.statuses([a.gid for _, a in downloading])
        except Aria2RpcError as exc:
            self._daemon_trouble(exc)
            return
        for (name, a), reply in zip(downloading, replies):
            if isinstance(reply, dict) and "code" in reply and "gid" not in reply:
                self.failover.retry(name, a, f"aria2 lost the download ({reply.get('message', '')})", code="")
                continue
            self._update(name, a, reply[0] if isinstance(reply, list) else reply)

    def _update(self, name: str, a: ActivePart, status: dict[str, Any]) -> None:
        a.completed = int(status.get("completedLength", 0))
        a.count_fetched(a.completed)
        total = int(status.get("totalLength", 0))
        a.total = total or a.expected_size
        a.speed = float(status.get("downloadSpeed", 0))
        a.connections = int(status.get("connections", 0))
        aria2_state = status.get("status")
        a.queued = aria2_state in ("waiting", "paused")
        if a.stream is not None and total:
            a.stream.advance(completed_prefix(str(status.get("bitfield", "")), int(status.get("pieceLength", 0)), total))
        if aria2_state == "complete":
            self.session.forget(a.gid)
            self._downloaded(name, a, total)
        elif aria2_state in ("error", "removed"):
            self.session.forget(a.gid)
            self._handle_error(name, a, str(status.get("errorCode", "")), redact_text(str(status.get("errorMessage", ""))))

    def _downloaded(self, name: str, a: ActivePart, total: int) -> None:
        """aria2 has every byte: check the part (unless the server's size changed under it)."""
        if total and a.expected_size is not None and total != a.expected_size:
            self._finish(name, PartOutcome(name, Outcome.FAILED, f"size changed on the server: {total} bytes, HEAD said {a.expected_size}"))
            return
        a.expected_size = a.expected_size or total or None
        a.step = Step.CHECKING
        self._submit(name, self.checker.check, name, a, False)

    def _handle_error(self, name: str, a: ActivePart, code: str, message: str) -> None:
        verdict = after_error(code, message, a, self.paths, name)
        if verdict.next is Next.ASK_AGAIN:
            # A mirror's short-lived signed redirect target expired: asking the mirror again gives a fresh one.
            a.redirect_restarts += 1
            self.reporter.event("source", f"{name}: {a.sources[0].label} answered HTTP 403 (its signed redirect expired?); "
                                "asking it again, progress is kept", level="warning")
            self._start(name, a)
        elif verdict.next is Next.RESTART_FROM_ZERO:
            self.reporter.event("no_range", f"{name}: the server ignored Range; restarting this part from zero on one connection", level="warning")
            a.ignores_range = True
            self._start(name, a)
        elif verdict.next is Next.RETRY:
            self.failover.retry(name, a, verdict.reason, code)
        elif verdict.next is Next.NEXT_SOURCE:
            self.failover.next_source(name, a, PartOutcome(name, verdict.outcome, verdict.reason))
        else:
            self.disk_full = self.disk_full or verdict.next is Next.DISK_FULL
            self._finish(name, PartOutcome(name, verdict.outcome, verdict.reason))

    def _daemon_trouble(self, exc: BaseException) -> None:
        """RPC failed: if aria2c died, restart it and re-add what was running (control files keep progress)."""
        self.session.recover(exc, self.reporter)
        for name, a in list(self.active.items()):
            if a.step == Step.ACTIVE:
                a.gid = ""
                self._start(name, a)

    # Checking -------------------------------------------------------------------------------
    def _submit(self, name: str, work: Callable[..., PartOutcome], *args: Any) -> None:
        """Run a check (or extraction) in the pool; its end wakes the loop, which hands the part on at once."""
        future = self.pool.submit(work, *args)
        future.add_done_callback(lambda _future: self.wake.set())
        self.checks[name] = future

    def _collect_checks(self) -> None:
        for name, future in list(self.checks.items()):
            if not future.done():
                continue
            del self.checks[name]
            try:
                outcome = future.result()
            except CheckStopped:
                continue
            except Exception as exc:  # noqa: BLE001 - a failed check fails the part, never the run
                outcome = PartOutcome(name, Outcome.FAILED, f"check failed: {type(exc).__name__}: {exc}")
            self._checked(name, outcome)

    def _checked(self, name: str, outcome: PartOutcome) -> None:
        """Hand a checked part on: fetch it again (wrong or damaged bytes) or record how it ended."""
        a = self.active.get(name)
        if outcome.wrong_bytes and a is not None:
            self.failover.after_wrong_bytes(name, a, outcome)
        elif outcome.status == Outcome.REFETCH and a is not None:
            self.failover.refetch(name, a, outcome)
        else:
            self._finish(name, outcome)

    # Bookkeeping ----------------------------------------------------------------------------
    def _finish(self, name: str, outcome: PartOutcome) -> None:
        self._release(name)
        self._record(outcome)

    def _release(self, name: str) -> None:
        """Let a part go, whatever its end; the bytes it fetched count, failed or not."""
        a = self.active.pop(name, None)
        if a is not None:
            a.abort_stream()
            self.result.bytes_fetched += a.fetched
            self.keeper.release(name)

    def _record(self, outcome: PartOutcome) -> None:
        self.result.outcomes[outcome.name] = outcome
        if outcome.status in (Outcome.FAILED, Outcome.EXPIRED):
            self.receipts.write_failure(Stage.DOWNLOAD, outcome.name, outcome.reason)  # best effort
        self.reports.report(outcome)

    # A fresh links file ---------------------------------------------------------------------
    def _maybe_reload_links(self) -> None:
        """A fresh links file saved over the old one mid-run: swap URLs in place, retry expired parts."""
        fresh = self.links_watcher.fresh()
        if fresh is None:
            return
        renewed = 0
        for name, entry in fresh.by_name().items():
            old = self.entries.get(name)
            if old is not None and old.url != entry.url:
                self._renew(name, old, entry)
                renewed += 1
        self.reporter.event("links_reload", f"fresh links file loaded: {renewed} link(s) renewed")

    def _renew(self, name: str, old: LinkEntry, entry: LinkEntry) -> None:
        """Use a part's renewed link: in aria2 at once if Meta serves it now, and queue it again if it expired."""
        self.entries[name] = entry
        a = self.active.get(name)
        if a is not None and a.sources and a.sources[0].is_meta:
            if a.step == Step.ACTIVE and a.gid:
                self.session.swap_uri(a.gid, old.url, entry.url, a.mixed_with.location if a.mixed_with else None)
            a.sources[0] = Source(META, entry.url)
        outcome = self.result.outcomes.get(name)
        if outcome is not None and outcome.status == Outcome.EXPIRED and name in self.sizes:
            del self.result.outcomes[name]
            self.receipts.clear_failure(Stage.DOWNLOAD, name)
            self.queue.append(name)

