"""What ``sa1b verify`` prints without ``--json``: a table of parts, the problems, one summary line."""

from __future__ import annotations

from sa1b_cli.links import PART_NAME
from sa1b_cli.verify.results import (CORRUPT, DEEP, DOWNLOADING, MAX_LISTED, MISSING, NOT_EXTRACTED, PARTIAL,
                                     WITHOUT_FILES, PartResult, PartStatus, VerifyReport)

TABLE_ALL_UP_TO = 40  # more parts than this: the table lists only those with problems
PROBLEM_LINES = 50  # problems printed after the table; the rest are in --report / --json
# problem kinds told as ranges of part names, not one by one
SUMMED_UP = ("missing-part", "not-extracted", "partial-download")
# the groups of parts without files, each with its label
GROUPS: tuple[tuple[PartStatus, str], ...] = (
    (DOWNLOADING, "being downloaded"), (PARTIAL, "partly downloaded"),
    (NOT_EXTRACTED, "downloaded but not extracted"), (MISSING, "missing"),
)
AWAITED_LABELS = {DOWNLOADING: "being downloaded", PARTIAL: "partly downloaded",
                  NOT_EXTRACTED: "downloaded, not yet extracted", MISSING: "not downloaded yet"}


def table_rows(report: VerifyReport) -> tuple[list[list[str]], list[str]]:
    """(table rows of the parts with files, one line per group of missing parts and one for the parts
    that have not arrived)."""
    with_files = [p for p in report.parts if p.status not in WITHOUT_FILES]
    shown = with_files if len(with_files) <= TABLE_ALL_UP_TO else [p for p in with_files if not p.ok]
    lines = []
    if len(shown) < len(with_files):
        lines.append(f"{len(with_files) - len(shown)} more parts sound (listed in --report and --json)")
    lines += _missing_lines(report)
    awaited = not_arrived_line(report)
    return [_row(p) for p in shown], lines + ([awaited] if awaited else [])


def _missing_lines(report: VerifyReport) -> list[str]:
    """One line per group of parts without files that count as a problem."""
    lines = []
    for status, label in GROUPS:
        names = [p.name for p in report.parts if p.status == status and not p.awaited]
        if names:
            lines.append(f"{label}: {_parts(len(names))}: {_name_ranges(names)}")
    return lines


def not_arrived_line(report: VerifyReport) -> str:
    """One line for the parts still to come, grouped by how far each got ("" when none)."""
    awaited = [p for p in report.parts if p.awaited]
    if not awaited:
        return ""
    groups = []
    for status, label in AWAITED_LABELS.items():
        names = [p.name for p in awaited if p.status == status]
        if names:
            groups.append(f"{len(names):,} {label} ({_name_ranges(names, limit=3)})")
    return f"not arrived yet: {_parts(len(awaited))}: {'; '.join(groups)}"


def _parts(count: int) -> str:
    return f"{count:,} part{'s' if count != 1 else ''}"


def _row(part: PartResult) -> list[str]:
    return [part.name, part.status + (" (cached)" if part.cached else ""), str(part.level or "-"), f"{part.images:,}",
            f"{part.annotations:,}", "-" if part.expected is None else f"{part.expected:,}", _problem_cell(part)]


def _problem_cell(part: PartResult) -> str:
    if not part.problems.listed:
        return "-"
    first = part.problems.listed[0].message
    return f"{part.problems.total}: {first[:77] + '...' if len(first) > 80 else first}"


def _name_ranges(names: list[str], limit: int = 20) -> str:
    """``sa_000003.tar .. sa_000007.tar, sa_000009.tar``: consecutive parts as one range."""
    numbers = sorted(int(m.group(1)) for n in names if (m := PART_NAME.match(n)))
    ranges: list[list[int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    text = [f"sa_{a:06d}.tar" if a == b else f"sa_{a:06d}.tar .. sa_{b:06d}.tar" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        text.append(f"and {len(ranges) - limit} more ranges")
    return ", ".join(text)


def problem_lines(report: VerifyReport, limit: int = PROBLEM_LINES) -> list[str]:
    """One line per problem (missing parts are summed up by ``table_rows``), at most ``limit``."""
    listed = [p for part in [report.problems, *(q.problems for q in report.parts)] for p in part.listed]
    problems = [p for p in listed if p.kind not in SUMMED_UP]
    not_listed = report.problems_total - len(listed)
    lines = [f"{'damaged' if p.severity == CORRUPT else 'incomplete'}: {p}" for p in problems[:limit]]
    more = len(problems) - len(lines) + not_listed
    if more > 0:
        lines.append(f"... and {more} more problems (all of them are counted; the first {MAX_LISTED} of each part "
                     "are listed in --report and --json)")
    return lines


def summary_line(report: VerifyReport) -> str:
    summary = report.summary()
    expected = f" (expected {report.expected_total:,} each)" if report.expected_total is not None else ""
    masks = f", {summary['masks_checked']:,} masks" if report.level == DEEP else ""
    cached = f", {summary['cached']} parts unchanged since their last check" if summary["cached"] else ""
    corrupt = report.corrupt_total
    verdict = "all sound" if summary["ok"] else (
        f"{report.problems_total:,} problems, {corrupt:,} of them damaged files" if corrupt
        else f"{report.problems_total:,} problems (incomplete)" if report.problems_total
        else f"sound so far, {_parts(len(report.not_arrived))} still to come")
    if report.arrived_only:
        scope = f"{report.checked_parts:,} of {len(report.parts):,} parts (what has arrived: {report.arrived_reason})"
    else:
        scope = f"{len(report.parts)} parts"
    return (f"verify ({report.level}{', tars' if report.tars else ''}): {scope}, "
            f"{report.images:,} images and {report.annotations:,} annotations{expected}{masks}{cached} "
            f"in {report.seconds:.1f}s: {verdict} (exit {int(report.exit_status)})")
