"""What verify finds: problems, per-part results and the whole report (and the exit status it implies)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from sa1b_cli import rle
from sa1b_cli.errors import ExitStatus, worst

FULL_DATASET_PAIRS = 11_185_362
FULL_DATASET_PARTS = 1000
MAX_LISTED = 100  # problems kept per part (all are counted)
ALL_UNIT = "(all)"  # split/flat folders checked as one unit (no manifests to attribute files to parts)


class TextEnum(str, enum.Enum):
    """A word that prints, formats, hashes and serialises as its value: JSON output and comparisons
    with plain strings stay as they were when these were strings."""

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


class Level(TextEnum):
    """How deep the files were checked."""

    QUICK = "quick"
    DEEP = "deep"

    @property
    def rank(self) -> int:
        return 2 if self is Level.DEEP else 1


class PartStatus(TextEnum):
    """A part's verdict (also a problem's severity: incomplete or corrupt)."""

    OK = "ok"
    INCOMPLETE = "incomplete"
    CORRUPT = "corrupt"
    MISSING = "missing"
    NOT_EXTRACTED = "not-extracted"
    PARTIAL = "partial"  # part of the tar is on disk, no download runs on it
    DOWNLOADING = "downloading"  # a live download run is fetching it


QUICK, DEEP = Level.QUICK, Level.DEEP
OK, INCOMPLETE, CORRUPT = PartStatus.OK, PartStatus.INCOMPLETE, PartStatus.CORRUPT
MISSING, NOT_EXTRACTED = PartStatus.MISSING, PartStatus.NOT_EXTRACTED
PARTIAL, DOWNLOADING = PartStatus.PARTIAL, PartStatus.DOWNLOADING
WITHOUT_FILES = (MISSING, NOT_EXTRACTED, PARTIAL, DOWNLOADING)  # the verdicts of a part with no files to check


def level_rank(level: object) -> int:
    """The rank of a level read from a receipt (0: none or unknown), so a deeper check satisfies a shallower one."""
    return Level(level).rank if level in (QUICK, DEEP) else 0


# Problem kinds that mean "not all there"; every other kind means "damaged".
INCOMPLETE_KINDS = frozenset({
    "missing-part", "not-extracted", "partial-download", "missing-folder", "missing-image", "missing-annotation", "count",
    "extra-file", "tar-incomplete",
})


@dataclass(frozen=True)
class Problem:
    """One thing wrong, about one file (or folder)."""

    path: str
    kind: str
    message: str

    @property
    def severity(self) -> PartStatus:
        return INCOMPLETE if self.kind in INCOMPLETE_KINDS else CORRUPT

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "severity": self.severity.value, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Problems:
    """The problems of one part: the first ``MAX_LISTED`` kept, all counted."""

    listed: list[Problem] = field(default_factory=list)
    total: int = 0
    corrupt: int = 0

    def add(self, problem: Problem) -> None:
        self.total += 1
        self.corrupt += problem.severity == CORRUPT
        if len(self.listed) < MAX_LISTED:
            self.listed.append(problem)

    def merge(self, other: Problems) -> None:
        for problem in other.listed:
            self.add(problem)
        self.total += other.total - len(other.listed)
        self.corrupt += other.corrupt - sum(p.severity == CORRUPT for p in other.listed)

    def to_dict(self) -> dict[str, Any]:
        return {"listed": [p.to_dict() for p in self.listed], "total": self.total, "corrupt": self.corrupt}

    @classmethod
    def from_dict(cls, data: Any) -> Problems:
        if not isinstance(data, dict):
            return cls()
        listed = [Problem(str(p["path"]), str(p["kind"]), str(p["message"]))
                  for p in data.get("listed", []) if isinstance(p, dict) and {"path", "kind", "message"} <= p.keys()]
        return cls(listed, int(data.get("total", len(listed))), int(data.get("corrupt", 0)))


@dataclass
class TarResult:
    """The check of one downloaded tar."""

    path: str
    size: int | None = None
    checked: list[str] = field(default_factory=list)  # what was compared: size, md5, sha256, checksum list
    notes: list[str] = field(default_factory=list)  # what could not be compared, and why
    problems: Problems = field(default_factory=Problems)
    key: dict[str, Any] = field(default_factory=dict)  # what the result depends on (for the cache)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "checked": self.checked, "notes": self.notes,
                "problems": [p.to_dict() for p in self.problems.listed], "cached": self.cached}


@dataclass
class PartResult:
    """What verify found for one part (or for the shared folders, ``(all)``)."""

    name: str
    path: str
    status: PartStatus = OK
    level: Level | None = None  # the level the files were checked at; None when there were none
    cached: bool = False  # True: file contents were not read again; the verify receipt still held
    listed: bool = False  # True: the files were listed (and stat'ed) in this run; False: folders unchanged
    images: int = 0
    annotations: int = 0
    expected: int | None = None  # pairs expected
    expected_from: str | None = None
    pairs_checked: int = 0
    masks_checked: int = 0
    problems: Problems = field(default_factory=Problems)
    tar: TarResult | None = None
    seconds: float = 0.0
    awaited: bool = False  # not arrived yet, and in a check of what has arrived no problem but "more to come"
    note: str = ""  # for a part without files: what there is of it (e.g. "being downloaded, 15%")

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.name, "path": self.path, "status": self.status.value, "ok": self.ok,
            "level": None if self.level is None else self.level.value,
            "cached": self.cached, "listed": self.listed, "images": self.images, "annotations": self.annotations,
            "expected": self.expected, "expected_from": self.expected_from,
            "pairs_checked": self.pairs_checked, "masks_checked": self.masks_checked,
            "problems": [p.to_dict() for p in self.problems.listed], "problems_total": self.problems.total,
            "tar": self.tar.to_dict() if self.tar else None, "seconds": round(self.seconds, 3),
            "awaited": self.awaited, "note": self.note,
        }


@dataclass
class VerifyReport:
    """A whole verify run; ``exit_status`` is what the command exits with."""

    root: str
    layout: str | None
    level: Level
    tars: bool
    parts: list[PartResult] = field(default_factory=list)
    expected_total: int | None = None  # pairs the checked scope must hold, when known
    problems: Problems = field(default_factory=Problems)  # about the dataset as a whole
    seconds: float = 0.0
    arrived_only: bool = False  # only the parts that have arrived were checked; the others are awaited
    arrived_reason: str = ""  # why (asked for, a download running, or the download unfinished)

    @property
    def images(self) -> int:
        return sum(p.images for p in self.parts)

    @property
    def annotations(self) -> int:
        return sum(p.annotations for p in self.parts)

    @property
    def missing_parts(self) -> list[str]:
        """Parts without files that count as a problem (in a check of what has arrived, only those that
        were extracted once and are gone)."""
        return [p.name for p in self.parts if p.status in WITHOUT_FILES and not p.awaited]

    @property
    def not_arrived(self) -> list[str]:
        return [p.name for p in self.parts if p.awaited]

    @property
    def checked_parts(self) -> int:
        """Parts whose files were checked (not those without files)."""
        return sum(p.status not in WITHOUT_FILES for p in self.parts)

    @property
    def problems_total(self) -> int:
        return self.problems.total + sum(p.problems.total for p in self.parts)

    @property
    def corrupt_total(self) -> int:
        return self.problems.corrupt + sum(p.problems.corrupt for p in self.parts)

    @property
    def exit_status(self) -> ExitStatus:
        """Corrupt files, missing ones, parts still to come: the worst by ``errors.SEVERITY``."""
        return worst([ExitStatus.CORRUPT if self.corrupt_total else ExitStatus.OK,
                      ExitStatus.INCOMPLETE if self.problems_total else ExitStatus.OK,
                      ExitStatus.PARTIAL if self.not_arrived else ExitStatus.OK])

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for part in self.parts:
            counts[part.status.value] = counts.get(part.status.value, 0) + 1
        return {
            "root": self.root, "layout": self.layout, "level": Level(self.level).value, "tars": self.tars,
            "ok": self.exit_status == ExitStatus.OK, "exit_code": int(self.exit_status),
            "parts": len(self.parts), "statuses": counts, "cached": sum(p.cached for p in self.parts),
            "listed": sum(p.listed for p in self.parts),
            "images": self.images, "annotations": self.annotations, "expected_total": self.expected_total,
            "pairs_checked": sum(p.pairs_checked for p in self.parts),
            "masks_checked": sum(p.masks_checked for p in self.parts),
            "missing_parts": self.missing_parts, "problems_total": self.problems_total,
            "arrived_only": self.arrived_only, "arrived_reason": self.arrived_reason,
            "checked_parts": self.checked_parts, "not_arrived": self.not_arrived,
            "problems": [p.to_dict() for p in self.problems.listed], "seconds": round(self.seconds, 3),
            "rle_backend": rle.BACKEND if self.level == DEEP else None,  # which decoder checked the masks
        }

    def to_dict(self) -> dict[str, Any]:
        return {"type": "summary", "command": "verify", **self.summary(),
                "part_results": [p.to_dict() for p in self.parts]}
