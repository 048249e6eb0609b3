"""A part's files before aria2 is handed it: which of them may be resumed, which must go.

aria2 fails a part on every run when its control file does not fit the file on the server, or
was torn by a full disk; a file without control file (another tool's download, an interrupted
copy) is continued or checked rather than refused.
"""

from __future__ import annotations

import enum

from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.download.active import ActivePart
from sa1b_cli.events import Reporter
from sa1b_cli.store.paths import RootPaths


class OnDisk(enum.Enum):
    """What a part's files allow when it is handed to aria2."""

    AS_IS = "as is"  # nothing, or aria2's own progress: aria2 resumes (or starts)
    CONTINUE = "continue"  # a shorter file without control file: append to it
    CHECK = "check"  # a full-size file without control file: it may be complete


def prepare_files(paths: RootPaths, name: str, a: ActivePart, reporter: Reporter) -> OnDisk:
    """Make a part's files safe to hand to aria2, and say what they allow."""
    tar, control = paths.tar(name), paths.control_file(name)
    _discard_unresumable(paths, name, a.expected_size, reporter)
    if tar.exists() and not control.exists():
        size = tar.stat().st_size
        if a.expected_size is not None and size < a.expected_size and not a.ignores_range:
            # A partial file from another tool (wget -c, an interrupted copy): append to it.
            reporter.event("adopt", f"{name}: resuming a partial file without aria2 control file ({size} bytes)")
            return OnDisk.CONTINUE
        # Full size (or unknown): it may be complete. Check it rather than refuse it (aria2 error 13).
        reporter.event("adopt", f"{name}: checking a file found without aria2 control file")
        return OnDisk.CHECK
    if control.exists() and not tar.exists():
        control.unlink()
    return OnDisk.AS_IS


def _discard_unresumable(paths: RootPaths, name: str, expected_size: int | None, reporter: Reporter) -> None:
    """Remove a partial download aria2 cannot resume (it would fail it with error 1 on every run)."""
    tar, control = paths.tar(name), paths.control_file(name)
    if not control.exists():
        return
    progress = read_control_file(control)
    if progress is not None and expected_size is not None and progress.total_length != expected_size:
        # The file changed on the server while this part was partial: its bytes belong to the old file.
        reporter.event("restart", f"{name}: the server's file is now {expected_size} bytes, the partial "
                       f"download was of a {progress.total_length}-byte file; discarding it and starting over",
                       level="warning", part=name)
    elif progress is None:
        # A full disk leaves an empty control file next to a file of allocated, unwritten bytes: the
        # bytes cannot be trusted.
        reporter.event("restart", f"{name}: aria2's progress file is damaged (was the disk full?); downloading "
                       "this part again", level="warning")
    else:
        return
    tar.unlink(missing_ok=True)
    control.unlink()


def resumable_bytes(paths: RootPaths, name: str) -> int:
    """Bytes aria2 starts a part from (its control file's progress, or the length of a file it continues):
    what it reports beyond them in this run crossed the network in this run."""
    tar, control = paths.tar(name), paths.control_file(name)
    if control.exists():
        progress = read_control_file(control)
        return progress.completed_length if progress is not None else 0
    try:
        return tar.stat().st_size
    except FileNotFoundError:
        return 0
