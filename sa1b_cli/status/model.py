"""The report model: one part as the state files describe it, and the whole job at one instant."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sa1b_cli.store.parts import Phase
from sa1b_cli.store.runs import RunInfo, iso

EXPECTED_PAIRS = 11_185_362
PART_STATES = tuple(phase.value for phase in Phase)


@dataclass
class PartStatus:
    """One part as the state files describe it."""

    name: str
    state: str  # one of PART_STATES
    size: int | None = None  # full size, when known
    completed_bytes: int | None = None  # bytes fetched (size when downloaded; None when unknown)
    downloaded: bool = False
    active_run: str | None = None
    speed: float | None = None
    download_failure: str | None = None
    download_problem: str | None = None  # why a download receipt no longer counts (the tar changed or went)
    extracted: bool = False
    extract_failure: str | None = None
    images: int | None = None
    annotations: int | None = None
    verified: bool | None = None  # None: not verified; True: ok; False: problems found
    verify_problems: str | None = None
    source: str | None = None  # where its bytes came from: "meta" or a mirror's label

    @property
    def percent(self) -> float | None:
        if self.downloaded:
            return 100.0
        if self.completed_bytes is None or not self.size:
            return None
        return min(100.0, 100.0 * self.completed_bytes / self.size)

    @property
    def remaining_bytes(self) -> int | None:
        if self.downloaded:
            return 0
        if self.size is None:
            return None
        return max(0, self.size - (self.completed_bytes or 0))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["percent"] = self.percent
        return data


@dataclass
class StatusReport:
    """The whole job at one instant."""

    root: str
    now: datetime
    expected_pairs: int
    parts: list[PartStatus]
    runs: list[RunInfo]
    links_path: str | None
    links_expire_earliest: datetime | None
    links_expire_latest: datetime | None
    links_expiry_source: str | None
    tars_disk_bytes: int = 0  # space the files in tars/ take (allocated blocks: partial preallocated files count in full)
    part_total: int | None = None  # parts of the job: the links file's, else the last part list a download recorded
    past_rate_bytes_per_s: float | None = None  # the last finished runs' average rate

    def count(self, part_state: str) -> int:
        return sum(1 for p in self.parts if p.state == part_state)

    @property
    def counts(self) -> dict[str, int]:
        return {s: self.count(s) for s in PART_STATES}

    @property
    def images_extracted(self) -> int:
        return sum(p.images or 0 for p in self.parts if p.extracted)

    @property
    def annotations_extracted(self) -> int:
        return sum(p.annotations or 0 for p in self.parts if p.extracted)

    @property
    def downloaded_parts(self) -> int:
        return sum(1 for p in self.parts if p.downloaded)

    @property
    def downloaded_bytes(self) -> int:
        """Sizes of the downloaded parts (from their receipts)."""
        return sum(p.size or 0 for p in self.parts if p.downloaded)

    @property
    def partial_bytes(self) -> int:
        """Bytes fetched so far of parts not yet complete (where known)."""
        return sum(p.completed_bytes or 0 for p in self.parts if not p.downloaded)

    @property
    def fetched_bytes(self) -> int:
        return self.downloaded_bytes + self.partial_bytes

    @property
    def remaining_known_bytes(self) -> int:
        return sum(p.remaining_bytes or 0 for p in self.parts)

    @property
    def unknown_size_parts(self) -> int:
        """Parts not downloaded whose size nobody recorded yet."""
        return sum(1 for p in self.parts if p.remaining_bytes is None)

    @property
    def remaining_bytes(self) -> int | None:
        """Bytes still to fetch; None when a size is unknown (never guessed) or, without a part list
        (the links file, or one a download recorded), when parts nobody has touched yet may exist."""
        if self.part_total is None or self.unknown_size_parts:
            return None
        return self.remaining_known_bytes

    @property
    def total_bytes(self) -> int | None:
        """The job's size: fetched plus still to fetch, when both are known."""
        remaining = self.remaining_bytes
        return None if remaining is None else self.fetched_bytes + remaining

    @property
    def live_runs(self) -> list[RunInfo]:
        return [r for r in self.runs if not r.stale]

    @property
    def rate_bytes_per_s(self) -> float | None:
        """The current download rate: the sum over live runs (None when nothing runs)."""
        rates = [r.rate_bytes_per_s for r in self.live_runs if r.rate_bytes_per_s is not None]
        return sum(rates) if rates else None

    @property
    def eta(self) -> tuple[float | None, str]:
        """(seconds, what they cover). While downloads run: theirs when they cover everything left (one
        ETA, the one the download shows), else everything left at their rate; between runs: everything
        left at the last runs' average rate."""
        if not self.live_runs:
            return self._eta_between_runs()
        rate = self.rate_bytes_per_s
        if not rate:
            return None, "no download rate yet"
        runs_eta = self._live_runs_eta()
        remaining = self.remaining_bytes
        if remaining is None:
            if runs_eta is not None:
                return runs_eta, "running downloads only; other parts' sizes unknown"
            return None, "sizes of the remaining parts unknown"
        if runs_eta is not None and self._live_runs_cover(remaining):
            return runs_eta, "everything left to fetch, as the running download says"
        return remaining / rate, "everything left to fetch"

    def _eta_between_runs(self) -> tuple[float | None, str]:
        remaining = self.remaining_bytes
        if remaining is None or not self.past_rate_bytes_per_s:
            return None, "no download running"
        return remaining / self.past_rate_bytes_per_s, "everything left to fetch, at the last runs' average rate"

    def _live_runs_eta(self) -> float | None:
        etas = [r.eta_seconds for r in self.live_runs]
        return max(e for e in etas if e is not None) if etas and all(e is not None for e in etas) else None

    def _live_runs_cover(self, remaining: int) -> bool:
        left = [r.remaining_bytes for r in self.live_runs]
        return all(n is not None for n in left) and sum(n or 0 for n in left) >= remaining

    @property
    def links_expired(self) -> bool | None:
        if self.links_expire_earliest is None:
            return None
        return self.links_expire_earliest <= self.now

    def to_dict(self) -> dict[str, Any]:
        eta_seconds, eta_basis = self.eta
        return {
            "root": self.root,
            "time": iso(self.now),
            "expected_pairs": self.expected_pairs,
            "part_count": len(self.parts),
            "part_total": self.part_total,
            "counts": self.counts,
            "images_extracted": self.images_extracted,
            "annotations_extracted": self.annotations_extracted,
            "downloaded_parts": self.downloaded_parts,
            "downloaded_bytes": self.downloaded_bytes,
            "partial_bytes": self.partial_bytes,
            "fetched_bytes": self.fetched_bytes,
            "total_bytes": self.total_bytes,
            "tars_disk_bytes": self.tars_disk_bytes,
            "remaining_bytes": self.remaining_bytes,
            "remaining_known_bytes": self.remaining_known_bytes,
            "unknown_size_parts": self.unknown_size_parts,
            "rate_bytes_per_s": self.rate_bytes_per_s,
            "past_rate_bytes_per_s": self.past_rate_bytes_per_s,
            "eta_seconds": eta_seconds,
            "eta_basis": eta_basis,
            "links_path": self.links_path,
            "links_expire_earliest": iso(self.links_expire_earliest),
            "links_expire_latest": iso(self.links_expire_latest),
            "links_expiry_source": self.links_expiry_source,
            "links_expired": self.links_expired,
            "runs": [r.to_dict() for r in self.runs],
            "parts": [p.to_dict() for p in self.parts],
        }
