"""What an extraction did: one result per part, a status each, and the run's summary and exit status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from sa1b_cli.errors import ExitStatus, worst


class PartStatus(str, enum.Enum):
    """What happened to one part (a ``str``, so it compares with and prints as its value)."""

    EXTRACTED = "extracted"  # unpacked by this call
    ALREADY = "already"  # a receipt and the files were there already
    FAILED = "failed"
    LOCKED = "locked"  # another live run holds the part's lock
    NOT_DOWNLOADED = "not_downloaded"  # no download receipt
    INTERRUPTED = "interrupted"  # the run was stopped; nothing of the part was kept

    def __str__(self) -> str:
        return self.value


EXTRACTED, ALREADY, FAILED, LOCKED, NOT_DOWNLOADED, INTERRUPTED = PartStatus

# The exit status each outcome stands for; a part done, already done or not downloaded adds none.
_EXIT_OF = {FAILED: ExitStatus.PARTS_FAILED, INTERRUPTED: ExitStatus.INTERRUPTED, LOCKED: ExitStatus.LOCKED}


@dataclass
class PartExtractResult:
    """What happened to one part."""

    part: str
    status: PartStatus
    message: str = ""
    files: int = 0
    images: int = 0
    annotations: int = 0
    bytes: int = 0
    seconds: float = 0.0
    tar_removed: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (EXTRACTED, ALREADY)


@dataclass
class ExtractResult:
    """A whole ``extract`` run."""

    layout: str
    parts: list[PartExtractResult] = field(default_factory=list)
    seconds: float = 0.0

    def with_status(self, status: PartStatus) -> list[PartExtractResult]:
        return [p for p in self.parts if p.status == status]

    @property
    def exit_status(self) -> ExitStatus:
        """The worst of the parts' outcomes by the one order every command uses (a stop outranks a failure)."""
        return worst(_EXIT_OF[p.status] for p in self.parts if p.status in _EXIT_OF)

    def summary(self) -> dict[str, Any]:
        """The numbers of the run, as the JSON summary record carries them."""
        extracted = self.with_status(EXTRACTED)
        return {
            "layout": self.layout,
            "selected": len(self.parts),
            "extracted": len(extracted),
            "already": len(self.with_status(ALREADY)),
            "failed": len(self.with_status(FAILED)),
            "locked": len(self.with_status(LOCKED)),
            "not_downloaded": len(self.with_status(NOT_DOWNLOADED)),
            "interrupted": len(self.with_status(INTERRUPTED)),
            "files": sum(p.files for p in extracted),
            "bytes": sum(p.bytes for p in extracted),
            "tars_removed": sum(p.tar_removed for p in self.parts),
            "seconds": round(self.seconds, 3),
            "failed_parts": [{"part": p.part, "reason": p.message} for p in self.with_status(FAILED)],
            "locked_parts": [{"part": p.part, "reason": p.message} for p in self.with_status(LOCKED)],
            "not_downloaded_parts": [p.part for p in self.with_status(NOT_DOWNLOADED)],
            "exit_code": int(self.exit_status),
        }
