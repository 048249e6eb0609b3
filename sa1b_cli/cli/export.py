"""``sa1b export``: options in, :func:`sa1b_cli.export.run.export` called, its result out.

The export core is imported when the command runs, so that it costs nothing to every other command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sa1b_cli.cli.edge import handles_errors, process_environ
from sa1b_cli.cli.options import env_option, jobs_option, output_options, root_option, selection_options
from sa1b_cli.console import Console, human_bytes, human_duration
from sa1b_cli.errors import ExitStatus, UsageError
from sa1b_cli.export.plan import FORMATS, SOURCES, Subset, parse_sample, parse_size, read_ids_file
from sa1b_cli.selection import parse_shard
from sa1b_cli.store.paths import RootPaths

if TYPE_CHECKING:
    from sa1b_cli.export.run import ExportResult

SHOWN_MISSING = 20


@click.command("export")
@root_option
@env_option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
            help="Folder the export goes to (created; a rerun with the same options resumes there).")
@env_option("--format", "output_format", type=click.Choice(FORMATS), default="webdataset",
            help="'webdataset': tar shards sa1b-000000.tar... with each sample's .jpg and .json side by side, a wids "
            "index (shardindex.json) and sha256sums.txt; 'folders': OUT/images/ and OUT/annotations/.")
@env_option("--shard-size", default=None, metavar="SIZE", help="Target shard size, e.g. 1G or 500M (default 1G).")
@env_option("--samples-per-shard", type=click.IntRange(min=1), default=None, help="Samples per shard instead of a size.")
@env_option("--sample", default=None, metavar="FRACTION|N",
            help="A random subset: a fraction (0.01 or 1%) or a number of images, drawn by --seed.")
@env_option("--seed", type=int, default=0, help="Seed of --sample: the same seed keeps the same images.")
@env_option("--ids", "ids_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
            help="Keep exactly the images listed (one id or sa_<id> a line); ids not found are listed, exit 5.")
@env_option("--min-masks", type=click.IntRange(min=0), default=None, help="Keep images with at least this many masks.")
@env_option("--max-masks", type=click.IntRange(min=0), default=None, help="Keep images with at most this many masks.")
@selection_options
@env_option("--from", "source", type=click.Choice(SOURCES), default="auto",
            help="Read the checked tars, the extracted files, or (auto) the tar when it is there, else the files.")
@jobs_option(min(4, os.cpu_count() or 1), "parts to read", "export")
@env_option("--dry-run", is_flag=True, default=False,
            help="Print the subset's sample count, size and shards; write nothing.")
@output_options
@handles_errors
def export_command(root: Path, out: Path, output_format: str, shard_size: str | None, samples_per_shard: int | None,
                   sample: str | None, seed: int, ids_file: Path | None, min_masks: int | None, max_masks: int | None,
                   parts: str | None, shard: str | None, source: str, jobs: int, dry_run: bool,
                   console: Console) -> ExitStatus:
    """Write the downloaded parts (or a subset) as WebDataset shards or as image/annotation folders.

    Each part is read once (inflated as download --extract does); only parts with a download receipt
    are read. Samples are sorted by image id, each image's .jpg and .json side by side, so WebDataset
    readers never split a sample. A killed export resumes when run again with the same options; an
    OUT holding an export with other options is refused. OUT/sa1b-export.json is the receipt.

    \b
    Examples:
      sa1b export -d /data/sa1b -o /data/sa1b-wds --shard-size 1G
      sa1b export -d /data/sa1b -o /data/sa1b-1pc --sample 1% --seed 7 --dry-run
      sa1b export -d /data/sa1b -o /data/subset --ids val_ids.txt --format folders

    \b
    Exit codes: 0 done, 2 bad options or another export in OUT, 3 a part could not be read,
    4 another export runs into OUT, 5 ids of --ids not found, 130 interrupted.
    """
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (give the dataset ROOT with -d)")
    fraction, count = parse_sample(sample) if sample is not None else (None, None)
    if min_masks is not None and max_masks is not None and min_masks > max_masks:
        raise UsageError("--min-masks is above --max-masks: no image can pass")
    subset = Subset(fraction, count, seed, frozenset(read_ids_file(ids_file)) if ids_file else None, min_masks, max_masks)
    from sa1b_cli.export.run import ExportRequest, export

    paths = RootPaths(root)
    request = ExportRequest(out, output_format, parts, parse_shard(shard, process_environ()), source, subset,
                            parse_size(shard_size) if shard_size else None, samples_per_shard, jobs, dry_run)
    result = export(paths, request, console)
    console.close()
    _report(console, result)
    return result.exit_status


def _report(console: Console, result: "ExportResult") -> None:
    summary = result.summary()
    if console.json:
        console.emit_json({"type": "summary", "command": "export", **summary})
        return
    for skipped in result.skipped_parts:
        console.event("skipped", f"{skipped['part']}: not read ({skipped['reason']})", level="warning")
    if result.unpaired:
        console.event("unpaired", f"{len(result.unpaired)} images or annotations without their other half left out, "
                      f"e.g. {result.unpaired[0]}", level="warning")
    if result.unreadable:
        console.event("unreadable", f"{len(result.unreadable)} annotations are not SA-1B JSON and were left out by the "
                      f"mask filter, e.g. {result.unreadable[0]}", level="warning")
    if result.ids_missing:
        shown = ", ".join(map(str, result.ids_missing[:SHOWN_MISSING]))
        more = f" and {len(result.ids_missing) - SHOWN_MISSING} more" if len(result.ids_missing) > SHOWN_MISSING else ""
        console.event("ids_missing", f"{len(result.ids_missing)} ids of --ids not found in the parts read: {shown}{more} "
                      f"(all in {result.out / 'sa1b-export.json'})", level="error")
    if result.estimate is not None:
        estimate = result.estimate
        exact = "exactly" if estimate["exact"] else "about"
        masks = "; --min-masks/--max-masks not applied" if estimate["mask_filter_applied"] is False else ""
        console.print_result(f"export --dry-run: {exact} {estimate['samples']} samples, {human_bytes(estimate['bytes'])}, "
                             f"{estimate['shards']} shards from {len(result.settings.parts)} parts{masks}")
        return
    done = "already exported" if result.already else (
        f"{result.shards_written} shards written, {result.shards_kept} kept from an earlier run, "
        f"{result.parts_read} parts read in {human_duration(result.seconds)}")
    console.print_result(f"export: {result.samples} samples, {human_bytes(result.bytes)} in {len(result.records)} "
                         f"{'chunks' if result.settings.format == 'folders' else 'shards'} -> {result.out} ({done})")
