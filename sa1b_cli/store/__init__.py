"""The dataset's on-disk state under ROOT: paths, typed receipts, failure records, locks, run files,
and the one derivation of each part's state.

Everything that reads or writes ``ROOT/.sa1b`` goes through this package; the stages
(download, extract, verify) and ``status`` never build a state path or parse a receipt themselves.
"""

from __future__ import annotations

from pathlib import Path

from sa1b_cli.store.atomic import Reservation, atomic_write_json, atomic_write_text, read_json
from sa1b_cli.store.locks import LockKeeper, PartLock
from sa1b_cli.store.parts import PartState, Phase, TarFile, part_state
from sa1b_cli.store.paths import STAGES, RootPaths, host_tag, part_stem
from sa1b_cli.store.receipts import (
    DownloadReceipt,
    ExtractReceipt,
    FailureRecord,
    Receipt,
    ReceiptSchemaError,
    ReceiptStore,
    Stage,
    VerifyReceipt,
)


class Store:
    """One ROOT's state: ``store.paths`` for files, ``store.receipts`` for proofs, ``store.part(name)``
    for what a part's proofs and files add up to."""

    def __init__(self, root: Path | RootPaths) -> None:
        self.paths = root if isinstance(root, RootPaths) else RootPaths(Path(root))
        self.receipts = ReceiptStore(self.paths)

    def part(self, name: str) -> PartState:
        return part_state(self.receipts, name)


__all__ = [
    "STAGES", "DownloadReceipt", "ExtractReceipt", "FailureRecord", "LockKeeper", "PartLock", "PartState", "Phase",
    "Receipt", "ReceiptSchemaError", "ReceiptStore", "Reservation", "RootPaths", "Stage", "Store", "TarFile",
    "VerifyReceipt", "atomic_write_json", "atomic_write_text", "host_tag", "part_state", "part_stem", "read_json",
]
