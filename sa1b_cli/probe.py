"""Ask the CDN about links without downloading them: live, expired, missing, and how big.

Used by ``sa1b links --check`` and by ``download`` (sizes for the free-disk check,
expired links before aria2c is started). One HEAD per link, falling back to a
one-byte ranged GET when the server refuses HEAD (405, 501, or 403: some signed URLs
are valid for GET only, and the GET's body says why) or gives no size. Full URLs are
never put in a message: they carry the signature.
"""

from __future__ import annotations

import re
import sys
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sa1b_cli import __version__
from sa1b_cli.links import LinkEntry, redact_text, redact_url


def _import_httpx_without_its_cli() -> types.ModuleType:
    """httpx, without the command-line client it imports on its own.

    httpx's ``__init__`` imports ``httpx._main`` (its CLI, built on click, rich and pygments)
    whenever those are installed, and they are: sa1b depends on click and rich. That cost ~0.1 s
    of every ``download`` start-up for a client sa1b never runs. A placeholder module makes httpx
    take its own "CLI not installed" branch; were that branch ever gone, httpx is imported as is.
    """
    if "httpx" in sys.modules:
        return sys.modules["httpx"]
    placeholder = types.ModuleType("httpx._main")
    sys.modules["httpx._main"] = placeholder
    try:
        import httpx
    except ImportError:
        for name in [m for m in sys.modules if m == "httpx" or m.startswith("httpx.")]:
            del sys.modules[name]
        import httpx
    finally:
        if sys.modules.get("httpx._main") is placeholder:
            del sys.modules["httpx._main"]
    return httpx


if TYPE_CHECKING:
    import httpx
else:
    httpx = _import_httpx_without_its_cli()

PROBE_STATES = ("live", "expired", "missing", "error")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# HEAD answers that deserve a second opinion from a ranged GET: HEAD not allowed, or
# a 403 that may come from a URL signed for GET only (and the GET carries the reason).
HEAD_REFUSED_STATUS = frozenset({403, 405, 501})
SIGNATURE_EXPIRED_TEXT = "URL signature expired"
MAX_BACKOFF_SECONDS = 10.0
MAX_REASON_BYTES = 4096
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:\d+-\d+|\*)\s*/\s*(\d+)\s*$", re.I)


@dataclass(frozen=True)
class ProbeResult:
    """What the CDN said about one link."""

    name: str
    state: str  # live | expired | missing | error
    size: int | None
    status: int | None
    accepts_ranges: bool | None
    message: str

    @property
    def unreachable(self) -> bool:
        """No HTTP answer at all (refused, timed out, no route): the server, not the link, is the trouble."""
        return self.state == "error" and self.status is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Retryable(Exception):
    """A transient answer (5xx, 429, network error) worth asking again."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def probe_links(
    entries: Iterable[LinkEntry],
    *,
    concurrency: int = 16,
    timeout: float = 15,
    retries: int = 2,
    backoff: float = 0.5,
    on_result: Callable[[ProbeResult], None] | None = None,
    headers: Sequence[str] = (),
) -> list[ProbeResult]:
    """Probe every link (``concurrency`` at once); results in the order of ``entries``.

    ``headers``: extra ``Name: value`` lines sent with every request (a mirror's token); they go to
    redirect targets too, as aria2 sends them.

    ``retries`` extra attempts are made on network errors, 429 and 5xx, waiting
    ``backoff`` seconds and doubling (or the server's Retry-After, capped).
    ``on_result`` is called from worker threads as each probe finishes (progress).
    """
    entries = list(entries)
    if not entries:
        return []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sent = {"User-Agent": f"sa1b/{__version__}"}
    for line in headers:
        key, _, value = line.partition(":")
        sent[key.strip()] = value.strip()
    with httpx.Client(
        trust_env=False, timeout=httpx.Timeout(timeout), limits=limits, follow_redirects=True, headers=sent
    ) as client:

        def work(entry: LinkEntry) -> ProbeResult:
            result = probe_one(client, entry, retries=retries, backoff=backoff)
            if on_result is not None:
                on_result(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(entries))), thread_name_prefix="probe") as pool:
            return list(pool.map(work, entries))


def probe_one(client: httpx.Client, entry: LinkEntry, *, retries: int = 2, backoff: float = 0.5) -> ProbeResult:
    """Probe one link with ``client``, retrying transient failures."""
    attempt = 0
    while True:
        try:
            return _probe_once(client, entry)
        except _Retryable as exc:
            if attempt >= retries:
                tries = f"after {attempt + 1} attempts" if attempt else "(no retries)"
                return ProbeResult(entry.name, "error", None, exc.status, None, f"{exc} {tries}")
            delay = exc.retry_after if exc.retry_after is not None else backoff * (2**attempt)
            time.sleep(min(MAX_BACKOFF_SECONDS, max(0.0, delay)))
            attempt += 1


def _probe_once(client: httpx.Client, entry: LinkEntry) -> ProbeResult:
    response, body = _request(client, entry, "HEAD")
    if response.status_code in HEAD_REFUSED_STATUS or (response.is_success and _content_length(response) is None):
        response, body = _request(client, entry, "GET", {"Range": "bytes=0-0"})
    return _classify(entry, response, body)


def _request(
    client: httpx.Client, entry: LinkEntry, method: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, str]:
    """One request and the start of an error answer's body (the reason); a file's body is never read."""
    body = b""
    try:
        with client.stream(method, entry.url, headers=headers) as response:
            if response.status_code >= 400 and method == "GET":
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= MAX_REASON_BYTES:
                        break
    except httpx.TimeoutException as exc:
        raise _Retryable(f"timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise _Retryable(f"network error: {_safe_text(str(exc) or type(exc).__name__, entry.url)}") from None
    if response.status_code in RETRYABLE_STATUS:
        raise _Retryable(f"HTTP {response.status_code}", response.status_code, _retry_after(response))
    return response, body[:MAX_REASON_BYTES].decode("utf-8", "replace")


def _classify(entry: LinkEntry, response: httpx.Response, body: str) -> ProbeResult:
    status = response.status_code
    if status == 403:
        return ProbeResult(entry.name, "expired", None, status, None, _forbidden_reason(entry, body))
    if status in (404, 410):
        return ProbeResult(entry.name, "missing", None, status, None, f"HTTP {status}: no such file on the CDN")
    if not response.is_success:
        return ProbeResult(entry.name, "error", None, status, None, f"HTTP {status} {response.reason_phrase}".strip())
    if status == 206:
        size = _content_range_total(response)
        return ProbeResult(entry.name, "live", size, status, True, "" if size is not None else "no size in Content-Range")
    size = _content_length(response)
    if response.request.method == "GET":
        # A 200 to a ranged GET: the server ignores Range, so resuming would restart from zero.
        return ProbeResult(entry.name, "live", size, status, False, "server ignores Range requests")
    return ProbeResult(entry.name, "live", size, status, _accept_ranges(response), "")


def _forbidden_reason(entry: LinkEntry, body: str) -> str:
    expires = entry.expires_at
    if SIGNATURE_EXPIRED_TEXT.lower() in body.lower() or (expires is not None and expires <= datetime.now(timezone.utc)):
        return SIGNATURE_EXPIRED_TEXT
    first_line = _safe_text(body.strip().splitlines()[0], entry.url)[:80] if body.strip() else ""
    return "HTTP 403: expired or revoked" + (f" ({first_line})" if first_line else "")


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def _content_range_total(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _accept_ranges(response: httpx.Response) -> bool | None:
    value = response.headers.get("accept-ranges")
    if value is None:
        return None
    return "bytes" in value.lower()


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _safe_text(text: str, url: str) -> str:
    """``text`` without the signature: the signed URL (if quoted in it) redacted, and any signature
    parameter too (an HTTP library may quote only part of a URL in its errors)."""
    return redact_text(text.replace(url, redact_url(url)))
