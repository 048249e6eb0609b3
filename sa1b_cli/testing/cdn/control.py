"""The fake CDN's JSON control API (``/__cdn/...``), so that another process can drive it."""

from __future__ import annotations

import dataclasses
import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qs

from sa1b_cli.testing.cdn.faults import Faults

if TYPE_CHECKING:
    from sa1b_cli.testing.cdn.server import FakeCDN

CONTROL_PREFIX = "/__cdn/"


def _set_faults(cdn: FakeCDN, body: dict[str, Any]) -> None:
    name = body.pop("name", None)
    cdn.set_faults(name, Faults.from_dict(body) if body else None)


#: GET (or POST) ``/__cdn/<name>?query``: what the CDN reports.
_QUERIES: Mapping[str, Callable[[FakeCDN, dict[str, str]], Any]] = {
    "stats": lambda cdn, q: cdn.stats(),
    "log": lambda cdn, q: [dataclasses.asdict(r) for r in cdn.log],
    "links": lambda cdn, q: cdn.links_text(expires_at=float(q["expires_at"]) if "expires_at" in q else None),
}
#: POST ``/__cdn/<name>`` with a JSON body: what changes the CDN's behaviour.
_COMMANDS: Mapping[str, Callable[[FakeCDN, dict[str, Any]], None]] = {
    "faults": _set_faults,
    "revoke": lambda cdn, body: cdn.revoke(body["name"]),
    "expire_all": lambda cdn, body: cdn.expire_all(),
    "reset_log": lambda cdn, body: cdn.reset_log(),
}


def _run(cdn: FakeCDN, cmd: str, query: dict[str, str], body: Any, post: bool) -> Any:
    if cmd in _QUERIES:
        return _QUERIES[cmd](cdn, query)
    if post and cmd in _COMMANDS:
        _COMMANDS[cmd](cdn, body)
        return {"ok": True}
    raise KeyError(cmd)


def answer_control(cdn: FakeCDN, h: BaseHTTPRequestHandler, cmd: str, query: str, post: bool) -> None:
    """Answer one control request (loopback only, like the rest of the server)."""
    q = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    body: Any = None
    if post:
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        body = json.loads(raw) if raw else {}
    try:
        out = _run(cdn, cmd, q, body, post)
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
