"""Atomic JSON files: the one way the store writes state.

Every state file is written to a temporary file in the same directory, fsynced and
renamed into place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any



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
