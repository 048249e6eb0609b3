"""Running ``sa1b`` as a separate process and watching it from outside (tests and benchmarks).

``sa1b_command`` runs the ``sa1b`` entry point installed beside this interpreter, as a user
would, so a test exercises the installed package (with its compiled extension), whatever the
current directory holds. ``aria2c_pids`` finds the aria2c working for a ROOT, to check for
orphans.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import sa1b_cli


def sa1b_command(*args: str | Path) -> list[str]:
    """``sa1b ARGS`` through the installed entry point, else ``python -m sa1b_cli`` (see ``sa1b_env``)."""
    script = Path(sys.executable).with_name("sa1b")
    if script.exists():
        return [str(script), *map(str, args)]
    return [sys.executable, "-m", "sa1b_cli", *map(str, args)]


def sa1b_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment plus ``extra``; the package's own folder first on PYTHONPATH, so that the
    ``python -m`` fallback imports the same ``sa1b_cli`` as this process."""
    package_parent = str(Path(sa1b_cli.__file__).resolve().parents[1])
    inherited = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_parent + (os.pathsep + inherited if inherited else "")}
    env.update(extra or {})
    return env


def run_sa1b(*args: str | Path, env: Mapping[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``sa1b ARGS`` to its end; its exit code and captured text output."""
    return subprocess.run(sa1b_command(*args), capture_output=True, text=True, env=sa1b_env(env), timeout=timeout)


def start_sa1b(*args: str | Path, env: Mapping[str, str] | None = None, output: bool = True) -> subprocess.Popen[str]:
    """Start ``sa1b ARGS`` in the background (stdout and stderr piped, or discarded with ``output=False``)."""
    stream = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen(sa1b_command(*args), stdout=stream, stderr=stream, text=True, env=sa1b_env(env))


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.02) -> object:
    """Poll ``predicate`` until it returns something true (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


def crash_download_midway(root: Path, *args: str | Path, bytes_sent: Callable[[], int], after_bytes: float,
                          settle: float = 0.0, output: bool = True) -> float:
    """Start ``sa1b download ARGS`` into ROOT and SIGKILL it once ``bytes_sent()`` passes ``after_bytes``
    (``settle`` seconds later: aria2 saves its control file every second); return once its aria2c is
    gone too, with the time of the kill: the state a crash leaves behind."""
    proc = start_sa1b("download", *args, "-d", root, output=output)
    wait_for(lambda: bytes_sent() > after_bytes, timeout=60, what=f"{after_bytes:.0f} bytes sent")
    time.sleep(settle)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.time()
    wait_for(lambda: not aria2c_pids(root), timeout=10, what="aria2c gone after the kill")
    return killed


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
