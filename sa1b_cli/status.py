"""Where a long job stands, read from the state files alone.

``status`` takes no lock and never writes, so it can run at any time, on any host
sharing the ROOT, while downloads and extractions are running. Everything it reads
may be rewritten or removed under it (receipts renamed into place, aria2 control
files saved every few seconds, run files refreshed, partial files deleted when a
part completes); every read tolerates that and an unreadable file counts as absent.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sa1b_cli.store import legacy as state
from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.console import human_bytes, human_duration
from sa1b_cli.linkinfo import describe_expiry
from sa1b_cli.links import PART_NAME, LinksFile
from sa1b_cli.store.paths import STAGES, RootPaths
from sa1b_cli.store.runs import ActivePart, RunInfo, as_int as _as_int, iso as _iso, read_runs, scan as _scan

EXPECTED_PAIRS = 11_185_362


# --------------------------------------------------------------------------- parts


PART_STATES = (
    "verified", "verify problems", "extracted", "extract failed", "downloaded",
    "downloading", "download failed", "partial", "unconfirmed", "pending",
)


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


def _failure_reason(record: dict[str, Any] | None) -> str | None:
    if not isinstance(record, dict):
        return None
    reason = record.get("reason")
    return str(reason) if reason else "failed (no reason recorded)"


def _verify_outcome(receipt: dict[str, Any]) -> tuple[bool, str | None]:
    """(ok, problem summary) from a verify receipt: its ``ok`` flag (else: no problems listed),
    ``problems`` (the first few, as text), ``problems_total`` and ``status``."""
    listed = receipt.get("problems") if isinstance(receipt.get("problems"), list) else []
    total = _first_int(receipt.get("problems_total"), len(listed))
    ok = receipt.get("ok")
    if not isinstance(ok, bool):
        ok = not total
    if ok:
        return True, None
    status = receipt.get("status")
    parts = [status] if isinstance(status, str) and status else []
    if total:
        parts.append(f"{total} problem(s)" + (f", first: {listed[0]}" if listed else ""))
    return False, ": ".join(parts) or "problems found"


# --------------------------------------------------------------------------- report


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
        """Bytes still to fetch; None when a size is unknown (never guessed) or, without the
        links file, when parts nobody has touched yet may exist."""
        if self.links_path is None or self.unknown_size_parts:
            return None
        return self.remaining_known_bytes

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
        """(seconds, what they cover): all remaining bytes when known, else the running downloads only."""
        rate = self.rate_bytes_per_s
        if not rate:
            return None, "no download running" if not self.live_runs else "no download rate yet"
        if self.remaining_bytes is not None:
            return self.remaining_bytes / rate, "everything left to fetch"
        run_etas = [r.eta_seconds for r in self.live_runs]
        if run_etas and all(e is not None for e in run_etas):
            return max(e for e in run_etas if e is not None), "running downloads only; other parts' sizes unknown"
        return None, "sizes of the remaining parts unknown"

    @property
    def links_expired(self) -> bool | None:
        if self.links_expire_earliest is None:
            return None
        return self.links_expire_earliest <= self.now

    def to_dict(self) -> dict[str, Any]:
        eta_seconds, eta_basis = self.eta
        return {
            "root": self.root,
            "time": _iso(self.now),
            "expected_pairs": self.expected_pairs,
            "part_count": len(self.parts),
            "counts": self.counts,
            "images_extracted": self.images_extracted,
            "annotations_extracted": self.annotations_extracted,
            "downloaded_bytes": self.downloaded_bytes,
            "partial_bytes": self.partial_bytes,
            "fetched_bytes": self.fetched_bytes,
            "tars_disk_bytes": self.tars_disk_bytes,
            "remaining_bytes": self.remaining_bytes,
            "remaining_known_bytes": self.remaining_known_bytes,
            "unknown_size_parts": self.unknown_size_parts,
            "rate_bytes_per_s": self.rate_bytes_per_s,
            "eta_seconds": eta_seconds,
            "eta_basis": eta_basis,
            "links_path": self.links_path,
            "links_expire_earliest": _iso(self.links_expire_earliest),
            "links_expire_latest": _iso(self.links_expire_latest),
            "links_expiry_source": self.links_expiry_source,
            "links_expired": self.links_expired,
            "runs": [r.to_dict() for r in self.runs],
            "parts": [p.to_dict() for p in self.parts],
        }


def collect_status(
    paths: RootPaths, links: LinksFile | None = None, expected: int = EXPECTED_PAIRS, now: float | None = None
) -> StatusReport:
    """Read receipts, failures, partial files and run files under ``paths`` into a report.

    The parts listed are the union of the links file's parts (when given) and every
    part named by a receipt, a failure record, a file in ``tars/`` or a live run.
    """
    now = time.time() if now is None else now
    receipts = {stage: state.list_receipts(paths, stage) for stage in STAGES}
    failed = {stage: _failure_names(paths, stage) for stage in ("download", "extract")}
    runs = read_runs(paths, now)
    tar_files, control_files = _tar_dir_names(paths)
    known_extras = {e.name for e in links.extras} if links else set()
    on_disk = {n for n in tar_files | control_files if PART_NAME.match(n) or n in known_extras}
    active = {part.name: (run, part) for run in runs if not run.stale for part in run.active_parts}
    names = set(on_disk).union(*receipts.values(), *failed.values(), active)
    if links is not None:
        names.update(e.name for e in links.parts)
    parts = [
        _part_status(paths, name, receipts, active.get(name), name in tar_files, name in control_files)
        for name in sorted(names)
    ]
    earliest, latest, source = _links_expiry(links, runs)
    return StatusReport(
        root=str(paths.root), now=datetime.fromtimestamp(now, tz=timezone.utc), expected_pairs=expected,
        parts=parts, runs=runs, links_path=links.path if links else None,
        links_expire_earliest=earliest, links_expire_latest=latest, links_expiry_source=source,
        tars_disk_bytes=_disk_usage(paths.tars),
    )


def _part_status(
    paths: RootPaths,
    name: str,
    receipts: dict[str, dict[str, dict[str, Any]]],
    active: tuple[RunInfo, ActivePart] | None,
    has_data_file: bool,
    has_control_file: bool,
) -> PartStatus:
    part = PartStatus(name=name, state="pending")
    download = receipts["download"].get(name)
    extract = receipts["extract"].get(name)
    verify = receipts["verify"].get(name)
    part.download_failure = _failure_reason(state.read_failure(paths, "download", name))
    part.extract_failure = _failure_reason(state.read_failure(paths, "extract", name))
    if download is not None and download.get("complete"):
        part.downloaded = True
        part.size = _as_int(download.get("size"))
        part.completed_bytes = part.size
        part.download_failure = None
        part.source = download.get("source") if isinstance(download.get("source"), str) else "meta"
    elif active is not None:
        run, progress = active
        part.active_run, part.speed, part.source = run.tag, progress.speed, progress.source
        part.size, part.completed_bytes = progress.total, progress.completed
    if not part.downloaded and has_control_file and (part.completed_bytes is None or part.size is None):
        _fill_from_control_file(paths, part, has_data_file)
    if extract is not None:
        part.extracted = True
        part.extract_failure = None
        part.images = _first_int(extract.get("images"), (download or {}).get("images"))
        part.annotations = _first_int(extract.get("annotations"), (download or {}).get("annotations"))
    if verify is not None:
        part.verified, part.verify_problems = _verify_outcome(verify)
    part.state = _overall_state(part, has_data_file, has_control_file)
    return part


def _fill_from_control_file(paths: RootPaths, part: PartStatus, has_data_file: bool) -> None:
    """Estimate a partial part's progress from aria2's control file, capped by the data file's size."""
    info = read_control_file(paths.control_file(part.name))
    if info is None:
        return
    part.size = part.size if part.size is not None else info.total_length
    if part.completed_bytes is None:
        data_size = _file_size(paths.tar(part.name)) if has_data_file else None
        part.completed_bytes = min(info.completed_length, data_size or 0)


def _overall_state(part: PartStatus, has_data_file: bool, has_control_file: bool) -> str:
    if part.verified is not None:
        return "verified" if part.verified else "verify problems"
    if part.extracted:
        return "extracted"
    if part.extract_failure:
        return "extract failed"
    if part.downloaded:
        return "downloaded"
    if part.active_run:
        return "downloading"
    if part.download_failure:
        return "download failed"
    if has_control_file:
        return "partial"
    if has_data_file:
        return "unconfirmed"  # a file in tars/ without a receipt: being checked, or put there by hand
    return "pending"


def _failure_names(paths: RootPaths, stage: str) -> set[str]:
    """Names of the parts with a failure record for ``stage``."""
    directory = paths.failure(stage, "x").parent
    names: set[str] = set()
    for entry in _scan(directory):
        if entry.endswith(".json") and not entry.startswith("."):
            record = state.read_json(directory / entry)
            stem = entry[: -len(".json")]
            fallback = f"{stem}.tar" if PART_NAME.match(f"{stem}.tar") else stem
            names.add(str(record.get("part", fallback)) if isinstance(record, dict) else fallback)
    return names


def _tar_dir_names(paths: RootPaths) -> tuple[set[str], set[str]]:
    """(data file names, names that have an aria2 control file) in ``tars/``."""
    data_files: set[str] = set()
    controlled: set[str] = set()
    for entry in _scan(paths.tars):
        if entry.startswith("."):
            continue
        if entry.endswith(".aria2"):
            controlled.add(entry[: -len(".aria2")])
        else:
            data_files.add(entry)
    return data_files, controlled


def _links_expiry(links: LinksFile | None, runs: list[RunInfo]) -> tuple[datetime | None, datetime | None, str | None]:
    """From the links file when given, else from the live runs, else from the latest stale run."""
    if links is not None:
        earliest, latest = links.expiry_range()
        return earliest, latest, f"links file {links.path}"
    live = [r for r in runs if not r.stale and r.links_expire_earliest is not None]
    if live:
        return (
            min(r.links_expire_earliest for r in live if r.links_expire_earliest),
            max((r.links_expire_latest or r.links_expire_earliest) for r in live if r.links_expire_earliest),
            "live run " + ", ".join(r.tag for r in live),
        )
    stale = sorted((r for r in runs if r.links_expire_earliest is not None), key=lambda r: r.updated or 0.0)
    if stale:
        last = stale[-1]
        return last.links_expire_earliest, last.links_expire_latest or last.links_expire_earliest, f"stale run {last.tag}"
    return None, None, None


# --------------------------------------------------------------------------- rows for the console

ATTENTION_STATES = ("downloading", "partial", "download failed", "extract failed", "verify problems", "unconfirmed")


def summary_rows(report: StatusReport) -> list[list[str]]:
    """The job in (item, value) rows: parts, pairs, bytes, rate, ETA, links, runs."""
    now = report.now
    rows = [["root", report.root]]
    if report.parts:
        states = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
        rows.append(["parts", f"{len(report.parts)}: {states}"])
    else:
        rows.append(["parts", "none found (no receipts, nothing in tars/); pass --links FILE to list the parts to fetch"])
    for label, done in (("images", report.images_extracted), ("annotations", report.annotations_extracted)):
        share = 100.0 * done / report.expected_pairs
        rows.append([label, f"{done:,} of {report.expected_pairs:,} extracted ({share:.2f}%)"])
    partial = [p for p in report.parts if not p.downloaded and p.completed_bytes]
    fetched = f"{human_bytes(report.fetched_bytes)} ({sum(p.downloaded for p in report.parts)} parts complete"
    fetched += f", {human_bytes(report.partial_bytes)} in {len(partial)} partial)" if partial else ")"
    rows.append(["fetched", fetched])
    sources = Counter(p.source for p in report.parts if p.downloaded and p.source)
    if set(sources) - {"meta"}:
        rows.append(["sources", ", ".join(f"{count} from {source}" for source, count in sorted(sources.items()))])
    rows.append(["on disk", f"{human_bytes(report.tars_disk_bytes)} in tars/"])
    rows.append(["to fetch", _remaining_text(report)])
    rate = report.rate_bytes_per_s
    live = len(report.live_runs)
    rows.append(["rate", f"{human_bytes(rate)}/s from {live} live run(s)" if rate is not None else "no download running"])
    eta_seconds, basis = report.eta
    rows.append(["ETA", f"{human_duration(eta_seconds)} ({basis})" if eta_seconds is not None else f"unknown ({basis})"])
    if report.links_expire_earliest is not None:
        text = f"earliest {describe_expiry(report.links_expire_earliest, now)}"
        if report.links_expire_latest and report.links_expire_latest != report.links_expire_earliest:
            text += f", latest {describe_expiry(report.links_expire_latest, now)}"
        rows.append(["links expire", f"{text}; from {report.links_expiry_source}"])
    else:
        rows.append(["links expire", "unknown (no live download; pass --links FILE)"])
    for run in report.runs:
        rows.append([f"run {run.tag}", _run_text(run)])
    return rows


def _remaining_text(report: StatusReport) -> str:
    if report.remaining_bytes is not None:
        return human_bytes(report.remaining_bytes)
    known = f"{human_bytes(report.remaining_known_bytes)} left in parts of known size"
    if report.links_path is None:
        return f"unknown without --links (parts not started yet are not known); {known}"
    return f"unknown: {report.unknown_size_parts} part(s) of unknown size + {known}"


def _run_text(run: RunInfo) -> str:
    if run.stale:
        return f"stale run ({run.stale_reason})"
    text = f"{run.command or 'run'}, updated {human_duration(run.age_seconds)} ago, {len(run.active_parts)} active part(s)"
    if run.rate_bytes_per_s is not None:
        text += f", {human_bytes(run.rate_bytes_per_s)}/s"
    if run.completed_bytes is not None:
        text += f", {human_bytes(run.completed_bytes)} of {human_bytes(run.total_bytes)}"
    return text


def part_rows(report: StatusReport, show_all: bool = False) -> list[list[str]]:
    """One row per part (only those in progress or in trouble unless ``show_all``)."""
    rows = []
    for part in report.parts:
        if not show_all and part.state not in ATTENTION_STATES:
            continue
        percent = part.percent
        progress = f"{percent:.1f}%" if percent is not None else ("? %" if part.state in ("partial", "downloading") else "")
        rows.append([part.name, part.state, progress, human_bytes(part.size) if part.size is not None else "?", _part_detail(part)])
    return rows


def _part_detail(part: PartStatus) -> str:
    details = []
    if part.active_run:
        details.append(f"in run {part.active_run}" + (f" at {human_bytes(part.speed)}/s" if part.speed else ""))
    if part.source and part.source != "meta":
        details.append(f"from {part.source}")
    if part.download_failure:
        details.append(f"download: {part.download_failure}")
    if part.extract_failure:
        details.append(f"extract: {part.extract_failure}")
    if part.verify_problems:
        details.append(f"verify: {part.verify_problems}")
    if part.extracted and part.images is not None:
        details.append(f"{part.images:,} images")
    return "; ".join(details)


# --------------------------------------------------------------------------- tolerant readers




def _disk_usage(directory: Path) -> int:
    """Bytes allocated to the files directly in ``directory``."""
    total = 0
    for entry in _scan(directory):
        try:
            total += os.stat(directory / entry).st_blocks * 512
        except OSError:
            continue
    return total


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None






def _first_int(*values: Any) -> int | None:
    for value in values:
        number = _as_int(value)
        if number is not None:
            return number
    return None



