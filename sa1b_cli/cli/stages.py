"""``sa1b extract`` and ``sa1b verify``: options in, the stage's core (``sa1b_cli.extract``, ``sa1b_cli.verify``) run,
its result printed; the cli decides what --quiet leaves out."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sa1b_cli.cli.edge import handles_errors, process_environ
from sa1b_cli.cli.options import checksum_options, env_option, jobs_option, output_options, root_option, selection_options
from sa1b_cli.console import Console
from sa1b_cli.errors import ExitStatus, UsageError


def existing_root(root: Path) -> Path:
    """ROOT for commands that read what is there: it must exist."""
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (give the dataset ROOT with -d)")
    return root


@click.command("extract")
@root_option
@selection_options
@env_option(
    "--layout", type=click.Choice(["parts", "split", "flat"]), default=None, show_default=False,
    help="Where files go: 'parts' ROOT/extracted/sa_000000/sa_1.jpg (default), 'split' ROOT/images/ + "
    "ROOT/annotations/, 'flat' ROOT/extracted/sa_1.jpg. Recorded on first use; later runs must agree.",
)
@jobs_option(os.cpu_count() or 1, "parts to extract", "extract")
@env_option("--remove-tars", is_flag=True, default=False, help="Delete each tar once its part is extracted (never a failed part's).")
@output_options
@handles_errors
def extract_command(root: Path, parts: str | None, shard: str | None, layout: str | None, jobs: int,
                    remove_tars: bool, console: Console) -> ExitStatus:
    """Unpack the downloaded parts in ROOT/tars/ (gzip or plain tar, detected by content).

    Only parts with a complete download receipt are extracted; others are reported as not downloaded.
    Each part is unpacked into ROOT/.sa1b/tmp/ and moved into place only when all of it succeeded, so
    a killed run leaves nothing half-extracted: run the same command again to finish. Archives with
    absolute paths, '..', links, devices, FIFOs or names that would overwrite another part's file are
    refused (that part fails; the others go on).

    \b
    Examples:
      sa1b extract -d /data/sa1b
      sa1b extract -d /data/sa1b --layout split --parts 0-9 --remove-tars
      sa1b extract -d /shared/sa1b --shard auto --json

    \b
    Exit codes: 0 all selected downloaded parts extracted, 2 layout conflict or bad options,
    3 some parts failed, 4 some parts locked by another run, 130 interrupted.
    """
    from sa1b_cli import extract as core
    from sa1b_cli.console import human_bytes, human_duration
    from sa1b_cli.selection import parse_shard
    from sa1b_cli.store.paths import RootPaths

    paths = RootPaths(existing_root(root))
    core.resolve_layout(paths, layout)  # refuse a layout conflict before anything else
    names = core.select_parts(paths, parts, parse_shard(shard, process_environ()))
    if not names:
        console.event("nothing", f"nothing to extract: no downloaded parts under {paths.tars}", level="warning")
    result = core.extract_parts(paths, names, layout, jobs, remove_tars, console)
    console.close()
    summary = result.summary()
    if console.json:
        console.emit_json({"type": "summary", "command": "extract", **summary})
        return result.exit_status
    details = [f"{summary[key]} {label}" for key, label in (
        ("already", "already done"), ("failed", "failed"), ("locked", "locked by another run"),
        ("not_downloaded", "not downloaded"), ("interrupted", "interrupted")) if summary[key]]
    removed = f", {summary['tars_removed']} tars removed" if summary["tars_removed"] else ""
    console.print_result(
        f"extract: {summary['extracted']}/{summary['selected']} parts extracted ({summary['files']} files, "
        f"{human_bytes(summary['bytes'])} in {human_duration(result.seconds)})"
        + (f", {', '.join(details)}" if details else "") + f"{removed}; layout {result.layout}"
    )
    return result.exit_status


@click.command("verify")
@root_option
@selection_options
@env_option("--deep", is_flag=True, default=False,
            help="Also read every pair: JSON schema, every RLE mask (size, area, bbox) and the JPEG's structure and size.")
@env_option("--tars", is_flag=True, default=False,
            help="Also re-hash the downloaded tars still on disk and compare them with their download receipts "
            "and the community reference (or --checksums, which implies --tars).")
@checksum_options
@env_option("--expected", command="verify", type=click.IntRange(min=0), default=None, show_default=False,
            help="Pairs the checked parts must hold in total. Without --parts it also limits the check to the parts "
            "present (default: the whole dataset, 1,000 parts, 11,185,362 pairs).")
@env_option("--arrived/--complete", "arrived", default=None, show_default=False, envvar="SA1B_ARRIVED",
            help="--arrived: check the parts that have arrived and name the others as not arrived yet (exit 10 when "
            "all checked are sound). --complete: every part must be there (exit 5 otherwise). Default: --arrived "
            "while a download runs on ROOT or the links file it read still has parts to fetch; --expected implies "
            "--complete.")
@env_option("--rescan", is_flag=True, default=False,
            help="List and stat every file even in parts whose folders are unchanged since their last verify "
            "(finds a file rewritten or truncated in place; O(files) instead of O(parts)).")
@env_option("--force", is_flag=True, default=False, help="Check everything again, ignoring earlier verify receipts.")
@env_option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
            help="Also write the full report (every part, every problem listed) as JSON to this file.")
@jobs_option(os.cpu_count() or 1, "worker processes", "verify")
@output_options
@handles_errors
def verify_command(root: Path, parts: str | None, shard: str | None, deep: bool, tars: bool, checksums: Path | None,
                   no_reference: bool, expected: int | None, arrived: bool | None, rescan: bool, force: bool,
                   report_path: Path | None, jobs: int, console: Console) -> ExitStatus:
    """Tell whether the dataset under ROOT is whole and sound; never changes a dataset file.

    Quick (default): every image has its annotation and vice versa, no file is missing, empty or
    changed in size since extraction, nothing extra, and the counts match the receipts and the
    dataset (11,185,362 pairs). --deep reads every file: each annotation parses and follows the
    SA-1B schema, each mask's RLE is valid and matches the image size, area and bbox, and each
    JPEG is whole and as large as its annotation says. Results are kept per part: a rerun skips
    parts whose folders are unchanged (no file added, removed or renamed) without listing them,
    lists the others and re-reads only files that changed. --rescan lists every part (also finds
    a file rewritten in place); --force re-reads all.

    While a download runs on ROOT, or the links file it read names parts not downloaded yet, verify
    checks what has arrived (the extracted parts) and names the rest in one line (being downloaded,
    partly downloaded, not yet extracted, not downloaded yet); --complete insists on every part.

    --tars re-hashes each tar still on disk (one read: sha256, and md5 where there is one to compare
    with) against its download receipt and the community MD5 reference shipped with sa1b (a community
    list, not Meta's word; --no-reference drops it). --checksums FILE replaces the reference: an md5sum
    or sha256sum file, or another site's sa1b-manifest.json (sa1b manifest), so a copy can be checked
    against the site it came from. A list that names none of the tars to check is refused.

    \b
    Examples:
      sa1b verify -d /data/sa1b
      sa1b verify -d /data/sa1b --deep --jobs 16 --report verify.json
      sa1b verify -d /data/sa1b --parts 0-9 --tars --checksums checklist.txt
      sa1b verify -d /data/sa1b --tars --checksums /shared/handover/sa1b-manifest.json
      sa1b verify -d /shared/sa1b --shard auto --deep --json

    \b
    Exit codes: 0 all checked sound, 5 incomplete (missing parts or files, unpaired or extra files),
    6 corrupt (damaged files or tars; wins over 5), 10 all that has arrived sound, more to come
    (a download runs or is unfinished: cron can treat it as success so far), 2 bad options or checksum list.
    """
    from sa1b_cli import verify as core
    from sa1b_cli.checksums import choose_checksums
    from sa1b_cli.selection import parse_shard, select_names
    from sa1b_cli.store.paths import RootPaths

    paths = RootPaths(existing_root(root))
    shard_spec = parse_shard(shard, process_environ())
    names = select_names(core.known_part_names(paths), parts, shard_spec) if parts or shard_spec else None
    listed = choose_checksums(checksums, no_reference)  # a user's list naming none of the tars: refused by the core
    report = core.verify_dataset(paths, parts=names, deep=deep, tars=tars, checksums=listed, expected=expected,
                                 jobs=jobs, force=force, rescan=rescan, arrived=arrived, reporter=console)
    console.close()
    if report_path is not None:
        _write_report(report_path, report.to_dict())
    if console.json:
        for part in report.parts:
            console.emit_json({"type": "part", **part.to_dict()})
        console.emit_json({"type": "summary", "command": "verify", **report.summary()})
        return report.exit_status
    rows, missing_lines = core.table_rows(report)
    if rows:
        console.print_table(f"verify ({report.level})", ["part", "status", "level", "images", "annotations", "expected",
                                                         "problems"], rows)
    for line in [*missing_lines, *core.problem_lines(report)]:
        console.print_result(line)
    console.print_result(core.summary_line(report))
    return report.exit_status


def _write_report(report_path: Path, report: dict) -> None:
    from sa1b_cli.store.atomic import atomic_write_json

    try:
        atomic_write_json(report_path, report)
    except OSError as exc:
        raise UsageError(f"{report_path}: cannot write the report ({exc.strerror or exc})") from None
