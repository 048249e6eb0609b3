"""``sa1b demo``: the whole pipeline offline (core: ``sa1b_cli.demo``)."""

from __future__ import annotations

from pathlib import Path

import click

from sa1b_cli.cli.edge import handles_errors
from sa1b_cli.cli.options import console_options, env_option
from sa1b_cli.console import Console
from sa1b_cli.errors import ExitStatus


@click.command("demo")
@env_option("-d", "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
            show_default=False, envvar="SA1B_DEMO_DIR",
            help="Demo directory: new, empty, or an earlier demo's. Default: a fresh temporary directory (kept).")
@env_option("--parts", "part_count", type=click.IntRange(1, 1000), default=4, envvar="SA1B_DEMO_PARTS", help="Parts to generate.")
@env_option("--pairs", type=click.IntRange(1, 20_000), default=50, envvar="SA1B_DEMO_PAIRS", help="Image/annotation pairs per part.")
@env_option("--mirror", is_flag=True, default=False, envvar="SA1B_DEMO_MIRROR",
            help="Play the links page being down: expired links, a mirror with one wrong part that the reference catches.")
@console_options
@env_option("--log-interval", type=click.FloatRange(min=0.1), default=1.0, envvar="SA1B_DEMO_LOG_INTERVAL",
            help="Seconds between progress lines when not on a TTY and in --json mode.")
@handles_errors
def demo_command(directory: Path | None, part_count: int, pairs: int, mirror: bool, console: Console) -> ExitStatus:
    """Try the whole pipeline offline in a few seconds: no links file, no network.

    Generates a few parts in SA-1B's format (real JPEGs, real RLE annotations, gzip tars),
    serves them from 127.0.0.1 behind signed, expiring links like Meta's CDN (the links file
    is written to the demo directory), then downloads them with aria2c, extracts and verifies
    them with the same code as 'download', 'extract' and 'verify'. Ends with the commands
    to run on the real dataset.

    \b
    Exit code: the worst of the download, extract and verify stages (0 when all are fine), by the
    order of the README's exit-code table; 2 when the demo directory cannot be used.

    \b
    Examples:
      sa1b demo
      sa1b demo -d ./sa1b-demo --parts 8 --pairs 200
      sa1b demo --mirror          # links expired: a mirror serves, its one wrong part is caught
    """
    from sa1b_cli import demo as core

    result = core.run_demo(directory, part_count, pairs, console, mirror=mirror)
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
