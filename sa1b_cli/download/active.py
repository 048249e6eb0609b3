"""A part a run is working on: its lock, its sources, and how far aria2 (or the check) has got."""

from __future__ import annotations

from dataclasses import dataclass, field

from sa1b_cli.download.model import TextEnum
from sa1b_cli.integrity import StreamingCheck
from sa1b_cli.links import LinkEntry
from sa1b_cli.sources import META, Source, serving_label
from sa1b_cli.store.locks import PartLock


class Step(TextEnum):
    """What the run is doing with an active part (as the run file and the live view show it)."""

    ACTIVE = "active"  # in aria2
    WAITING = "waiting"  # backing off before a retry
    COPYING = "copying"  # from a local mirror
    CHECKING = "checking"
    EXTRACTING = "extracting"


@dataclass
class ActivePart:
    entry: LinkEntry
    lock: PartLock
    expected_size: int | None
    attempts: int = 1
    gid: str = ""
    completed: int = 0
    total: int | None = None
    speed: float = 0.0
    connections: int = 0
    step: Step = Step.ACTIVE
    seen: int = 0  # the most aria2 has reported complete in this attempt (at first: what it resumes from)
    fetched: int = 0  # bytes that crossed the network for this part in this run, every attempt
    ignores_range: bool = False  # the server ignored Range: start over on one connection
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

    @property
    def downloading(self) -> bool:
        return self.step in (Step.ACTIVE, Step.WAITING, Step.COPYING)

    def count_fetched(self, completed: int) -> None:
        """Add what aria2 got beyond the most it had. A part queued in aria2, or just started, reports 0 until
        aria2 loads its control file: the bytes on disk then reappear, and are no transfer."""
        self.fetched += max(0, completed - self.seen)
        self.seen = max(self.seen, completed)

    def abort_stream(self) -> None:
        """Drop the streaming check: what it read belongs to an attempt that ended."""
        if self.stream is not None:
            self.stream.abort()
            self.stream = None


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
