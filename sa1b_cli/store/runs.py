"""Run files: each running download's live progress (``.sa1b/runs/<host>-<pid>.json``).

A run rewrites its own file every few seconds; ``status`` reads every run's file and marks one
stale when it was not refreshed lately or its process is gone. Readers tolerate any garbage.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sa1b_cli.store.atomic import atomic_write_json, read_json
from sa1b_cli.store.locks import pid_alive
from sa1b_cli.store.paths import RootPaths

STALE_RUN_SECONDS = 120.0
# Run-file part states that mean "this run is working on it" (downloading, hashing, unpacking).
LIVE_PART_STATES = ("active", "waiting", "copying", "checking", "extracting")


@dataclass
class ActivePart:
    name: str
    completed: int | None
    total: int | None
    speed: float | None
    source: str | None = None  # "meta" or a mirror's label


@dataclass
class RunInfo:
    """One download's live progress file (``.sa1b/runs/<host>-<pid>.json``)."""

    tag: str
    host: str | None
    pid: int | None
    command: str | None
    started: float | None
    updated: float | None
    age_seconds: float | None
    stale: bool
    stale_reason: str
    rate_bytes_per_s: float | None
    completed_bytes: int | None
    total_bytes: int | None
    links_expire_earliest: datetime | None
    links_expire_latest: datetime | None
    active_parts: list[ActivePart] = field(default_factory=list)
    published_eta_seconds: float | None = None  # the run's own ETA when its file was written

    @property
    def eta_seconds(self) -> float | None:
        """The run's own ETA (less the file's age) when it publishes one, so ``status`` and the download
        agree; else its bytes left at its rate."""
        if self.stale:
            return None
        if self.published_eta_seconds is not None:
            return max(0.0, self.published_eta_seconds - (self.age_seconds or 0.0))
        if not self.rate_bytes_per_s or self.total_bytes is None or self.completed_bytes is None:
            return None
        return max(0, self.total_bytes - self.completed_bytes) / self.rate_bytes_per_s

    @property
    def remaining_bytes(self) -> int | None:
        if self.total_bytes is None or self.completed_bytes is None:
            return None
        return max(0, self.total_bytes - self.completed_bytes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["links_expire_earliest"] = iso(self.links_expire_earliest)
        data["links_expire_latest"] = iso(self.links_expire_latest)
        data["eta_seconds"] = self.eta_seconds
        return data


def read_runs(paths: RootPaths, now: float) -> list[RunInfo]:
    """Every readable run file, marked stale when not refreshed lately or its process is gone."""
    runs: list[RunInfo] = []
    for entry in scan(paths.runs):
        if not entry.endswith(".json") or entry.startswith("."):
            continue
        data = read_json(paths.runs / entry)
        if isinstance(data, dict):
            runs.append(_run_info(entry[: -len(".json")], data, now))
    return sorted(runs, key=lambda r: r.tag)


def _run_info(tag: str, data: dict[str, Any], now: float) -> RunInfo:
    host = data.get("host") if isinstance(data.get("host"), str) else None
    pid = as_int(data.get("pid"))
    updated = as_float(data.get("updated"))
    age = None if updated is None else max(0.0, now - updated)
    stale_reason = _stale_reason(host, pid, age)
    return RunInfo(
        tag=tag, host=host, pid=pid, command=data.get("command") if isinstance(data.get("command"), str) else None,
        started=as_float(data.get("started")), updated=updated, age_seconds=age,
        stale=bool(stale_reason), stale_reason=stale_reason,
        rate_bytes_per_s=as_float(data.get("rate_bytes_per_s")), completed_bytes=as_int(data.get("completed_bytes")),
        total_bytes=as_int(data.get("total_bytes")),
        links_expire_earliest=as_datetime(data.get("links_expire_earliest")),
        links_expire_latest=as_datetime(data.get("links_expire_latest")),
        active_parts=_active_parts(data.get("active_parts")),
        published_eta_seconds=as_float(data.get("eta_seconds")),
    )


def _stale_reason(host: str | None, pid: int | None, age: float | None) -> str:
    """Why a run file no longer describes a running download ("" when it does)."""
    if age is None:
        return "no update time"
    if age > STALE_RUN_SECONDS:
        return f"not updated for {int(age)} s"
    if host == socket.gethostname() and pid is not None and not pid_alive(pid):
        return f"process {pid} is gone"
    return ""


def _active_parts(raw: Any) -> list[ActivePart]:
    """The parts a run is working on (queued entries are not)."""
    active: list[ActivePart] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item.get("status", "active") in LIVE_PART_STATES:
            source = item.get("source") if isinstance(item.get("source"), str) else None
            active.append(ActivePart(item["name"], as_int(item.get("completed")), as_int(item.get("total")),
                                     as_float(item.get("speed")), source))
    return active


def scan(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def write_run(paths: RootPaths, record: dict[str, Any]) -> None:
    """Publish this process's run file; best effort: status is a convenience, a full disk must not stop a run."""
    try:
        atomic_write_json(paths.run_file(), record)
    except OSError:
        pass


def remove_run(paths: RootPaths) -> None:
    try:
        paths.run_file().unlink()
    except OSError:
        pass
