"""Where everything lives under ROOT.

Every file that a run writes about a part is per part (receipts, locks, temporary
directories), so N hosts working on different parts over one shared ROOT never
rewrite the same file. Only ``layout.json`` is shared, and it is created once with
O_EXCL and never rewritten.

    ROOT/tars/sa_000000.tar            downloaded parts (+ aria2 ``.aria2`` control files)
    ROOT/extracted/sa_000000/...       layout "parts" (default)
    ROOT/images/, ROOT/annotations/    layout "split"
    ROOT/extracted/...                 layout "flat"
    ROOT/.sa1b/layout.json             the extraction layout, recorded once
    ROOT/.sa1b/receipts/<stage>/<part>.json   download / extract / verify receipts
    ROOT/.sa1b/failures/<stage>/<part>.json   last failure of a part (for ``status``)
    ROOT/.sa1b/members/<part>.json     a checked part's member names and sizes (for ``export``)
    ROOT/.sa1b/locks/<part>.lock       per-part lock files
    ROOT/.sa1b/tmp/                    temporary extraction directories
    ROOT/.sa1b/runs/<host>-<pid>.json  live progress of running downloads (for ``status``)
    ROOT/.sa1b/knowledge/<host>-<pid>.json  sizes, part list and run rates learned (for ``status``)
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_NAME = ".sa1b"
STAGES = ("download", "extract", "verify")
# The folders a ROOT fills (tars, the three layouts' folders, the state): a -d pointing into one is a mistake.
ROOT_FOLDERS = ("tars", "extracted", "images", "annotations", STATE_DIR_NAME)


def part_stem(name: str) -> str:
    """``sa_000000.tar`` -> ``sa_000000``."""
    return name[:-4] if name.endswith(".tar") else name


def enclosing_root(path: Path) -> Path | None:
    """The sa1b ROOT that ``path`` lies inside (``ROOT/tars``, ``ROOT/extracted/sa_000000``...), else None.

    A ``-d`` one level too deep would otherwise start a second dataset there (``ROOT/tars/tars``).
    Only a path inside one of ROOT's own folders counts: a ROOT elsewhere under a folder that holds a
    stray ``.sa1b`` (a run without ``-d`` in $HOME) is not refused. A path that is a ROOT itself is fine.
    """
    absolute = path.resolve()
    if (absolute / STATE_DIR_NAME).is_dir():
        return None
    for parent in absolute.parents:
        if absolute.relative_to(parent).parts[0] in ROOT_FOLDERS and _is_root(parent):
            return parent
    return None


def _is_root(path: Path) -> bool:
    """A folder sa1b has worked in (its state folder), or one whose tars/ holds a part (copied by hand)."""
    return (path / STATE_DIR_NAME).is_dir() or next((path / "tars").glob("sa_*.tar*"), None) is not None


def host_tag() -> str:
    """A per-process tag (host and pid) for files only this process writes."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class RootPaths:
    """The paths of one dataset ROOT."""

    root: Path

    @property
    def tars(self) -> Path:
        return self.root / "tars"

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def layout_file(self) -> Path:
        return self.state / "layout.json"

    @property
    def locks(self) -> Path:
        return self.state / "locks"

    @property
    def tmp(self) -> Path:
        return self.state / "tmp"

    @property
    def runs(self) -> Path:
        return self.state / "runs"

    @property
    def knowledge(self) -> Path:
        return self.state / "knowledge"

    def tar(self, name: str) -> Path:
        return self.tars / name

    def control_file(self, name: str) -> Path:
        """aria2's progress file for a part."""
        return self.tars / f"{name}.aria2"

    def receipt(self, stage: str, name: str) -> Path:
        assert stage in STAGES, stage
        return self.state / "receipts" / stage / f"{part_stem(name)}.json"

    def receipts_dir(self, stage: str) -> Path:
        assert stage in STAGES, stage
        return self.state / "receipts" / stage

    def member_list(self, name: str) -> Path:
        return self.state / "members" / f"{part_stem(name)}.json"

    def failure(self, stage: str, name: str) -> Path:
        assert stage in STAGES, stage
        return self.state / "failures" / stage / f"{part_stem(name)}.json"

    def lock(self, name: str) -> Path:
        return self.locks / f"{part_stem(name)}.lock"

    def run_file(self) -> Path:
        return self.runs / f"{host_tag()}.json"
