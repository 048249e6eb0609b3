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

from sa1b_cli import state
from sa1b_cli.errors import ExitStatus, Sa1bError
from sa1b_cli.paths import RootPaths

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

    def to_dict(self) -> dict[str, Any]:
        return {"files": [str(p) for p in self.written], "parts": len(self.parts), "without_md5": self.without_md5}


def write_manifest(paths: RootPaths, out_dir: Path | None = None, names: list[str] | None = None) -> ManifestResult:
    """Write the three manifest files of the parts with a download receipt (``names``: only those)."""
    receipts = state.list_receipts(paths, "download")
    wanted = set(names) if names is not None else None
    records = []
    for name, receipt in sorted(receipts.items()):
        if not receipt.get("complete") or (wanted is not None and name not in wanted):
            continue
        if not isinstance(receipt.get("sha256"), str) or not isinstance(receipt.get("size"), int):
            continue
        records.append({
            "name": name, "size": receipt["size"], "md5": receipt.get("md5"), "sha256": receipt["sha256"],
            "source": receipt.get("source", "meta"), "checked_at": receipt.get("time"),
        })
    if not records:
        raise NothingToList(f"{paths.root}: no downloaded part with a receipt to list" +
                            (" among the selected parts" if wanted is not None else ""))
    out = out_dir or paths.root
    out.mkdir(parents=True, exist_ok=True)
    with_md5 = [r for r in records if r["md5"]]
    files = {
        out / MD5_NAME: "".join(f"{r['md5']}  {r['name']}\n" for r in with_md5),
        out / SHA256_NAME: "".join(f"{r['sha256']}  {r['name']}\n" for r in records),
    }
    for path, text in files.items():
        _atomic_text(path, text)
    state.atomic_write_json(out / JSON_NAME, {"kind": KIND, "created": state.utc_now_iso(), "parts": records})
    return ManifestResult([*files, out / JSON_NAME], records, [r["name"] for r in records if not r["md5"]])


def _atomic_text(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)

