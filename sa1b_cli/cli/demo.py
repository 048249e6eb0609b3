"""``sa1b demo``: the whole pipeline offline (core: ``sa1b_cli.demo``).

In every other command ``--parts`` selects parts (``0-9,15``) and ``-d`` is the dataset ROOT. The demo's
folder is not a ROOT (it holds the generated parts, the links file and ``dataset/``, the ROOT), so it is
named ``--dir``, and how many parts to generate is ``--count``. The old ``--parts N`` and ``-d DIR`` still
work, with a warning, so that scripts written for them keep running.
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from sa1b_cli.cli.edge import handles_errors
from sa1b_cli.cli.options import console_options, env_option
from sa1b_cli.console import Console
from sa1b_cli.errors import ExitStatus

MAX_COUNT = 1000
DEFAULT_COUNT = 4


def _old_count(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """The deprecated ``--parts N``: a count, and only a count (a selection means nothing to the demo)."""
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: in demo, --parts is the old name of --count, a number of parts to "
                                 "generate (sa_000000.tar up to N-1), not a selection; use --count N", ctx, param) from None
    if not 1 <= count <= MAX_COUNT:
        raise click.BadParameter(f"{count}: the demo generates 1 to {MAX_COUNT} parts; use --count N", ctx, param)
    return count


def _resolve_old_names(ctx: click.Context, console: Console, directory: Path | None, old_directory: Path | None,
                       count: int, old_count: int | None) -> tuple[Path | None, int]:
    """``--dir`` and ``--count`` from the old ``-d`` and ``--parts`` (``SA1B_DEMO_PARTS``), each warned of once."""
    if old_directory is not None:
        if directory is not None and directory != old_directory:
            raise click.UsageError("-d and --dir name different demo folders: give --dir only", ctx)
        console.event("deprecated_option", "demo -d is deprecated, use --dir: elsewhere -d is the dataset ROOT, and "
                      "the demo's folder is not one (its ROOT is DIR/dataset)", level="warning")
        directory = old_directory
    if old_count is not None:
        count_given = ctx.get_parameter_source("count") is not ParameterSource.DEFAULT
        if count_given and count != old_count:
            raise click.UsageError("--parts and --count give different counts: give --count only", ctx)
        old_name = "SA1B_DEMO_PARTS" if ctx.get_parameter_source("old_count") is ParameterSource.ENVIRONMENT else "--parts"
        new_name = "SA1B_DEMO_COUNT" if old_name.startswith("SA1B") else "--count"
        console.event("deprecated_option", f"demo {old_name} is deprecated, use {new_name}: elsewhere --parts selects "
                      "parts ('0-9,15'); the demo's is how many to generate", level="warning")
        count = old_count
    return directory, count


@click.command("demo")
@env_option("--dir", "directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path), default=None,
            show_default=False, envvar="SA1B_DEMO_DIR",
            help="Demo folder: new, empty, or an earlier demo's. It holds the generated parts, the links file and "
            "dataset/, the dataset ROOT (sa1b status -d DIR/dataset). Default: a fresh temporary folder (kept).")
@click.option("-d", "old_directory", type=click.Path(file_okay=False, path_type=Path), default=None, hidden=True)
@env_option("--count", metavar="N", type=click.IntRange(1, MAX_COUNT), default=DEFAULT_COUNT, envvar="SA1B_DEMO_COUNT",
            help="How many parts to generate (sa_000000.tar on).")
@env_option("--parts", "old_count", default=None, envvar="SA1B_DEMO_PARTS", hidden=True, callback=_old_count)
@env_option("--pairs", type=click.IntRange(1, 20_000), default=50, envvar="SA1B_DEMO_PAIRS", help="Image/annotation pairs per part.")
@env_option("--mirror", is_flag=True, default=False, envvar="SA1B_DEMO_MIRROR",
            help="Play the links page being down: expired links, a mirror with one wrong part that the reference catches.")
@console_options
@env_option("--log-interval", type=click.FloatRange(min=0.1), default=1.0, envvar="SA1B_DEMO_LOG_INTERVAL",
            help="Seconds between progress lines when not on a TTY and in --json mode.")
@handles_errors
def demo_command(directory: Path | None, old_directory: Path | None, count: int, old_count: int | None, pairs: int,
                 mirror: bool, console: Console) -> ExitStatus:
    """Try the whole pipeline offline in a few seconds: no links file, no network.

    Generates a few parts in SA-1B's format (real JPEGs, real RLE annotations, gzip tars),
    serves them from 127.0.0.1 behind signed, expiring links like Meta's CDN (the links file
    is written to the demo folder), then downloads them with aria2c, extracts and verifies
    them with the same code as 'download', 'extract' and 'verify'. Ends with the commands
    to run on the real dataset.

    The demo folder is not a dataset ROOT: the ROOT is its dataset/ folder. The old '-d DIR' and
    '--parts N' (SA1B_DEMO_PARTS) still work, with a warning: elsewhere they are the ROOT and a selection.

    \b
    Exit code: the worst of the download, extract and verify stages (0 when all are fine), by the
    order of the README's exit-code table; 2 when the demo folder cannot be used.

    \b
    Examples:
      sa1b demo
      sa1b demo --dir ./sa1b-demo --count 8 --pairs 200
      sa1b status -d ./sa1b-demo/dataset   # the demo's dataset ROOT, afterwards
      sa1b demo --mirror          # links expired: a mirror serves, its one wrong part is caught
    """
    from sa1b_cli import demo as core

    directory, count = _resolve_old_names(click.get_current_context(), console, directory, old_directory, count,
                                          old_count)
    result = core.run_demo(directory, count, pairs, console, mirror=mirror)
    console.close()
    if console.json:
        console.emit_json({"type": "summary", "command": "demo", **result.to_dict()})
        return result.exit_status
    *stages, verdict = core.stage_lines(result)
    for line in stages:
        console.print_note(line)
    console.print_result(verdict)
    console.print_note("\n" + "\n".join(core.next_steps(result.directory)))
    return result.exit_status
