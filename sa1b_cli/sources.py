"""Where a part's bytes come from: Meta's signed link while it is valid, then each ``--mirror`` in order.

A mirror is a template with ``{name}`` for the part's file name: an http(s) URL (the
Hugging Face backup answers 302 to a short-lived signed storage URL, which aria2
follows), a ``file://`` URL or a plain path (another site's ``tars/`` folder, copied
here without aria2). Headers given for mirrors (``--mirror-header``, e.g. a token for
a gated repository) go to aria2 over RPC or its stdin only, never into a message,
a receipt or a state file: every message names a source by its :attr:`Source.label`.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sa1b_cli.aria2_control import ControlFileInfo
from sa1b_cli.errors import UsageError
from sa1b_cli.links import LinkEntry, redact_url

if TYPE_CHECKING:
    from sa1b_cli.probe import ProbeResult

META = "meta"
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+:")
COPY_BLOCK = 8 << 20


@dataclass(frozen=True)
class Mirror:
    """One ``--mirror`` template, numbered in the order given (the order parts try them)."""

    number: int
    template: str
    headers: tuple[str, ...] = ()

    @property
    def local(self) -> bool:
        return not self.template.startswith(("http://", "https://"))

    @property
    def label(self) -> str:
        """How messages, receipts and status name it: number and host (or folder), never a header."""
        if self.local:
            return f"mirror {self.number} ({os.path.dirname(self.template) or '.'})"
        return f"mirror {self.number} ({urlsplit(self.template).hostname})"

    def source(self, name: str) -> Source:
        return Source(self.label, self.template.replace("{name}", name), self.headers, self.local)


@dataclass(frozen=True)
class Source:
    """One place one part can be fetched from."""

    label: str  # "meta" or a mirror's label
    location: str  # the full URL (may carry a signature: never shown) or a local path
    headers: tuple[str, ...] = ()
    local: bool = False

    @property
    def is_meta(self) -> bool:
        return self.label == META

    @property
    def shown(self) -> str:
        """The location as messages may show it (signatures redacted)."""
        return self.location if self.local else redact_url(self.location)


def parse_mirrors(templates: Iterable[str], headers: Iterable[str] = ()) -> list[Mirror]:
    """Validate ``--mirror`` templates and ``--mirror-header`` lines (whose values are never echoed)."""
    checked_headers = tuple(_checked_header(header) for header in headers)
    mirrors = [Mirror(number, _template(raw), checked_headers)
               for number, raw in enumerate((t.strip() for t in templates if t.strip()), start=1)]
    if checked_headers and all(m.local for m in mirrors):
        raise UsageError("--mirror-header needs an http(s) --mirror to send it to")
    return mirrors


def _checked_header(header: str) -> str:
    if not _HEADER.match(header) or not header.partition(":")[2].strip():
        shown = header.partition(":")[0][:40] if ":" in header else "(no colon)"
        raise UsageError(f"--mirror-header {shown}: expected 'Name: value' (the value is never shown)")
    return header.strip()


def _template(raw: str) -> str:
    scheme = urlsplit(raw).scheme.lower() if "://" in raw else ""
    if scheme in ("http", "https"):
        if not urlsplit(raw).hostname:
            raise UsageError(f"--mirror {redact_url(raw)}: no host in the URL")
        return raw if "{name}" in raw else raw.rstrip("/") + "/{name}"
    if scheme == "file":
        raw = unquote(urlsplit(raw).path)
    elif scheme:
        raise UsageError(f"--mirror {redact_url(raw)}: use an http(s) URL, a file:// URL or a path, with {{name}} for the part")
    path = raw if "{name}" in raw else os.path.join(raw, "{name}")
    return os.path.abspath(path)


def part_sources(entry: LinkEntry | None, name: str, mirrors: Sequence[Mirror], *, meta_usable: bool) -> list[Source]:
    """The sources a part tries, in order: Meta's link (when it is still usable), then every mirror."""
    sources = [Source(META, entry.url)] if entry is not None and meta_usable else []
    return sources + [m.source(name) for m in mirrors]


def can_mix(first: Source, second: Source, sizes_agree: bool, has_reference: bool) -> bool:
    """Fetch one part from two HTTP sources at once only when a checksum will prove the mix right
    and no header meant for one source would go to the other."""
    return (has_reference and sizes_agree and not first.local and not second.local
            and not first.headers and not second.headers)


def local_size(source: Source) -> int | None:
    try:
        return os.stat(source.location).st_size
    except OSError:
        return None


def copy_local(source: Source, target: Path, control: ControlFileInfo | None, on_bytes: Callable[[int], None]) -> int:
    """Copy a part from a local mirror into ``target``; the bytes copied.

    What is already there stays when it was fetched for a part of this size: with aria2's
    progress (``control``) only the pieces it does not mark done are copied; without it a
    shorter file is continued from its end. Anything else is copied whole.
    """
    size = os.stat(source.location).st_size
    ranges = [(0, size)]
    if control is not None and control.total_length == size:
        ranges = control.missing_ranges()
    elif control is None and target.exists() and target.stat().st_size <= size:
        ranges = [(target.stat().st_size, size)]
    copied = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT
    with open(source.location, "rb", buffering=0) as src:
        fd = os.open(target, flags, 0o666)
        try:
            for start, end in ranges:
                offset = start
                while offset < end:
                    block = os.pread(src.fileno(), min(COPY_BLOCK, end - offset), offset)
                    if not block:
                        raise OSError(f"{source.location} shrank while it was copied")
                    os.pwrite(fd, block, offset)
                    offset += len(block)
                    copied += len(block)
                    on_bytes(len(block))
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    return copied


@dataclass
class PartSources:
    """What planning learned about one part's sources: the order to try them in, and its size."""

    name: str
    sources: list[Source]  # still to try, the first serves now
    size: int | None = None
    mixed_with: Source | None = None  # a second source fetched together with the first
    state: str = "live"  # live | expired | missing | error: what the serving source answered
    passed: list[str] = field(default_factory=list)  # why each source passed over was passed over
    expired: bool = False  # one of those was an expired (or revoked) link: a fresh links file may help
    link_expires: datetime | None = None  # Meta's link's expiry (oe=): a 403 before it is a revocation

    @property
    def reason(self) -> str:
        return "; ".join(self.passed)

    def pass_over(self, why: str, expired: bool) -> None:
        """Drop the first source, saying why (Meta's own reasons keep the wording they always had)."""
        source = self.sources.pop(0)
        self.passed.append(why if source.is_meta else f"{source.label}: {why}")
        self.expired = self.expired or expired

    @property
    def serving(self) -> str:
        """The label(s) of what will serve the part, as dry runs and ``links --check`` show it."""
        return serving_label(self.sources, self.mixed_with, "none")


def serving_label(sources: Sequence[Source], mixed_with: Source | None, when_none: str) -> str:
    """``meta``, ``mirror 1 (host)`` or ``meta + mirror 1 (host)``: what serves a part, as every message names it."""
    if not sources:
        return when_none
    return f"{sources[0].label} + {mixed_with.label}" if mixed_with is not None else sources[0].label


def probe_source(source: Source, name: str) -> ProbeResult:
    """One source of one part: live with its size, expired (403), missing or failing."""
    return probe_sources([(name, source)])[0]


def probe_sources(pairs: Sequence[tuple[str, Source]]) -> list[ProbeResult]:
    """Probe (part name, source) pairs: local files by stat, HTTP sources with HEAD (their headers
    sent), concurrently; results in the order given."""
    from sa1b_cli.probe import ProbeResult, probe_links

    results: dict[int, ProbeResult] = {}
    by_headers: dict[tuple[str, ...], list[int]] = {}
    for index, (name, source) in enumerate(pairs):
        if source.local:
            size = local_size(source)
            state = "live" if size is not None else "missing"
            results[index] = ProbeResult(name, state, size, None, True, "" if size is not None else f"no file {source.location}")
        else:
            by_headers.setdefault(source.headers, []).append(index)
    for headers, indexes in by_headers.items():
        entries = [LinkEntry(pairs[i][0], pairs[i][1].location, 0) for i in indexes]
        for index, result in zip(indexes, probe_links(entries, headers=headers)):
            results[index] = result
    return [results[i] for i in range(len(pairs))]


def plan_sources(parts: list[PartSources], meta_results: dict[str, ProbeResult], has_reference: Callable[[str], bool],
                 mirrors_wanted: bool) -> None:
    """Settle each part's source order from the probes: a source that answered expired or missing is
    passed over, the first live one serves, and an HTTP mirror of the same size joins Meta's link
    when a reference checksum will prove the mixed bytes right."""
    for part in parts:
        result = meta_results.get(part.name)
        if part.sources and part.sources[0].is_meta and result is not None:
            _take_probe(part, result)
    if not mirrors_wanted:
        return
    _settle_mirrors([p for p in parts if p.sources and not p.sources[0].is_meta])
    _mix_in_mirrors(parts, has_reference)


def _take_probe(part: PartSources, result: ProbeResult) -> bool:
    """Record what the serving source answered; pass it over (True) when it cannot serve the part."""
    part.size, part.state = result.size, result.state
    if result.state in ("expired", "missing") or (result.status == 401 and not part.sources[0].is_meta):
        part.pass_over(_passed_reason(part, result), result.state == "expired")
        return True
    return False


def _settle_mirrors(pending: list[PartSources]) -> None:
    """Probe each part's next mirror, round after round, until one answers live or none is left."""
    while pending:
        results = probe_sources([(p.name, p.sources[0]) for p in pending])
        pending = [part for part, result in zip(pending, results) if _take_probe(part, result) and part.sources]


def _mix_in_mirrors(parts: list[PartSources], has_reference: Callable[[str], bool]) -> None:
    """An HTTP mirror of the same size fetched together with Meta's link, where a checksum proves the mix."""
    mixable = [p for p in parts if len(p.sources) > 1 and p.sources[0].is_meta and p.state == "live"
               and has_reference(p.name) and can_mix(p.sources[0], p.sources[1], True, True)]
    for part, result in zip(mixable, probe_sources([(p.name, p.sources[1]) for p in mixable])):
        if result.state == "live" and result.size is not None and result.size == part.size:
            part.mixed_with = part.sources[1]


def _passed_reason(part: PartSources, result: ProbeResult) -> str:
    source = part.sources[0]
    if source.is_meta:
        return _meta_reason(result, part.link_expires)
    if result.status == 401:
        return "HTTP 401: it wants a token (--mirror-header)"
    return result.message or result.state


def _meta_reason(result: ProbeResult, expires: datetime | None) -> str:
    if result.state == "expired":
        from sa1b_cli.probe import SIGNATURE_EXPIRED_TEXT

        return forbidden_reason(expires, signature_expired=result.message == SIGNATURE_EXPIRED_TEXT)
    return f"not found on the server (HTTP {result.status})"


def forbidden_reason(expires: datetime | None, signature_expired: bool = False) -> str:
    """Why Meta's link answered 403: expired, or revoked while its expiry (``oe=``) is still ahead, which a
    fresh links file fixes all the same but which is no expiry."""
    now = datetime.now(timezone.utc)
    if expires is not None and expires > now and not signature_expired:
        return f"revoked / refused (HTTP 403) although the link's expiry is {expires:%Y-%m-%d %H:%M} UTC"
    if expires is not None or signature_expired:
        return "link expired (HTTP 403)"
    return "link expired or revoked (HTTP 403)"
