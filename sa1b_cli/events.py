"""How the core reports progress without printing.

Core functions take a ``Reporter``; ``console.py`` implements it for a TTY (rich and
tqdm), for cron logs (plain timestamped lines) and for machines (JSON lines).
Library users and tests pass ``NullReporter`` or a recording one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class PartTransfer:
    """One part's transfer state, as the live download view shows it."""

    name: str
    status: str  # queued | active | done | failed | expired | skipped
    completed: int = 0
    total: int | None = None
    speed: float = 0.0  # bytes/s
    connections: int = 0
    message: str = ""


@dataclass
class TransferSnapshot:
    """The whole download at one instant."""

    parts: list[PartTransfer] = field(default_factory=list)
    completed_bytes: int = 0
    total_bytes: int | None = None
    speed: float = 0.0
    eta_seconds: float | None = None
    done: int = 0
    failed: int = 0
    total_parts: int = 0
    locked: int = 0  # held by another run (waited for, or skipped): not failed


class FileProgress(Protocol):
    """A counter of files (and bytes) for extract and verify."""

    def advance(self, files: int = 0, nbytes: int = 0) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    """What the core tells the user while it works."""

    def event(self, kind: str, message: str, *, level: str = "info", **data: Any) -> None:
        """A discrete happening: part started/done/failed, a warning, a plan line."""

    def transfer(self, snapshot: TransferSnapshot) -> None:
        """The current download state; the console decides how often to show it."""

    def files(self, label: str, total_files: int | None, total_bytes: int | None = None) -> FileProgress:
        """Start a file-count progress display."""


class _NullProgress:
    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class NullReporter:
    """Reports nothing (library use)."""

    def event(self, kind: str, message: str, *, level: str = "info", **data: Any) -> None:
        pass

    def transfer(self, snapshot: TransferSnapshot) -> None:
        pass

    def files(self, label: str, total_files: int | None, total_bytes: int | None = None) -> FileProgress:
        return _NullProgress()


class RecordingReporter(NullReporter):
    """Keeps every event (tests, and the demo's summary)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.snapshots: list[TransferSnapshot] = []

    def event(self, kind: str, message: str, *, level: str = "info", **data: Any) -> None:
        self.events.append((kind, message, {"level": level, **data}))

    def transfer(self, snapshot: TransferSnapshot) -> None:
        self.snapshots.append(snapshot)

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]
