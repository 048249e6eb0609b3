"""TRANSITIONAL: the dict-based receipt functions of the old ``state`` module, over the typed store.

Exists only while download, extract, verify, status and the tests move to
:class:`sa1b_cli.store.Store`; removed when nothing imports it.
"""

from __future__ import annotations

from typing import Any

from sa1b_cli.store.atomic import Reservation, atomic_write_json, read_json, utc_now_iso
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import RECEIPT_TYPES, ReceiptStore, Stage


def _as_dict(stage: Stage, receipt: Any) -> dict[str, Any]:
    data = receipt.to_dict()
    if stage is Stage.DOWNLOAD:
        data["complete"] = True
    return data


def read_receipt(paths: RootPaths, stage: str, name: str) -> dict[str, Any] | None:
    kind = Stage(stage)
    receipt = ReceiptStore(paths).read(RECEIPT_TYPES[kind], name)
    return None if receipt is None else _as_dict(kind, receipt)


def write_receipt(paths: RootPaths, stage: str, name: str, data: dict[str, Any], reserved: Reservation | None = None) -> None:
    record = dict(data)
    record.setdefault("part", name)
    record.setdefault("stage", stage)
    record.setdefault("time", utc_now_iso())
    record.pop("schema", None)
    atomic_write_json(paths.receipt(stage, name), record, reserved)
    clear_failure(paths, stage, name)


def remove_receipt(paths: RootPaths, stage: str, name: str) -> None:
    ReceiptStore(paths).remove(Stage(stage), name)


def list_receipts(paths: RootPaths, stage: str) -> dict[str, dict[str, Any]]:
    kind = Stage(stage)
    return {name: _as_dict(kind, r) for name, r in ReceiptStore(paths).all(RECEIPT_TYPES[kind]).items()}


def write_failure(paths: RootPaths, stage: str, name: str, reason: str, **extra: Any) -> None:
    ReceiptStore(paths).write_failure(Stage(stage), name, reason)


def read_failure(paths: RootPaths, stage: str, name: str) -> dict[str, Any] | None:
    return read_json(paths.failure(stage, name))


def clear_failure(paths: RootPaths, stage: str, name: str) -> None:
    ReceiptStore(paths).clear_failure(Stage(stage), name)


__all__ = ["Reservation", "atomic_write_json", "read_json", "utc_now_iso", "read_receipt", "write_receipt",
           "remove_receipt", "list_receipts", "write_failure", "read_failure", "clear_failure"]
