"""The report as rows for the console: the job in (item, value) rows, and the parts that need attention,
the same message across many parts told once."""

from __future__ import annotations

from collections import Counter

from sa1b_cli.console import human_bytes, human_duration
from sa1b_cli.linkinfo import describe_expiry
from sa1b_cli.status.model import PartStatus, StatusReport
from sa1b_cli.store.runs import RunInfo

ATTENTION_STATES = ("downloading", "partial", "download failed", "extract failed", "verify problems", "unconfirmed")
GROUP_AT = 5  # this many parts with one state and one message make one row (--all lists each)
UNGROUPED_STATES = ("downloading",)  # few at a time (one per download job), each with its own progress


def summary_rows(report: StatusReport) -> list[list[str]]:
    """The job in (item, value) rows: parts, pairs, bytes, rate, ETA, links, runs."""
    rows = [["root", report.root], _parts_row(report), ["done", _done_text(report)]]
    for label, done in (("images", report.images_extracted), ("annotations", report.annotations_extracted)):
        share = 100.0 * done / report.expected_pairs
        rows.append([label, f"{done:,} of {report.expected_pairs:,} extracted ({share:.2f}%)"])
    rows.extend(_bytes_rows(report))
    rows.extend(_time_rows(report))
    rows.append(["links expire", _expiry_text(report)])
    rows.extend([f"run {run.tag}", _run_text(run)] for run in report.runs)
    return rows


def _parts_row(report: StatusReport) -> list[str]:
    if not report.parts:
        return ["parts", "none found (no receipts, nothing in tars/); pass --links FILE to list the parts to fetch"]
    states = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    return ["parts", f"{len(report.parts)}: {states}"]


def _done_text(report: StatusReport) -> str:
    """Parts and bytes downloaded out of the whole job, as far as anything the tool learned tells."""
    if report.part_total is None:
        return (f"{report.downloaded_parts:,} parts downloaded, {human_bytes(report.fetched_bytes)}; of how many is "
                "known with --links, or once a download has read the links file")
    text = f"{report.downloaded_parts:,} of {report.part_total:,} parts downloaded, {human_bytes(report.fetched_bytes)} of "
    total = report.total_bytes
    if total is None:
        return text + f"? ({report.unknown_size_parts} part(s) of unknown size)"
    share = 100.0 * report.fetched_bytes / total if total else 100.0
    return text + f"{human_bytes(total)} ({share:.1f}%)"


def _bytes_rows(report: StatusReport) -> list[list[str]]:
    partial = [p for p in report.parts if not p.downloaded and p.completed_bytes]
    fetched = f"{human_bytes(report.fetched_bytes)} ({report.downloaded_parts} parts complete"
    fetched += f", {human_bytes(report.partial_bytes)} in {len(partial)} partial)" if partial else ")"
    rows = [["fetched", fetched]]
    sources = Counter(p.source for p in report.parts if p.downloaded and p.source)
    if set(sources) - {"meta"}:
        rows.append(["sources", ", ".join(f"{count} from {source}" for source, count in sorted(sources.items()))])
    rows.append(["on disk", f"{human_bytes(report.tars_disk_bytes)} in tars/"])
    rows.append(["to fetch", _remaining_text(report)])
    return rows


def _remaining_text(report: StatusReport) -> str:
    if report.remaining_bytes is not None:
        return human_bytes(report.remaining_bytes)
    known = f"{human_bytes(report.remaining_known_bytes)} left in parts of known size"
    if report.part_total is None:
        return f"unknown without --links (parts not started yet are not known); {known}"
    return f"unknown: {report.unknown_size_parts} part(s) of unknown size + {known}"


def _time_rows(report: StatusReport) -> list[list[str]]:
    rate = report.rate_bytes_per_s
    if rate is not None:
        rate_text = f"{human_bytes(rate)}/s from {len(report.live_runs)} live run(s)"
    elif report.past_rate_bytes_per_s:
        rate_text = f"no download running; the last runs averaged {human_bytes(report.past_rate_bytes_per_s)}/s"
    else:
        rate_text = "no download running"
    eta_seconds, basis = report.eta
    eta_text = f"{human_duration(eta_seconds)} ({basis})" if eta_seconds is not None else f"unknown ({basis})"
    return [["rate", rate_text], ["ETA", eta_text]]


def _expiry_text(report: StatusReport) -> str:
    if report.links_expire_earliest is None:
        return "unknown (no live download; pass --links FILE)"
    text = f"earliest {describe_expiry(report.links_expire_earliest, report.now)}"
    if report.links_expire_latest and report.links_expire_latest != report.links_expire_earliest:
        text += f", latest {describe_expiry(report.links_expire_latest, report.now)}"
    return f"{text}; from {report.links_expiry_source}"


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
    """One row per part with ``show_all``; else the parts in progress or in trouble, and one row for
    each message that GROUP_AT or more parts in one state share."""
    if show_all:
        return [_part_row(part) for part in report.parts]
    groups: dict[tuple[str, str], list[PartStatus]] = {}
    for part in report.parts:
        if part.state in ATTENTION_STATES:
            groups.setdefault((part.state, _part_detail(part)), []).append(part)
    rows: list[list[str]] = []
    for (state, detail), members in groups.items():
        if len(members) < GROUP_AT or state in UNGROUPED_STATES:
            rows.extend(_part_row(part) for part in members)
        else:
            rows.append(_group_row(state, detail, members))
    return rows


def _part_row(part: PartStatus) -> list[str]:
    percent = part.percent
    progress = f"{percent:.1f}%" if percent is not None else ("? %" if part.state in ("partial", "downloading") else "")
    return [part.name, part.state, progress, human_bytes(part.size) if part.size is not None else "?", _part_detail(part)]


def _group_row(state: str, detail: str, members: list[PartStatus]) -> list[str]:
    """``783 parts: sa_000012.tar … sa_000999.tar``, with the total size when every size is known."""
    sizes = [p.size for p in members]
    size = human_bytes(sum(s or 0 for s in sizes)) if all(s is not None for s in sizes) else "?"
    return [f"{len(members)} parts: {members[0].name} … {members[-1].name}", state, "", size, detail]


def _part_detail(part: PartStatus) -> str:
    details = []
    if part.active_run:
        details.append(f"in run {part.active_run}" + (f" at {human_bytes(part.speed)}/s" if part.speed else ""))
    if part.source and part.source != "meta":
        details.append(f"from {part.source}")
    for label, text in (("download", part.download_failure), ("receipt void", part.download_problem),
                        ("extract", part.extract_failure), ("verify", part.verify_problems)):
        if text:
            details.append(f"{label}: {text}")
    if part.extracted and part.images is not None:
        details.append(f"{part.images:,} images")
    return "; ".join(details)
