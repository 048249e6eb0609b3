"""Command line: parse options, call the core, turn results and errors into output and exit codes.

Nothing here downloads, extracts or verifies; each command's module names the core it calls.
``options`` holds the shared options and their environment variables, ``edge`` the one place
where the environment is read and errors and exit codes leave. Commands are named in ``COMMANDS``
below and imported only when one runs.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from sa1b_cli import __version__
from sa1b_cli.cli.edge import Sa1bGroup
from sa1b_cli.cli.options import CONTEXT_SETTINGS, console_options

COMMANDS = {  # name -> where it is defined
    "demo": "sa1b_cli.cli.demo:demo_command",
    "download": "sa1b_cli.cli.download:download_command",
    "export": "sa1b_cli.cli.export:export_command",
    "extract": "sa1b_cli.cli.stages:extract_command",
    "links": "sa1b_cli.cli.links:links_command",
    "manifest": "sa1b_cli.cli.records:manifest_command",
    "status": "sa1b_cli.cli.records:status_command",
    "verify": "sa1b_cli.cli.stages:verify_command",
}


@click.group(cls=Sa1bGroup, context_settings=CONTEXT_SETTINGS, lazy_commands=COMMANDS)
@click.version_option(__version__, prog_name="sa1b")
@console_options
def cli(debug: bool, json_output: bool, quiet: bool) -> None:
    """Get Meta's SA-1B dataset onto this machine or a storage cluster: download, extract, verify.

    \b
    Typical run (get the links file from Meta's download page first):
      sa1b download segment_anything_links.txt -d /data/sa1b --extract
      sa1b verify -d /data/sa1b
      sa1b status -d /data/sa1b

    --debug, --json and --quiet given here apply to the command; every command takes them too.

    Exit codes: 0 ok, 1 internal error, 2 bad usage or input, 3 parts failed, 4 locked by another run,
    5 incomplete, 6 corrupt, 7 not enough disk space, 8 links expired, 9 wrong bytes (a part differs from
    the checksum list or community reference, from every source), 130 interrupted. A run that ends in
    several reports the worst: 1, 2, 130, 6, 9, 5, 7, 3, 8, 4, then 0.
    """



def _interrupt_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # one clean-up path for Ctrl-C, SIGTERM and SIGHUP: stop aria2c, save state, free locks


def main() -> None:
    for stop in (signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal or ssh session went away
        signal.signal(stop, _interrupt_on_signal)
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
