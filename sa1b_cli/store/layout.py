"""The extraction layout recorded for ROOT (``.sa1b/layout.json``) and each extracted part's manifest.

Both are state under ROOT: extract writes them, verify and status read them. Where files go::

    parts (default)  ROOT/extracted/sa_000000/sa_1.jpg, .../sa_1.json
    split            ROOT/images/sa_1.jpg, ROOT/annotations/sa_1.json
    flat             ROOT/extracted/sa_1.jpg, ROOT/extracted/sa_1.json

A part's manifest, ``ROOT/.sa1b/manifests/extract/sa_000000.tsv``, is a first line holding a JSON
object (part, layout, counts, source sha256), then one ``<name>\\t<size>`` line per file, the name
relative to the part (``sa_1.jpg``). In layouts ``split`` and ``flat`` the folders are shared by all
parts, so the manifest is the only way to know which files belong to a part.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sa1b_cli.errors import DiskSpaceError, LayoutError, UsageError
from sa1b_cli.store.atomic import utc_now_iso
from sa1b_cli.store.paths import RootPaths, host_tag, part_stem

LAYOUTS = ("parts", "split", "flat")
DEFAULT_LAYOUT = "parts"


def read_layout(paths: RootPaths) -> str | None:
    """The layout recorded for ROOT, or None when nothing was extracted there yet."""
    try:
        text = paths.layout_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LayoutError(f"{paths.layout_file}: cannot read the recorded layout: {exc}") from None
    try:
        layout = json.loads(text).get("layout")
    except (ValueError, AttributeError):
        layout = None
    if layout not in LAYOUTS:
        raise LayoutError(
            f"{paths.layout_file}: not a valid layout record (expected {{\"layout\": one of {', '.join(LAYOUTS)}}}); "
            "fix or remove it by hand"
        )
    return str(layout)


def resolve_layout(paths: RootPaths, requested: str | None) -> str:
    """The layout a run must use: the recorded one; ``requested`` must agree with it.

    Call this before any work (the download command too, before downloading) so a
    conflict is refused at once. Nothing is written.
    """
    if requested is not None and requested not in LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(LAYOUTS)}, got {requested!r}")
    recorded = read_layout(paths)
    if recorded is None:
        return requested or DEFAULT_LAYOUT
    if requested is not None and requested != recorded:
        raise LayoutError(
            f"{paths.root} was extracted with --layout {recorded} (recorded in {paths.layout_file}); "
            f"refusing --layout {requested}, which would spread the dataset over two layouts. "
            f"Leave out --layout (or pass --layout {recorded}), or use another ROOT."
        )
    return recorded


def ensure_layout(paths: RootPaths, layout: str) -> str:
    """Record ``layout`` for ROOT unless one is recorded; refuse a different recorded one.

    The record is written to a temporary file and hard-linked into place, so it is
    created exactly once, complete, and two hosts racing cannot both win.
    """
    resolve_layout(paths, layout)
    if paths.layout_file.exists():
        return layout
    scratch = paths.state / f".layout.{host_tag()}-{threading.get_ident()}.tmp"
    try:
        paths.state.mkdir(parents=True, exist_ok=True)
        scratch.write_text(json.dumps({"layout": layout, "created": utc_now_iso()}) + "\n", encoding="utf-8")
        try:
            os.link(scratch, paths.layout_file)
        except FileExistsError:
            pass
        except OSError as exc:  # a file system without hard links: fall back to O_EXCL
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            _create_exclusive(paths.layout_file, scratch.read_bytes())
    except OSError as exc:
        error = DiskSpaceError if exc.errno == errno.ENOSPC else UsageError
        raise error(f"{paths.layout_file}: cannot record the layout ({exc.strerror or exc})") from None
    finally:
        try:
            scratch.unlink(missing_ok=True)
        except OSError:
            pass
    return resolve_layout(paths, layout)  # another host may have recorded another layout first


def _create_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class ManifestEntry:
    name: str  # relative to the part: "sa_1.jpg" (layout "parts" may hold "sub/x.jpg")
    size: int


@dataclass(frozen=True)
class PartFiles:
    """Where one part's files live; for ``verify`` and ``status``.

    ``path_of(name)`` maps a member name (``sa_1.jpg``) to its file. ``entries()``
    lists what the part's extraction wrote (from its manifest), or None when the
    part was not extracted by this tool. In layouts ``split`` and ``flat`` the
    folders are shared by all parts, so the manifest is the only way to know which
    files belong to a part.
    """

    part: str
    layout: str
    folder: Path  # "parts": the part's own folder; "flat": the shared folder; "split": the images folder
    image_dir: Path
    annotation_dir: Path
    manifest: Path

    def path_of(self, name: str) -> Path:
        if self.layout == "split":
            return (self.image_dir if name.lower().endswith(".jpg") else self.annotation_dir) / name
        return self.folder / name

    def entries(self) -> list[ManifestEntry] | None:
        header_and_entries = read_manifest(self.manifest)
        return None if header_and_entries is None else header_and_entries[1]

    def files(self) -> Iterator[tuple[ManifestEntry, Path]]:
        """Every (entry, path) of the part; nothing when it has no manifest."""
        for entry in self.entries() or []:
            yield entry, self.path_of(entry.name)


def extracted_dir(paths: RootPaths) -> Path:
    return paths.root / "extracted"


def manifest_path(paths: RootPaths, name: str) -> Path:
    """The manifest of an extracted part: which files it wrote, with sizes."""
    return paths.state / "manifests" / "extract" / f"{part_stem(name)}.tsv"


def part_file_locations(paths: RootPaths, layout: str | None, name: str) -> PartFiles:
    """Where part ``name``'s files are in ``layout`` (None: the layout recorded for ROOT, else the default)."""
    layout = layout or read_layout(paths) or DEFAULT_LAYOUT
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    images, annotations = paths.root / "images", paths.root / "annotations"
    if layout == "parts":
        folder = extracted_dir(paths) / part_stem(name)
        images = annotations = folder
    elif layout == "flat":
        folder = images = annotations = extracted_dir(paths)
    else:
        folder = images
    return PartFiles(name, layout, folder, images, annotations, manifest_path(paths, name))


def read_manifest(path: Path) -> tuple[dict[str, Any], list[ManifestEntry]] | None:
    """(header, entries) of a manifest; None when missing or damaged (treated as not extracted)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            header = json.loads(handle.readline())
            entries = []
            for line in handle:
                entry_name, _, size = line.rstrip("\n").rpartition("\t")
                entries.append(ManifestEntry(entry_name, int(size)))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or len(entries) != header.get("files"):
        return None
    return header, entries


def write_manifest(path: Path, header: dict[str, Any], entries: list[ManifestEntry]) -> None:
    """Atomically: temp file, fsync, rename (a torn manifest must never look complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{host_tag()}.tmp")
    with open(scratch, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(json.dumps(header, sort_keys=True) + "\n")
        handle.writelines(f"{e.name}\t{e.size}\n" for e in entries)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)
