"""Where a command meets the process: the environment is read here, every error and exit code leaves here.

A command body takes a ``Console`` and returns an ``ExitStatus``; ``handles_errors`` builds the console
from --json/--quiet/--log-interval (given on the command or before it), turns every error, click's usage
errors included, into one console error record, and exits with the status.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from sa1b_cli.console import Console, Environment
from sa1b_cli.errors import ExitStatus, Sa1bError

F = TypeVar("F", bound=Callable[..., Any])

_TRUE = ("1", "true", "t", "yes", "y", "on")
RLE_BACKEND_VARIABLE = "SA1B_RLE_BACKEND"  # "pycocotools" or "numpy": decode masks with it, not a faster one


def process_environ() -> Mapping[str, str]:
    """The process environment (Slurm and Kubernetes shard variables): read here, passed to the core."""
    return os.environ


def choose_rle_backend(environ: Mapping[str, str]) -> None:
    """Give ``sa1b_cli.rle`` the decoder SA1B_RLE_BACKEND names (verify --deep, the demo); unset: the fastest.

    The decoders are loaded only when the variable is set, so a command that decodes nothing starts as fast.
    """
    requested = environ.get(RLE_BACKEND_VARIABLE, "").strip().lower()
    if not requested:
        return
    from sa1b_cli import rle

    if requested not in rle.BACKENDS:
        raise click.UsageError(f"{RLE_BACKEND_VARIABLE}={requested!r}: use one of {', '.join(rle.BACKENDS)}, "
                               "or unset it for the fastest decoder")
    rle.use_backend(requested)


def make_console(json_output: bool, quiet: bool, log_interval: float) -> Console:
    return Console.for_env(Environment.from_process(), json_output=json_output, interval=log_interval, quiet=quiet)


def _group_flag(ctx: click.Context, name: str) -> bool:
    return bool(ctx.find_root().params.get(name))


def handles_errors(f: F) -> F:
    """Give a command body its console, map its errors to console error records, exit with its status."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx = click.get_current_context()
        debug = kwargs.pop("debug") or _group_flag(ctx, "debug")
        console = make_console(kwargs.pop("json_output") or _group_flag(ctx, "json_output"),
                               kwargs.pop("quiet") or _group_flag(ctx, "quiet"), kwargs.pop("log_interval"))
        try:
            status = f(*args, console=console, **kwargs)
        except Sa1bError as exc:
            console.error(str(exc), exc.exit_status, type(exc).__name__)
            if debug:
                traceback.print_exc()
            ctx.exit(int(exc.exit_status))
        except KeyboardInterrupt:
            console.error("interrupted; state saved, run the same command again to resume", ExitStatus.INTERRUPTED,
                          "Interrupted")
            ctx.exit(int(ExitStatus.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: a clear line, traceback only with --debug
            if debug:
                traceback.print_exc()
            console.error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
                          ExitStatus.ERROR, "InternalError")
            ctx.exit(int(ExitStatus.ERROR))
        ctx.exit(int(status if status is not None else ExitStatus.OK))

    return wrapper  # type: ignore[return-value]


def wants_json(arguments: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether a run whose options could not be parsed asked for JSON (--json before ``--``, or SA1B_JSON)."""
    options = list(arguments)[: list(arguments).index("--")] if "--" in arguments else list(arguments)
    return "--json" in options or environ.get("SA1B_JSON", "").strip().lower() in _TRUE


class Sa1bGroup(click.Group):
    """The command group whose usage errors (unknown option, bad value) go through the console too, and which
    hands the process-wide settings of the environment (the RLE decoder) to the core before any command runs.

    Commands are named in ``lazy_commands`` (name -> ``"module:attribute"``) and imported when one runs or
    ``--help`` lists them: ``sa1b status`` under cron does not load the download machinery, nor ``sa1b export``
    the verifier's."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module, attribute = self.lazy_commands[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        choose_rle_backend(process_environ())
        return super().invoke(ctx)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        arguments = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(arguments, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            code = _report_usage_error(exc, wants_json(arguments, process_environ()))
        except click.exceptions.Abort:
            code = int(ExitStatus.INTERRUPTED)
            make_console(False, False, 10.0).error("interrupted", ExitStatus.INTERRUPTED, "Interrupted")
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _report_usage_error(exc: click.ClickException, json_output: bool) -> int:
    shown = io.StringIO()
    exc.show(file=shown)  # click's own text: usage, the hint to --help and the error
    status = ExitStatus(exc.exit_code) if exc.exit_code in iter(ExitStatus) else ExitStatus.USAGE
    make_console(json_output, False, 10.0).error(exc.format_message(), status, type(exc).__name__,
                                                 text=shown.getvalue())
    return exc.exit_code
