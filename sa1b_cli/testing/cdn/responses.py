"""How the fake CDN answers: one file's headers and body (ranges, faults, exact byte accounting)."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import BinaryIO, Mapping

from sa1b_cli.testing.cdn.faults import FaultPlan, FaultTable
from sa1b_cli.testing.cdn.protocol import parse_range

_CHUNK = 8 << 20  # sendfile chunk when nothing needs throttling or corrupting


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


@dataclass(frozen=True)
class _Span:
    """The file bytes a response carries: ``start..end`` inclusive, of a file of ``size``."""

    start: int
    end: int
    status: int
    size: int

    @property
    def length(self) -> int:
        return max(0, self.end - self.start + 1)


def send_simple(h: BaseHTTPRequestHandler, rec: RequestRecord, status: int, body: bytes,
                headers: Mapping[str, str] | None = None) -> None:
    """A short text answer (errors, refusals)."""
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


def _requested_span(rec: RequestRecord, plan: FaultPlan, size: int) -> _Span | None:
    """What the ``Range`` header asks for (all of it when ranges are ignored); None: unsatisfiable."""
    whole = _Span(0, size - 1, 200, size)
    if plan.ignore_range:
        if rec.range_header:
            plan.labels.append("ignore_range")
        return whole
    rng = parse_range(rec.range_header, size)
    if rng == "unsatisfiable":
        return None
    if isinstance(rng, tuple):
        return _Span(rng[0], rng[1], 206, size)
    return whole


def _send_headers(h: BaseHTTPRequestHandler, span: _Span, advertised: int, plan: FaultPlan, mtime: float,
                  close_after: bool) -> None:
    h.send_response(span.status)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(advertised))
    if not plan.ignore_range:
        h.send_header("Accept-Ranges", "bytes")
    if span.status == 206:
        h.send_header("Content-Range", f"bytes {span.start}-{span.end}/{span.size}")
    h.send_header("Last-Modified", formatdate(mtime, usegmt=True))
    h.send_header("Cache-Control", "max-age=1209600, no-transform")
    if close_after:  # we close after the body; say so honestly
        h.send_header("Connection", "close")
    h.end_headers()


def serve_file(h: BaseHTTPRequestHandler, rec: RequestRecord, f: BinaryIO, plan: FaultPlan, *, head: bool,
               name: str, faults: FaultTable, closing: threading.Event) -> None:
    """Answer a GET or HEAD for the open file ``f`` (served as ``name``) with ``plan``'s faults;
    a body uses up its faults' counts in ``faults``."""
    st = os.fstat(f.fileno())
    span = _requested_span(rec, plan, st.st_size)
    if span is None:
        send_simple(h, rec, 416, b"Requested Range Not Satisfiable", {"Content-Range": f"bytes */{st.st_size}"})
        return
    advertised = span.length if plan.wrong_length is None else plan.wrong_length
    if plan.wrong_length is not None:
        plan.labels.append("wrong_length")
    rec.status = span.status
    rec.range_start, rec.range_end = (span.start, span.end) if span.length else (None, None)
    close_after = plan.wrong_length is not None
    _send_headers(h, span, advertised, plan, st.st_mtime, close_after)
    if head:
        rec.fault = plan.label
        return
    to_send = plan.fit_body(span.start, span.end, min(span.length, advertised))
    rec.fault = plan.label
    faults.consume(name, plan)
    try:
        send_body(h.connection, rec, f, span.start, to_send, plan, closing)
    except OSError:  # client went away (BrokenPipe, ConnectionReset) or close()
        h.close_connection = True
        return
    if plan.drop_after is not None or to_send < advertised or close_after:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def send_body(sock: socket.socket, rec: RequestRecord, f: BinaryIO, start: int, count: int, plan: FaultPlan,
              closing: threading.Event) -> None:
    """Send ``count`` file bytes from ``start``, stalling, throttling and corrupting as planned.

    Each byte is counted in ``rec.bytes_sent`` before the call that hands it to the kernel and the
    count is corrected by what the call did not take, so the count is never behind the client.
    ``closing`` (the server shutting down) ends stalls and sends at once.
    """
    chunk = _CHUNK
    if plan.rate:
        chunk = max(1024, int(plan.rate / 20))
    sent = 0
    t0 = time.monotonic()
    corrupt = sorted(plan.corrupt)
    while sent < count:
        if closing.is_set():
            raise ConnectionAbortedError("server closing")
        if plan.stall_after is not None and sent == plan.stall_after:
            closing.wait(plan.stall_seconds)
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
                closing.wait(ahead)
