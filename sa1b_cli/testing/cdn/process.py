"""The fake CDN in a process of its own (``python -m sa1b_cli.testing.cdn``) and :class:`CDNProcess`,
which starts one and drives it over the control API: for benchmarks and tests that need the CDN
outside the test process (e.g. to kill the client hard)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

from sa1b_cli.testing.cdn.control import CONTROL_PREFIX
from sa1b_cli.testing.cdn.faults import Faults
from sa1b_cli.testing.cdn.protocol import DEFAULT_TTL
from sa1b_cli.testing.cdn.server import FakeCDN


class CDNProcess:
    """``python -m sa1b_cli.testing.cdn`` as a child process, driven over HTTP.

    ``links`` is the links file it wrote.
    """

    def __init__(self, directory: Path | str, links_out: Path | str, *, expires_in: float = DEFAULT_TTL,
                 port: int = 0, faults: Faults | None = None, timeout: float = 20.0) -> None:
        self.links = Path(links_out)
        cmd = [sys.executable, "-m", "sa1b_cli.testing.cdn", "--dir", str(directory), "--links-out",
               str(self.links), "--expires-in", str(expires_in), "--port", str(port)]
        if faults is not None:
            cmd += ["--faults", json.dumps(dataclasses.asdict(faults))]
        env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdout is not None
        # readline blocks; a timer kills a child that never prints its port
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line.strip().isdigit():
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"CDN process did not start (got {line!r})")
        self.port = int(line)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, cmd: str, body: Mapping[str, Any] | None = None, query: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = f"{self.base_url}{CONTROL_PREFIX}{cmd}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        with self._opener.open(req, timeout=10) as r:
            raw = r.read()
        return raw.decode() if cmd == "links" else json.loads(raw)

    def stats(self) -> dict[str, Any]:
        return self._call("stats")  # type: ignore[no-any-return]

    def bytes_sent(self, name: str | None = None) -> int:
        s = self.stats()
        return int(s["bytes_sent"] if name is None else s["by_name"].get(name, 0))

    def log(self) -> list[dict[str, Any]]:
        return self._call("log")  # type: ignore[no-any-return]

    def links_text(self, expires_at: float | None = None) -> str:
        return self._call("links", query="" if expires_at is None else f"expires_at={expires_at}")  # type: ignore

    def set_faults(self, name: str | None, faults: Faults | None) -> None:
        body: dict[str, Any] = dataclasses.asdict(faults) if faults is not None else {}
        self._call("faults", {**body, "name": name})

    def revoke(self, name: str) -> None:
        self._call("revoke", {"name": name})

    def expire_all(self) -> None:
        self._call("expire_all", {})

    def reset_log(self) -> None:
        self._call("reset_log", {})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> CDNProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_until_signalled(announce: str, close: Callable[[], None]) -> int:
    """Print ``announce`` (what the parent waits for), serve until SIGTERM/SIGINT, then ``close``."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(announce, flush=True)
    try:
        while not stop.wait(1):
            pass
    finally:
        close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sa1b_cli.testing.cdn",
                                 description="A loopback CDN that behaves like Meta's signed-URL CDN.")
    ap.add_argument("--dir", required=True, type=Path, help="serve the files in this directory")
    ap.add_argument("--links-out", type=Path, help="write a Meta-format links file here")
    ap.add_argument("--expires-in", type=float, default=DEFAULT_TTL, help="link lifetime in seconds")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret", help="signing secret (default random)")
    ap.add_argument("--faults", help="JSON object of Faults fields applied to every file")
    args = ap.parse_args(argv)
    cdn = FakeCDN(args.dir, port=args.port, secret=args.secret)
    if args.faults:
        cdn.set_faults(None, Faults.from_dict(json.loads(args.faults)))
    if args.links_out:
        cdn.write_links(args.links_out, expires_at=time.time() + args.expires_in)
    return serve_until_signalled(str(cdn.port), cdn.close)
