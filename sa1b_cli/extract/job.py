"""One part's extraction as the other modules of the package see it: the job, its temporary directory, its failures."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sa1b_cli.events import Reporter
from sa1b_cli.integrity import PartCheck
from sa1b_cli.store import ReceiptStore, RootPaths, read_json
from sa1b_cli.store.layout import PartFiles, part_file_locations
from sa1b_cli.store.paths import part_stem

MANIFEST_NAME = "manifest.tsv"  # in the temporary directory: written last, it marks the unpacking complete
OWNER_NAME = "part.json"
FILES_DIR = "files"


class PartFailed(Exception):
    """This part cannot be extracted; the message says why (without the part name)."""


class Stopped(Exception):
    """The run was asked to stop."""


@dataclass
class SourceCheck:
    """A part handed over without a download receipt (``download --extract`` just fetched it): the read
    that unpacks it also checks it, and ``accept`` writes the receipt (see :func:`extract_part`)."""

    accept: Callable[[PartCheck], bool]
    md5: bool = True  # also md5 (for a checksum list), beside sha256


@dataclass
class Job:
    """One part's extraction and the run it belongs to."""

    paths: RootPaths
    name: str
    layout: str
    reporter: Reporter
    on_file: Callable[[int], None]
    remove_tar: bool = False
    durable: bool = True
    stop: threading.Event | None = None
    lock_lost: Callable[[], bool] = lambda: False
    source_check: SourceCheck | None = None

    @property
    def locations(self) -> PartFiles:
        return part_file_locations(self.paths, self.layout, self.name)

    @property
    def receipts(self) -> ReceiptStore:
        return ReceiptStore(self.paths)


def temp_dirs(paths: RootPaths, name: str) -> list[Path]:
    """Temporary directories of this part left by any run (ours is made fresh afterwards)."""
    if not paths.tmp.is_dir():
        return []
    found = []
    for candidate in paths.tmp.glob(f"extract-{part_stem(name)}-*"):
        owner = read_json(candidate / OWNER_NAME)
        if not isinstance(owner, dict) or owner.get("part") == name:
            found.append(candidate)
    return found


def discard(directory: Path) -> None:
    """Remove a temporary directory, its manifest first (so it never looks ready half-deleted)."""
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def discard_temp_dirs(paths: RootPaths, name: str) -> None:
    for leftover in temp_dirs(paths, name):
        discard(leftover)
