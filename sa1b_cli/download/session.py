"""The run's aria2c: launched with a head start, driven over RPC, woken by its notifications,
restarted when it dies under the run."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sa1b_cli.aria2_daemon import Aria2Daemon, DaemonSettings, InputEntry
from sa1b_cli.download.model import DownloadOptions
from sa1b_cli.errors import Aria2Error, Aria2RpcError
from sa1b_cli.events import Reporter
from sa1b_cli.store.paths import RootPaths

if TYPE_CHECKING:
    from sa1b_cli.aria2_client import PartEndListener

STATUS_KEYS = [
    "gid", "status", "totalLength", "completedLength", "downloadSpeed", "connections", "errorCode", "errorMessage",
    "bitfield", "pieceLength",
]
MAX_DAEMON_RESTARTS = 3


def make_daemon(paths: RootPaths, options: DownloadOptions) -> Aria2Daemon:
    """The aria2c daemon a download run drives (not started yet)."""
    settings = DaemonSettings(
        download_dir=paths.tars,
        max_concurrent=options.jobs,
        connections=options.connections,
        min_split_size=options.min_split_size,
        max_overall_speed=options.max_speed,
        timeout_seconds=options.stall_timeout,
        max_tries=3,
        retry_wait_seconds=2,
        # A piece aria2 reports complete must be in the file when the streaming check reads it. aria2
        # flushes a piece's write cache before it marks the piece complete (completeSegment in
        # src/DownloadCommand.cc); with no cache at all that holds whatever aria2 does inside
        # (measured: no throughput cost on loopback, 193 vs 192 MiB/s at 25 MB/s per connection).
        disk_cache="0" if options.check_while_downloading else DaemonSettings.disk_cache,
    )
    return Aria2Daemon(settings, options.aria2c)


class Aria2Session:
    """One run's aria2c and what the run asks of it; every RPC failure leaves as :class:`Aria2RpcError`."""

    def __init__(self, paths: RootPaths, options: DownloadOptions, wake: Callable[[], None]) -> None:
        self.daemon = make_daemon(paths, options)
        self.wake = wake
        self.listeners: list[PartEndListener] = []  # aria2's notifications, one per aria2c started
        self._head_start: list[InputEntry] | None = None  # collects the first parts before aria2c runs

    @contextmanager
    def head_start(self) -> Iterator[None]:
        """Parts added inside go on aria2c's input file, and aria2c is launched with them: they download
        from its first moment, while this process still imports aria2p (~0.2 s) and connects to it."""
        self._head_start = []
        try:
            yield
            self.daemon.launch(self._head_start)
        finally:
            self._head_start = None

    def start(self) -> None:
        """Wait until aria2c answers, then listen to it."""
        self.daemon.start()
        self._listen()

    def _listen(self) -> None:
        """Wake the loop the moment aria2 says a part completed or failed, instead of at the next poll.

        Connected before the loop's first poll and before any part is added over RPC: a head-start
        part that ended earlier is seen by that poll, any later end is notified. Events are only hints
        (what happened is always read from the poll).
        """
        from sa1b_cli.aria2_client import PartEndListener

        listener = PartEndListener.connect(self.daemon.api_client, self.wake)
        if listener is not None:
            self.listeners.append(listener)

    def add(self, uris: list[str], options: dict[str, Any]) -> str:
        """Hand aria2 a part; its gid. Before aria2c runs, on its input file with a gid chosen here."""
        if self._head_start is not None:
            gid = secrets.token_hex(8)
            self._head_start.append(InputEntry(uris, {"gid": gid, **options}))
            return gid
        return str(self.daemon.api_client.add_uri(uris, options))

    def statuses(self, gids: list[str]) -> list[Any]:
        """aria2's status of each gid in one call: a list holding the status, or an error dict."""
        client = self.daemon.api_client
        return list(client.multicall2([(client.TELL_STATUS, [gid, STATUS_KEYS]) for gid in gids]))

    def forget(self, gid: str) -> None:
        """Drop an ended download's result from aria2 (it keeps thousands otherwise)."""
        try:
            self.daemon.api_client.remove_download_result(gid)
        except Aria2RpcError:
            pass

    def remove(self, gid: str) -> None:
        try:
            self.daemon.api_client.force_remove(gid)
        except Aria2RpcError:
            pass

    def swap_uri(self, gid: str, old_url: str, new_url: str, keep: str | None) -> None:
        """Put a renewed link in place of the old one (every copy: aria2 keeps one per connection);
        ``keep``, a mixed-in source's URI, stays."""
        client = self.daemon.api_client
        try:
            current = [u["uri"] for u in client.get_uris(gid)]
            old = [u for u in current if u == old_url] or [u for u in current if keep is None or u != keep]
            client.change_uri(gid, 1, old, [new_url], 0)
        except Aria2RpcError:
            pass

    def recover(self, exc: BaseException, reporter: Reporter) -> None:
        """RPC failed: if aria2c died, restart it (control files keep progress); the caller adds again
        what was running. A live aria2c that stopped answering, or one that keeps dying, ends the run."""
        daemon = self.daemon
        if daemon.alive(grace=2.0):
            raise Aria2Error(f"aria2c stopped answering: {exc}") from exc
        code = daemon.proc.returncode if daemon.proc else None
        if daemon.starts > MAX_DAEMON_RESTARTS:
            raise Aria2Error(f"aria2c keeps dying (last exit code {code})")
        reporter.event("aria2_restart", f"aria2c stopped unexpectedly (exit code {code}); restarting it, parts resume "
                       "from their control files", level="warning")
        daemon.restart()
        self._listen()

    def stop(self) -> None:
        self.daemon.stop()
        for listener in self.listeners:
            listener.close()
