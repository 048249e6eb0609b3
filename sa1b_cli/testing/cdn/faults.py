"""The faults the CDN can inject, and how one response's share of them is decided."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class Faults:
    """What to do wrong, for one file (or all files, as the default).

    Counters (``*_count``) are decremented in place as responses use them, so a
    test can read what is left; ``None`` as a count means "every response".
    Byte thresholds count body bytes *of that response*; ``corrupt_offsets`` are
    absolute file offsets.
    """

    #: Answer the next N requests (GET or HEAD) with 503 + ``Retry-After``.
    status_503_count: int = 0
    #: Seconds put in the ``Retry-After`` header of those 503s.
    retry_after: int = 1
    #: Close the connection after sending this many body bytes ...
    drop_after_bytes: int | None = None
    #: ... for this many GET responses (None: always).
    drop_count: int | None = 1
    #: Serve every GET as 200 with the full body and no ``Accept-Ranges``.
    ignore_range: bool = False
    #: Flip (xor 0xFF) the byte at each of these file offsets whenever it is sent ...
    corrupt_offsets: tuple[int, ...] = ()
    #: ... in this many GET responses that carry one of them (None: always).
    corrupt_count: int | None = None
    #: Throttle each response body to about this many bytes per second.
    rate_limit_bytes_per_s: float | None = None
    #: After this many body bytes, send nothing for ``stall_seconds`` without
    #: closing (``close()`` of the server ends the stall at once) ...
    stall_after_bytes: int | None = None
    stall_seconds: float = 3600.0
    #: ... for this many GET responses (None: always).
    stall_count: int | None = 1
    #: Advertise this ``Content-Length`` (GET and HEAD) instead of the true one;
    #: a GET then sends at most that many true bytes and closes the connection.
    wrong_length: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Faults:
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - known
        if bad:
            raise ValueError(f"unknown fault fields: {sorted(bad)}")
        kw = dict(d)
        if "corrupt_offsets" in kw:
            kw["corrupt_offsets"] = tuple(kw["corrupt_offsets"])
        return cls(**kw)


@dataclass
class FaultPlan:
    """The faults that apply to one response, decided (and counters used) up front."""

    retry_after: int | None = None  #: answer 503 with this ``Retry-After`` instead of the file
    drop_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    rate: float | None = None
    corrupt: tuple[int, ...] = ()
    wrong_length: int | None = None
    ignore_range: bool = False
    labels: list[str] = field(default_factory=list)

    def fit_body(self, start: int, end: int, to_send: int) -> int:
        """Keep the drop and stall that fall inside a body of ``to_send`` bytes (file offsets
        ``start..end``), label every fault it meets; returns how many bytes to send."""
        if self.drop_after is not None and self.drop_after < to_send:
            self.labels.append("drop")
            to_send = self.drop_after
        else:
            self.drop_after = None
        if self.stall_after is not None and self.stall_after < to_send:
            self.labels.append("stall")
        else:
            self.stall_after = None
        if self.rate:
            self.labels.append("rate_limit")
        if any(start <= o <= end for o in self.corrupt):
            self.labels.append("corrupt")
        return to_send

    @property
    def label(self) -> str | None:
        """What ``RequestRecord.fault`` says of this response."""
        return ",".join(self.labels) or None


class FaultTable:
    """The faults set per file name (``None``: the default), shared by the request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str | None, Faults] = {}

    def set(self, name: str | None, faults: Faults | None) -> None:
        with self._lock:
            if faults is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = faults

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def get(self, name: str | None) -> Faults | None:
        with self._lock:
            return self._faults.get(name, self._faults.get(None))

    def plan(self, name: str) -> FaultPlan:
        """Decide the faults for one request (using up a 503 if one is due)."""
        plan = FaultPlan()
        with self._lock:
            f = self._faults.get(name, self._faults.get(None))
            if f is None:
                return plan
            if f.status_503_count > 0:
                f.status_503_count -= 1
                plan.labels.append("503")
                plan.retry_after = f.retry_after
                return plan
            plan.ignore_range = f.ignore_range
            plan.rate = f.rate_limit_bytes_per_s
            plan.corrupt = tuple(f.corrupt_offsets) if f.corrupt_count is None or f.corrupt_count > 0 else ()
            plan.wrong_length = f.wrong_length
            if f.drop_after_bytes is not None and (f.drop_count is None or f.drop_count > 0):
                plan.drop_after = f.drop_after_bytes
            if f.stall_after_bytes is not None and (f.stall_count is None or f.stall_count > 0):
                plan.stall_after = f.stall_after_bytes
                plan.stall_seconds = f.stall_seconds
        return plan

    def consume(self, name: str, plan: FaultPlan) -> None:
        """Use up one drop/stall/corrupt count (only for GETs that actually get a body)."""
        with self._lock:
            f = self._faults.get(name, self._faults.get(None))
            if f is None:
                return
            if plan.drop_after is not None and f.drop_count is not None:
                f.drop_count = max(0, f.drop_count - 1)
            if plan.stall_after is not None and f.stall_count is not None:
                f.stall_count = max(0, f.stall_count - 1)
            if "corrupt" in plan.labels and f.corrupt_count is not None:
                f.corrupt_count = max(0, f.corrupt_count - 1)
