"""Atomic JSON state files: receipts, failures, run progress.

A receipt is the only proof that a stage finished for a part. It is written to a
temporary file in the same directory, fsynced and renamed into place, so a crash
leaves either the old receipt or the new one, never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sa1b_cli.paths import RootPaths


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# State files are shared by every host and user of a ROOT: mkstemp's 0600 is too strict.
FILE_MODE = 0o666 & ~_current_umask()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_json(path: Path, data: Any, reserved: Reservation | None = None) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + fsync + rename), into the space of
    ``reserved`` when given (so it can be written on a disk that filled up meanwhile)."""
    if reserved is not None and reserved.path == path:
        reserved.write(data)
        return
    atomic_write_text(path, _json_text(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + fsync + rename): a crash
    leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _write_and_publish(fd, tmp, path, text)


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _write_and_publish(fd: int, tmp: str, path: Path, text: str) -> None:
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.ftruncate(handle.fileno(), handle.tell())  # a reserved file is longer than what it holds
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


class Reservation:
    """Disk space for one state file, taken before work that may fill the disk (an extraction), so
    that the proof of the work done before it (a download receipt) can still be written after it."""

    SIZE = 64 << 10  # a receipt is a few hundred bytes

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.posix_fallocate(self._fd, 0, self.SIZE)
        except OSError as exc:
            self.release()
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: no promise
                raise

    def write(self, data: Any) -> None:
        if self._fd < 0:
            raise RuntimeError(f"reservation for {self.path} already used")
        fd, self._fd = self._fd, -1
        os.lseek(fd, 0, os.SEEK_SET)
        _write_and_publish(fd, self._tmp, self.path, _json_text(data))

    def release(self) -> None:
        """Give the space back when the file was not written."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (a torn write by hand)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, OSError):
        return None


def read_receipt(paths: RootPaths, stage: str, name: str) -> dict[str, Any] | None:
    return read_json(paths.receipt(stage, name))


def write_receipt(paths: RootPaths, stage: str, name: str, data: dict[str, Any], reserved: Reservation | None = None) -> None:
    record = dict(data)
    record.setdefault("part", name)
    record.setdefault("stage", stage)
    record.setdefault("time", utc_now_iso())
    atomic_write_json(paths.receipt(stage, name), record, reserved)
    clear_failure(paths, stage, name)


def remove_receipt(paths: RootPaths, stage: str, name: str) -> None:
    try:
        paths.receipt(stage, name).unlink()
    except FileNotFoundError:
        pass


def list_receipts(paths: RootPaths, stage: str) -> dict[str, dict[str, Any]]:
    """All receipts of a stage, keyed by part file name (``sa_000000.tar``)."""
    result: dict[str, dict[str, Any]] = {}
    directory = paths.receipts_dir(stage)
    if not directory.is_dir():
        return result
    for entry in sorted(directory.glob("*.json")):
        data = read_json(entry)
        if isinstance(data, dict):
            result[str(data.get("part", entry.stem + ".tar"))] = data
    return result


def write_failure(paths: RootPaths, stage: str, name: str, reason: str, **extra: Any) -> None:
    """Record why a part failed, for ``status``; best effort: a full or read-only disk must not
    turn a part's failure into a crash of the run."""
    try:
        atomic_write_json(
            paths.failure(stage, name),
            {"part": name, "stage": stage, "reason": reason, "time": utc_now_iso(), "epoch": time.time(), **extra},
        )
    except OSError:
        pass


def read_failure(paths: RootPaths, stage: str, name: str) -> dict[str, Any] | None:
    return read_json(paths.failure(stage, name))


def clear_failure(paths: RootPaths, stage: str, name: str) -> None:
    try:
        paths.failure(stage, name).unlink()
    except FileNotFoundError:
        pass
