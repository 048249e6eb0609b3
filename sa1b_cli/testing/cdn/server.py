"""The fake CDN itself: a threaded loopback HTTP server of files behind signed, expiring URLs."""

from __future__ import annotations

import hmac
import os
import random
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import SplitResult, parse_qs, urlsplit

from sa1b_cli.testing.cdn.control import CONTROL_PREFIX, answer_control
from sa1b_cli.testing.cdn.faults import Faults, FaultTable
from sa1b_cli.testing.cdn.protocol import DEFAULT_TTL, PATH_PREFIX, Signer
from sa1b_cli.testing.cdn.responses import RequestRecord, send_simple, serve_file

EXPIRED_BODY = b"URL signature expired"
BAD_HASH_BODY = b"Bad URL hash"
LOOPBACK = ("127.0.0.1", "localhost", "::1")  #: the only hosts the test servers bind


def serve_in_background(server: ThreadingHTTPServer, label: str) -> threading.Thread:
    """Serve in a daemon thread, polling often so that ``shutdown()`` returns at once."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"{label}:{server.server_address[1]}", daemon=True)
    thread.start()
    return thread


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    cdn: FakeCDN

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (or close() cutting them) is normal here: stay quiet."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "proxygen-bolt"
    sys_version = ""
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: without this, Nagle + delayed ACK
        # add ~40 ms to every small response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.cdn._track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.cdn._track(self, False)

    def do_GET(self) -> None:  # noqa: N802
        self.server.cdn._handle(self, head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.cdn._handle(self, head=True)

    def do_POST(self) -> None:  # noqa: N802
        self.server.cdn._handle(self, head=False, post=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class FakeCDN:
    """Threaded loopback HTTP server serving files by signed, expiring URLs.

    Use as a context manager or call :meth:`close`. ``directory``'s regular,
    non-hidden files are served under their names; more with :meth:`add_file`.
    """

    def __init__(self, directory: Path | str | None = None, *, files: Mapping[str, Path | str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, secret: bytes | str | None = None,
                 default_ttl: float = DEFAULT_TTL) -> None:
        if host not in LOOPBACK:
            raise ValueError("FakeCDN only binds loopback addresses")
        self._signer = Signer((secret.encode() if isinstance(secret, str) else secret) or secrets.token_bytes(32))
        self.default_ttl = default_ttl
        self._lock = threading.RLock()
        self._files: dict[str, Path] = {}
        self._tokens: dict[str, str] = {}  # token -> name
        self._epochs: dict[str, int] = {}  # name -> revocation epoch
        self._faults = FaultTable()
        self._log: list[RequestRecord] = []
        self._finished = threading.Condition(self._lock)  # notified whenever a request finishes
        self._expired_up_to = 0  # every oe <= this is expired (expire_all)
        self._max_oe = 0
        self._closing = threading.Event()
        self._handlers: set[_Handler] = set()
        if directory is not None:
            for p in sorted(Path(directory).iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    self.add_file(p.name, p)
        for name, path in (files or {}).items():
            self.add_file(name, path)
        self._server = _Server((host, port), _Handler)
        self._server.cdn = self
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = serve_in_background(self._server, "FakeCDN")

    # ------------------------------------------------------------------ files

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._files)

    def add_file(self, name: str, path: Path | str) -> None:
        """Serve ``path`` as ``name`` (replaces an earlier file of that name)."""
        with self._lock:
            self._files[name] = Path(path)
            self._tokens[self.token(name)] = name
            self._epochs.setdefault(name, 0)

    def remove(self, name: str) -> None:
        """Stop serving ``name``: its links then get 404."""
        with self._lock:
            self._files.pop(name, None)
            self._tokens.pop(self.token(name), None)

    def path_of(self, name: str) -> Path:
        with self._lock:
            return self._files[name]

    # ------------------------------------------------------------------ links

    def token(self, name: str) -> str:
        """The opaque, stable URL path token for ``name``."""
        return self._signer.token(name)

    def signed_url(self, name: str, expires_at: float | None = None) -> str:
        """A fresh signed URL for ``name``; expiry defaults to now + ``default_ttl``."""
        with self._lock:
            if name not in self._files:
                raise KeyError(name)
            if expires_at is None:
                oe = max(int(time.time() + self.default_ttl), self._expired_up_to + 1)
            else:
                oe = int(expires_at)
            self._max_oe = max(self._max_oe, oe)
            token = self.token(name)
            oh = self._signer.sign(token, oe, self._epochs[name])
        suffix = Path(name).suffix or ".bin"
        return (f"{self.base_url}{PATH_PREFIX}{token}{suffix}?_nc_gid&ccb=10-5&oh={oh}"
                f"&oe={oe:X}&_nc_sid=ba4296")

    def links_text(self, names: Iterable[str] | None = None, expires_at: float | None = None,
                   extras: Mapping[str, Path | str] | None = None, *, shuffle_seed: int | None = None,
                   final_newline: bool = True) -> str:
        """A Meta-format links file: ``file_name\\tcdn_link`` then ``NAME\\tURL`` rows.

        ``extras`` (e.g. ``{"sa_images_ids.txt": path}``) are added to the served
        files first. Rows are sorted by name unless ``shuffle_seed`` is given
        (Meta's rows come in no particular order).
        """
        for name, path in (extras or {}).items():
            self.add_file(name, path)
        chosen = list(self.names if names is None else names)
        chosen += [n for n in (extras or {}) if n not in chosen]
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(chosen)
        rows = ["file_name\tcdn_link"] + [f"{n}\t{self.signed_url(n, expires_at)}" for n in chosen]
        return "\n".join(rows) + ("\n" if final_newline else "")

    def write_links(self, path: Path | str, names: Iterable[str] | None = None, expires_at: float | None = None,
                    extras: Mapping[str, Path | str] | None = None, **kw: Any) -> Path:
        """Write :meth:`links_text` to ``path`` atomically; returns the path."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.links_text(names, expires_at, extras, **kw))
        os.replace(tmp, path)
        return path

    def revoke(self, name: str) -> None:
        """Invalidate every link issued so far for ``name`` (403 at once for new
        requests; responses already streaming continue, as on the real CDN).
        Links signed afterwards work."""
        with self._lock:
            self._epochs[name] = self._epochs.get(name, 0) + 1

    def expire_all(self) -> None:
        """Make every link issued so far answer 403 ``URL signature expired``.
        Links signed afterwards get a later ``oe`` and work."""
        with self._lock:
            self._expired_up_to = max(self._expired_up_to, self._max_oe, int(time.time()))

    # ----------------------------------------------------------------- faults

    def set_faults(self, name: str | None, faults: Faults | None) -> None:
        """Set (or with ``None`` clear) the faults of ``name``; ``name=None`` sets
        the default used by files without their own. Not merged: per-file wins."""
        self._faults.set(name, faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults_for(self, name: str | None) -> Faults | None:
        return self._faults.get(name)

    # -------------------------------------------------------------------- log

    @property
    def log(self) -> list[RequestRecord]:
        """A snapshot of the request log (records keep updating while running)."""
        with self._lock:
            return list(self._log)

    def requests_for(self, name: str | None) -> list[RequestRecord]:
        return [r for r in self.log if r.name == name]

    def bytes_sent(self, name: str | None = None) -> int:
        """Body bytes sent so far, for one file or (``None``) all files."""
        return sum(r.bytes_sent for r in self.log if name is None or r.name == name)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every logged request is finished; False if ``timeout`` passed first."""
        with self._finished:
            return self._finished.wait_for(lambda: all(r.finished for r in self._log), timeout)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def stats(self) -> dict[str, Any]:
        log = self.log
        by_name: dict[str, int] = {}
        for r in log:
            if r.name is not None:
                by_name[r.name] = by_name.get(r.name, 0) + r.bytes_sent
        return {"bytes_sent": sum(r.bytes_sent for r in log), "requests": len(log), "by_name": by_name}

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> FakeCDN:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, cut every open connection, end stalls, join threads."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            handlers = list(self._handlers)
        for h in handlers:
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        deadline = time.monotonic() + 5
        for h in handlers:
            t = getattr(h, "_thread", None)
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def _track(self, handler: _Handler, add: bool) -> None:
        with self._lock:
            if add:
                handler._thread = threading.current_thread()  # type: ignore[attr-defined]
                self._handlers.add(handler)
            else:
                self._handlers.discard(handler)

    # ---------------------------------------------------------------- serving

    def _handle(self, h: _Handler, head: bool, post: bool = False) -> None:
        url = urlsplit(h.path)
        if url.path.startswith(CONTROL_PREFIX):
            answer_control(self, h, url.path[len(CONTROL_PREFIX):], url.query, post)
            return
        rec = RequestRecord(time=time.time(), method=h.command, name=None,
                            range_header=h.headers.get("Range"), client=h.client_address[0])
        with self._lock:
            self._log.append(rec)
        try:
            self._answer(h, rec, url, head, post)
        finally:
            with self._finished:
                rec.finished = True
                self._finished.notify_all()

    def _answer(self, h: _Handler, rec: RequestRecord, url: SplitResult, head: bool, post: bool) -> None:
        if post:
            h.close_connection = True  # its body is unread: do not reuse the connection
        if post or not url.path.startswith(PATH_PREFIX):
            send_simple(h, rec, 404 if not post else 405, b"Not Found" if not post else b"Method Not Allowed")
            return
        found = self._authorize(h, rec, url)
        if found is None:
            return
        name, path = found
        plan = self._faults.plan(name)
        if plan.retry_after is not None:
            rec.fault = "503"
            send_simple(h, rec, 503, b"Service Unavailable", {"Retry-After": str(plan.retry_after)})
            return
        try:
            f = open(path, "rb")
        except OSError:
            send_simple(h, rec, 404, b"Not Found")
            return
        with f:
            serve_file(h, rec, f, plan, head=head, name=name, faults=self._faults, closing=self._closing)

    def _authorize(self, h: _Handler, rec: RequestRecord, url: SplitResult) -> tuple[str, Path] | None:
        """The name and file a signed URL stands for; None once the refusal (404, 403) is sent."""
        token = url.path[len(PATH_PREFIX):].rsplit(".", 1)[0]
        with self._lock:
            name = self._tokens.get(token)
            path = self._files.get(name) if name else None
            epoch = self._epochs.get(name, 0) if name else 0
        if name is None or path is None:
            send_simple(h, rec, 404, b"Not Found")
            return None
        rec.name = name
        refusal = self._refusal(token, url.query, epoch)
        if refusal is not None:
            send_simple(h, rec, 403, refusal)
            return None
        return name, path

    def _refusal(self, token: str, query: str, epoch: int) -> bytes | None:
        """Why a link's signature does not hold (bad, revoked or expired), or None."""
        q = parse_qs(query, keep_blank_values=True)
        oh, oe_hex = q.get("oh", [""])[0], q.get("oe", [""])[0]
        try:
            oe = int(oe_hex, 16)
        except ValueError:
            oe = -1
        if oe < 0 or not hmac.compare_digest(oh, self._signer.sign(token, oe, epoch)):
            return BAD_HASH_BODY
        if oe < time.time() or oe <= self._expired_up_to:
            return EXPIRED_BODY
        return None
