"""The one derivation of a part's state from its receipts and files.

``download`` (skip or fetch), ``extract`` (may it read the tar), ``verify`` (what to expect) and
``status`` (what to show) all ask :func:`part_state`; none of them decides "downloaded" on its own.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sa1b_cli.links import PART_NAME
from sa1b_cli.store.layout import extracted_dir
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import (
    DownloadReceipt,
    ExtractReceipt,
    FailureRecord,
    ReceiptStore,
    Stage,
    VerifyReceipt,
)


class Phase(str, enum.Enum):
    """How far a part got, furthest first (what ``status`` shows and colours a part by)."""

    VERIFIED = "verified"
    VERIFY_PROBLEMS = "verify problems"
    EXTRACTED = "extracted"
    EXTRACT_FAILED = "extract failed"
    DOWNLOADED = "downloaded"
    DOWNLOADING = "downloading"  # never from the files alone: ``status`` sets it from a live run file
    DOWNLOAD_FAILED = "download failed"
    PARTIAL = "partial"  # aria2's control file: a download to resume
    UNCONFIRMED = "unconfirmed"  # a tar without receipt or control file: being checked, or put there by hand
    PENDING = "pending"


@dataclass(frozen=True)
class TarFile:
    """What ``tars/`` holds for a part: the data file's size (None: absent) and aria2's control file."""

    size: int | None
    has_control_file: bool

    @classmethod
    def of(cls, paths: RootPaths, name: str) -> "TarFile":
        try:
            size: int | None = os.stat(paths.tar(name)).st_size
        except (FileNotFoundError, NotADirectoryError):
            size = None
        return cls(size, os.path.exists(paths.control_file(name)))


@dataclass(frozen=True)
class PartState:
    """Everything the store knows of one part, and the rules that read it."""

    name: str
    download: DownloadReceipt | None
    extract: ExtractReceipt | None
    verify: VerifyReceipt | None
    tar: TarFile
    download_failure: FailureRecord | None = None
    extract_failure: FailureRecord | None = None

    @property
    def tar_removed(self) -> bool:
        """Extracted with ``--remove-tars``: the tar is gone on purpose."""
        return self.tar.size is None and self.extract is not None and self.extract.tar_removed

    @property
    def download_problem(self) -> str | None:
        """Why a part with a download receipt no longer counts as downloaded (None: it does, or has no receipt)."""
        receipt = self.download
        if receipt is None or self.tar_removed:
            return None
        if self.tar.size is None:
            return "its tar is gone (and no extract receipt says it was removed)"
        if receipt.size is None:
            return "its download receipt records no size"
        if self.tar.size != receipt.size:
            return f"its download receipt says {receipt.size} bytes, the tar has {self.tar.size}"
        if self.tar.has_control_file:
            return "an aria2 control file sits beside it (a download was started over it)"
        return None

    @property
    def downloaded(self) -> bool:
        """A download receipt, and its tar as the receipt describes it (or removed after extraction)."""
        return self.download is not None and self.download_problem is None

    @property
    def partial(self) -> bool:
        """Bytes on disk that are not (or no longer) a downloaded part."""
        return not self.downloaded and (self.tar.size is not None or self.tar.has_control_file)

    @property
    def extracted(self) -> bool:
        return self.extract is not None

    @property
    def verified(self) -> bool:
        return self.verify is not None and self.verify.ok

    @property
    def phase(self) -> Phase:
        """The furthest proof wins: a verify receipt (also of a tar-level check) over an extraction, a
        failure over the bytes on disk."""
        if self.verify is not None:
            return Phase.VERIFIED if self.verify.ok else Phase.VERIFY_PROBLEMS
        if self.extracted:
            return Phase.EXTRACTED
        if self.extract_failure is not None:
            return Phase.EXTRACT_FAILED
        if self.downloaded:
            return Phase.DOWNLOADED
        if self.download_failure is not None:
            return Phase.DOWNLOAD_FAILED
        if self.tar.has_control_file:
            return Phase.PARTIAL
        if self.tar.size is not None:
            return Phase.UNCONFIRMED
        return Phase.PENDING


def part_state(receipts: ReceiptStore, name: str, tar: TarFile | None = None) -> PartState:
    """The state of part ``name`` (``sa_000000.tar``), read now."""
    paths = receipts.paths
    return PartState(
        name=name,
        download=receipts.read(DownloadReceipt, name),
        extract=receipts.read(ExtractReceipt, name),
        verify=receipts.read(VerifyReceipt, name),
        tar=tar if tar is not None else TarFile.of(paths, name),
        download_failure=receipts.read_failure(Stage.DOWNLOAD, name),
        extract_failure=receipts.read_failure(Stage.EXTRACT, name),
    )


@dataclass(frozen=True)
class StoreSnapshot:
    """Every stage's receipts, the failure records' names and the names in ``tars/``, each read once,
    for runs that derive the state of many parts (status, verify): no three receipt files opened and
    no ``stat`` per part; a part is stat'ed only when ``tars/`` holds a file of it."""

    receipts: ReceiptStore
    downloads: dict[str, DownloadReceipt]
    extracts: dict[str, ExtractReceipt]
    verifies: dict[str, VerifyReceipt]
    failed: dict[Stage, set[str]]
    tar_files: set[str]  # data file names in tars/ (hidden temporary files left out)
    control_files: set[str]  # names with an aria2 control file beside them

    @classmethod
    def read(cls, receipts: ReceiptStore) -> "StoreSnapshot":
        tar_files, control_files = _tar_dir_names(receipts.paths)
        return cls(receipts, receipts.all(DownloadReceipt), receipts.all(ExtractReceipt), receipts.all(VerifyReceipt),
                   {stage: receipts.failed_parts(stage) for stage in (Stage.DOWNLOAD, Stage.EXTRACT)},
                   tar_files, control_files)

    def state(self, name: str) -> PartState:
        """The state of part ``name`` by the same derivation as :func:`part_state`."""
        on_disk = name in self.tar_files or name in self.control_files
        return PartState(name, self.downloads.get(name), self.extracts.get(name), self.verifies.get(name),
                         TarFile.of(self.receipts.paths, name) if on_disk else TarFile(None, False),
                         self._failure(Stage.DOWNLOAD, name), self._failure(Stage.EXTRACT, name))

    def _failure(self, stage: Stage, name: str) -> FailureRecord | None:
        return self.receipts.read_failure(stage, name) if name in self.failed[stage] else None


def part_states(receipts: ReceiptStore, names: Iterable[str]) -> dict[str, PartState]:
    """The state of each part of ``names``, from one :class:`StoreSnapshot`."""
    snapshot = StoreSnapshot.read(receipts)
    return {name: snapshot.state(name) for name in names}


def _tar_dir_names(paths: RootPaths) -> tuple[set[str], set[str]]:
    """(data file names, names that have an aria2 control file) in ``tars/``."""
    data_files: set[str] = set()
    controlled: set[str] = set()
    for entry in _entry_names(paths.tars):
        if entry.startswith("."):
            continue
        if entry.endswith(".aria2"):
            controlled.add(entry[: -len(".aria2")])
        else:
            data_files.add(entry)
    return data_files, controlled


def parts_under_root(receipts: ReceiptStore) -> set[str]:
    """Every part ROOT holds anything of: a download or extract receipt, a tar or aria2 control file in
    ``tars/``, or a part folder in ``extracted/`` (part names only: ``sa_000000.tar``)."""
    paths = receipts.paths
    names = set(receipts.all(DownloadReceipt)) | set(receipts.all(ExtractReceipt))
    names.update(name.removesuffix(".aria2") for name in _entry_names(paths.tars))
    names.update(name + ".tar" for name in _entry_names(extracted_dir(paths)))
    return {name for name in names if PART_NAME.match(name)}


def _entry_names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
