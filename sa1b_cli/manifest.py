"""``sa1b manifest``: what this site holds, from its download receipts, for other sites to check against.

Nothing is read again: each receipt already holds the size, sha256 (always), md5 (when a
reference or checksum list asked for it), the source and when the part was checked. Three
files are written atomically: an ``md5sum``- and a ``sha256sum``-compatible list (run
``md5sum -c`` in ``tars/``) and a JSON that ``--checksums`` of ``download`` and ``verify``
read on another site.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sa1b_cli.store.atomic import atomic_write_json, atomic_write_text, utc_now_iso
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore
from sa1b_cli.errors import ExitStatus, Sa1bError, UsageError
from sa1b_cli.store.paths import RootPaths

KIND = "sa1b-manifest-v1"
MD5_NAME, SHA256_NAME, JSON_NAME = "sa1b-manifest.md5", "sa1b-manifest.sha256", "sa1b-manifest.json"


class NothingToList(Sa1bError):
    """No part of the selection has a download receipt."""

    exit_status = ExitStatus.INCOMPLETE


@dataclass
class ManifestResult:
    written: list[Path]
    parts: list[dict[str, Any]]
    without_md5: list[str] = field(default_factory=list)  # checked without a reference: not in the .md5 file
    unusable: list[str] = field(default_factory=list)  # receipts without a valid size and sha256 (edited, foreign)

    def to_dict(self) -> dict[str, Any]:
        return {"files": [str(p) for p in self.written], "parts": len(self.parts), "without_md5": self.without_md5,
                "unusable": self.unusable}


def manifest_records(paths: RootPaths, names: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(one record per complete download receipt, by name; names of complete receipts that cannot be listed)."""
    wanted = set(names) if names is not None else None
    records, unusable = [], []
    for name, receipt in sorted(ReceiptStore(paths).all(DownloadReceipt).items()):
        if wanted is not None and name not in wanted:
            continue
        if not _listable(name, receipt):
            unusable.append(name)
            continue
        md5, sha256 = receipt.md5, str(receipt.sha256)
        records.append({"name": name, "size": receipt.size, "md5": md5.lower() if md5 else None, "sha256": sha256.lower(),
                        "source": receipt.source or "meta", "checked_at": receipt.time or None})
    return records, unusable


def _listable(name: str, receipt: DownloadReceipt) -> bool:
    """A receipt whose size and hashes are well formed, for a name a checksum file can carry on one line."""
    hashes_ok = _hex(receipt.sha256, 64) and (receipt.md5 is None or _hex(receipt.md5, 32))
    name_ok = bool(name) and not any(c in name for c in "/\\\n\r")
    return receipt.size is not None and hashes_ok and name_ok


def write_manifest(paths: RootPaths, out_dir: Path | None = None, names: list[str] | None = None) -> ManifestResult:
    """Write the three manifest files of the parts with a download receipt (``names``: only those).

    Raises NothingToList when no selected part has a usable receipt, UsageError when the files cannot
    be written."""
    records, unusable = manifest_records(paths, names)
    if not records:
        raise NothingToList(f"{paths.root}: no downloaded part with a receipt to list" +
                            (" among the selected parts" if names is not None else "") +
                            (f" ({len(unusable)} receipt(s) unusable, e.g. {unusable[0]})" if unusable else ""))
    out = out_dir or paths.root
    files = {
        out / MD5_NAME: "".join(f"{r['md5']}  {r['name']}\n" for r in records if r["md5"]),
        out / SHA256_NAME: "".join(f"{r['sha256']}  {r['name']}\n" for r in records),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            atomic_write_text(path, text)
        atomic_write_json(out / JSON_NAME, {"kind": KIND, "created": utc_now_iso(), "parts": records})
    except OSError as exc:
        raise UsageError(f"{out}: cannot write the manifest ({exc.strerror or exc})") from None
    return ManifestResult([*files, out / JSON_NAME], records, [r["name"] for r in records if not r["md5"]], unusable)


def _hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)
