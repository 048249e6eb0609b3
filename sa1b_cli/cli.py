"""Command line: parse options, call the core, turn results and errors into output and exit codes.

Nothing here downloads, extracts or verifies; see the modules named in each command.
Every option can also be set from an ``SA1B_<OPTION>`` environment variable.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sa1b_cli import __version__
from sa1b_cli.console import Console, Environment
from sa1b_cli.errors import ExitStatus, Sa1bError

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
    5 incomplete, 6 corrupt, 7 not enough disk space, 8 links expired, 130 interrupted.
    """


def main() -> None:
    cli(prog_name="sa1b")
