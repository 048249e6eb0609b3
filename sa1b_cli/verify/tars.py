"""The tar check (``--tars``, ``--checksums``): a downloaded tar re-hashed and compared with its download
receipt and with a checksum list (the community reference, or a user's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sa1b_cli import integrity
from sa1b_cli.checksums import ChecksumList
from sa1b_cli.store.receipts import DownloadReceipt
from sa1b_cli.verify.results import Problem, TarResult

# What says the bytes on disk are not the bytes that were downloaded and checked.
DAMAGE_KINDS = ("tar-size", "tar-hash")


def listed_for(checksums: ChecksumList | None, name: str) -> ChecksumList | None:
    """What ``checksums`` says of one part, as a list of that part alone (small enough to hand to a
    worker process with each task); None when it says nothing of it."""
    if checksums is None or not checksums.covers(name):
        return None
    md5, sha256 = checksums.md5.get(name), checksums.sha256.get(name)
    return ChecksumList(checksums.origin, {name: md5} if md5 else {}, {name: sha256} if sha256 else {},
                        checksums.is_reference)


def check_tar(tar_path: str, receipt: DownloadReceipt | Mapping[str, Any] | None, listed: ChecksumList | None,
              key: dict[str, Any]) -> TarResult:
    """Compare a downloaded tar with its download receipt (size, hashes; the receipt or its fields) and
    with what a checksum list (or the community reference) gives for it: md5 and sha256, whichever it
    has. md5 is computed only when the list or the receipt has one to compare with (it costs a quarter
    of the read's CPU)."""
    result = TarResult(path=tar_path, key=key)
    recorded = receipt.to_dict() if isinstance(receipt, DownloadReceipt) else dict(receipt or {})
    if not _size_holds(tar_path, recorded.get("size"), result):
        return result
    wanted = {k: v.lower() for k in ("md5", "sha256") if isinstance(v := recorded.get(k), str) and v}
    if not wanted and listed is None:
        result.notes.append("no download receipt and not in a checksum list: nothing to compare with")
        return result
    name = os.path.basename(tar_path)
    try:
        _, md5, sha256 = integrity.hash_file(Path(tar_path),
                                             md5="md5" in wanted or (listed is not None and listed.wants_md5(name)))
    except OSError as exc:
        result.problems.add(Problem(tar_path, "unreadable", f"cannot read: {exc.strerror or exc}"))
        return result
    _compare_with_receipt(result, {"md5": md5, "sha256": sha256}, wanted)
    if listed is not None:
        _compare_with_list(result, name, md5, sha256, listed)
    if not wanted:
        result.notes.append(f"{name} has no download receipt")
    return result


def _size_holds(tar_path: str, recorded_size: object, result: TarResult) -> bool:
    """The tar is whole and as large as its receipt says: worth reading (else ``result`` says why not)."""
    if os.path.exists(tar_path + ".aria2"):
        result.problems.add(Problem(tar_path, "tar-incomplete", "download not finished (aria2 control file present)"))
        return False
    try:
        result.size = os.stat(tar_path).st_size
    except FileNotFoundError:
        result.notes.append("removed before it could be checked")
        return False
    if isinstance(recorded_size, int):
        result.checked.append("size")
        if recorded_size != result.size:
            result.problems.add(Problem(tar_path, "tar-size", f"{result.size} bytes, but {recorded_size} when downloaded"))
            return False
    return True


def _compare_with_receipt(result: TarResult, actual: dict[str, str | None], wanted: dict[str, str]) -> None:
    for algorithm, expected in wanted.items():
        result.checked.append(algorithm)
        if actual[algorithm] != expected:
            result.problems.add(Problem(result.path, "tar-hash", f"{algorithm} {actual[algorithm]} differs from the "
                                        f"download receipt's {expected}: the file changed after download"))


def _compare_with_list(result: TarResult, name: str, md5: str | None, sha256: str, listed: ChecksumList) -> None:
    result.checked.append("community reference" if listed.is_reference else "checksum list")
    differs = [f"{algorithm} {got} differs from {listed.label}, which lists {expected}"
               for algorithm, got, expected in (("md5", md5, listed.md5.get(name)), ("sha256", sha256, listed.sha256.get(name)))
               if expected is not None and got != expected]
    if differs:
        result.problems.add(Problem(result.path, "tar-checksum", "; ".join(differs)))  # the path names the part
