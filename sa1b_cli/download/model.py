"""What a download run is asked to do and what it reports: options, the plan, each part's outcome.

Statuses are ``str`` enums, so the JSON summary and the plan keep the strings they always had.
"""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sa1b_cli.checksums import ChecksumList
from sa1b_cli.errors import ExitStatus, UsageError, worst
from sa1b_cli.sources import PartSources, Mirror

_ARIA2_SIZE = re.compile(r"^(\d+)([KkMm]?)$")
MIN_SPLIT_RANGE = (1 << 20, 1 << 30)  # what aria2c accepts for --min-split-size
DONE_BY_ANOTHER_RUN = "done by another run"  # a part this run waited for, found downloaded by the run that held it


class TextEnum(str, enum.Enum):
    """An enum that reads, prints and serialises as its string value."""

    def __str__(self) -> str:
        return str(self.value)


class PlanAction(TextEnum):
    """What the plan does with a selected part."""

    FETCH = "fetch"
    COMPLETE = "complete"  # downloaded before: nothing to fetch
    EXPIRED = "expired"  # no usable source, and Meta's link expired: a fresh links file helps
    MISSING = "missing"  # no source has it
    UNREACHABLE = "unreachable"  # every probe of Meta's server failed to connect, and no mirror serves it


class Outcome(TextEnum):
    """How a part ended in a run (REFETCH only passes from a check back to the run)."""

    COMPLETE = "complete"
    ALREADY = "already"
    FAILED = "failed"
    EXPIRED = "expired"
    LOCKED = "locked"
    REFETCH = "refetch"


@dataclass
class DownloadOptions:
    """What the user asked for; the CLI passes every field in (options and SA1B_* variables are read there)."""

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
    action: PlanAction
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
        return [p for p in self.parts if p.action == PlanAction.FETCH]

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
    status: Outcome
    reason: str = ""
    size: int | None = None
    extracted: bool | None = None
    wrong_bytes: bool = False  # the bytes read differ from the checksum list or reference


@dataclass
class DownloadResult:
    plan: DownloadPlan
    outcomes: dict[str, PartOutcome] = field(default_factory=dict)
    elapsed: float = 0.0
    bytes_fetched: int = 0  # what crossed the network in this run, for parts that failed too
    extracting: bool = False  # --extract: the summary says what extraction did

    def count(self, *statuses: Outcome | str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status in statuses)

    @property
    def exit_status(self) -> ExitStatus:
        """Each part's own code, the worst of them by the one order of ``errors.SEVERITY``."""
        return worst(_exit_of(o) for o in self.outcomes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_status),
            "elapsed_seconds": round(self.elapsed, 3),
            "bytes_fetched": self.bytes_fetched,
            "parts": {name: asdict(o) for name, o in sorted(self.outcomes.items())},
            "complete": self.count(Outcome.COMPLETE, Outcome.ALREADY),
            "failed": self.count(Outcome.FAILED),
            "wrong_bytes": sum(1 for o in self.outcomes.values() if o.wrong_bytes),
            "expired": self.count(Outcome.EXPIRED),
            "locked": self.count(Outcome.LOCKED),
            "done_by_another_run": sum(1 for o in self.outcomes.values() if o.reason == DONE_BY_ANOTHER_RUN),
            "extracted": sum(1 for o in self.outcomes.values() if o.extracted is True),
            "extract_failed": sum(1 for o in self.outcomes.values() if o.extracted is False),
            "rate_bytes_per_s": round(self.bytes_fetched / self.elapsed) if self.elapsed > 0 else 0,
            "selected": len(self.plan.parts),
        }


_EXIT_OF_OUTCOME = {Outcome.FAILED: ExitStatus.PARTS_FAILED, Outcome.EXPIRED: ExitStatus.LINKS_EXPIRED,
                    Outcome.LOCKED: ExitStatus.LOCKED}


def _exit_of(outcome: PartOutcome) -> ExitStatus:
    """What one part's ending means for the run's exit code."""
    if outcome.wrong_bytes:
        return ExitStatus.WRONG_BYTES
    if outcome.extracted is False:
        return ExitStatus.PARTS_FAILED
    return _EXIT_OF_OUTCOME.get(outcome.status, ExitStatus.OK)
