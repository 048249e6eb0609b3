"""A loopback mirror that answers like the Hugging Face resolve endpoint, for tests, the demo and benchmarks.

``GET/HEAD /datasets/<owner>/<repo>/resolve/main/<name>`` answers ``302 Found`` with a short-lived
signed URL on a separate storage server (a :class:`~sa1b_cli.testing.cdn.FakeCDN` on another
loopback port): Range, expiry (403 ``URL signature expired`` after ``target_ttl`` seconds),
fault injection and exact byte counts all come from it. Unknown names get 404; with
``required_header`` set, a request without it gets 401, as a gated repository answers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sa1b_cli.testing.cdn import FakeCDN

RESOLVE_PREFIX = "/datasets/Aber-r/SA-1B_backup/resolve/main/"


@dataclass
class ResolveRecord:
    """One request to the resolve endpoint."""

    time: float
    method: str
    name: str
    status: int
    headers: dict[str, str]


class FakeMirror:
    """The resolve endpoint in front of a storage :class:`FakeCDN`; a context manager."""

    def __init__(self, directory: Path | str, *, target_ttl: float = 3600.0, required_header: str | None = None,
                 host: str = "127.0.0.1") -> None:
        self.storage = FakeCDN(directory, host=host)
        self.target_ttl = target_ttl
        self.required_header = required_header
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

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def template(self) -> str:
        """The ``--mirror`` template for this mirror."""
        return f"http://{self.host}:{self.port}{RESOLVE_PREFIX}{{name}}"

    @property
    def log(self) -> list[ResolveRecord]:
        with self._lock:
            return list(self._log)

    def _resolve(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        name = unquote(path[len(RESOLVE_PREFIX):]) if path.startswith(RESOLVE_PREFIX) else ""
        status, location = 404, None
        if self.required_header is not None and not self._has_required(h):
            status = 401
        elif name and name in self.storage.names:
            status, location = 302, self.storage.signed_url(name, expires_at=time.time() + self.target_ttl)
        with self._lock:
            self._log.append(ResolveRecord(time.time(), h.command, name, status, dict(h.headers.items())))
        body = b"" if status == 302 else {401: b"Unauthorized", 404: b"Entry not found"}[status]
        h.send_response(status)
        if location is not None:
            h.send_header("Location", location)
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
