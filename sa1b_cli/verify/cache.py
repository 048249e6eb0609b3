"""The verify receipt as a cache: what lets a rerun skip work, in three tiers.

- a stamp of a part's folders (and manifest): inode, mtime and ctime, which change when a file is
  added, removed or renamed there. While it matches, the receipt's listing is reused without
  listing a file. Stamps taken within ``STAMP_SETTLE_NS`` of a folder's last change are not kept
  (a further change could carry the same coarse timestamp).
- a fingerprint of the files (count, total size, newest mtime and ctime), from the ``stat`` the
  quick check makes anyway: while it holds, the deep findings are reused. This also finds a file
  rewritten or truncated in place, which leaves its folder's stamp as it was.
- the tar's key (its size, mtime and ctime, its receipt's hashes, the list compared with).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sa1b_cli.checksums import ChecksumList
from sa1b_cli.store.receipts import DownloadReceipt, VerifyReceipt
from sa1b_cli.verify.deep import ChunkResult
from sa1b_cli.verify.listing import Listing
from sa1b_cli.verify.results import Level, PartResult, Problems, TarResult, level_rank

CHECK_VERSION = 1  # bump when the checks change: older receipts then no longer count
STAMP_SETTLE_NS = 10 * 10**9  # folder stamps younger than this are not trusted (coarse timestamps, clock skew)


def _counts_for(previous: VerifyReceipt | None, level: Level) -> bool:
    """A receipt of this version of the checks, made at this level or a deeper one."""
    return (previous is not None and previous.check_version == CHECK_VERSION
            and level_rank(previous.level) >= level.rank)


def receipt_holds(previous: VerifyReceipt | None, listing: Listing, level: Level) -> bool:
    """The verify receipt still describes these files, at this level or a deeper one."""
    return _counts_for(previous, level) and previous.fingerprint == listing.fingerprint  # type: ignore[union-attr]


def folder_stamp(paths: Sequence[str]) -> list[list[int]] | None:
    """Inode, mtime and ctime of each folder (or manifest): they change when a file is added,
    removed or renamed there. None when one cannot be stat'ed or changed within the last
    ``STAMP_SETTLE_NS`` (a later change could then leave the same coarse timestamp)."""
    horizon = time.time_ns() - STAMP_SETTLE_NS
    stamp = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            return None
        if max(info.st_mtime_ns, info.st_ctime_ns) > horizon:
            return None
        stamp.append([info.st_ino, info.st_mtime_ns, info.st_ctime_ns])
    return stamp or None


def unchanged_listing(previous: VerifyReceipt | None, stamp: list[list[int]] | None, level: Level) -> Listing | None:
    """The listing a verify receipt recorded, when its folders are stamped exactly as now."""
    if stamp is None or not _counts_for(previous, level) or previous.folder_stamp != stamp:  # type: ignore[union-attr]
        return None
    assert previous is not None
    recorded, fingerprint = previous.listing, previous.fingerprint
    if not isinstance(recorded, dict) or fingerprint is None:
        return None
    try:
        return Listing(paired=np.empty(0, dtype=np.int64), images=int(previous.images),  # type: ignore[arg-type]
                       annotations=int(previous.annotations), files=int(recorded["files"]),  # type: ignore[arg-type]
                       bytes=int(recorded["bytes"]), fingerprint=fingerprint,
                       problems=Problems.from_dict(recorded["problems"]), used_manifest=bool(recorded["used_manifest"]))
    except (KeyError, TypeError, ValueError):
        return None


def deep_findings(previous: VerifyReceipt) -> ChunkResult:
    """What a deep check recorded in its receipt (pairs, masks, problems)."""
    return ChunkResult(previous.pairs_checked, previous.masks_checked, 0, Problems.from_dict(previous.deep_problems))


def tar_key(tar_path: str, download: DownloadReceipt | None, listed: ChecksumList | None) -> dict[str, Any]:
    """What a tar's check depends on: the file, its receipt's hashes, the checksum list's entry."""
    try:
        info = os.stat(tar_path)
        identity: list[int] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    except FileNotFoundError:
        identity = []
    control = os.path.exists(tar_path + ".aria2")
    return {"file": identity, "control_file": control, "receipt_md5": download.md5 if download else None,
            "receipt_sha256": download.sha256 if download else None,
            "receipt_size": download.size if download else None,
            "listed": None if listed is None else {"md5": next(iter(listed.md5.values()), None),
                                                   "sha256": next(iter(listed.sha256.values()), None), "by": listed.label},
            "check_version": CHECK_VERSION}


def cached_tar(previous: VerifyReceipt | None, key: dict[str, Any], force: bool) -> TarResult | None:
    """The tar check a receipt recorded, while everything it depended on is as it was."""
    record = previous.tar if previous is not None else None
    if force or not isinstance(record, dict) or record.get("key") != key:
        return None
    return TarResult(path=str(record.get("path", "")), size=record.get("size"), checked=list(record.get("checked", [])),
                     notes=list(record.get("notes", [])), problems=Problems.from_dict(record.get("problems")),
                     key=key, cached=True)


def verify_receipt(name: str, result: PartResult, listing: Listing, stamp: list[list[int]] | None,
                   deep_problems: Problems | None) -> VerifyReceipt:
    """The receipt of a part's verdict, with what the next run needs to reuse it."""
    tar = result.tar
    return VerifyReceipt(
        part=name, ok=result.ok, status=result.status.value, level=None if result.level is None else result.level.value,
        check_version=CHECK_VERSION, fingerprint=listing.fingerprint, folder_stamp=stamp,
        listing={"files": listing.files, "bytes": listing.bytes, "used_manifest": listing.used_manifest,
                 "problems": listing.problems.to_dict()},
        images=result.images, annotations=result.annotations, expected=result.expected,
        pairs_checked=result.pairs_checked, masks_checked=result.masks_checked,
        problems=[str(p) for p in result.problems.listed], problems_total=result.problems.total,
        deep_problems=None if deep_problems is None else deep_problems.to_dict(),
        tar=None if tar is None else {"key": tar.key, "path": tar.path, "size": tar.size, "checked": tar.checked,
                                      "notes": tar.notes, "problems": tar.problems.to_dict()},
    )
