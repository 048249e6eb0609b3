"""A loopback CDN that behaves like Meta's signed-URL CDN, with fault injection.

Tests, ``sa1b demo`` and the benchmarks point the real downloader (aria2c) at
this server instead of ``scontent.xx.fbcdn.net``. It only binds loopback.

URLs look like the real ones::

    http://127.0.0.1:PORT/m1/v/t6/<token>.tar?_nc_gid&ccb=10-5&oh=<sig>&oe=<HEX expiry>&_nc_sid=ba4296

- ``token`` is opaque (derived from the secret and the name, never the name
  itself) and stays the same for a file across re-signed links, as on Meta's CDN.
- ``oh`` = ``00_`` + base64url HMAC-SHA256(secret, token, oe, revocation epoch).
- past ``oe`` (or after :meth:`FakeCDN.expire_all`) -> 403 ``URL signature expired``;
  bad or missing signature, or a link revoked by :meth:`FakeCDN.revoke` -> 403
  ``Bad URL hash``; unknown token -> 404.

GET and HEAD, ``Content-Length``, ``Accept-Ranges: bytes``, one ``Range``
(``a-b``, ``a-``, ``-n``) -> 206 + ``Content-Range``, 416 if unsatisfiable;
multi-range requests get the full 200 body. Bodies go out with ``os.sendfile``
unless a fault needs to touch the bytes. HTTP/1.1 keep-alive.

Faults (:class:`Faults`) are set per file name or as a global default with
:meth:`FakeCDN.set_faults`, at any time, thread-safely. Every request is logged
(:class:`RequestRecord`); :meth:`FakeCDN.bytes_sent` tells how many body bytes
went out (live, also for requests still running or cut). A byte is counted
before the system call that hands it to the kernel (and the count corrected by
what the call did not take), so once a client holds a byte the count includes
it: a test that reads the count after its own request ended never races the
server. :meth:`FakeCDN.wait_idle` waits for the server's own "request finished"
(``RequestRecord.finished``) where a test needs the server side to be done too.

Separate process (benchmarks, multi-process tests)::

    python -m sa1b_cli.testing.cdn --dir DIR --links-out FILE [--expires-in S] [--port 0]

prints the port on stdout, then serves until SIGTERM/SIGINT. The links file is
written before the port is printed. A tiny JSON control API on the same port
(``/__cdn/stats``, ``/__cdn/log``, ``/__cdn/links``, ``POST /__cdn/faults``,
``/__cdn/revoke``, ``/__cdn/expire_all``, ``/__cdn/reset_log``) lets another
process drive it; :class:`CDNProcess` wraps all of that.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

__all__ = ["CDNProcess", "FakeCDN", "Faults", "RequestRecord", "DEFAULT_TTL", "EXPIRED_BODY", "BAD_HASH_BODY"]

DEFAULT_TTL = 20 * 86400.0  #: default link lifetime (Meta: 19-30 days)
EXPIRED_BODY = b"URL signature expired"
BAD_HASH_BODY = b"Bad URL hash"
PATH_PREFIX = "/m1/v/t6/"
CONTROL_PREFIX = "/__cdn/"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CHUNK = 8 << 20  # sendfile chunk when nothing needs throttling or corrupting


@dataclass
class Faults:
    """What to do wrong, for one file (or all files, as the default).

    Counters (``*_count``) are decremented in place as responses use them, so a
    test can read what is left; ``None`` as a count means "every response".
    Byte thresholds count body bytes *of that response*; ``corrupt_offsets`` are
    absolute file offsets.
    """

    #: Answer the next N requests (GET or HEAD) with 503 + ``Retry-After``.
    status_503_count: int = 0
    #: Seconds put in the ``Retry-After`` header of those 503s.
    retry_after: int = 1
    #: Close the connection after sending this many body bytes ...
    drop_after_bytes: int | None = None
    #: ... for this many GET responses (None: always).
    drop_count: int | None = 1
    #: Serve every GET as 200 with the full body and no ``Accept-Ranges``.
    ignore_range: bool = False
    #: Flip (xor 0xFF) the byte at each of these file offsets whenever it is sent ...
    corrupt_offsets: tuple[int, ...] = ()
    #: ... in this many GET responses that carry one of them (None: always).
    corrupt_count: int | None = None
    #: Throttle each response body to about this many bytes per second.
    rate_limit_bytes_per_s: float | None = None
    #: After this many body bytes, send nothing for ``stall_seconds`` without
    #: closing (``close()`` of the server ends the stall at once) ...
    stall_after_bytes: int | None = None
    stall_seconds: float = 3600.0
    #: ... for this many GET responses (None: always).
    stall_count: int | None = 1
    #: Advertise this ``Content-Length`` (GET and HEAD) instead of the true one;
    #: a GET then sends at most that many true bytes and closes the connection.
    wrong_length: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Faults:
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - known
        if bad:
            raise ValueError(f"unknown fault fields: {sorted(bad)}")
        kw = dict(d)
        if "corrupt_offsets" in kw:
            kw["corrupt_offsets"] = tuple(kw["corrupt_offsets"])
        return cls(**kw)


@dataclass
class RequestRecord:
    """One request as the server saw it. ``bytes_sent`` grows while the body is sent.

    ``bytes_sent`` counts the bytes given to the kernel for the client: it is
    raised before each send and lowered by what the send did not take, so it is
    never behind what the client has received. ``finished`` turns true once the
    server is done with the request (answered, cut or failed).
    """

    time: float
    method: str
    name: str | None
    range_header: str | None
    range_start: int | None = None  #: first body byte served (file offset)
    range_end: int | None = None  #: last body byte served, inclusive
    status: int = 0
    bytes_sent: int = 0
    fault: str | None = None  #: "503", "drop", "stall", "ignore_range", ... if one applied
    client: str = ""
    finished: bool = False


@dataclass
class _Plan:
    """The faults that apply to one response, decided (and counters used) up front."""

    drop_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0
    rate: float | None = None
    corrupt: tuple[int, ...] = ()
    wrong_length: int | None = None
    ignore_range: bool = False
    labels: list[str] = field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


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
        if host not in _LOOPBACK:
            raise ValueError("FakeCDN only binds loopback addresses")
        self._secret = (secret.encode() if isinstance(secret, str) else secret) or secrets.token_bytes(32)
        self.default_ttl = default_ttl
        self._lock = threading.RLock()
        self._files: dict[str, Path] = {}
        self._tokens: dict[str, str] = {}  # token -> name
        self._epochs: dict[str, int] = {}  # name -> revocation epoch
        self._faults: dict[str | None, Faults] = {}
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
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"FakeCDN:{self.port}", daemon=True)
        self._thread.start()

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
        digest = hmac.new(self._secret, b"token\0" + name.encode(), hashlib.sha512).digest()
        return "An" + _b64(digest)[:80]

    def _sign(self, token: str, oe: int, epoch: int) -> str:
        msg = f"{token}\0{oe:X}\0{epoch}".encode()
        return "00_" + _b64(hmac.new(self._secret, msg, hashlib.sha256).digest())

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
            oh = self._sign(token, oe, self._epochs[name])
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
            import random

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
        with self._lock:
            if faults is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = faults

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults_for(self, name: str | None) -> Faults | None:
        with self._lock:
            return self._faults.get(name, self._faults.get(None))

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

    def _plan(self, name: str) -> tuple[_Plan, bool]:
        """Decide the faults for one request; returns (plan, answer_503)."""
        plan = _Plan()
        with self._lock:
            f = self._faults.get(name, self._faults.get(None))
            if f is None:
                return plan, False
            if f.status_503_count > 0:
                f.status_503_count -= 1
                plan.labels.append("503")
                return plan, True
            plan.ignore_range = f.ignore_range
            plan.rate = f.rate_limit_bytes_per_s
            plan.corrupt = tuple(f.corrupt_offsets) if f.corrupt_count is None or f.corrupt_count > 0 else ()
            plan.wrong_length = f.wrong_length
            if f.drop_after_bytes is not None and (f.drop_count is None or f.drop_count > 0):
                plan.drop_after = f.drop_after_bytes
            if f.stall_after_bytes is not None and (f.stall_count is None or f.stall_count > 0):
                plan.stall_after = f.stall_after_bytes
                plan.stall_seconds = f.stall_seconds
        return plan, False

    def _consume(self, name: str, plan: _Plan) -> None:
        """Use up one drop/stall/corrupt count (only for GETs that actually get a body)."""
        with self._lock:
            f = self._faults.get(name, self._faults.get(None))
            if f is None:
                return
            if plan.drop_after is not None and f.drop_count is not None:
                f.drop_count = max(0, f.drop_count - 1)
            if plan.stall_after is not None and f.stall_count is not None:
                f.stall_count = max(0, f.stall_count - 1)
            if "corrupt" in plan.labels and f.corrupt_count is not None:
                f.corrupt_count = max(0, f.corrupt_count - 1)

    def _handle(self, h: _Handler, head: bool, post: bool = False) -> None:
        url = urlsplit(h.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control(h, url.path[len(CONTROL_PREFIX):], url.query, post)
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

    def _answer(self, h: _Handler, rec: RequestRecord, url: Any, head: bool, post: bool) -> None:
        if post:
            h.close_connection = True  # its body is unread: do not reuse the connection
        if post or not url.path.startswith(PATH_PREFIX):
            self._simple(h, rec, 404 if not post else 405, b"Not Found" if not post else b"Method Not Allowed")
            return
        token = url.path[len(PATH_PREFIX):].rsplit(".", 1)[0]
        with self._lock:
            name = self._tokens.get(token)
            path = self._files.get(name) if name else None
            epoch = self._epochs.get(name, 0) if name else 0
        if name is None or path is None:
            self._simple(h, rec, 404, b"Not Found")
            return
        rec.name = name
        q = parse_qs(url.query, keep_blank_values=True)
        oh, oe_hex = q.get("oh", [""])[0], q.get("oe", [""])[0]
        try:
            oe = int(oe_hex, 16)
        except ValueError:
            oe = -1
        if oe < 0 or not hmac.compare_digest(oh, self._sign(token, oe, epoch)):
            self._simple(h, rec, 403, BAD_HASH_BODY)
            return
        if oe < time.time() or oe <= self._expired_up_to:
            self._simple(h, rec, 403, EXPIRED_BODY)
            return
        plan, unavailable = self._plan(name)
        if unavailable:
            rec.fault = "503"
            with self._lock:
                retry = (self._faults.get(name) or self._faults.get(None) or Faults()).retry_after
            self._simple(h, rec, 503, b"Service Unavailable", {"Retry-After": str(retry)})
            return
        try:
            f = open(path, "rb")
        except OSError:
            self._simple(h, rec, 404, b"Not Found")
            return
        with f:
            st = os.fstat(f.fileno())
            self._serve_file(h, rec, f, st, head, plan, name)

    def _serve_file(self, h: _Handler, rec: RequestRecord, f: Any, st: os.stat_result, head: bool,
                    plan: _Plan, name: str) -> None:
        size = st.st_size
        start, end, status = 0, size - 1, 200
        rng = None if plan.ignore_range else _parse_range(rec.range_header, size)
        if plan.ignore_range and rec.range_header:
            plan.labels.append("ignore_range")
        if rng == "unsatisfiable":
            self._simple(h, rec, 416, b"Requested Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
            return
        if isinstance(rng, tuple):
            start, end, status = rng[0], rng[1], 206
        length = max(0, end - start + 1)
        advertised = length if plan.wrong_length is None else plan.wrong_length
        if plan.wrong_length is not None:
            plan.labels.append("wrong_length")
        rec.status = status
        rec.range_start, rec.range_end = (start, end) if length else (None, None)
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(advertised))
        if not plan.ignore_range:
            h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        h.send_header("Cache-Control", "max-age=1209600, no-transform")
        close_after = plan.wrong_length is not None  # we close after the body; say so honestly
        if close_after:
            h.send_header("Connection", "close")
        h.end_headers()
        if head:
            rec.fault = ",".join(plan.labels) or None
            return
        to_send = min(length, advertised)
        if plan.drop_after is not None and plan.drop_after < to_send:
            plan.labels.append("drop")
            to_send = plan.drop_after
        else:
            plan.drop_after = None
        if plan.stall_after is not None and plan.stall_after < to_send:
            plan.labels.append("stall")
        else:
            plan.stall_after = None
        if plan.rate:
            plan.labels.append("rate_limit")
        if any(start <= o <= end for o in plan.corrupt):
            plan.labels.append("corrupt")
        rec.fault = ",".join(plan.labels) or None
        self._consume(name, plan)
        try:
            self._send_body(h, rec, f, start, to_send, plan)
        except OSError:  # client went away (BrokenPipe, ConnectionReset) or close()
            h.close_connection = True
            return
        if plan.drop_after is not None or to_send < advertised or close_after:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send_body(self, h: _Handler, rec: RequestRecord, f: Any, start: int, count: int, plan: _Plan) -> None:
        sock = h.connection
        chunk = _CHUNK
        if plan.rate:
            chunk = max(1024, int(plan.rate / 20))
        sent = 0
        t0 = time.monotonic()
        corrupt = sorted(plan.corrupt)
        while sent < count:
            if self._closing.is_set():
                raise ConnectionAbortedError("server closing")
            if plan.stall_after is not None and sent == plan.stall_after:
                self._closing.wait(plan.stall_seconds)
                plan.stall_after = None
                continue
            n = min(chunk, count - sent)
            if plan.stall_after is not None and sent < plan.stall_after:
                n = min(n, plan.stall_after - sent)
            off = start + sent
            hits = [o for o in corrupt if off <= o < off + n]
            rec.bytes_sent += n  # counted before the client can hold it; corrected below
            done = 0
            try:
                if hits:
                    f.seek(off)
                    buf = bytearray(f.read(n))
                    for o in hits:
                        buf[o - off] ^= 0xFF
                    done = sock.send(buf)
                else:
                    done = os.sendfile(sock.fileno(), f.fileno(), off, n)
                    if done == 0:  # file shrank under us
                        raise ConnectionAbortedError("file truncated while serving")
            finally:
                rec.bytes_sent -= n - done
            sent += done
            if plan.rate:
                ahead = sent / plan.rate - (time.monotonic() - t0)
                if ahead > 0:
                    self._closing.wait(ahead)

    def _simple(self, h: _Handler, rec: RequestRecord, status: int, body: bytes,
                headers: Mapping[str, str] | None = None) -> None:
        rec.status = status
        h.send_response(status)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            try:
                h.wfile.write(body)
            except OSError:
                h.close_connection = True

    # ---------------------------------------------------------------- control

    def stats(self) -> dict[str, Any]:
        log = self.log
        by_name: dict[str, int] = {}
        for r in log:
            if r.name is not None:
                by_name[r.name] = by_name.get(r.name, 0) + r.bytes_sent
        return {"bytes_sent": sum(r.bytes_sent for r in log), "requests": len(log), "by_name": by_name}

    def _control(self, h: _Handler, cmd: str, query: str, post: bool) -> None:
        """The JSON control API used by :class:`CDNProcess` (loopback only)."""
        q = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        body: Any = None
        if post:
            n = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(n) if n else b""
            body = json.loads(raw) if raw else {}
        try:
            if cmd == "stats":
                out: Any = self.stats()
            elif cmd == "log":
                out = [dataclasses.asdict(r) for r in self.log]
            elif cmd == "links":
                expires = float(q["expires_at"]) if "expires_at" in q else None
                out = self.links_text(expires_at=expires)
            elif cmd == "faults" and post:
                name = body.pop("name", None)
                self.set_faults(name, Faults.from_dict(body) if body else None)
                out = {"ok": True}
            elif cmd == "revoke" and post:
                self.revoke(body["name"])
                out = {"ok": True}
            elif cmd == "expire_all" and post:
                self.expire_all()
                out = {"ok": True}
            elif cmd == "reset_log" and post:
                self.reset_log()
                out = {"ok": True}
            else:
                raise KeyError(cmd)
        except (KeyError, ValueError, TypeError) as e:
            data = json.dumps({"error": repr(e)}).encode()
            status = 400
        else:
            data = out.encode() if isinstance(out, str) else json.dumps(out).encode()
            status = 200
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range -> (start, end inclusive); ``"unsatisfiable"``; or
    None (no/invalid/multi-range header: serve the whole file)."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first.strip() == "":
            n = int(last)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        a = int(first)
        b = int(last) if last.strip() else size - 1
    except ValueError:
        return None
    if a < 0 or (last.strip() and b < a):
        return None
    if a >= size:
        return "unsatisfiable"
    return a, min(b, size - 1)


# ------------------------------------------------------------ separate process


class CDNProcess:
    """``python -m sa1b_cli.testing.cdn`` as a child process, driven over HTTP.

    For benchmarks and tests that need the CDN outside the test process (e.g.
    to kill the client hard). ``links`` is the links file it wrote.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sa1b_cli.testing.cdn", description=__doc__.split("\n")[0])
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
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(cdn.port, flush=True)
    try:
        while not stop.wait(1):
            pass
    finally:
        cdn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
