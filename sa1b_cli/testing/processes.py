"""Finding the aria2c that works for a ROOT, from outside (tests and benchmarks check for orphans)."""

from __future__ import annotations

from pathlib import Path


def aria2c_pids(root: Path) -> list[int]:
    """aria2c processes working for ROOT, found by their ``--dir=ROOT/tars`` argument in /proc."""
    wanted = f"--dir={root / 'tars'}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"aria2c") and wanted in argv:
            found.append(int(proc.name))
    return found
