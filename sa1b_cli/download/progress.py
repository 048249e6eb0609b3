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
FAILED = (Outcome.FAILED, Outcome.EXPIRED)
RATE_WINDOW_SECONDS = 5.0


class RateMeter:
    """The download rate: network bytes over a sliding window of a few seconds, as aria2 measures it.

    Counted from the bytes that crossed the network, never from how much of the parts is done: a
    resumed part joining the run, or a part handed from aria2 to the check, moves the done bytes in
    a jump that is no transfer (it drew spikes of 200+ MiB/s at part hand-over).
    """

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])  # nothing fetched before the run

    def add(self, fetched: int) -> float:
        """Record the bytes fetched so far; the rate over the last ``window`` seconds (since the start at first)."""
        now = time.monotonic()
        self.samples.append((now, fetched))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        first_time, first_fetched = self.samples[0]
        return max(0.0, (fetched - first_fetched) / (now - first_time)) if now > first_time else 0.0


class RunProgress:
    """Sends snapshots to the reporter and keeps the run file fresh; the run file goes with :meth:`close`."""

    def __init__(self, paths: RootPaths, plan: DownloadPlan, reporter: Reporter) -> None:
        self.paths = paths
        self.plan = plan
        self.reporter = reporter
        self.started = time.monotonic()
        self.last_run_file = 0.0
        self.rate = RateMeter()
        known = [p.size for p in plan.parts if p.action in (PlanAction.FETCH, PlanAction.COMPLETE)]
        self.total_bytes = sum(s for s in known if s is not None) if known and None not in known else None

    def report(self, outcomes: Mapping[str, PartOutcome], active: Mapping[str, ActivePart], fetched: int,
               locked: int, force: bool = False) -> None:
        snapshot = self.snapshot(outcomes, active, fetched, locked)
        self.reporter.transfer(snapshot)
        now = time.monotonic()
        if force or now - self.last_run_file >= RUN_FILE_EVERY:
            self.last_run_file = now
            write_run(self.paths, self._run_record(snapshot, active))

    def close(self) -> None:
        remove_run(self.paths)

    def snapshot(self, outcomes: Mapping[str, PartOutcome], active: Mapping[str, ActivePart], fetched: int,
                 locked: int) -> TransferSnapshot:
        """The run now; ``fetched``: bytes that crossed the network so far, ``locked``: parts another run holds
        that this run still waits for."""
        completed = sum(o.size or 0 for o in outcomes.values() if o.status in DONE)
        completed += sum(_bytes_done(a) for a in active.values())
        rate = self.rate.add(fetched)
        eta = (self.total_bytes - completed) / rate if self.total_bytes and rate > 0 else None
        parts = [_transfer(name, a) for name, a in active.items() if not (a.queued and a.step == Step.ACTIVE)]
        return TransferSnapshot(parts, completed, self.total_bytes, rate, eta, _count(outcomes, DONE),
                                _count(outcomes, FAILED), len(self.plan.parts), locked + _count(outcomes, (Outcome.LOCKED,)))

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
