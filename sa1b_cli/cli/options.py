"""The options several commands share, each with its environment variables (shown by --help).

Every option reads ``SA1B_<OPTION>``. An option whose meaning or default differs between commands
(``--jobs``: parts to download, links to probe, parts to extract, worker processes) reads
``SA1B_<COMMAND>_<OPTION>`` first, so one variable never sets four different things; the shared
name still works for older cron lines and scripts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


def env_option(*decls: str, command: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``SA1B_<NAME>`` (after ``SA1B_<COMMAND>_<NAME>`` given a command)."""
    name = next(d for d in decls if d.startswith("--")).lstrip("-").replace("-", "_").upper()
    shared = f"SA1B_{name}"
    kwargs.setdefault("envvar", [f"SA1B_{command.upper()}_{name}", shared] if command else shared)
    kwargs.setdefault("show_envvar", True)
    return click.option(*decls, **kwargs)


_ROOT_HELP = "Dataset root: tars/, extracted files and the .sa1b/ state directory live here."


def _outside_other_roots(ctx: click.Context, param: click.Parameter, root: Path) -> Path:
    """ROOT as given, unless it lies inside another sa1b ROOT (``-d ROOT/tars``): refused with the -d to use."""
    from sa1b_cli.store.paths import enclosing_root

    enclosing = enclosing_root(root)
    if enclosing is not None:
        raise click.BadParameter(f"{root} is inside the sa1b ROOT {enclosing}: use -d {enclosing}", ctx, param)
    return root


def _required_root(ctx: click.Context, param: click.Parameter, root: Path | None) -> Path:
    """ROOT for a command that fills it: never the working directory by default (a cron line fills $HOME)."""
    if root is None:
        raise click.UsageError(f"{ctx.command.name} needs the dataset ROOT: give -d DIR or set SA1B_ROOT "
                               "(there is no default, so that it never fills the working directory)", ctx)
    return _outside_other_roots(ctx, param, root)


def root_option(f: F) -> F:
    """-d/--root of the commands that read a ROOT (default: the working directory)."""
    return env_option("-d", "--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                      callback=_outside_other_roots, help=_ROOT_HELP)(f)


def required_root_option(f: F) -> F:
    """-d/--root of ``download``, which fills ROOT with 10 TiB: given with -d or SA1B_ROOT, never defaulted."""
    return env_option("-d", "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
                      show_default=False, callback=_required_root, help=_ROOT_HELP + " Required.")(f)


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


def console_options(f: F) -> F:
    """--json, --quiet and --debug: accepted on every command as well as before it (``sa1b --json links ...``)."""
    f = env_option("--json", "json_output", is_flag=True, default=False, help="JSON lines on stdout (events, progress, summary).")(f)
    f = env_option("--quiet", "-q", is_flag=True, default=False, help="Only warnings, errors and the one-line summary.")(f)
    f = env_option("--debug", is_flag=True, default=False, help="Show tracebacks for errors.")(f)
    return f


def output_options(f: F) -> F:
    f = console_options(f)
    f = env_option(
        "--log-interval", type=click.FloatRange(min=0.1), default=10.0,
        help="Seconds between progress lines when not on a TTY (cron) and in --json mode.",
    )(f)
    return f


def jobs_option(default: int, what: str, command: str) -> Callable[[F], F]:
    return env_option("-j", "--jobs", command=command, type=click.IntRange(min=1, max=256), default=default,
                      help=f"How many {what} at once.")


_RATE = re.compile(r"^(\d+)\s*([KMG]?)(?:I?B)?$")


def aria2_size(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A byte count as aria2c takes it (whole K or M): ``50M``, ``10MB``, ``10MiB``, ``1G`` -> ``1024M``."""
    match = _RATE.match(value.strip().upper())
    if match is None:
        raise click.BadParameter(f"{value!r}: use whole bytes with an optional K, M or G suffix, e.g. 50M, 10MB or 1G")
    number, unit = int(match.group(1)), match.group(2)
    return f"{number * 1024}M" if unit == "G" else f"{number}{unit}"
