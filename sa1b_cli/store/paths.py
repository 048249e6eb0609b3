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


def part_stem(name: str) -> str:
    """``sa_000000.tar`` -> ``sa_000000``."""
    return name[:-4] if name.endswith(".tar") else name


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

    def failure(self, stage: str, name: str) -> Path:
        assert stage in STAGES, stage
        return self.state / "failures" / stage / f"{part_stem(name)}.json"

    def lock(self, name: str) -> Path:
        return self.locks / f"{part_stem(name)}.lock"

    def run_file(self) -> Path:
        return self.runs / f"{host_tag()}.json"
