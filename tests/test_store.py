"""The store: typed receipts with a schema version, old receipts migrated, newer ones refused, and the one
derivation of a part's state that every command uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sa1b_cli.errors import ExitStatus
from sa1b_cli.store import (
    DownloadReceipt,
    ExtractReceipt,
    Phase,
    ReceiptSchemaError,
    ReceiptStore,
    RootPaths,
    Stage,
    Store,
    VerifyReceipt,
)
from sa1b_cli.store.atomic import atomic_write_json
from sa1b_cli.store.receipts import SCHEMA

NAME = "sa_000001.tar"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def _downloaded(store: Store, size: int = 10, **fields: object) -> DownloadReceipt:
    store.paths.tars.mkdir(parents=True, exist_ok=True)
    store.paths.tar(NAME).write_bytes(b"x" * size)
    receipt = DownloadReceipt(part=NAME, size=size, sha256="ab" * 32, **fields)  # type: ignore[arg-type]
    store.receipts.write(receipt)
    return receipt


def test_a_receipt_round_trips_with_its_schema_and_time(store: Store) -> None:
    written = _downloaded(store, md5="cd" * 16, source="mirror-1")
    on_disk = json.loads(store.paths.receipt("download", NAME).read_text())
    assert on_disk["schema"] == SCHEMA and on_disk["stage"] == "download" and on_disk["time"]
    read = store.receipts.read(DownloadReceipt, NAME)
    assert read is not None and read.damaged == ()
    assert (read.size, read.md5, read.sha256, read.source) == (written.size, "cd" * 16, "ab" * 32, "mirror-1")


def test_a_receipt_from_before_the_schema_is_migrated(store: Store) -> None:
    """Receipts of earlier versions carried ``complete`` and no schema: read, not guessed at."""
    path = store.paths.receipt("download", NAME)
    atomic_write_json(path, {"part": NAME, "stage": "download", "complete": True, "size": 5, "sha256": "ef" * 32})
    receipt = store.receipts.read(DownloadReceipt, NAME)
    assert receipt is not None and receipt.size == 5 and receipt.source == "meta" and receipt.schema == SCHEMA
    atomic_write_json(path, {"part": NAME, "complete": False, "size": 5})
    assert store.receipts.read(DownloadReceipt, NAME) is None, "an old receipt not marked complete proves nothing"


def test_a_receipt_of_a_newer_schema_is_refused_naming_the_file(store: Store) -> None:
    path = store.paths.receipt("extract", NAME)
    atomic_write_json(path, {"part": NAME, "schema": SCHEMA + 1, "layout": "parts"})
    with pytest.raises(ReceiptSchemaError) as caught:
        store.receipts.read(ExtractReceipt, NAME)
    assert str(path) in str(caught.value) and caught.value.exit_status == ExitStatus.USAGE


def test_a_field_of_the_wrong_type_is_named_not_misread(store: Store) -> None:
    atomic_write_json(store.paths.receipt("download", NAME), {"part": NAME, "schema": SCHEMA, "size": "big", "images": 3})
    receipt = store.receipts.read(DownloadReceipt, NAME)
    assert receipt is not None and receipt.size is None and receipt.images == 3 and receipt.damaged == ("size",)


def test_a_torn_receipt_counts_as_absent(store: Store) -> None:
    path = store.paths.receipt("verify", NAME)
    path.parent.mkdir(parents=True)
    path.write_text('{"part": "sa_000001.tar", "ok": tr')
    assert store.receipts.read(VerifyReceipt, NAME) is None
    assert store.receipts.all(VerifyReceipt) == {}


def test_writing_a_receipt_clears_the_stage_failure(store: Store) -> None:
    store.receipts.write_failure(Stage.EXTRACT, NAME, "no space left")
    failure = store.receipts.read_failure(Stage.EXTRACT, NAME)
    assert failure is not None and failure.reason == "no space left" and failure.epoch
    assert store.receipts.failed_parts(Stage.EXTRACT) == {NAME}
    store.receipts.write(ExtractReceipt(part=NAME, layout="parts", files=2))
    assert store.receipts.read_failure(Stage.EXTRACT, NAME) is None


def test_downloaded_means_a_receipt_and_the_tar_it_describes(store: Store) -> None:
    assert store.part(NAME).phase is Phase.PENDING and not store.part(NAME).downloaded
    _downloaded(store, size=10)
    part = store.part(NAME)
    assert part.downloaded and part.download_problem is None and part.phase is Phase.DOWNLOADED

    store.paths.tar(NAME).write_bytes(b"x" * 7)
    part = store.part(NAME)
    assert not part.downloaded and part.partial and "says 10 bytes, the tar has 7" in str(part.download_problem)

    store.paths.tar(NAME).write_bytes(b"x" * 10)
    store.paths.control_file(NAME).write_bytes(b"aria2")
    assert not store.part(NAME).downloaded and "control file" in str(store.part(NAME).download_problem)
    store.paths.control_file(NAME).unlink()

    store.paths.tar(NAME).unlink()
    assert not store.part(NAME).downloaded and "gone" in str(store.part(NAME).download_problem)


def test_a_tar_removed_after_extraction_still_counts_as_downloaded(store: Store) -> None:
    _downloaded(store)
    store.receipts.write(ExtractReceipt(part=NAME, layout="parts", tar_removed=True))
    store.paths.tar(NAME).unlink()
    part = store.part(NAME)
    assert part.tar_removed and part.downloaded and part.extracted and part.phase is Phase.EXTRACTED


def test_phase_follows_the_furthest_stage(store: Store) -> None:
    _downloaded(store)
    store.receipts.write_failure(Stage.EXTRACT, NAME, "disk full")
    assert store.part(NAME).phase is Phase.EXTRACT_FAILED
    store.receipts.write(ExtractReceipt(part=NAME, layout="parts"))
    store.receipts.write(VerifyReceipt(part=NAME, ok=False, status="corrupt"))
    assert store.part(NAME).phase is Phase.VERIFY_PROBLEMS and not store.part(NAME).verified
    store.receipts.write(VerifyReceipt(part=NAME, ok=True, status="ok"))
    assert store.part(NAME).phase is Phase.VERIFIED and store.part(NAME).verified


def test_receipts_are_listed_by_part_name(tmp_path: Path) -> None:
    receipts = ReceiptStore(RootPaths(tmp_path))
    for index in range(3):
        receipts.write(DownloadReceipt(part=f"sa_00000{index}.tar", size=index))
    assert sorted(receipts.all(DownloadReceipt)) == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    receipts.remove(Stage.DOWNLOAD, "sa_000001.tar")
    assert sorted(receipts.all(DownloadReceipt)) == ["sa_000000.tar", "sa_000002.tar"]
