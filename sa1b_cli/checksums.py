"""Checksum lists: the community reference shipped with sa1b, ``md5sum``/``sha256sum`` files and sa1b manifests.

Meta publishes no checksums. sa1b ships the community MD5 list of all 1,000 parts
(``data/sa1b-community-md5.txt``, provenance in ``data/README-reference.md``) and checks
every part it lists by default; it is always named a community reference, never
Meta's word. ``--checksums FILE`` replaces it (an ``md5sum`` or ``sha256sum`` file, or
the ``manifest.json`` another site wrote with ``sa1b manifest``), ``--no-reference``
turns it off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from sa1b_cli.errors import InputFileError

REFERENCE_FILE = "sa1b-community-md5.txt"
REFERENCE_LABEL = "the community reference (not Meta's word)"
_LINE = re.compile(r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{64})\s+\*?(.+?)\s*$")


@dataclass(frozen=True)
class ChecksumList:
    """Expected digests by part file name, and where they came from (for every message that cites them)."""

    origin: str  # the file it was read from, or REFERENCE_FILE
    md5: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    is_reference: bool = False

    @property
    def label(self) -> str:
        return REFERENCE_LABEL if self.is_reference else f"the checksum list {self.origin}"

    def covers(self, name: str) -> bool:
        return name in self.md5 or name in self.sha256

    def wants_md5(self, name: str) -> bool:
        """md5 costs a quarter of a check's CPU: compute it only for a part this list gives one for."""
        return name in self.md5

    def names(self) -> set[str]:
        return set(self.md5) | set(self.sha256)

    def mismatch(self, name: str, md5: str | None, sha256: str | None) -> str | None:
        """Why the digests read for ``name`` disagree with this list; None when they agree or it lists none."""
        for algorithm, got, expected in (("md5", md5, self.md5.get(name)), ("sha256", sha256, self.sha256.get(name))):
            if expected is None or got is None or got.lower() == expected:
                continue
            if self.is_reference:
                return f"{algorithm} {got} differs from {REFERENCE_LABEL}, which lists {expected}"
            return f"{algorithm} {got} does not match the checksum list ({expected})"
        return None

    def uncovered(self, names: Sequence[str], what: str) -> list[str]:
        """The ``names`` this list gives no checksum for. A list that gives none of them is the wrong list
        (another dataset, another site's other parts, a typo): InputFileError, before any work is done.
        ``what`` says what the names are, e.g. "selected part(s)"."""
        missing = [name for name in names if not self.covers(name)]
        if names and len(missing) == len(names):
            raise InputFileError(self.origin, None, f"names none of the {len(names)} {what} (e.g. {names[0]}): "
                                 "is it the list for these parts?")
        return missing


@lru_cache(maxsize=1)
def community_reference() -> ChecksumList:
    """The community MD5 list shipped inside the package (read once per process)."""
    text = resources.files("sa1b_cli").joinpath("data", REFERENCE_FILE).read_text(encoding="utf-8")
    return _parse_lines(text, REFERENCE_FILE, is_reference=True)


def choose_checksums(path: Path | None, no_reference: bool) -> ChecksumList | None:
    """What a run compares parts with: the user's list, else the reference unless switched off."""
    if path is not None:
        return parse_checksums(path)
    return None if no_reference else community_reference()


def parse_checksums(path: Path) -> ChecksumList:
    """An ``md5sum``/``sha256sum`` file (``<hex>  sa_000000.tar``, both may be mixed) or a manifest JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(str(path), None, "checksum list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(str(path), None, f"cannot read checksum list: {exc}") from None
    if text.lstrip().startswith(("{", "[")):
        return _parse_manifest_json(text, str(path))
    return _parse_lines(text, str(path))


def _parse_lines(text: str, origin: str, *, is_reference: bool = False) -> ChecksumList:
    listed = ChecksumList(origin, is_reference=is_reference)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            raise InputFileError(origin, number, f"expected '<32 hex md5>  <file name>' (or a 64 hex sha256), got {line.strip()[:60]!r}")
        digest = match.group(1).lower()
        _add(listed.md5 if len(digest) == 32 else listed.sha256, match.group(2), digest, origin, number)
    if not listed.names():
        raise InputFileError(origin, None, "no checksums found")
    return listed


def _parse_manifest_json(text: str, origin: str) -> ChecksumList:
    """``sa1b manifest``'s JSON: ``{"parts": [{"name", "size", "md5", "sha256", ...}]}`` (or the bare list)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputFileError(origin, getattr(exc, "lineno", None), f"not valid JSON: {exc}") from None
    records = doc.get("parts") if isinstance(doc, dict) else doc
    if not isinstance(records, list):
        raise InputFileError(origin, None, "a manifest JSON holds a 'parts' list of {name, md5, sha256} records")
    listed = ChecksumList(origin)
    for index, record in enumerate(records):
        _add_record(listed, index, record, origin)
    if not listed.names():
        raise InputFileError(origin, None, "no checksums found")
    return listed


def _add_record(listed: ChecksumList, index: int, record: object, origin: str) -> None:
    """One ``{name, md5, sha256}`` record of a manifest JSON (either digest may be absent)."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise InputFileError(origin, None, f"parts[{index}] is not a {{name, md5, sha256}} record")
    for algorithm, digests, length in (("md5", listed.md5, 32), ("sha256", listed.sha256, 64)):
        digest = record.get(algorithm)
        if digest is None:
            continue
        if not isinstance(digest, str) or not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", digest):
            raise InputFileError(origin, None, f"parts[{index}] ({record['name']}): {algorithm} is not {length} hex digits")
        _add(digests, record["name"], digest.lower(), origin, None)


def _add(digests: dict[str, str], raw_name: str, digest: str, origin: str, line: int | None) -> None:
    name = raw_name.replace("\\", "/").rsplit("/", 1)[-1]
    if digests.get(name, digest) != digest:
        raise InputFileError(origin, line, f"{name} listed twice with different checksums")
    digests[name] = digest
