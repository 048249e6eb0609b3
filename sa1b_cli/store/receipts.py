"""Typed receipts and failure records: the only proof that a stage finished (or failed) for a part.

Each receipt is a dataclass with a schema version. Reading goes through one loader:
- a receipt of this schema is read field by field, each checked against its type (a field of
  the wrong type reads as its default and is named in ``damaged``, so a hand-edited file is
  noticed, never misread as something else);
- a receipt without a schema (written before version 1) is migrated on read;
- a receipt of a newer schema raises :class:`ReceiptSchemaError` naming the file: an older sa1b
  must not guess what a newer one meant.
A torn or unparsable file counts as absent, as it always did.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sa1b_cli.errors import Sa1bError, ExitStatus
from sa1b_cli.store.atomic import Reservation, atomic_write_json, read_json, utc_now_iso
from sa1b_cli.store.paths import RootPaths, part_stem

SCHEMA = 1


class Stage(str, enum.Enum):
    """The three stages a part goes through, each proven by its own receipt."""

    DOWNLOAD = "download"
    EXTRACT = "extract"
    VERIFY = "verify"


class ReceiptSchemaError(Sa1bError):
    """A receipt was written by a newer sa1b (a schema this version does not know)."""

    exit_status = ExitStatus.USAGE

    def __init__(self, path: Path, schema: object) -> None:
        super().__init__(f"{path}: receipt schema {schema!r} is newer than this sa1b understands ({SCHEMA}); "
                         "upgrade sa1b (pip install -U sa1b) rather than let an older version misread it")


@dataclass(frozen=True)
class _Receipt:
    """Fields every receipt has."""

    STAGE: ClassVar[Stage]
    part: str
    time: str = ""
    schema: int = SCHEMA
    damaged: tuple[str, ...] = field(default=(), compare=False)  # fields that did not fit their type on read

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "damaged"}
        data["stage"] = self.STAGE.value
        return data


@dataclass(frozen=True)
class DownloadReceipt(_Receipt):
    """A part's bytes were read whole and passed every check (gzip, tar, the checksum list)."""

    STAGE: ClassVar[Stage] = Stage.DOWNLOAD
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    compressed: bool = True
    members: int | None = None
    images: int | None = None
    annotations: int | None = None
    url: str | None = None
    source: str = "meta"  # "meta" or a mirror's label
    content_length: int | None = None
    checksum_list_md5: str | None = None
    adopted: bool = False  # a file found in tars/ (another tool's download), checked and kept
    checked_while_downloading: bool = False
    checked_while_extracting: bool = False

    def to_dict(self) -> dict[str, Any]:
        # Receipts before schema 1 proved a download with "complete": an older sa1b reading this one
        # (a shared ROOT, a downgrade) must not take every part for not downloaded.
        return {**super().to_dict(), "complete": True}


@dataclass(frozen=True)
class ExtractReceipt(_Receipt):
    """A part's files were published under the layout, with their manifest."""

    STAGE: ClassVar[Stage] = Stage.EXTRACT
    layout: str | None = None
    source_sha256: str | None = None
    source_size: int | None = None
    compressed: bool = True
    members: int | None = None
    files: int | None = None
    images: int | None = None
    annotations: int | None = None
    bytes: int | None = None
    manifest: str | None = None
    tar_removed: bool = False  # written before the tar goes, so a removed tar is never taken for a lost one


@dataclass(frozen=True)
class VerifyReceipt(_Receipt):
    """A part's files (and, at ``tars`` level, its tar) were checked; ``ok`` is the verdict."""

    STAGE: ClassVar[Stage] = Stage.VERIFY
    ok: bool = False
    status: str | None = None
    level: str | None = None
    check_version: int | None = None
    fingerprint: dict[str, Any] | None = None  # what the listing saw of the part (sizes, receipts)
    folder_stamp: dict[str, Any] | list[Any] | str | None = None
    listing: dict[str, Any] | None = None
    images: int | None = None
    annotations: int | None = None
    expected: int | None = None
    pairs_checked: int = 0
    masks_checked: int = 0
    problems: list[str] = field(default_factory=list)
    problems_total: int = 0
    deep_problems: dict[str, Any] | None = None
    tar: dict[str, Any] | None = None


@dataclass(frozen=True)
class FailureRecord:
    """Why a stage last failed for a part (for ``status``); removed when the stage succeeds."""

    part: str
    stage: Stage
    reason: str
    time: str = ""
    epoch: float | None = None


Receipt = DownloadReceipt | ExtractReceipt | VerifyReceipt
R = TypeVar("R", DownloadReceipt, ExtractReceipt, VerifyReceipt)
RECEIPT_TYPES: dict[Stage, type[Receipt]] = {Stage.DOWNLOAD: DownloadReceipt, Stage.EXTRACT: ExtractReceipt,
                                              Stage.VERIFY: VerifyReceipt}


def _conforms(value: object, hint: Any) -> bool:
    """Whether ``value`` (read from JSON) fits the field's type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if origin is not None:  # list[...] / dict[...]
        return isinstance(value, origin) and (origin is not list or all(_conforms(v, typing.get_args(hint)[0]) for v in value))
    return _fits_plain(value, hint)


def _fits_plain(value: object, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint in (int, float):  # JSON has no bool/int distinction that Python keeps: refuse True for 1
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_dict(cls: type[R], data: dict[str, Any], path: Path, name: str) -> R | None:
    """The receipt ``data`` read from ``path`` as ``cls``; None when it proves nothing (an old
    download receipt that is not marked complete)."""
    schema = data.get("schema", 0)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA:
        raise ReceiptSchemaError(path, schema)
    if schema == 0:
        data = _migrate_v0(cls, data)
        if data is None:
            return None
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    damaged: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in ("damaged", "schema") or f.name not in data:
            continue
        if _conforms(data[f.name], hints[f.name]):
            values[f.name] = data[f.name]
        else:
            damaged.append(f.name)
    values["part"] = values.get("part", name)
    return cls(**values, schema=SCHEMA, damaged=tuple(damaged))


def _migrate_v0(cls: type[Receipt], data: dict[str, Any]) -> dict[str, Any] | None:
    """Receipts before schema 1: download receipts carried ``complete``, which had to be True."""
    if cls is DownloadReceipt:
        if data.get("complete") is not True:
            return None
        return {k: v for k, v in data.items() if k != "complete"}
    return data


class ReceiptStore:
    """Receipts and failure records of one ROOT (``.sa1b/receipts`` and ``.sa1b/failures``)."""

    def __init__(self, paths: RootPaths) -> None:
        self.paths = paths

    def read(self, cls: type[R], name: str) -> R | None:
        path = self.paths.receipt(cls.STAGE.value, name)
        data = read_json(path)
        return from_dict(cls, data, path, name) if isinstance(data, dict) else None

    def write(self, receipt: Receipt, reserved: Reservation | None = None) -> Receipt:
        """Write ``receipt`` (stamped with the time now) atomically and clear its stage's failure record."""
        if not receipt.time:
            receipt = dataclasses.replace(receipt, time=utc_now_iso())
        atomic_write_json(self.paths.receipt(receipt.STAGE.value, receipt.part), receipt.to_dict(), reserved)
        self.clear_failure(receipt.STAGE, receipt.part)
        return receipt

    def remove(self, stage: Stage, name: str) -> None:
        self.paths.receipt(stage.value, name).unlink(missing_ok=True)

    def withdraw(self, stage: Stage, name: str, reason: str) -> None:
        """A stage's proof no longer holds (its output was found damaged): remove the receipt and say why
        in the stage's failure record, so ``status`` shows the reason and the stage runs again."""
        self.remove(stage, name)
        self.write_failure(stage, name, reason)

    def all(self, cls: type[R]) -> dict[str, R]:
        """Every readable receipt of a stage, keyed by part file name (``sa_000000.tar``)."""
        result: dict[str, R] = {}
        directory = self.paths.receipts_dir(cls.STAGE.value)
        if not directory.is_dir():
            return result
        for entry in sorted(directory.glob("*.json")):
            data = read_json(entry)
            if not isinstance(data, dict):
                continue
            fallback = entry.stem + ".tar"
            receipt = from_dict(cls, data, entry, fallback)
            if receipt is not None:
                result[receipt.part if part_stem(receipt.part) == entry.stem else fallback] = receipt
        return result

    def named(self, stage: Stage) -> set[str]:
        """Parts with a readable receipt file of ``stage``, also one that proves nothing (an old download
        receipt not marked complete): ``status`` lists them as touched; a torn file names nothing."""
        directory = self.paths.receipts_dir(stage.value)
        names = set()
        for entry in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            data = read_json(entry)
            if isinstance(data, dict):
                part = data.get("part")
                names.add(part if isinstance(part, str) and part_stem(part) == entry.stem else entry.stem + ".tar")
        return names

    def write_failure(self, stage: Stage, name: str, reason: str) -> None:
        """Record why a part failed; best effort: a full or read-only disk must not turn a part's
        failure into a crash of the run."""
        record = {"part": name, "stage": stage.value, "reason": reason, "time": utc_now_iso(), "epoch": time.time()}
        try:
            atomic_write_json(self.paths.failure(stage.value, name), record)
        except OSError:
            pass

    def read_failure(self, stage: Stage, name: str) -> FailureRecord | None:
        data = read_json(self.paths.failure(stage.value, name))
        if not isinstance(data, dict):
            return None
        reason = str(data["reason"]) if data.get("reason") else "failed (no reason recorded)"
        epoch = data.get("epoch")
        return FailureRecord(name, stage, reason, str(data.get("time", "")),
                             float(epoch) if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else None)

    def failed_parts(self, stage: Stage) -> set[str]:
        directory = self.paths.state / "failures" / stage.value
        if not directory.is_dir():
            return set()
        # part_stem keeps an extra's own suffix (sa_images_ids.txt.json): only a part's ".tar" was dropped
        return {entry.stem if "." in entry.stem else f"{entry.stem}.tar" for entry in directory.glob("*.json")}

    def clear_failure(self, stage: Stage, name: str) -> None:
        self.paths.failure(stage.value, name).unlink(missing_ok=True)
