"""``sa1b links``: inspect a links file, compare two, ask the CDN (core: ``sa1b_cli.linkinfo``, ``sa1b_cli.probe``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from sa1b_cli.cli.edge import handles_errors, process_environ
from sa1b_cli.cli.options import env_option, jobs_option, mirror_options, output_options, selection_options
from sa1b_cli.console import Console
from sa1b_cli.errors import ExitStatus
from sa1b_cli.links import LinkEntry, LinksFile

if TYPE_CHECKING:
    from sa1b_cli.probe import ProbeResult


@click.command("links")
@click.argument("links_path", metavar="LINKS", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new_links_path", metavar="[NEW]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@env_option("--check", is_flag=True, default=False, help="Ask the CDN about every selected link (HEAD): live, expired, missing, sizes.")
@selection_options
@jobs_option(16, "links to probe with --check", "links")
@env_option("--timeout", type=click.FloatRange(min=0.1), default=15.0, help="Seconds per request with --check.")
@mirror_options
@output_options
@handles_errors
def links_command(links_path: Path, new_links_path: Path | None, check: bool, parts: str | None, shard: str | None,
                  jobs: int, timeout: float, mirrors: tuple[str, ...], mirror_headers: tuple[str, ...],
                  console: Console) -> ExitStatus:
    """Inspect a links file without downloading: parts, extras, expiry, gaps; --check asks the CDN.

    With two files (LINKS NEW), show what the fresh file NEW changes: links added, removed, renewed
    (same object, new signature and expiry) and pointing elsewhere (a partial download would not resume).
    --check then probes NEW. --parts/--shard choose what --check probes (and are checked like download's).
    With --mirror, --check also asks the mirrors for the parts whose link cannot serve them, and names
    each part's source.

    \b
    Exit codes: 0 ok (with --check: all live), 2 missing or malformed file or bad --parts/--shard,
    3 some links missing or unreachable (--check), 8 links expired: every link of LINKS (without --check),
    some of the probed ones and none missing (with --check).

    \b
    Examples:
      sa1b links segment_anything_links.txt
      sa1b links segment_anything_links.txt --check --parts 0-9
      sa1b links old_links.txt new_links.txt
    """
    from sa1b_cli.links import parse_links
    from sa1b_cli.selection import parse_shard, select

    links_file = parse_links(links_path)
    new_file = parse_links(new_links_path) if new_links_path is not None else None
    current = new_file or links_file
    entries = select(current, parts, parse_shard(shard, process_environ()))  # one parser: bad specs refused here
    status = _show_file(links_file, console) if new_file is None else _show_diff(links_file, new_file, console)
    if not check:
        return status
    return _check(current, entries, jobs, timeout, mirrors, mirror_headers, console)


def _show_file(links_file: LinksFile, console: Console) -> ExitStatus:
    from sa1b_cli import linkinfo

    report = linkinfo.inspect_links(links_file)
    if console.json:
        console.emit_json({"type": "links", **report.to_dict()})
    else:
        console.print_table(f"links file {links_file.path}", ["item", "value"], linkinfo.report_rows(report))
        console.print_result(linkinfo.report_summary(report))
    for warning in report.warnings:
        console.event("links", warning, level="warning")
    return report.exit_status


def _show_diff(links_file: LinksFile, new_file: LinksFile, console: Console) -> ExitStatus:
    from sa1b_cli import linkinfo

    diff = linkinfo.diff_links(links_file, new_file)
    if console.json:
        console.emit_json({"type": "links_diff", **diff.to_dict()})
    else:
        if diff.changes:
            console.print_table("changes", ["file", "change", "old expiry", "new expiry", "note"], linkinfo.diff_rows(diff))
        console.print_result(linkinfo.diff_summary(diff))
    for warning in diff.warnings:
        console.event("links", warning, level="warning")
    return ExitStatus.OK


def _check(current: LinksFile, entries: list[LinkEntry], jobs: int, timeout: float, mirrors: tuple[str, ...],
           mirror_headers: tuple[str, ...], console: Console) -> ExitStatus:
    from sa1b_cli import linkinfo
    from sa1b_cli.probe import probe_links

    progress = console.files("probe", len(entries))
    results = probe_links(entries, concurrency=jobs, timeout=timeout, on_result=lambda _result: progress.advance(1))
    progress.close()
    report = linkinfo.CheckReport(results, serving=_serving_sources(entries, results, mirrors, mirror_headers))
    if console.json:
        console.emit_json({"type": "check", **report.to_dict()})
    else:
        columns = ["file", "state", "size", "HTTP", "ranges", "message"] + (["source"] if report.serving else [])
        console.print_table(f"check of {current.path}", columns, linkinfo.check_rows(report))
        console.print_result(linkinfo.check_summary(report))
    if report.counts["expired"]:
        console.event("links", "some links have expired or were revoked: get a fresh links file from Meta", level="warning")
    return report.exit_status


def _serving_sources(entries: list[LinkEntry], results: list[ProbeResult], mirrors: tuple[str, ...],
                     mirror_headers: tuple[str, ...]) -> dict[str, str]:
    """With --mirror: the source that would serve each probed part (mirrors asked where the link cannot)."""
    if not mirrors:
        return {}
    from sa1b_cli.sources import PartSources, parse_mirrors, part_sources, plan_sources

    parsed = parse_mirrors(mirrors, mirror_headers)
    found = [PartSources(e.name, part_sources(e, e.name, parsed, meta_usable=True)) for e in entries]
    plan_sources(found, {r.name: r for r in results}, lambda _name: False, True)
    return {p.name: p.serving for p in found}
