"""What a run shows while it works: the live view's snapshot, and the run file ``status`` reads
(``.sa1b/runs/<host>-<pid>.json``, through :mod:`sa1b_cli.store.runs`)."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Mapping

from sa1b_cli.download.active import ActivePart, Step
from sa1b_cli.download.model import DownloadPlan, Outcome, PartOutcome, PlanAction
from sa1b_cli.events import PartTransfer, Reporter, TransferSnapshot
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.runs import remove_run, write_run

RUN_FILE_EVERY = 2.0
DONE = (Outcome.COMPLETE, Outcome.ALREADY)
NOT_DONE = (Outcome.FAILED, Outcome.EXPIRED, Outcome.LOCKED)


class RunProgress:
    """Sends snapshots to the reporter and keeps the run file fresh; the run file goes with :meth:`close`."""

    def __init__(self, paths: RootPaths, plan: DownloadPlan, reporter: Reporter) -> None:
        self.paths = paths
        self.plan = plan
        self.reporter = reporter
        self.started = time.monotonic()
        self.last_run_file = 0.0
        self.speed_samples: deque[tuple[float, int]] = deque(maxlen=120)
        known = [p.size for p in plan.parts if p.action in (PlanAction.FETCH, PlanAction.COMPLETE)]
        self.total_bytes = sum(s for s in known if s is not None) if known and None not in known else None

    def report(self, outcomes: Mapping[str, PartOutcome], active: Mapping[str, ActivePart], force: bool = False) -> None:
        snapshot = self.snapshot(outcomes, active)
        self.reporter.transfer(snapshot)
        now = time.monotonic()
        if force or now - self.last_run_file >= RUN_FILE_EVERY:
            self.last_run_file = now
            write_run(self.paths, self._run_record(snapshot, active))

    def close(self) -> None:
        remove_run(self.paths)

    def snapshot(self, outcomes: Mapping[str, PartOutcome], active: Mapping[str, ActivePart]) -> TransferSnapshot:
        completed = sum(o.size or 0 for o in outcomes.values() if o.status in DONE)
        completed += sum(_bytes_done(a) for a in active.values())
        speed = sum(a.speed for a in active.values())
        rate = self._rate(completed, speed)
        eta = (self.total_bytes - completed) / rate if self.total_bytes and rate > 0 else None
        parts = [_transfer(name, a) for name, a in active.items() if not (a.queued and a.step == Step.ACTIVE)]
        return TransferSnapshot(parts, completed, self.total_bytes, speed, eta, _count(outcomes, DONE),
                                _count(outcomes, NOT_DONE), len(self.plan.parts))

    def _rate(self, completed: int, speed: float) -> float:
        """Bytes per second over the last samples (aria2's momentary speed until there are some)."""
        now = time.monotonic()
        self.speed_samples.append((now, completed))
        first_time, first_completed = self.speed_samples[0]
        if len(self.speed_samples) > 1 and now - first_time > 1:
            return max(0.0, (completed - first_completed) / (now - first_time))
        return speed

    def _run_record(self, snapshot: TransferSnapshot, active: Mapping[str, ActivePart]) -> dict[str, object]:
        return {
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "command": "download",
            "started": time.time() - (time.monotonic() - self.started),
            "updated": time.time(),
            "links_expire_earliest": self.plan.expires_earliest,
            "links_expire_latest": self.plan.expires_latest,
            "rate_bytes_per_s": snapshot.speed,
            "eta_seconds": snapshot.eta_seconds,  # status shows this run's own ETA, not one of its own
            "completed_bytes": snapshot.completed_bytes,
            "total_bytes": snapshot.total_bytes,
            "active_parts": [{"name": p.name, "status": p.message or p.status, "completed": p.completed, "total": p.total,
                              "speed": p.speed, "source": active[p.name].serving if p.name in active else None}
                             for p in snapshot.parts],
        }


def _count(outcomes: Mapping[str, PartOutcome], statuses: tuple[Outcome, ...]) -> int:
    return sum(1 for o in outcomes.values() if o.status in statuses)


def _transfer(name: str, a: ActivePart) -> PartTransfer:
    """How the live view shows an active part (one in aria2's queue, not started yet, is not shown)."""
    status = Step.WAITING.value if a.step == Step.WAITING else Step.ACTIVE.value
    return PartTransfer(name, status, _bytes_done(a), a.total or a.expected_size, a.speed, a.connections,
                        "" if a.step == Step.ACTIVE else a.step.value)


def _bytes_done(a: ActivePart) -> int:
    """A part being checked counts as fetched whole."""
    total = a.total or a.expected_size
    return (total if a.step == Step.CHECKING and total else a.completed) or 0


def report_outcome(reporter: Reporter, outcome: PartOutcome) -> None:
    """The event that says how a part ended."""
    name, status = outcome.name, outcome.status
    if status in (Outcome.FAILED, Outcome.EXPIRED):
        reporter.event(f"part_{status.value}", f"{name}: {outcome.reason}",
                       level="error" if status == Outcome.FAILED else "warning", part=name)
    elif status == Outcome.LOCKED:
        reporter.event("part_locked", f"{name}: skipped, {outcome.reason}", level="warning", part=name)
    elif status == Outcome.COMPLETE:
        reporter.event("part_done", f"{name}: complete and checked", part=name, size=outcome.size)
    elif status == Outcome.ALREADY and outcome.extracted is not None:
        done = "extracted now" if outcome.extracted else outcome.reason
        reporter.event("part_already", f"{name}: already downloaded; {done}",
                       level="info" if outcome.extracted else "error", part=name)
    elif status == Outcome.ALREADY:
        reporter.event("part_already", f"{name}: already complete (finished by another run)", part=name)
