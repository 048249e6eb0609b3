"""How a run tells the user how parts ended: one line per distinct reason, not one per part.

A links file expiring under a 1,000-part run ends hundreds of parts with the same words; a person
needs them once, with how many and which. Each part's own event still goes out at the ``detail``
level (kept in ``--json``, left out of the terminal and the log).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sa1b_cli.download.model import Outcome, PartOutcome
from sa1b_cli.events import Reporter

GROUP_SETTLE_SECONDS = 2.0  # a burst of same-reason endings is said once, this long after its last part


def group_by_reason(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(reason, part names) for each distinct reason, in the order the reasons first came."""
    groups: dict[str, list[str]] = {}
    for name, reason in pairs:
        groups.setdefault(reason, []).append(name)
    return list(groups.items())


def group_line(names: list[str], reason: str) -> str:
    """'sa_000012.tar: link expired …' for one part; '783 parts: link expired … (sa_000012.tar … sa_000999.tar)'."""
    if len(names) == 1:
        return f"{names[0]}: {reason}"
    shown = ", ".join(names) if len(names) == 2 else f"{names[0]} … {names[-1]}"
    return f"{len(names)} parts: {reason} ({shown})"


class OutcomeReports:
    """Says how parts ended: at once for a success, grouped by reason for parts that failed, expired or
    were locked (said when a burst settles, and at the end of the run)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.pending: list[PartOutcome] = []
        self.last_added = 0.0

    def report(self, outcome: PartOutcome) -> None:
        if outcome.status in (Outcome.FAILED, Outcome.EXPIRED, Outcome.LOCKED):
            self.reporter.event(f"part_{outcome.status.value}", f"{outcome.name}: {outcome.reason}", level="detail",
                                part=outcome.name, reason=outcome.reason)
            self.pending.append(outcome)
            self.last_added = time.monotonic()
        else:
            report_done(self.reporter, outcome)

    def flush(self, force: bool = False) -> None:
        """Say the pending endings, one line per status and reason, once no part joined them for a while."""
        if not self.pending or (not force and time.monotonic() - self.last_added < GROUP_SETTLE_SECONDS):
            return
        pending, self.pending = self.pending, []
        for status in (Outcome.FAILED, Outcome.EXPIRED, Outcome.LOCKED):
            for reason, names in group_by_reason((o.name, o.reason) for o in pending if o.status == status):
                level = "error" if status == Outcome.FAILED else "warning"
                shown = f"skipped, {reason}" if status == Outcome.LOCKED else reason
                self.reporter.event(f"parts_{status.value}", group_line(names, shown), level=level, parts=names)


def report_done(reporter: Reporter, outcome: PartOutcome) -> None:
    """The event that says how a part that got its bytes ended."""
    name = outcome.name
    if outcome.status == Outcome.COMPLETE and outcome.extracted is False:
        reporter.event("part_done", f"{name}: complete and checked; {outcome.reason}", level="error", part=name,
                       size=outcome.size)
    elif outcome.status == Outcome.COMPLETE:
        reporter.event("part_done", f"{name}: complete and checked", part=name, size=outcome.size)
    elif outcome.extracted is not None:
        done = "extracted now" if outcome.extracted else outcome.reason
        reporter.event("part_already", f"{name}: already downloaded; {done}",
                       level="info" if outcome.extracted else "error", part=name)
    elif outcome.reason:
        reporter.event("part_already", f"{name}: {outcome.reason}", part=name)
    else:
        reporter.event("part_already", f"{name}: already complete", part=name)
