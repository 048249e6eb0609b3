"""``sa1b status`` and ``sa1b manifest``: what the state files say, for people, machines and other sites."""

from __future__ import annotations

from pathlib import Path

import click

from sa1b_cli.cli.edge import handles_errors, process_environ
from sa1b_cli.cli.options import env_option, output_options, root_option, selection_options
from sa1b_cli.cli.stages import existing_root
from sa1b_cli.console import Console
from sa1b_cli.errors import ExitStatus


@click.command("manifest")
@root_option
@selection_options
@env_option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
            help="Folder for the three files (default: ROOT).")
@output_options
@handles_errors
def manifest_command(root: Path, parts: str | None, shard: str | None, out_dir: Path | None,
                     console: Console) -> ExitStatus:
    """Write what this site holds, from its download receipts (nothing is read again), for other sites.

    sa1b-manifest.md5 and sa1b-manifest.sha256 (md5sum/sha256sum format: `md5sum -c` in ROOT/tars) and
    sa1b-manifest.json (name, size, md5, sha256, source, checked_at). Another site checks its copy with
    `sa1b verify -d ROOT --tars --checksums sa1b-manifest.json`, or downloads against it with
    `sa1b download LINKS --checksums sa1b-manifest.json`: a site that downloaded once hands its manifest
    to every other site, and a part whose bytes differ from it is reported by name. Parts checked without
    a reference (--no-reference) have no md5: they are only in the sha256 and JSON files. Each file is
    replaced atomically; the tars are not read (their receipts say what was checked when they arrived).

    \b
    Exit codes: 0 written, 2 bad options or the folder cannot be written, 5 no downloaded part to list.

    \b
    Examples:
      sa1b manifest -d /data/sa1b
      sa1b manifest -d /data/sa1b -o /shared/handover --parts 0-99
    """
    from sa1b_cli import verify as verify_core
    from sa1b_cli.manifest import write_manifest
    from sa1b_cli.selection import parse_shard, select_names
    from sa1b_cli.store.paths import RootPaths

    paths = RootPaths(root)
    shard_spec = parse_shard(shard, process_environ())
    names = select_names(verify_core.known_part_names(paths), parts, shard_spec) if parts or shard_spec else None
    result = write_manifest(paths, out_dir, names)
    if result.unusable:
        console.event("manifest", f"{len(result.unusable)} receipt(s) without a valid size and sha256 left out, "
                      f"e.g. {result.unusable[0]} (download the part again to list it)", level="warning")
    if result.without_md5:
        console.event("manifest", f"{len(result.without_md5)} part(s) have no md5 (checked without a reference), "
                      f"e.g. {result.without_md5[0]}: they are in the sha256 and JSON files only", level="warning")
    if console.json:
        console.emit_json({"type": "summary", "command": "manifest", **result.to_dict()})
    else:
        console.print_result(f"manifest: {len(result.parts)} part(s) listed in " + ", ".join(str(p) for p in result.written))
    return ExitStatus.OK


@click.command("status")
@root_option
@env_option("--links", "links_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
            help="The links file: lists the parts still to fetch and tells when the links expire.")
@env_option("--expected", command="status", type=click.IntRange(min=1), default=11_185_362,
            help="Image/annotation pairs the complete dataset holds.")
@env_option("--all", "show_all", is_flag=True, default=False, help="List every part, not only those in progress or in trouble.")
@env_option("--map", "show_map", is_flag=True, default=False,
            help="One cell per part, by state (shown anyway for jobs of more than 50 parts).")
@output_options
@handles_errors
def status_command(root: Path, links_path: Path | None, expected: int, show_all: bool, show_map: bool,
                   console: Console) -> ExitStatus:
    """Where the job stands, from the state files only: safe while downloads run, on any host.

    Per part: downloaded, partial (with %), downloading, failed (with the reason), extracted,
    verified. Totals: pairs extracted, bytes fetched and still to fetch, rate, ETA, link expiry.
    Takes no lock and writes nothing. With --quiet: the totals on one line. Parts that share a state and
    a message are one row (--all, --json: each part).

    \b
    Examples:
      sa1b status -d /data/sa1b
      sa1b status -d /data/sa1b --links segment_anything_links.txt --all
      sa1b status -d /data/sa1b --json | jq .counts
    """
    from sa1b_cli import status as core
    from sa1b_cli.links import parse_links
    from sa1b_cli.store.paths import RootPaths

    existing_root(root)
    links_file = parse_links(links_path) if links_path is not None else None
    report = core.collect_status(RootPaths(root), links_file, expected)
    if console.json:
        console.emit_json({"type": "status", **report.to_dict()})
        return ExitStatus.OK
    summary = core.summary_rows(report)
    if console.quiet:
        console.print_result("status: " + "; ".join(f"{item} {value}" for item, value in summary))
    console.print_table("sa1b status", ["item", "value"], summary)
    if core.shows_map(report, show_map):
        console.print_table("parts at a glance", ["from", "parts"], core.map_rows(report, styled=console.mode == "rich"))
    rows = core.part_rows(report, show_all)
    if rows:
        title = "parts" if show_all else "parts in progress or in trouble (--all lists every part)"
        console.print_table(title, ["part", "state", "progress", "size", "detail"], rows)
    return ExitStatus.OK
