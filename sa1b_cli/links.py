"""Meta's links file: parsing, expiry and URL redaction.

The file is ``file_name<TAB>cdn_link`` then one ``NAME<TAB>URL`` a line. Names come
from the first column only (the URL path is an opaque token). A bad file is
rejected as a whole, with every problem named by line, before anything is fetched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sa1b_cli.errors import InputFileError

PART_NAME = re.compile(r"^sa_(\d{6})\.tar$")
HEADER = ("file_name", "cdn_link")
# Query parameters that carry a signature or a credential; never shown in full.
_SECRET_NAMES = r"oh|_nc_sid|_nc_ohc|sig|signature|token|key|x-amz-[\w-]*|x-goog-[\w-]*|policy|key-pair-id"
SECRET_PARAMS = re.compile(rf"^({_SECRET_NAMES})$", re.I)
MAX_REPORTED_PROBLEMS = 20


class LinksFileError(InputFileError):
    """The links file is malformed; ``problems`` lists every (line, message)."""

    def __init__(self, path: str, problems: list[tuple[int | None, str]]) -> None:
        self.problems = problems
        first_line, first_message = problems[0]
        super().__init__(path, first_line, first_message)
        if len(problems) > 1:
            shown = problems[:MAX_REPORTED_PROBLEMS]
            lines = [f"{path}:{line}: {message}" if line else f"{path}: {message}" for line, message in shown]
            more = len(problems) - len(shown)
            if more:
                lines.append(f"... and {more} more problems")
            self.args = (f"{len(problems)} problems in the links file:\n" + "\n".join(lines),)


@dataclass(frozen=True)
class LinkEntry:
    """One row of the links file."""

    name: str
    url: str
    line: int

    @property
    def is_part(self) -> bool:
        return PART_NAME.match(self.name) is not None

    @property
    def part_index(self) -> int | None:
        match = PART_NAME.match(self.name)
        return int(match.group(1)) if match else None

    @property
    def expires_at(self) -> datetime | None:
        return url_expiry(self.url)

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)


@dataclass
class LinksFile:
    """A parsed links file: parts and extras in file order."""

    path: str
    entries: list[LinkEntry] = field(default_factory=list)

    @property
    def parts(self) -> list[LinkEntry]:
        return sorted((e for e in self.entries if e.is_part), key=lambda e: e.name)

    @property
    def extras(self) -> list[LinkEntry]:
        return [e for e in self.entries if not e.is_part]

    def by_name(self) -> dict[str, LinkEntry]:
        return {e.name: e for e in self.entries}

    def expiry_range(self) -> tuple[datetime | None, datetime | None]:
        """Earliest and latest expiry of all rows (None when no row carries ``oe``)."""
        times = [t for t in (e.expires_at for e in self.entries) if t is not None]
        if not times:
            return None, None
        return min(times), max(times)


def url_expiry(url: str) -> datetime | None:
    """The expiry in a signed URL's ``oe`` parameter (hex Unix time), or None."""
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key == "oe":
            try:
                return datetime.fromtimestamp(int(value, 16), tz=timezone.utc)
            except (ValueError, OverflowError, OSError):
                return None
    return None


def redact_url(url: str) -> str:
    """The URL with its signature parameters replaced, safe for logs and receipts."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # malformed (bad IPv6 host or port): keep no query and no user info at all
        base = re.sub(r"//[^/@]*@", "//", re.split(r"[?#]", url, maxsplit=1)[0])
        return base + ("?REDACTED" if "?" in url else "")
    if not parts.query and not parts.fragment and "@" not in parts.netloc:
        return url
    pieces = []
    for raw in parts.query.split("&"):
        key, sep, _value = raw.partition("=")
        if sep and SECRET_PARAMS.match(key):
            pieces.append(f"{key}=REDACTED")
        else:
            pieces.append(raw)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return _redact_params(urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), "")))


_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")
# A secret query parameter outside a recognisable URL (a URL broken by quoting or a line break).
_SECRET_IN_TEXT = re.compile(rf"([?&;](?:{_SECRET_NAMES}))=[^&\s'\"<>]*", re.I)


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for messages that come from aria2c or httpx)."""
    return _redact_params(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text))


def _redact_params(text: str) -> str:
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}=REDACTED", text)


_SURROGATE = re.compile("[\ud800-\udfff]")  # only from in-memory text: a file is decoded strictly


def _shown(name: str) -> str:
    """A file name as messages quote it; one holding URL query text may hold part of a signature: not shown."""
    return "(not shown: it holds URL query text)" if any(ch in name for ch in "=&?") else repr(name)


def _check_name(name: str) -> str | None:
    if not name:
        return "empty file name"
    if "/" in name or "\\" in name:
        return f"file name {_shown(name)} contains a path; only bare file names are allowed"
    if name in (".", "..") or name.startswith("."):
        return f"file name {_shown(name)} is not allowed"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"file name {_shown(name)} contains control characters"
    if _SURROGATE.search(name):
        return f"file name {_shown(name)} is not valid Unicode text"
    if len(name.encode("utf-8")) > 255:
        return "file name longer than 255 bytes"
    return None


def _check_url(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # its message quotes the port: URL text, perhaps a piece of a signature
        return "malformed URL (a bad port or IPv6 host)"
    if parts.scheme.lower() not in ("http", "https"):
        # Only the scheme is shown: text without one may be the tail of a signed URL cut apart.
        return f"URL must be http(s), got {parts.scheme!r}" if parts.scheme else "URL must start with http(s)://"
    if not parts.hostname:
        return "URL has no host"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "URL contains whitespace or control characters"
    if _SURROGATE.search(url):
        return "URL is not valid Unicode text"
    return None


_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
HTML_PAGE = "this is an HTML page, not the links file; save the file the page links to"


def parse_links_text(text: str, source: str = "<links>") -> LinksFile:
    """Parse the links file content; raise LinksFileError naming every bad line (or once: a saved web page)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if _HTML_START.match(text[:4096]):
        raise LinksFileError(source, [(None, HTML_PAGE)])
    problems: list[tuple[int | None, str]] = []
    entries: list[LinkEntry] = []
    seen: dict[str, int] = {}
    for number, fields in _content_lines(text):
        problem = _row_problem(fields, seen)
        if problem:
            problems.append((number, problem))
            continue
        seen[fields[0]] = number
        entries.append(LinkEntry(name=fields[0], url=fields[1], line=number))
    if not entries and not problems:
        problems.append((None, "no links found (expected lines 'NAME<TAB>URL' after a 'file_name<TAB>cdn_link' header)"))
    if problems:
        raise LinksFileError(source, problems)
    return LinksFile(path=source, entries=entries)


def _content_lines(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line but a leading header."""
    first_content = True
    # Only CR/LF end lines (as editors count them); str.splitlines would also split on \f, \x1c, \x85 ...
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if first_content:
            first_content = False
            if tuple(f.lower() for f in fields) == HEADER:
                continue
        yield number, fields


def _row_problem(fields: list[str], seen: dict[str, int]) -> str | None:
    """What is wrong with one row (None: a good ``NAME<TAB>URL``)."""
    if len(fields) != 2 or not fields[0] or not fields[1]:
        return f"expected 'NAME<TAB>URL', got {len(fields)} field(s){_damaged_line(fields)}"
    name, url = fields
    problem = _check_name(name) or _check_url(url)
    if problem is None and name in seen:
        return f"duplicate file name {_shown(name)} (first on line {seen[name]})"
    return problem


def parse_links(path: Path | str) -> LinksFile:
    """Read and parse a links file from disk."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(str(path), None, "links file not found") from None
    except IsADirectoryError:
        raise InputFileError(str(path), None, "is a directory, expected the links file") from None
    except OSError as exc:
        raise InputFileError(str(path), None, f"cannot read links file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError(str(path), line, "not valid UTF-8 text (is this really the links file?)") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputFileError(str(path), line, "binary data (NUL byte); expected the text links file")
    return parse_links_text(text, str(path))


_PLAIN_FILE_NAME = re.compile(r"[\w-]+(\.[\w-]+)*\.[A-Za-z][\w]{0,7}")


def _damaged_line(fields: list[str]) -> str:
    """How a line that is not NAME<TAB>URL is shown: its first field when that is a plain file name, never the
    rest. A signed URL cut apart leaves bare pieces of its signature with no ``oh=`` left to redact them by."""
    first = fields[0] if fields else ""
    shown = f" starting {first!r}" if _PLAIN_FILE_NAME.fullmatch(first) and len(first) <= 80 else ""
    hidden = len(fields) > 1 or not shown
    return shown + ("; the rest is not shown (it may hold part of a signed URL)" if hidden else "")


META_HOST = re.compile(r"(^|\.)fbcdn\.net$", re.I)


def cut_link_warnings(links: LinksFile) -> list[str]:
    """``file:line`` warnings for Meta links without their expiry (``oe``) or signature (``oh``): a line cut off
    partway, which the CDN will refuse. Names and lines only, never the URL."""
    warnings = []
    for entry in links.entries:
        if not META_HOST.search(urlsplit(entry.url).hostname or ""):
            continue
        keys = {key for key, _value in parse_qsl(urlsplit(entry.url).query, keep_blank_values=True)}
        lacking = [f"'{key}'" for key in ("oe", "oh") if key not in keys]
        if lacking:
            warnings.append(f"{links.path}:{entry.line}: {entry.name}: Meta link without {' and '.join(lacking)} "
                            "(cut off partway?); the CDN will refuse it: copy the line again from Meta's file")
    return warnings
