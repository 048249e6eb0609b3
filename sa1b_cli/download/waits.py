"""Parts another run holds: tried again now and then, and waited for while a live download run works on them.

Two runs started together over one ROOT split the parts by lock. Were each to give up at once on the
parts the other holds, both would end "locked" (exit 4) with everything downloaded between them. A
locked part is tried again every few seconds; with nothing else left to do, the run waits for it as
long as its holder is a download run that is still working (its run file is fresh), then finds it
downloaded ("done by another run") or fetches it itself (the other run failed it). A part held by
anything else (an extract run, a lock with no run behind it) ends "locked".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sa1b_cli.store.locks import LockHolder
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.runs import read_runs

RETRY_EVERY_SECONDS = 2.0
RUN_FILE_GRACE_SECONDS = 5.0  # a run writes its run file just after it takes its first locks


@dataclass
class _Held:
    holder: LockHolder
    since: float  # when this run first found it locked
    tried: float  # when this run last tried its lock


class LockedParts:
    """The parts this run found locked by another one, and whether they are worth waiting for."""

    def __init__(self, paths: RootPaths) -> None:
        self.paths = paths
        self.held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self.held)

    def add(self, name: str, holder: LockHolder) -> None:
        now = time.monotonic()
        since = self.held[name].since if name in self.held else now
        self.held[name] = _Held(holder, since, now)

    def due(self) -> list[str]:
        """Parts to try again now (their lock may be free); they leave the set until found locked again."""
        now = time.monotonic()
        names = [name for name, held in self.held.items() if now - held.tried >= RETRY_EVERY_SECONDS]
        for name in names:
            del self.held[name]
        return names

    def worth_waiting(self) -> bool:
        """Whether any part is held by a download run that is still working (or may not have written its
        run file yet); the others are given up on."""
        if not self.held:
            return False
        now = time.time()
        working = {(run.host, run.pid) for run in read_runs(self.paths, now)
                   if not run.stale and run.command == "download"}
        return any((held.holder.host, held.holder.pid) in working or now - held.holder.started < RUN_FILE_GRACE_SECONDS
                   for held in self.held.values())

    def give_up(self) -> dict[str, str]:
        """Each part still locked, with who holds it; the set is emptied."""
        reasons = {name: f"locked by {held.holder.describe()}" for name, held in self.held.items()}
        self.held.clear()
        return reasons
