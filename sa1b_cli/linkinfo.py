"""Inspect a links file before a 10 TB job, check it against the CDN, compare two of them.

Links expire within weeks and Meta rotates them, so the questions before (and
during) a long download are: what is in this file, when does it stop working, do
the links answer, and what does a fresh file change for a download in progress.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from sa1b_cli.console import human_bytes
from sa1b_cli.errors import ExitStatus, worst
from sa1b_cli.links import LinkEntry, LinksFile, cut_link_warnings
from sa1b_cli.probe import PROBE_STATES, ProbeResult

EXPIRY_SOON_SECONDS = 24 * 3600


def format_utc(when: datetime | None) -> str:
    if when is None:
        return "unknown"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative_time(when: datetime, now: datetime) -> str:
    """``in 12 days`` / ``expired 3 days ago`` (expiry phrasing: the past means expired)."""
    seconds = (when - now).total_seconds()
    span = _span(abs(seconds))
    return f"in {span}" if seconds > 0 else f"expired {span} ago"


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size or (unit == "minute" and seconds >= size):
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"


def describe_expiry(when: datetime | None, now: datetime) -> str:
    """``2026-08-06 06:07:50 UTC (in 12 days)``."""
    if when is None:
        return "unknown (no 'oe' parameter in the URLs)"
    return f"{format_utc(when)} ({relative_time(when, now)})"


def compress_numbers(numbers: list[int]) -> str:
    """``[5, 17, 18, 19]`` -> ``5, 17-19``."""
    spans: list[str] = []
    start = previous = None
    for number in sorted(numbers):
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            spans.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    if start is not None:
        spans.append(str(start) if start == previous else f"{start}-{previous}")
    return ", ".join(spans)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


@dataclass
class LinksReport:
    """What a links file holds and how long it will work."""

    path: str
    now: datetime
    parts: list[str]
    extras: list[str]
    earliest_expiry: datetime | None
    latest_expiry: datetime | None
    expired: list[str]
    without_expiry: list[str]
    missing_part_numbers: list[int]
    hosts: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def all_expired(self) -> bool:
        return bool(self.expired) and len(self.expired) == len(self.parts) + len(self.extras)

    @property
    def exit_status(self) -> ExitStatus:
        """LINKS_EXPIRED when no link of the file works any more (get a fresh one); OK otherwise (warnings say
        which expired)."""
        return ExitStatus.LINKS_EXPIRED if self.all_expired else ExitStatus.OK

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("now", "earliest_expiry", "latest_expiry"):
            data[key] = _iso(getattr(self, key))
        data["part_count"] = len(self.parts)
        data["extra_count"] = len(self.extras)
        data["all_expired"] = self.all_expired
        data["exit_code"] = int(self.exit_status)
        return data


def inspect_links(links: LinksFile, now: datetime | None = None) -> LinksReport:
    """Summarise ``links`` at ``now``: counts, expiry, gaps in the part numbering."""
    now = now or datetime.now(timezone.utc)
    earliest, latest = links.expiry_range()
    expired = [e.name for e in links.entries if e.expires_at is not None and e.expires_at <= now]
    without_expiry = [e.name for e in links.entries if e.expires_at is None]
    missing = _missing_part_numbers(links)
    hosts = sorted({urlsplit(e.url).hostname or "" for e in links.entries})
    report = LinksReport(
        path=links.path, now=now, parts=[e.name for e in links.parts], extras=[e.name for e in links.extras],
        earliest_expiry=earliest, latest_expiry=latest, expired=expired, without_expiry=without_expiry,
        missing_part_numbers=missing, hosts=hosts,
    )
    report.warnings = _inspection_warnings(report, len(links.entries), links) + cut_link_warnings(links)
    return report


def _missing_part_numbers(links: LinksFile) -> list[int]:
    """Part numbers below the highest listed that the file lacks (a truncated copy)."""
    present = {i for i in (e.part_index for e in links.entries) if i is not None}
    return [i for i in range(0, max(present) + 1) if i not in present] if present else []


def _inspection_warnings(report: LinksReport, total_rows: int, links: LinksFile) -> list[str]:
    warnings: list[str] = []
    if report.missing_part_numbers:
        count = len(report.missing_part_numbers)
        warnings.append(
            f"part numbers missing from the links file: {compress_numbers(report.missing_part_numbers)} "
            f"({count} part{'s' if count != 1 else ''}); a truncated copy of Meta's file?"
        )
    if report.expired and len(report.expired) == total_rows:
        warnings.append(
            f"all {total_rows} links have expired ({relative_time(report.latest_expiry, report.now)}): "
            "get a fresh links file from Meta's download page"
            if report.latest_expiry
            else f"all {total_rows} links have expired: get a fresh links file"
        )
    elif report.expired:
        warnings.append(f"{len(report.expired)} of {total_rows} links have expired: get a fresh links file")
    elif report.earliest_expiry is not None and (report.earliest_expiry - report.now).total_seconds() < EXPIRY_SOON_SECONDS:
        warnings.append(f"links expire soon ({relative_time(report.earliest_expiry, report.now)}); a full download takes days")
    if report.without_expiry:
        warnings.append(f"{len(report.without_expiry)} links carry no expiry ('oe' parameter); their expiry is "
                        f"unknown: {_where(report.without_expiry, links)}")
    return warnings


def _where(names: list[str], links: LinksFile, limit: int = 5) -> str:
    """``links.txt:5 (sa_000005.tar), ...``: where rows are, for a warning about them."""
    lines = {e.name: e.line for e in links.entries}
    shown = ", ".join(f"{links.path}:{lines[name]} ({name})" for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass
class LinkChange:
    """One row that differs between an old and a new links file."""

    name: str
    change: str  # added | removed | renewed | path_changed
    old_expiry: datetime | None = None
    new_expiry: datetime | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["old_expiry"] = _iso(self.old_expiry)
        data["new_expiry"] = _iso(self.new_expiry)
        return data


CHANGE_KINDS = ("added", "removed", "renewed", "path_changed")


@dataclass
class LinksDiff:
    """What replacing ``old`` by ``new`` changes."""

    old_path: str
    new_path: str
    changes: list[LinkChange]
    unchanged: list[str]
    warnings: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.change == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_path": self.old_path,
            "new_path": self.new_path,
            "counts": {kind: self.count(kind) for kind in CHANGE_KINDS} | {"unchanged": len(self.unchanged)},
            "changes": [c.to_dict() for c in self.changes],
            "unchanged": self.unchanged,
            "warnings": self.warnings,
        }


def diff_links(old: LinksFile, new: LinksFile) -> LinksDiff:
    """Match rows by file name; the URL path is the object, the query its signature."""
    old_rows, new_rows = old.by_name(), new.by_name()
    changes: list[LinkChange] = []
    unchanged: list[str] = []
    for name in sorted(old_rows.keys() | new_rows.keys()):
        before, after = old_rows.get(name), new_rows.get(name)
        if before is None:
            changes.append(LinkChange(name, "added", new_expiry=after.expires_at))
        elif after is None:
            changes.append(LinkChange(name, "removed", old_expiry=before.expires_at))
        elif before.url == after.url:
            unchanged.append(name)
        else:
            changes.append(_compare(before, after))
    result = LinksDiff(old.path, new.path, changes, unchanged)
    result.warnings = _diff_warnings(result)
    return result


def _compare(before: LinkEntry, after: LinkEntry) -> LinkChange:
    old_url, new_url = urlsplit(before.url), urlsplit(after.url)
    if old_url.path != new_url.path:
        return LinkChange(
            before.name, "path_changed", before.expires_at, after.expires_at,
            "points to a different object: a partial download of this part cannot resume from it",
        )
    note = f"host {old_url.hostname} -> {new_url.hostname}" if old_url.hostname != new_url.hostname else ""
    return LinkChange(before.name, "renewed", before.expires_at, after.expires_at, note)


def _diff_warnings(diff: LinksDiff) -> list[str]:
    warnings: list[str] = []
    moved = [c.name for c in diff.changes if c.change == "path_changed"]
    if moved:
        shown = ", ".join(moved[:10]) + (f" and {len(moved) - 10} more" if len(moved) > 10 else "")
        warnings.append(
            f"{len(moved)} link(s) point to a different object than before ({shown}): "
            "partial downloads of these parts would fail to resume; is the new file for the same dataset?"
        )
    removed = diff.count("removed")
    if removed:
        warnings.append(f"{removed} row(s) of the old file are not in the new one")
    return warnings


@dataclass
class CheckReport:
    """The CDN's answer for every probed link, and what it means for the run."""

    results: list[ProbeResult]
    serving: dict[str, str] = field(default_factory=dict)  # with --mirror: what serves each part ("none": nothing)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(r.state for r in self.results)
        return {state: counted.get(state, 0) for state in PROBE_STATES}

    @property
    def live(self) -> list[ProbeResult]:
        return [r for r in self.results if r.state == "live"]

    @property
    def known_bytes(self) -> int:
        """Sum of the live links' sizes that the CDN told."""
        return sum(r.size for r in self.live if r.size is not None)

    @property
    def unknown_size(self) -> int:
        """Live links whose size the CDN did not tell."""
        return sum(1 for r in self.live if r.size is None)

    @property
    def total_bytes(self) -> int | None:
        """Bytes the live links will take on disk, or None when a size is unknown."""
        return self.known_bytes if self.unknown_size == 0 else None

    @property
    def exit_status(self) -> ExitStatus:
        """0 all live; PARTS_FAILED if any is missing or unreachable; else LINKS_EXPIRED if any expired.
        With mirrors, only the parts that no source can serve count."""
        counts = self.counts
        if self.serving:
            unserved = Counter(r.state for r in self.results if self.serving.get(r.name) == "none")
            counts = {state: unserved.get(state, 0) for state in PROBE_STATES}
        found = []
        if counts["missing"] or counts["error"]:
            found.append(ExitStatus.PARTS_FAILED)
        if counts["expired"]:
            found.append(ExitStatus.LINKS_EXPIRED)
        return worst(found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "total_bytes": self.total_bytes,
            "known_bytes": self.known_bytes,
            "unknown_size": self.unknown_size,
            "exit_code": int(self.exit_status),
            "results": [{**r.to_dict(), **({"source": self.serving[r.name]} if r.name in self.serving else {})}
                        for r in self.results],
        }


# --------------------------------------------------------------------------- rows for the console


def report_rows(report: LinksReport) -> list[list[str]]:
    """The inspection as (item, value) rows."""

    def names(items: list[str], limit: int = 8) -> str:
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    parts = str(len(report.parts))
    if report.parts:
        span = report.parts[0] if len(report.parts) == 1 else f"{report.parts[0]} ... {report.parts[-1]}"
        parts += f" ({span})"
    expired = "none" if not report.expired else f"{len(report.expired)}: {names(report.expired)}"
    return [
        ["parts", parts],
        ["extras", f"{len(report.extras)}" + (f": {names(report.extras)}" if report.extras else "")],
        ["hosts", ", ".join(report.hosts)],
        ["expires earliest", describe_expiry(report.earliest_expiry, report.now)],
        ["expires latest", describe_expiry(report.latest_expiry, report.now)],
        ["expired", expired],
    ]


def report_summary(report: LinksReport) -> str:
    """The inspection on one line (what --quiet keeps)."""
    expired = f"{len(report.expired)} expired" if report.expired else "none expired"
    return (f"{report.path}: {len(report.parts)} parts, {len(report.extras)} extras, {expired}; "
            f"expires earliest {describe_expiry(report.earliest_expiry, report.now)}")


def check_rows(check: CheckReport) -> list[list[str]]:
    """One row per probed link: name, state, size, HTTP status, range support, message."""
    rows = []
    for r in check.results:
        ranges = {True: "yes", False: "no", None: "?"}[r.accepts_ranges]
        size = human_bytes(r.size) if r.size is not None else "?"
        row = [r.name, r.state, size, str(r.status or "-"), ranges, r.message]
        rows.append(row + [check.serving[r.name]] if check.serving else row)
    return rows


def check_summary(check: CheckReport) -> str:
    counts = check.counts
    states = ", ".join(f"{counts[s]} {s}" for s in PROBE_STATES if counts[s]) or "nothing probed"
    live = len(check.live)
    if check.total_bytes is not None:
        size = f"{human_bytes(check.total_bytes)} ({check.total_bytes:,} bytes) to expect on disk for the {live} live"
    else:
        size = f"at least {human_bytes(check.known_bytes)} to expect on disk ({check.unknown_size} of {live} live sizes unknown)"
    served = ""
    if check.serving:
        by_mirror = sum(1 for name in check.serving.values() if name not in ("meta", "none"))
        nothing = sum(1 for name in check.serving.values() if name == "none")
        served = f"; {by_mirror} served by mirrors, {nothing} by no source"
    return f"{len(check.results)} links: {states}; {size}{served}"


def diff_rows(diff: LinksDiff) -> list[list[str]]:
    """One row per changed link: name, change, old expiry, new expiry, note."""
    return [
        [c.name, c.change.replace("_", " "), format_utc(c.old_expiry) if c.change != "added" else "-",
         format_utc(c.new_expiry) if c.change != "removed" else "-", c.note]
        for c in diff.changes
    ]


def diff_summary(diff: LinksDiff) -> str:
    counts = ", ".join(f"{diff.count(kind)} {kind.replace('_', ' ')}" for kind in CHANGE_KINDS)
    return f"{diff.old_path} -> {diff.new_path}: {counts}, {len(diff.unchanged)} unchanged"
