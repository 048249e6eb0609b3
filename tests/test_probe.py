"""probe_links against the loopback CDN and against tiny stdlib servers for what the CDN cannot do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sa1b_cli.links import LinkEntry, parse_links
from sa1b_cli.probe import probe_links
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo

# --------------------------------------------------------------------------- helpers


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture
def serve() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], str]]:
    """Start a stdlib handler on loopback; returns its base URL. Servers stop after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = _QuietServer(("127.0.0.1", 0), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[tuple[str, str | None]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


def _entry(url: str, name: str = "sa_000000.tar") -> LinkEntry:
    return LinkEntry(name=name, url=url, line=2)


# --------------------------------------------------------------------------- against the CDN


def test_head_reports_size_and_range_support_of_live_links(cdn: FakeCDN, links_file: Path, small_parts: list[PartInfo]) -> None:
    entries = parse_links(links_file).parts
    results = probe_links(entries, concurrency=2)
    assert [r.name for r in results] == [e.name for e in entries]
    for result, part in zip(results, small_parts):
        assert (result.state, result.status, result.accepts_ranges) == ("live", 200, True)
        assert result.size == part.path.stat().st_size
    assert {r.method for r in cdn.log} == {"HEAD"}, "a live link needs one HEAD, no GET"


def test_expired_revoked_and_missing_links(cdn: FakeCDN, tmp_path: Path) -> None:
    names = cdn.names
    fresh = parse_links(cdn.write_links(tmp_path / "fresh.txt")).by_name()
    past = parse_links(cdn.write_links(tmp_path / "old.txt", expires_at=time.time() - 3600)).by_name()
    cdn.revoke(names[1])
    revoked = parse_links(tmp_path / "fresh.txt").by_name()[names[1]]
    cdn.remove(names[2])
    results = probe_links([past[names[0]], revoked, fresh[names[2]]])
    by_name = {r.name: r for r in results}
    assert (by_name[names[0]].state, by_name[names[0]].status) == ("expired", 403)
    assert by_name[names[0]].message == "URL signature expired"
    assert by_name[names[1]].state == "expired"
    assert by_name[names[1]].message == "HTTP 403: expired or revoked (Bad URL hash)"
    assert (by_name[names[2]].state, by_name[names[2]].status) == ("missing", 404)
    assert all(r.size is None for r in results)


def test_retries_503_then_succeeds(cdn: FakeCDN, links_file: Path) -> None:
    entry = parse_links(links_file).parts[0]
    cdn.set_faults(entry.name, Faults(status_503_count=2, retry_after=0))
    [result] = probe_links([entry], retries=2, backoff=0.01)
    assert result.state == "live" and result.size is not None
    assert [r.status for r in cdn.requests_for(entry.name)] == [503, 503, 200]


def test_gives_up_after_retries_with_error(cdn: FakeCDN, links_file: Path) -> None:
    entry = parse_links(links_file).parts[0]
    cdn.set_faults(entry.name, Faults(status_503_count=5, retry_after=0))
    [result] = probe_links([entry], retries=1, backoff=0.01)
    assert (result.state, result.status) == ("error", 503)
    assert result.message == "HTTP 503 after 2 attempts"
    assert len(cdn.requests_for(entry.name)) == 2


def test_many_links_keep_their_order(cdn: FakeCDN, tmp_path: Path) -> None:
    links = parse_links(cdn.write_links(tmp_path / "links.txt"))
    entries = [LinkEntry(f"sa_{i:06d}.tar", links.parts[i % 3].url, i + 2) for i in range(40)]
    seen: list[str] = []
    results = probe_links(entries, concurrency=8, on_result=lambda r: seen.append(r.name))
    assert [r.name for r in results] == [e.name for e in entries]
    assert sorted(seen) == sorted(e.name for e in entries)
    assert all(r.state == "live" for r in results)


# --------------------------------------------------------------------------- what the CDN cannot do


def test_falls_back_to_ranged_get_when_head_is_refused(serve: Callable[..., str]) -> None:
    seen: list[tuple[str, str | None]] = []

    class NoHead(_Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            seen.append(("HEAD", None))
            self.reply(405, {"Content-Length": "0", "Allow": "GET"})

        def do_GET(self) -> None:  # noqa: N802
            seen.append(("GET", self.headers.get("Range")))
            self.reply(206, {"Content-Length": "1", "Content-Range": "bytes 0-0/123456789"}, b"x")

    [result] = probe_links([_entry(serve(NoHead) + "/a.tar?oh=secret&oe=7FFFFFFF")])
    assert (result.state, result.size, result.status, result.accepts_ranges) == ("live", 123456789, 206, True)
    assert seen == [("HEAD", None), ("GET", "bytes=0-0")]


def test_get_fallback_on_a_server_ignoring_range_reads_no_body(serve: Callable[..., str]) -> None:
    big = 64 << 20
    sent: list[int] = []

    class NoRange(_Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.reply(405, {"Content-Length": "0"})

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(big))
            self.end_headers()
            chunk = b"\0" * (1 << 20)
            try:
                for _ in range(big >> 20):
                    self.wfile.write(chunk)
                    sent.append(len(chunk))
            except OSError:
                pass

    [result] = probe_links([_entry(serve(NoRange) + "/a.tar")])
    assert (result.state, result.size, result.accepts_ranges) == ("live", big, False)
    assert result.message == "server ignores Range requests"
    time.sleep(0.2)
    assert sum(sent) < big, "the probe must close the connection instead of reading the whole file"


def test_get_only_signature_counts_as_live(serve: Callable[..., str]) -> None:
    class GetOnly(_Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.reply(403, {"Content-Length": "0"})

        def do_GET(self) -> None:  # noqa: N802
            self.reply(206, {"Content-Length": "1", "Content-Range": "bytes 0-0/42"}, b"x")

    [result] = probe_links([_entry(serve(GetOnly) + "/a.tar")])
    assert (result.state, result.size) == ("live", 42)


def test_forbidden_without_expiry_text_is_expired_or_revoked(serve: Callable[..., str]) -> None:
    class Forbidden(_Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.reply(403, {"Content-Length": "0"})

        def do_GET(self) -> None:  # noqa: N802
            self.reply(403, {"Content-Length": "0"})

    [result] = probe_links([_entry(serve(Forbidden) + "/a.tar?oe=7FFFFFFF")])
    assert (result.state, result.status, result.message) == ("expired", 403, "HTTP 403: expired or revoked")


def test_gone_is_missing_and_other_codes_are_errors(serve: Callable[..., str]) -> None:
    class Codes(_Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            self.reply(410 if self.path.startswith("/gone") else 400, {"Content-Length": "0"})

    base = serve(Codes)
    gone, bad = probe_links([_entry(base + "/gone.tar", "a"), _entry(base + "/bad.tar", "b")], retries=0)
    assert (gone.state, gone.status) == ("missing", 410)
    assert (bad.state, bad.status, bad.message) == ("error", 400, "HTTP 400 Bad Request")


def test_timeout_is_retried_then_reported(serve: Callable[..., str]) -> None:
    hits: list[float] = []

    class Slow(_Handler):
        def do_HEAD(self) -> None:  # noqa: N802
            hits.append(time.monotonic())
            time.sleep(1.5)

    started = time.monotonic()
    [result] = probe_links([_entry(serve(Slow) + "/a.tar")], timeout=0.2, retries=1, backoff=0.01)
    assert result.state == "error" and result.status is None
    assert result.message.startswith("timed out") and result.message.endswith("after 2 attempts")
    assert len(hits) == 2
    assert time.monotonic() - started < 1.4


def test_network_error_never_shows_the_signature() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/m1/v/t6/An123.tar?ccb=10-5&oh=00_SECRETSIGNATURE&oe=7FFFFFFF&_nc_sid=ba4296"
    [result] = probe_links([_entry(url)], retries=1, backoff=0.01)
    assert result.state == "error"
    assert result.message.startswith("network error") and "after 2 attempts" in result.message
    assert "SECRETSIGNATURE" not in result.message


def test_empty_input_makes_no_client() -> None:
    assert probe_links([]) == []
