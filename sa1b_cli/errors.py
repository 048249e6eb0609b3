"""Exit codes and typed errors.

The core never prints or exits: it raises one of these, and the ``cli`` package turns the
``exit_status`` into the process exit code documented in the README. When a run ends in
several states at once (one part failed, another was locked), ``worst`` picks the one exit
code by ``SEVERITY``: one order for every command and the demo.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class ExitStatus(enum.IntEnum):
    """Process exit codes; stable, documented in the README, meant for cron."""

    OK = 0
    ERROR = 1  # unexpected internal error (a bug, or an environment we could not handle)
    USAGE = 2  # bad options or bad input file (links file, checksum list, parts spec)
    PARTS_FAILED = 3  # some selected parts failed (download or extract); others may be done
    LOCKED = 4  # another run holds the lock on (some of) the selected parts
    INCOMPLETE = 5  # verify: files or parts are missing
    CORRUPT = 6  # verify: files are present but damaged
    NO_SPACE = 7  # not enough free disk space for the plan
    LINKS_EXPIRED = 8  # parts could not be fetched only because their links expired: get a fresh links file
    WRONG_BYTES = 9  # a part's bytes differ from the checksum list or community reference, from every source
    PARTIAL = 10  # verify: every part that has arrived is sound; others are still to come (download unfinished)
    INTERRUPTED = 130  # stopped by SIGINT/SIGTERM; state saved, rerun resumes

    @property
    def severity(self) -> int:
        """Rank in ``SEVERITY``: higher is worse (not the numeric code: LOCKED=4 is milder than PARTS_FAILED=3)."""
        return len(SEVERITY) - SEVERITY.index(self)


# Worst first. A bug or bad input outranks everything (the run proves nothing); a stop says the result
# is not final; damaged bytes need a person before missing ones; a failure outranks links that only
# expired; a part another run holds is that run's work; parts still to come, with all that arrived sound, are
# success so far, the mildest state short of success.
SEVERITY: tuple[ExitStatus, ...] = (
    ExitStatus.ERROR,
    ExitStatus.USAGE,
    ExitStatus.INTERRUPTED,
    ExitStatus.CORRUPT,
    ExitStatus.WRONG_BYTES,
    ExitStatus.INCOMPLETE,
    ExitStatus.NO_SPACE,
    ExitStatus.PARTS_FAILED,
    ExitStatus.LINKS_EXPIRED,
    ExitStatus.LOCKED,
    ExitStatus.PARTIAL,
    ExitStatus.OK,
)


def worst(statuses: Iterable[ExitStatus]) -> ExitStatus:
    """The one exit status for a run that ended in several: the most severe by ``SEVERITY`` (OK when none)."""
    return max(statuses, key=lambda status: status.severity, default=ExitStatus.OK)


class Sa1bError(Exception):
    """Base of every error the core raises on purpose."""

    exit_status: ExitStatus = ExitStatus.ERROR


class UsageError(Sa1bError):
    """Options out of range or contradicting each other."""

    exit_status = ExitStatus.USAGE


class InputFileError(Sa1bError):
    """A user-supplied file is malformed; the message names the file and line."""

    exit_status = ExitStatus.USAGE

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.reason = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class LockHeldError(Sa1bError):
    """Another live run holds a lock we need."""

    exit_status = ExitStatus.LOCKED


class DiskSpaceError(Sa1bError):
    """The plan does not fit on the target file system."""

    exit_status = ExitStatus.NO_SPACE


class LayoutError(Sa1bError):
    """The ROOT was extracted with another layout than the one asked for."""

    exit_status = ExitStatus.USAGE


class Aria2Error(Sa1bError):
    """The aria2c daemon could not be found, started or reached."""

    exit_status = ExitStatus.ERROR


class Aria2RpcError(Aria2Error):
    """One JSON-RPC call to aria2c failed: no answer, a broken reply or an error reply."""


class Interrupted(Sa1bError):
    """A signal asked us to stop; everything was saved."""

    exit_status = ExitStatus.INTERRUPTED
