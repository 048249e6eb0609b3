"""A loopback mirror that answers like the Hugging Face resolve endpoint, for tests, the demo and benchmarks.

``GET/HEAD /datasets/<owner>/<repo>/resolve/main/<name>`` answers ``302 Found`` with a short-lived
signed URL on a separate storage server (a :class:`~sa1b_cli.testing.cdn.FakeCDN` on another
loopback port): Range, expiry (403 ``URL signature expired`` after ``target_ttl`` seconds),
fault injection and exact byte counts all come from it (:attr:`FakeMirror.storage`). Each
resolve signs a fresh target, so a client whose target expired gets a new one by asking the
resolve URL again. Unknown names and other paths get 404; with ``required_header`` set
(``"Authorization: Bearer t"``), a request without it gets 401, as a gated repository answers.
Every resolve request is logged with the headers it carried (:attr:`FakeMirror.log`).

The directory it serves may differ from the CDN's (a test puts a wrong-but-valid part there).
Loopback only.

Separate process::

    python -m sa1b_cli.testing.mirror --dir DIR [--target-ttl S] [--header 'Authorization: Bearer t'] [--port 0]

prints one JSON line ``{"template": ..., "port": ..., "storage_port": ...}`` on stdout, then serves
until SIGTERM/SIGINT; the storage's control API (``/__cdn/...``, see ``sa1b_cli.testing.cdn``) is on
``storage_port``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.cdn.process import serve_until_signalled
from sa1b_cli.testing.cdn.server import LOOPBACK, serve_in_background

DEFAULT_REPO = "Aber-r/SA-1B_backup"
RESOLVE_PREFIX = f"/datasets/{DEFAULT_REPO}/resolve/main/"  # of the default repo


@dataclass
class ResolveRecord:
    """One request to the resolve endpoint."""

    time: float
    method: str
    name: str
    status: int
    headers: dict[str, str]
    location: str | None = None  # the signed storage URL a 302 pointed to


class FakeMirror:
    """The resolve endpoint in front of a storage :class:`FakeCDN`; a context manager."""

    def __init__(self, directory: Path | str, *, target_ttl: float = 3600.0, required_header: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, repo: str = DEFAULT_REPO) -> None:
        if host not in LOOPBACK:
            raise ValueError("FakeMirror only binds loopback addresses")
        if required_header is not None and ":" not in required_header:
            raise ValueError("required_header is 'Name: value'")
        self.target_ttl = target_ttl
        self.required_header = required_header
        self.prefix = f"/datasets/{repo.strip('/')}/resolve/main/"
        self._lock = threading.Lock()
        self._log: list[ResolveRecord] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                mirror._resolve(self)

            def do_HEAD(self) -> None:  # noqa: N802
                mirror._resolve(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.storage = FakeCDN(directory, host=host)
        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except BaseException:
            self.storage.close()
            raise
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.host = host
        self._thread = serve_in_background(self._server, "FakeMirror")

    @property
    def template(self) -> str:
        """The ``--mirror`` template for this mirror."""
        return f"http://{self.host}:{self.port}{self.prefix}{{name}}"

    def url(self, name: str) -> str:
        """The resolve URL of ``name``."""
        return f"http://{self.host}:{self.port}{self.prefix}{quote(name)}"

    @property
    def log(self) -> list[ResolveRecord]:
        """Every resolve request so far (the storage's own requests are in ``storage.log``)."""
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _resolve(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        name = unquote(path[len(self.prefix):]) if path.startswith(self.prefix) else ""
        status, location = 404, None
        if self.required_header is not None and not self._has_required(h):
            status = 401
        elif name and "/" not in name and name in self.storage.names:
            status, location = 302, self.storage.signed_url(name, expires_at=time.time() + self.target_ttl)
        with self._lock:
            self._log.append(ResolveRecord(time.time(), h.command, name, status, dict(h.headers.items()), location))
        body = b"" if status == 302 else {401: b"Invalid credentials in Authorization header", 404: b"Entry not found"}[status]
        h.send_response(status)
        if location is not None:
            h.send_header("Location", location)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)

    def _has_required(self, h: BaseHTTPRequestHandler) -> bool:
        key, _, value = (self.required_header or "").partition(":")
        return (h.headers.get(key.strip()) or "").strip() == value.strip()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.storage.close()

    def __enter__(self) -> FakeMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sa1b_cli.testing.mirror", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, type=Path, help="serve the files in this directory")
    ap.add_argument("--target-ttl", type=float, default=3600.0, help="lifetime of each redirect target, seconds")
    ap.add_argument("--header", help="header a request must carry ('Authorization: Bearer t'), else 401")
    ap.add_argument("--repo", default=DEFAULT_REPO, help="owner/name in the resolve path")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    mirror = FakeMirror(args.dir, target_ttl=args.target_ttl, required_header=args.header, port=args.port, repo=args.repo)
    announce = json.dumps({"template": mirror.template, "port": mirror.port, "storage_port": mirror.storage.port})
    return serve_until_signalled(announce, mirror.close)


if __name__ == "__main__":
    sys.exit(main())
