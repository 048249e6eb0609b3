"""Per-part locks that hold on network file systems.

``flock`` silently succeeds without locking on some network file systems (Lustre,
GPFS, some NFS mounts), so a lock here is a file created with O_EXCL that names its
holder (host, pid, a random token). The holder refreshes the file's mtime while it
works; a lock whose mtime is older than ``stale_after`` seconds, or whose holder is
a dead process on this host (same boot and pid namespace, so containers sharing a
host name never judge each other), is stale and is broken. Ages are measured on the
file system's clock (a probe file touched now), so hosts with skewed clocks do not
take each other's live locks for stale ones. Breaking renames the file
aside first (only one breaker can win the rename) and checks that what it renamed
is the stale lock it read, so a fresh lock is never stolen.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sa1b_cli.errors import LockHeldError

DEFAULT_STALE_AFTER = 120.0
DEFAULT_REFRESH_EVERY = 15.0


def _process_namespace() -> str:
    """This machine's boot and pid namespace: a pid means the same process only within both."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    try:
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pid_ns = 0
    return f"{boot}:{pid_ns}"


NAMESPACE = _process_namespace()


def _fs_now(directory: Path) -> float:
    """The current time as the file system (an NFS server, say) stamps files."""
    probe = directory / f".clock-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.touch()
        return probe.stat().st_mtime
    except OSError:
        return time.time()
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    token: str
    started: float
    age: float  # seconds since the last refresh, on the file system's clock
    namespace: str = ""

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} (refreshed {self.age:.0f}s ago)"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (in this pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def read_holder(path: Path, now: float | None = None) -> LockHolder | None:
    """Who holds the lock at ``path``; None if unlocked (or unreadable mid-creation)."""
    try:
        stat = path.stat()
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        data = {}
    return LockHolder(
        host=str(data.get("host", "?")),
        pid=int(data.get("pid", -1)),
        token=str(data.get("token", "")),
        started=float(data.get("started", stat.st_mtime)),
        age=max(0.0, (time.time() if now is None else now) - stat.st_mtime),
        namespace=str(data.get("namespace", "")),
    )


def is_stale(holder: LockHolder, stale_after: float) -> bool:
    if holder.age > stale_after:
        return True
    same_processes = holder.host == socket.gethostname() and holder.namespace in ("", NAMESPACE)
    return same_processes and holder.pid > 0 and holder.pid != os.getpid() and not pid_alive(holder.pid)


class PartLock:
    """An exclusive lock on one part, valid across hosts sharing a file system."""

    def __init__(self, path: Path, *, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.path = path
        self.stale_after = stale_after
        self.token = uuid.uuid4().hex
        self.held = False

    def try_acquire(self) -> LockHolder | None:
        """Take the lock; return None on success or the live holder that has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            if self._create():
                self.held = True
                return None
            holder = read_holder(self.path, _fs_now(self.path.parent))
            if holder is None:
                continue  # released meanwhile: try again
            if not holder.token and holder.age < 5:
                time.sleep(0.05)  # being written right now
                continue
            if not is_stale(holder, self.stale_after):
                return holder
            self._break(holder)
        holder = read_holder(self.path)
        return holder or LockHolder("?", -1, "", 0.0, 0.0)

    def acquire(self) -> None:
        holder = self.try_acquire()
        if holder is not None:
            raise LockHeldError(f"{self.path.name}: locked by {holder.describe()}")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(
                    {"host": socket.gethostname(), "pid": os.getpid(), "namespace": NAMESPACE, "token": self.token, "started": time.time()},
                    handle,
                )
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            os.unlink(self.path)  # an empty lock (a full disk) would block the part until it goes stale
            raise
        return True

    def _break(self, stale: LockHolder) -> None:
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_holder(aside)
        if moved is not None and moved.token != stale.token:
            # We raced another breaker and renamed a fresh lock: put it back without clobbering.
            try:
                os.link(aside, self.path)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
        try:
            os.unlink(aside)
        except FileNotFoundError:
            pass

    def refresh(self) -> bool:
        """Touch the lock; False if it is no longer ours (broken by someone who thought us dead)."""
        if not self.held:
            return False
        holder = read_holder(self.path)
        if holder is None or holder.token != self.token:
            self.held = False
            return False
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.held = False
            return False
        return True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = read_holder(self.path)
        if holder is not None and holder.token == self.token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class LockKeeper:
    """Refreshes every held lock from one background thread while work goes on."""

    def __init__(self, refresh_every: float = DEFAULT_REFRESH_EVERY) -> None:
        self.refresh_every = refresh_every
        self._locks: dict[str, PartLock] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: list[str] = []

    def __enter__(self) -> "LockKeeper":
        self._thread = threading.Thread(target=self._run, name="sa1b-lock-keeper", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release_all()

    def add(self, key: str, lock: PartLock) -> None:
        with self._guard:
            self._locks[key] = lock

    def release(self, key: str) -> None:
        with self._guard:
            lock = self._locks.pop(key, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        with self._guard:
            locks, self._locks = list(self._locks.values()), {}
        for lock in locks:
            lock.release()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_every):
            with self._guard:
                items = list(self._locks.items())
            for key, lock in items:
                if not lock.refresh():
                    with self._guard:
                        if self._locks.get(key) is lock:
                            del self._locks[key]
                            self.lost.append(key)

    def take_lost(self) -> list[str]:
        """Keys whose lock was broken by another run since the last call (each reported once)."""
        with self._guard:
            lost, self.lost = self.lost, []
        return lost
