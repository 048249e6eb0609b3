"""Getting extracted files onto the disk early and for good: Linux ``sync_file_range`` and ``syncfs``."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError, TypeError):  # TypeError: no C library by that name (Windows)
        return None


_sync_file_range = _libc_function("sync_file_range")
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Have the kernel start writing a finished file to disk now, without waiting for it (Linux
    ``sync_file_range``): the disk then works while later members are inflated, and the
    ``syncfs`` before the receipt finds little left to do. A no-op elsewhere."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def sync_filesystem(directory: Path) -> None:
    """Flush the file system holding ``directory`` (Linux ``syncfs``; ``os.sync`` elsewhere)."""
    syncfs = _libc_function("syncfs")
    if syncfs is None:
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
