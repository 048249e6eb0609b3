"""Is the dataset on disk whole and sound? The core of ``sa1b verify``.

Levels
------
- quick (default): list every extracted file (``os.scandir`` plus one ``stat``),
  pair ``sa_<id>.jpg`` with ``sa_<id>.json``, compare with what the part's extraction
  manifest lists (names and sizes) or, without one, with the counts its receipts
  record, and with 11,185,362 pairs for the whole dataset.
- deep (``--deep``): also read every pair: the JSON parses and follows the SA-1B
  schema, every RLE mask is valid for its size, matches the image's size, its
  pixel count and bbox match ``area`` and ``bbox``; the JPEG is structurally whole
  and as large as the JSON says. Masks are checked from their run lengths
  (``rle.py``), never as bitmaps.
- tars (``--tars``, ``--checksums``): downloaded tars still on disk are re-hashed
  and compared with their download receipts and with the community reference shipped
  with sa1b or, instead, a user's checksum list (``md5sum``/``sha256sum`` file or another
  site's ``sa1b manifest`` JSON): sha256 always, md5 only where there is one to compare with.

What a run covers: the parts selected with ``--parts``/``--shard``; with no
selection the whole dataset (``sa_000000`` .. ``sa_000999``), or with
``--expected N`` the parts present under ROOT, whose pairs must add up to N.

Work runs in a process pool: one scan task per part (or per folder) and, for
deep checks, tasks of ``CHUNK_PAIRS`` pairs. The parent holds only per-part
results with capped problem lists, so 11 million files never sit in memory.

Incremental, in three tiers: a part's result is kept in its verify receipt with
- a stamp of its folders (and manifest): inode, mtime and ctime, which change when
  a file is added, removed or renamed there. A rerun whose stamps still match
  reuses the receipt without listing a file: O(parts), seconds for the whole
  dataset. Stamps taken within ``STAMP_SETTLE_NS`` of a folder's last change are not
  kept (a further change could carry the same coarse timestamp).
- a fingerprint of its files (count, total size, newest mtime and ctime), from the
  ``stat`` the quick check makes anyway. ``rescan`` (or a changed stamp) lists the
  files again (O(files) ``stat``, no reads) and reuses the deep findings while the
  fingerprint holds: this also finds a file rewritten or truncated in place, which
  leaves its folder's stamp as it was.
- ``force`` reads everything again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import re
import stat
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sa1b_cli import integrity, rle
from sa1b_cli.store import legacy as state
from sa1b_cli.checksums import ChecksumList, parse_checksums
from sa1b_cli.errors import ExitStatus, UsageError
from sa1b_cli.events import NullReporter, Reporter
from sa1b_cli.extract import ManifestEntry, extracted_dir, part_file_locations, read_layout, read_manifest
from sa1b_cli.jpeg import JpegError, check_jpeg
from sa1b_cli.links import PART_NAME
from sa1b_cli.store.paths import RootPaths

FULL_DATASET_PAIRS = 11_185_362
FULL_DATASET_PARTS = 1000
CHECK_VERSION = 1  # bump when the checks change: older receipts then no longer count
STAMP_SETTLE_NS = 10 * 10**9  # folder stamps younger than this are not trusted (coarse timestamps, clock skew)
MAX_LISTED = 100  # problems kept per part (all are counted)
CHUNK_PAIRS = 500  # pairs per deep-check task: about a second of work
# Masks of several annotation files are decoded in one numpy pass, up to about this much
# JSON: small files share numpy's fixed per-call cost; a full-size SA-1B file fills a batch alone.
MASK_BATCH_BYTES = 96 * 1024
ALL_UNIT = "(all)"  # split/flat folders checked as one unit (no manifests to attribute files to parts)
QUICK, DEEP = "quick", "deep"
LEVEL_RANK = {QUICK: 1, DEEP: 2}

# Part statuses
OK, INCOMPLETE, CORRUPT, MISSING, NOT_EXTRACTED = "ok", "incomplete", "corrupt", "missing", "not-extracted"

# Problem kinds that mean "not all there"; every other kind means "damaged".
INCOMPLETE_KINDS = frozenset({
    "missing-part", "not-extracted", "missing-folder", "missing-image", "missing-annotation", "count",
    "extra-file", "tar-incomplete",
})

MISSING_FROM_MANIFEST = "missing (listed in the part's extraction manifest)"
ANNOTATION_FIELDS = frozenset({
    "id", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "point_coords", "crop_box",
})
IMAGE_FIELDS = (("image_id", int), ("width", int), ("height", int), ("file_name", str))
PART_FOLDER = re.compile(r"^sa_\d{6}$")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Problem:
    """One thing wrong, about one file (or folder)."""

    path: str
    kind: str
    message: str

    @property
    def severity(self) -> str:
        return INCOMPLETE if self.kind in INCOMPLETE_KINDS else CORRUPT

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "severity": self.severity, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Problems:
    """The problems of one part: the first ``MAX_LISTED`` kept, all counted."""

    listed: list[Problem] = field(default_factory=list)
    total: int = 0
    corrupt: int = 0

    def add(self, problem: Problem) -> None:
        self.total += 1
        self.corrupt += problem.severity == CORRUPT
        if len(self.listed) < MAX_LISTED:
            self.listed.append(problem)

    def merge(self, other: Problems) -> None:
        for problem in other.listed:
            self.add(problem)
        self.total += other.total - len(other.listed)
        self.corrupt += other.corrupt - sum(p.severity == CORRUPT for p in other.listed)

    def to_dict(self) -> dict[str, Any]:
        return {"listed": [p.to_dict() for p in self.listed], "total": self.total, "corrupt": self.corrupt}

    @classmethod
    def from_dict(cls, data: Any) -> Problems:
        if not isinstance(data, dict):
            return cls()
        listed = [Problem(str(p["path"]), str(p["kind"]), str(p["message"]))
                  for p in data.get("listed", []) if isinstance(p, dict) and {"path", "kind", "message"} <= p.keys()]
        return cls(listed, int(data.get("total", len(listed))), int(data.get("corrupt", 0)))


@dataclass
class TarResult:
    """The check of one downloaded tar."""

    path: str
    size: int | None = None
    checked: list[str] = field(default_factory=list)  # what was compared: size, md5, sha256, checksum list
    notes: list[str] = field(default_factory=list)  # what could not be compared, and why
    problems: Problems = field(default_factory=Problems)
    key: dict[str, Any] = field(default_factory=dict)  # what the result depends on (for the cache)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "checked": self.checked, "notes": self.notes,
                "problems": [p.to_dict() for p in self.problems.listed], "cached": self.cached}


@dataclass
class PartResult:
    """What verify found for one part (or for the shared folders, ``(all)``)."""

    name: str
    path: str
    status: str = OK
    level: str | None = None  # the level the files were checked at; None when there were none
    cached: bool = False  # True: file contents were not read again; the verify receipt still held
    listed: bool = False  # True: the files were listed (and stat'ed) in this run; False: folders unchanged
    images: int = 0
    annotations: int = 0
    expected: int | None = None  # pairs expected
    expected_from: str | None = None
    pairs_checked: int = 0
    masks_checked: int = 0
    problems: Problems = field(default_factory=Problems)
    tar: TarResult | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.name, "path": self.path, "status": self.status, "ok": self.ok, "level": self.level,
            "cached": self.cached, "listed": self.listed, "images": self.images, "annotations": self.annotations,
            "expected": self.expected, "expected_from": self.expected_from,
            "pairs_checked": self.pairs_checked, "masks_checked": self.masks_checked,
            "problems": [p.to_dict() for p in self.problems.listed], "problems_total": self.problems.total,
            "tar": self.tar.to_dict() if self.tar else None, "seconds": round(self.seconds, 3),
        }


@dataclass
class VerifyReport:
    """A whole verify run; ``exit_status`` is what the command exits with."""

    root: str
    layout: str | None
    level: str
    tars: bool
    parts: list[PartResult] = field(default_factory=list)
    expected_total: int | None = None  # pairs the checked scope must hold, when known
    problems: Problems = field(default_factory=Problems)  # about the dataset as a whole
    seconds: float = 0.0

    @property
    def images(self) -> int:
        return sum(p.images for p in self.parts)

    @property
    def annotations(self) -> int:
        return sum(p.annotations for p in self.parts)

    @property
    def missing_parts(self) -> list[str]:
        return [p.name for p in self.parts if p.status in (MISSING, NOT_EXTRACTED)]

    @property
    def problems_total(self) -> int:
        return self.problems.total + sum(p.problems.total for p in self.parts)

    @property
    def exit_status(self) -> ExitStatus:
        if self.problems.corrupt or any(p.problems.corrupt for p in self.parts):
            return ExitStatus.CORRUPT
        if self.problems_total:
            return ExitStatus.INCOMPLETE
        return ExitStatus.OK

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for part in self.parts:
            counts[part.status] = counts.get(part.status, 0) + 1
        return {
            "root": self.root, "layout": self.layout, "level": self.level, "tars": self.tars,
            "ok": self.exit_status == ExitStatus.OK, "exit_code": int(self.exit_status),
            "parts": len(self.parts), "statuses": counts, "cached": sum(p.cached for p in self.parts),
            "listed": sum(p.listed for p in self.parts),
            "images": self.images, "annotations": self.annotations, "expected_total": self.expected_total,
            "pairs_checked": sum(p.pairs_checked for p in self.parts),
            "masks_checked": sum(p.masks_checked for p in self.parts),
            "missing_parts": self.missing_parts, "problems_total": self.problems_total,
            "problems": [p.to_dict() for p in self.problems.listed], "seconds": round(self.seconds, 3),
            "rle_backend": rle.BACKEND if self.level == DEEP else None,  # which decoder checked the masks
        }

    def to_dict(self) -> dict[str, Any]:
        return {"type": "summary", "command": "verify", **self.summary(),
                "part_results": [p.to_dict() for p in self.parts]}


# ------------------------------------------------------------------ file names


def _parse_name(name: str) -> tuple[bool, int] | None:
    """``sa_<id>.jpg`` -> (True, id), ``sa_<id>.json`` -> (False, id); anything else None."""
    if not name.startswith("sa_"):
        return None
    if name.endswith(".jpg"):
        digits, is_image = name[3:-4], True
    elif name.endswith(".json"):
        digits, is_image = name[3:-5], False
    else:
        return None
    if not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
        return None
    return is_image, int(digits)


def image_name(image_id: int) -> str:
    return f"sa_{image_id}.jpg"


def annotation_name(image_id: int) -> str:
    return f"sa_{image_id}.json"


# ------------------------------------------------------------------ listing (quick)


@dataclass
class Listing:
    """What listing one part's files found (a worker's answer; holds ids, not paths)."""

    paired: np.ndarray  # ids with both files, sorted
    images: int
    annotations: int
    files: int
    bytes: int
    fingerprint: dict[str, int]
    problems: Problems
    used_manifest: bool
    listed: bool = False  # set when it comes from listing the files in this run, not from a receipt


class _Collector:
    """Accumulates ids, stats and problems while files are listed."""

    def __init__(self) -> None:
        self.images: array[int] = array("q")
        self.annotations: array[int] = array("q")
        self.missing_images: set[int] = set()
        self.missing_annotations: set[int] = set()
        self.problems = Problems()
        self.files = self.bytes = self.newest_mtime = self.newest_ctime = self.folder_mtimes = 0

    def saw(self, info: os.stat_result) -> None:
        self.files += 1
        self.bytes += info.st_size
        if info.st_mtime_ns > self.newest_mtime:
            self.newest_mtime = info.st_mtime_ns
        if info.st_ctime_ns > self.newest_ctime:
            self.newest_ctime = info.st_ctime_ns

    def missing(self, path: str, parsed: tuple[bool, int] | None, why: str) -> None:
        if parsed is None:
            self.problems.add(Problem(path, "missing-image" if path.endswith(".jpg") else "missing-annotation", why))
            return
        is_image, image_id = parsed
        (self.missing_images if is_image else self.missing_annotations).add(image_id)
        self.problems.add(Problem(path, "missing-image" if is_image else "missing-annotation", why))

    def finish(self, image_dir: str, annotation_dir: str, used_manifest: bool) -> Listing:
        images = np.sort(np.frombuffer(self.images, dtype=np.int64))
        annotations = np.sort(np.frombuffer(self.annotations, dtype=np.int64))
        for image_id in np.setdiff1d(images, annotations, assume_unique=True).tolist():
            if image_id not in self.missing_annotations:
                self.problems.add(Problem(os.path.join(annotation_dir, annotation_name(image_id)), "missing-annotation",
                                          f"missing: {image_name(image_id)} has no annotation"))
        for image_id in np.setdiff1d(annotations, images, assume_unique=True).tolist():
            if image_id not in self.missing_images:
                self.problems.add(Problem(os.path.join(image_dir, image_name(image_id)), "missing-image",
                                          f"missing: {annotation_name(image_id)} has no image"))
        fingerprint = {"files": self.files, "bytes": self.bytes, "mtime_ns": self.newest_mtime,
                       "ctime_ns": self.newest_ctime, "folder_mtime_ns": self.folder_mtimes}
        return Listing(np.intersect1d(images, annotations, assume_unique=True), len(images), len(annotations),
                       self.files, self.bytes, fingerprint, self.problems, used_manifest)


def list_folders(folders: Sequence[tuple[str, str]], manifest: str | None = None) -> Listing:
    """List whole folders: ``(path, accepts)`` with accepts ``both``, ``jpg`` or ``json``.

    With a ``manifest`` (layout ``parts``: the part's own folder), every file must be
    listed in it with the same size, and every listed file must be there.
    """
    expected_sizes = _manifest_sizes(manifest) if manifest else None
    found = _Collector()
    for folder, accepts in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            found.problems.add(Problem(folder, "missing-folder", "folder is missing"))
            continue
        except OSError as exc:
            found.problems.add(Problem(folder, "unreadable", f"cannot open the folder: {exc.strerror or exc}"))
            continue
        try:
            found.folder_mtimes += os.fstat(fd).st_mtime_ns
            _scan_folder(fd if os.scandir in os.supports_fd else folder, folder, accepts, expected_sizes, found)
        except OSError as exc:
            found.problems.add(Problem(folder, "unreadable", f"cannot list the folder: {exc.strerror or exc}"))
        finally:
            os.close(fd)
    if expected_sizes:
        folder = folders[0][0]
        for name in expected_sizes:
            found.missing(os.path.join(folder, name), _parse_name(name), MISSING_FROM_MANIFEST)
    return found.finish(folders[0][0], folders[-1][0], expected_sizes is not None)


def _scan_folder(target: int | str, folder: str, accepts: str, expected_sizes: dict[str, int] | None,
                 found: _Collector) -> None:
    """The quick check's inner loop: one directory entry and one ``stat`` per file and, for a
    well-named regular file, no other call. Scanning through a directory fd makes each ``stat``
    an ``fstatat`` relative to it instead of a walk of the whole path."""
    add_image = found.images.append if accepts != "json" else None
    add_annotation = found.annotations.append if accepts != "jpg" else None
    files = nbytes = 0
    newest_mtime, newest_ctime = found.newest_mtime, found.newest_ctime
    with os.scandir(target) as entries:
        for entry in entries:
            name = entry.name
            try:
                info = entry.stat()
            except OSError as exc:
                found.problems.add(Problem(os.path.join(folder, name), "unreadable",
                                           f"cannot stat: {exc.strerror or exc}"))
                continue
            files += 1
            size = info.st_size
            nbytes += size
            if info.st_mtime_ns > newest_mtime:
                newest_mtime = info.st_mtime_ns
            if info.st_ctime_ns > newest_ctime:
                newest_ctime = info.st_ctime_ns
            if name.endswith(".jpg"):
                digits, add = name[3:-4], add_image
            elif name.endswith(".json"):
                digits, add = name[3:-5], add_annotation
            else:
                digits, add = "", None
            if (add is None or not name.startswith("sa_") or not (digits.isascii() and digits.isdigit())
                    or digits[0] == "0" or not stat.S_ISREG(info.st_mode)):
                found.problems.add(Problem(os.path.join(folder, name), "extra-file",
                                           f"extra: {_why_extra(name, info, accepts)}"))
                continue
            if expected_sizes is not None:
                recorded = expected_sizes.pop(name, None)
                if recorded is None:
                    found.problems.add(Problem(os.path.join(folder, name), "extra-file",
                                               "extra: not in the part's extraction manifest"))
                    continue
                if recorded != size:
                    found.problems.add(Problem(os.path.join(folder, name), "size-changed",
                                               f"{size} bytes, but {recorded} when it was extracted"))
            elif size == 0:
                found.problems.add(Problem(os.path.join(folder, name), "empty-file", "empty (0 bytes)"))
            add(int(digits))
    found.files += files
    found.bytes += nbytes
    found.newest_mtime, found.newest_ctime = newest_mtime, newest_ctime


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def _why_extra(name: str, info: os.stat_result, accepts: str) -> str:
    if stat.S_ISDIR(info.st_mode):
        return "a folder"
    parsed = _parse_name(name)
    if not stat.S_ISREG(info.st_mode):
        kind = next((text for test, text in _FILE_KINDS if test(info.st_mode)), "not a regular file")
        return f"named like an SA-1B file but {kind}" if parsed else f"not an SA-1B image or annotation ({kind})"
    if parsed is None:
        return "not an SA-1B image or annotation"
    return f"does not belong in the {accepts} folder"


def _manifest_sizes(manifest: str) -> dict[str, int] | None:
    """name -> size of every file a manifest lists; None when it is missing or damaged.

    Names never hold a newline, so splitting the body at tabs and newlines gives name,
    size, name, size, ... in C-speed passes (one ``ManifestEntry`` per file costs
    more than the whole listing); any other shape (a tab inside a name) takes the
    line-by-line parser."""
    try:
        with open(manifest, encoding="utf-8", errors="surrogateescape") as handle:
            head, _, body = handle.read().partition("\n")
        files = orjson.loads(head).get("files")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return None
    fields = body.replace("\t", "\n").split("\n")
    if isinstance(files, int) and len(fields) == 2 * files + 1 and fields[-1] == "":
        try:
            sizes = dict(zip(fields[0:-1:2], map(int, fields[1::2])))
        except ValueError:
            return None
        if len(sizes) == files:
            return sizes
    loaded = read_manifest(Path(manifest))
    return None if loaded is None else {entry.name: entry.size for entry in loaded[1]}


def list_manifest(manifest: str, image_dir: str, annotation_dir: str, layout: str) -> Listing:
    """Stat every file a part's manifest lists (layouts ``split``/``flat``, whose folders all parts share)."""
    loaded = read_manifest(Path(manifest))
    found = _Collector()
    if loaded is None:
        found.problems.add(Problem(manifest, "unreadable", "the part's extraction manifest is missing or damaged"))
        return found.finish(image_dir, annotation_dir, True)
    folders: dict[str, int] = {}  # folder -> fd, so each stat is relative to it
    try:
        for folder in {image_dir, annotation_dir}:
            try:
                folders[folder] = os.open(folder, os.O_RDONLY)
            except FileNotFoundError:
                pass  # every file listed there is reported missing
            except OSError as exc:
                found.problems.add(Problem(folder, "unreadable", f"cannot open the folder: {exc.strerror or exc}"))
                return found.finish(image_dir, annotation_dir, True)
        for entry in loaded[1]:
            is_image = entry.name.lower().endswith(".jpg")
            _stat_listed(entry, image_dir if layout == "flat" or is_image else annotation_dir, folders, found)
    finally:
        for fd in folders.values():
            os.close(fd)
    return found.finish(image_dir, annotation_dir, True)


def _stat_listed(entry: ManifestEntry, folder: str, folders: dict[str, int], found: _Collector) -> None:
    """One file a manifest lists: present, and the size it was extracted with."""
    parsed = _parse_name(entry.name)
    path = os.path.join(folder, entry.name)
    try:
        if folder not in folders:
            raise FileNotFoundError(path)
        info = os.stat(entry.name, dir_fd=folders[folder]) if os.stat in os.supports_dir_fd else os.stat(path)
    except FileNotFoundError:
        found.missing(path, parsed, MISSING_FROM_MANIFEST)
        return
    except OSError as exc:
        found.problems.add(Problem(path, "unreadable", f"cannot stat: {exc.strerror or exc}"))
        return
    found.saw(info)
    if parsed is None:
        found.problems.add(Problem(path, "extra-file", "extra: not an SA-1B image or annotation"))
        return
    if info.st_size != entry.size:
        found.problems.add(Problem(path, "size-changed",
                                   f"{info.st_size} bytes, but {entry.size} when it was extracted"))
    (found.images if parsed[0] else found.annotations).append(parsed[1])


# ------------------------------------------------------------------ deep checks


@dataclass
class PairCheck:
    """What deep-checking one image and its annotation found."""

    problems: Problems = field(default_factory=Problems)
    masks: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.problems.total == 0


@dataclass
class ChunkResult:
    """What one deep-check task found (a worker's answer)."""

    pairs: int
    masks: int
    bytes: int
    problems: Problems


@dataclass
class _MaskBatch:
    """Annotation files whose masks wait to be checked together (one numpy pass per batch)."""

    paths: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each image
    annotations: list[list[Any]] = field(default_factory=list)
    bytes: int = 0  # of the JSON files

    def add(self, path: str, width: int, height: int, annotations: list[Any], nbytes: int) -> None:
        self.paths.append(path)
        self.sizes.append((width, height))
        self.annotations.append(annotations)
        self.bytes += nbytes

    def __len__(self) -> int:
        return len(self.paths)


def deep_check_pair(image_path: str | Path, annotation_path: str | Path) -> PairCheck:
    """Deep-check one pair: annotation JSON, schema and masks, and the JPEG against it."""
    _keep_freed_memory()
    result = PairCheck()
    batch = _MaskBatch()
    _check_pair(str(image_path), str(annotation_path), result, batch)
    _check_mask_batch(batch, result.problems)
    return result


def check_pairs(image_dir: str, annotation_dir: str, ids: Sequence[int] | np.ndarray) -> ChunkResult:
    """Deep-check the pairs ``sa_<id>`` of ``ids`` (one task of a deep verify)."""
    _keep_freed_memory()
    result = PairCheck()
    batch = _MaskBatch()
    with _cyclic_gc_paused():
        for image_id in np.asarray(ids).tolist():
            _check_pair(os.path.join(image_dir, image_name(image_id)),
                        os.path.join(annotation_dir, annotation_name(image_id)), result, batch)
            if batch.bytes >= MASK_BATCH_BYTES:
                _check_mask_batch(batch, result.problems)
                batch = _MaskBatch()
        _check_mask_batch(batch, result.problems)
    return ChunkResult(len(ids), result.masks, result.bytes, result.problems)


_allocator_tuned = False


def _keep_freed_memory() -> None:
    """Let glibc reuse freed heap memory for numpy's temporaries instead of unmapping it.

    Each RLE pass allocates a few dozen arrays of up to a few MB; above glibc's mmap
    threshold every one is a fresh mmap whose pages fault in again (measured: 600
    page faults and 60% of the time of decoding one full-size annotation file).
    Process-wide, once; a no-op where mallopt is not available.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 256 << 20)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsed JSON holds no reference cycles, but its thousands of containers per file
    trigger collections that re-walk the whole batch held alive: 3-4x slower parsing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_pair(image_path: str, annotation_path: str, out: PairCheck, batch: _MaskBatch) -> None:
    """Check the JSON document and the JPEG now; queue the masks in ``batch``."""
    try:
        with open(annotation_path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        out.problems.add(Problem(annotation_path, "unreadable", f"cannot read: {exc.strerror or exc}"))
        raw = None
    header = None
    if raw is not None:
        out.bytes += len(raw)
        header = _check_annotation(annotation_path, raw, os.path.basename(image_path), out, batch)
    try:
        jpeg = check_jpeg(image_path)
    except JpegError as exc:
        out.problems.add(Problem(image_path, "jpeg", f"broken JPEG: {exc}"))
        return
    except OSError as exc:
        out.problems.add(Problem(image_path, "unreadable", f"cannot read: {exc.strerror or exc}"))
        return
    out.bytes += jpeg.size
    if header is not None and (jpeg.width, jpeg.height) != header:
        out.problems.add(Problem(image_path, "image-size",
                                 f"JPEG is {jpeg.width}x{jpeg.height} but {os.path.basename(annotation_path)} "
                                 f"says {header[0]}x{header[1]}"))


def _check_annotation(path: str, raw: bytes, expected_file_name: str, out: PairCheck,
                      batch: _MaskBatch) -> tuple[int, int] | None:
    """Check one annotation document; returns the image's (width, height) when its header is sound."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        out.problems.add(Problem(path, "json", f"not valid JSON: {exc}"))
        return None
    error = _document_error(doc)
    if error:
        out.problems.add(Problem(path, "schema", f"not an SA-1B annotation: {error}"))
        return None
    image, annotations = doc["image"], doc["annotations"]
    width, height = image["width"], image["height"]
    if image["file_name"] != expected_file_name:
        out.problems.add(Problem(path, "schema",
                                 f"image.file_name is {image['file_name']!r}, expected {expected_file_name!r}"))
    if annotations:
        out.masks += len(annotations)
        batch.add(path, width, height, annotations, len(raw))
    return width, height


def _document_error(doc: Any) -> str | None:
    if type(doc) is not dict:
        return f"the top level is {_kind(doc)}, expected an object"
    image = doc.get("image")
    if type(image) is not dict:
        return "'image' is missing" if image is None else f"'image' is {_kind(image)}, expected an object"
    for name, kind in IMAGE_FIELDS:
        value = image.get(name)
        if type(value) is not kind:
            if name not in image:
                return f"image.{name} is missing"
            return f"image.{name} is {_kind(value)}, expected {_kind_name(kind)}"
    if image["width"] < 1 or image["height"] < 1:
        return f"image size {image['width']}x{image['height']} is empty"
    annotations = doc.get("annotations")
    if type(annotations) is not list:
        if annotations is None:
            return "'annotations' is missing"
        return f"'annotations' is {_kind(annotations)}, expected a list"
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _kind_name(kind: type) -> str:
    return {int: "an integer", str: "a string"}[kind]


def _check_mask_batch(batch: _MaskBatch, out: Problems) -> None:
    """Check every mask of the batch's files in one vectorised pass; name each file's first bad mask."""
    if not len(batch):
        return
    per_file = np.array([len(a) for a in batch.annotations])
    columns = rle.native_annotation_stats(batch.annotations) or _annotation_columns(batch)
    if columns is None:
        if len(batch) > 1:  # find the culprit file by file; the others are checked on the way
            for index in range(len(batch)):
                single = _MaskBatch([batch.paths[index]], [batch.sizes[index]], [batch.annotations[index]])
                _check_mask_batch(single, out)
        else:
            kind = "schema" if _mask_columns(batch.annotations[0]) is None else "rle"
            problem = _describe_schema_error(batch.annotations[0])
            out.add(Problem(batch.paths[0], kind, f"not an SA-1B annotation: {problem}"))
        return
    ids, sizes, bbox, area, stats = columns.ids, columns.sizes, columns.bbox, columns.area, columns.stats
    file_of = np.repeat(np.arange(len(batch)), per_file)
    first_of_file = np.concatenate([[0], np.cumsum(per_file)[:-1]])
    image_size = np.array(batch.sizes)[file_of]  # (width, height) per mask

    def report(kind: str, bad: np.ndarray, describe: Callable[[int], str]) -> None:
        where = np.flatnonzero(bad)
        if not len(where):
            return
        files, first, count = np.unique(file_of[where], return_index=True, return_counts=True)
        for file, mask, n_bad in zip(files.tolist(), where[first].tolist(), count.tolist()):
            more = f" (and {n_bad - 1} more of the {per_file[file]} masks)" if n_bad > 1 else ""
            label = f"annotation id {int(ids[mask])} (mask {mask - first_of_file[file] + 1})"
            out.add(Problem(batch.paths[file], kind, f"{label}: {describe(mask)}{more}"))

    report("mask-size", (sizes[:, 0] != image_size[:, 1]) | (sizes[:, 1] != image_size[:, 0]),
           lambda i: f"mask size {sizes[i].tolist()} differs from the image's [{image_size[i, 1]}, {image_size[i, 0]}]")
    invalid = stats.error != rle.OK
    report("rle", invalid, lambda i: _rle_error_text(stats, i, sizes[i]))
    valid = ~invalid
    report("area", valid & (np.rint(area) != stats.area),
           lambda i: f"area is {_number(area[i])} but the mask has {int(stats.area[i])} pixels")
    stored, computed = np.rint(bbox), stats.bbox
    # x and y as pycocotools toBbox; w and h as toBbox or one less (the inclusive right/bottom
    # edge that SAM's automatic mask generator writes, box_xyxy_to_xywh).
    bad_corner = (stored[:, 0] != computed[:, 0]) | (stored[:, 1] != computed[:, 1])
    bad_extent = ((stored[:, 2] != computed[:, 2]) & (stored[:, 2] != computed[:, 2] - 1)) | \
                 ((stored[:, 3] != computed[:, 3]) & (stored[:, 3] != computed[:, 3] - 1))
    report("bbox", valid & (bad_corner | bad_extent),
           lambda i: f"bbox is {[_number(v) for v in bbox[i]]} but the mask's is {[int(v) for v in computed[i]]}")


def _annotation_columns(batch: _MaskBatch) -> rle.AnnotationColumns | None:
    """The general path of ``rle.native_annotation_stats``: any decoder, lenient about types."""
    columns = _mask_columns(list(chain.from_iterable(batch.annotations)))
    if columns is None:
        return None
    ids, counts, sizes, bbox, area = columns
    try:
        stats = rle.mask_stats(counts, sizes[:, 0], sizes[:, 1])
    except UnicodeEncodeError:
        return None
    return rle.AnnotationColumns(ids=ids, sizes=sizes, bbox=bbox, area=area, stats=stats)


_numeric_fields = itemgetter("id", "area", "predicted_iou", "stability_score")
_list_fields = itemgetter("bbox", "crop_box", "point_coords")


def _mask_columns(annotations: list[Any]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """(ids, counts, sizes, bbox, area) of well-formed annotations; None if any is not (then described slowly).

    Indexing raises for a missing field or a non-object; ``np.fromiter`` for a value
    that is no number. It is lenient (a digit string reads as its number, null as
    NaN, which then fails the area or bbox comparison) but about twice as fast as
    ``np.array`` on nested lists, the largest cost of a deep check after parsing.
    """
    n = len(annotations)
    try:
        segmentations = [a["segmentation"] for a in annotations]
        counts = [s["counts"] for s in segmentations]
        sizes = [s["size"] for s in segmentations]
        lists = list(map(_list_fields, annotations))
        lengths = np.fromiter(map(len, chain(sizes, chain.from_iterable(lists))), np.int64, 4 * n)
        if not (np.all(lengths[:n] == 2) and np.all(lengths[n:].reshape(n, 3)[:, :2] == 4)):
            return None
        numbers = np.fromiter(chain.from_iterable(map(_numeric_fields, annotations)), np.float64, 4 * n)
        size_values = np.fromiter(chain.from_iterable(sizes), np.int64, 2 * n)
        bbox = np.fromiter(chain.from_iterable(map(itemgetter(0), lists)), np.float64, 4 * n)
        np.fromiter(chain.from_iterable(map(itemgetter(1), lists)), np.float64, 4 * n)  # crop_box: numbers
        if not all([type(c) is str for c in counts]):
            return None
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        return None
    numbers = numbers.reshape(n, 4)
    ids = numbers[:, 0]
    if not np.array_equal(ids, np.rint(ids)):
        return None
    return ids, counts, size_values.reshape(n, 2), bbox.reshape(n, 4), numbers[:, 1]


def _describe_schema_error(annotations: list[Any]) -> str:
    bad = [(i, error) for i, a in enumerate(annotations) if (error := _annotation_error(a))]
    if not bad:
        return "annotation fields have mixed types"
    index, error = bad[0]
    ann = annotations[index]
    label = f"annotations[{index}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
    more = f" (and {len(bad) - 1} more annotations)" if len(bad) > 1 else ""
    return f"{label}: {error}{more}"


def _annotation_error(ann: Any) -> str | None:
    if type(ann) is not dict:
        return f"is {_kind(ann)}, expected an object"
    missing = sorted(ANNOTATION_FIELDS - ann.keys())
    if missing:
        return f"field{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
    seg = ann["segmentation"]
    checks = (
        (type(ann["id"]) is int, "id is not an integer"),
        (type(seg) is dict and {"size", "counts"} <= seg.keys(), "segmentation needs 'size' and 'counts'"),
        (type(seg) is dict and type(seg.get("counts")) is str, "segmentation.counts is not a string"),
        (type(seg) is dict and str(seg.get("counts")).isascii(), "segmentation.counts is not ASCII"),
        (type(seg) is dict and _numbers(seg.get("size"), 2, int) and all(0 <= v < 2**62 for v in seg["size"]),
         "segmentation.size is not [height, width]"),
        (_numbers(ann["bbox"], 4), "bbox is not [x, y, w, h]"),
        (_is_number(ann["area"]), "area is not a number"),
        (_is_number(ann["predicted_iou"]), "predicted_iou is not a number"),
        (_is_number(ann["stability_score"]), "stability_score is not a number"),
        (type(ann["point_coords"]) is list, "point_coords is not a list"),
        (_numbers(ann["crop_box"], 4), "crop_box is not [x, y, w, h]"),
    )
    return next((message for passed, message in checks if not passed), None)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _numbers(value: Any, length: int, kind: type | None = None) -> bool:
    return (type(value) is list and len(value) == length
            and all(type(v) is kind if kind else _is_number(v) for v in value))


def _rle_error_text(stats: rle.MaskStats, index: int, size: np.ndarray) -> str:
    code = int(stats.error[index])
    text = f"invalid RLE: {rle.ERROR_TEXT[code]}"
    if code == rle.WRONG_TOTAL:
        text += f" ({int(stats.total[index])} instead of {int(size[0])} x {int(size[1])} = {int(size[0] * size[1])})"
    return text


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# ------------------------------------------------------------------ tars


def listed_for(checksums: ChecksumList | None, name: str) -> ChecksumList | None:
    """What ``checksums`` says of one part, as a list of that part alone (small enough to hand to a
    worker process with each task); None when it says nothing of it."""
    if checksums is None or not checksums.covers(name):
        return None
    md5, sha256 = checksums.md5.get(name), checksums.sha256.get(name)
    return ChecksumList(checksums.origin, {name: md5} if md5 else {}, {name: sha256} if sha256 else {},
                        checksums.is_reference)


def check_tar(tar_path: str, receipt: dict[str, Any] | None, listed: ChecksumList | None, key: dict[str, Any]) -> TarResult:
    """Compare a downloaded tar with its download receipt (size, hashes) and with what a checksum list
    (or the community reference) gives for it: md5 and sha256, whichever it has. md5 is computed
    only when the list or the receipt has one to compare with (it costs a quarter of the read's CPU)."""
    result = TarResult(path=tar_path, key=key)
    name = os.path.basename(tar_path)
    if os.path.exists(tar_path + ".aria2"):
        result.problems.add(Problem(tar_path, "tar-incomplete", "download not finished (aria2 control file present)"))
        return result
    try:
        size = os.stat(tar_path).st_size
    except FileNotFoundError:
        result.notes.append("removed before it could be checked")
        return result
    result.size = size
    recorded_size = receipt.get("size") if receipt else None
    if isinstance(recorded_size, int):
        result.checked.append("size")
        if recorded_size != size:
            result.problems.add(Problem(tar_path, "tar-size", f"{size} bytes, but {recorded_size} when downloaded"))
            return result
    wanted = {k: receipt.get(k) for k in ("md5", "sha256")} if receipt else {}
    wanted = {k: v.lower() for k, v in wanted.items() if isinstance(v, str) and v}
    if not wanted and listed is None:
        result.notes.append("no download receipt and not in a checksum list: nothing to compare with")
        return result
    try:
        _, md5, sha256 = integrity.hash_file(Path(tar_path), md5="md5" in wanted or (listed is not None and listed.wants_md5(name)))
    except OSError as exc:
        result.problems.add(Problem(tar_path, "unreadable", f"cannot read: {exc.strerror or exc}"))
        return result
    actual = {"md5": md5, "sha256": sha256}
    for algorithm, expected in wanted.items():
        result.checked.append(algorithm)
        if actual[algorithm] != expected:
            result.problems.add(Problem(tar_path, "tar-hash", f"{algorithm} {actual[algorithm]} differs from the "
                                        f"download receipt's {expected}: the file changed after download"))
    if listed is not None:
        result.checked.append("community reference" if listed.is_reference else "checksum list")
        differs = [f"{algorithm} {got} differs from {listed.label}, which lists {expected}"
                   for algorithm, got, expected in (("md5", md5, listed.md5.get(name)), ("sha256", sha256, listed.sha256.get(name)))
                   if expected is not None and got != expected]
        if differs:
            result.problems.add(Problem(tar_path, "tar-checksum", "; ".join(differs)))  # the path names the part
    if not wanted:
        result.notes.append(f"{name} has no download receipt")
    return result


# ------------------------------------------------------------------ planning


@dataclass
class _Unit:
    """One part (or ``(all)``) to check, as planned in the parent."""

    name: str
    path: str  # the folder (or manifest) that stands for the part
    scan: tuple[Callable[..., Listing], tuple[Any, ...]] | None  # the listing task, None: no files
    image_dir: str = ""
    annotation_dir: str = ""
    status_without_files: str = MISSING
    extracted_before: bool = False  # an extract receipt exists (so missing files were there once)
    expected: int | None = None
    expected_from: str | None = None
    tar_path: str | None = None
    previous: dict[str, Any] | None = None  # the last verify receipt
    receipt_name: str | None = None  # where results are cached; None: not cached
    stamp_paths: list[str] = field(default_factory=list)  # folders (and manifest) whose stamp stands for the files


def known_part_names(paths: RootPaths) -> list[str]:
    """Every part name a selection may use: the dataset's 1,000 and any found under ROOT."""
    names = {f"sa_{i:06d}.tar" for i in range(FULL_DATASET_PARTS)}
    return sorted(names | _present_part_names(paths))


def _present_part_names(paths: RootPaths) -> set[str]:
    """Parts with files, a tar or a receipt under ROOT."""
    names = {n for stage in ("download", "extract") for n in state.list_receipts(paths, stage) if PART_NAME.match(n)}
    named_by: tuple[tuple[Path, Callable[[str], str]], ...] = (
        (paths.tars, lambda n: n.removesuffix(".aria2")), (extracted_dir(paths), lambda n: n + ".tar"))
    for folder, make_name in named_by:
        try:
            with os.scandir(folder) as entries:
                names.update(name for e in entries if PART_NAME.match(name := make_name(e.name)))
        except (FileNotFoundError, NotADirectoryError):
            pass
    return names


def detect_layout(paths: RootPaths) -> str | None:
    """The recorded layout, else the one the folders show, else None (nothing extracted)."""
    recorded = read_layout(paths)
    if recorded:
        return recorded
    if (paths.root / "images").is_dir() or (paths.root / "annotations").is_dir():
        return "split"
    try:
        with os.scandir(extracted_dir(paths)) as entries:
            for entry in entries:
                if PART_FOLDER.match(entry.name) and entry.is_dir():
                    return "parts"
                if _parse_name(entry.name):
                    return "flat"
    except (FileNotFoundError, NotADirectoryError):
        pass
    return None


def _expected_pairs(extract: dict[str, Any] | None, download: dict[str, Any] | None) -> tuple[int | None, str | None]:
    for receipt, source in ((extract, "extract receipt"), (download, "download receipt")):
        if receipt and isinstance(receipt.get("images"), int):
            return receipt["images"], source
    return None, None


@dataclass
class _Plan:
    units: list[_Unit]
    layout: str | None
    expected_total: int | None
    problems: Problems


def _plan(paths: RootPaths, names: list[str], selected: bool, expected: int | None) -> _Plan:
    layout = detect_layout(paths)
    receipts = {stage: state.list_receipts(paths, stage) for stage in ("download", "extract", "verify")}
    problems = Problems()
    units: list[_Unit] = []
    for name in names:
        extract, download = receipts["extract"].get(name), receipts["download"].get(name)
        count, source = _expected_pairs(extract, download)
        tar = paths.tar(name)
        has_tar = tar.exists() or paths.control_file(name).exists()
        unit = _Unit(name=name, path=str(tar), scan=None, expected=count, expected_from=source,
                     tar_path=str(tar) if has_tar else None, previous=receipts["verify"].get(name),
                     status_without_files=NOT_EXTRACTED if has_tar else MISSING, extracted_before=extract is not None)
        locations = part_file_locations(paths, layout or "parts", name)
        unit.image_dir, unit.annotation_dir = str(locations.image_dir), str(locations.annotation_dir)
        if layout in (None, "parts"):
            unit.path = str(locations.folder)
            if locations.folder.is_dir():
                manifest = str(locations.manifest) if extract and locations.manifest.exists() else None
                unit.scan = (list_folders, ([(unit.path, "both")], manifest))
                unit.receipt_name = name
                unit.stamp_paths = [unit.path] + ([manifest] if manifest else [])
        elif extract is not None and locations.manifest.exists():
            unit.path = str(locations.manifest)
            unit.scan = (list_manifest, (unit.path, unit.image_dir, unit.annotation_dir, layout))
            unit.receipt_name = name
            unit.stamp_paths = list(dict.fromkeys([unit.path, unit.image_dir, unit.annotation_dir]))
        units.append(unit)
    if layout in ("split", "flat") and not any(u.scan for u in units):
        units.extend(_whole_folder_unit(paths, layout, receipts["verify"].get(ALL_UNIT)))
    if layout in (None, "parts") and not selected:
        _extra_part_folders(paths, problems)
    expected_total = expected if expected is not None else (None if selected else FULL_DATASET_PAIRS)
    return _Plan(units, layout, expected_total, problems)


def _whole_folder_unit(paths: RootPaths, layout: str, previous: dict[str, Any] | None) -> list[_Unit]:
    """Files in shared folders no manifest accounts for: check the folders as one unit."""
    folders = _shared_folders(paths, layout)
    if not any(os.path.isdir(folder) for folder, _ in folders):
        return []
    return [_Unit(name=ALL_UNIT, path=", ".join(f for f, _ in folders), scan=(list_folders, (folders, None)),
                  image_dir=folders[0][0], annotation_dir=folders[-1][0], previous=previous, receipt_name=ALL_UNIT,
                  stamp_paths=[f for f, _ in folders])]


def _shared_folders(paths: RootPaths, layout: str) -> list[tuple[str, str]]:
    if layout == "split":
        return [(str(paths.root / "images"), "jpg"), (str(paths.root / "annotations"), "json")]
    return [(str(extracted_dir(paths)), "both")]


def _files_of_no_part(paths: RootPaths, layout: str, report: VerifyReport) -> None:
    """Shared split/flat folders: name what is no SA-1B file; count SA-1B files no manifest lists.

    A plain listing (no ``stat``): the parts' own checks already stat every listed file.
    """
    listed = {"jpg": report.images, "json": report.annotations}
    for folder, accepts in _shared_folders(paths, layout):
        found = {"jpg": 0, "json": 0}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    parsed = _parse_name(entry.name)
                    kind = None if parsed is None else ("jpg" if parsed[0] else "json")
                    if kind is None or accepts not in ("both", kind) or not entry.is_file():
                        why = "not an SA-1B image or annotation" if kind is None else f"not a .{accepts} file"
                        report.problems.add(Problem(entry.path, "extra-file", f"extra: {why}"))
                    else:
                        found[kind] += 1
        except FileNotFoundError:
            continue
        for kind, what in (("jpg", "images"), ("json", "annotations")):
            if found[kind] > listed[kind]:
                report.problems.add(Problem(folder, "extra-file", f"extra: {found[kind] - listed[kind]:,} {what} here "
                                            "belong to no extracted part (in no extraction manifest)"))


def _extra_part_folders(paths: RootPaths, problems: Problems) -> None:
    try:
        with os.scandir(extracted_dir(paths)) as entries:
            for entry in entries:
                if not (PART_FOLDER.match(entry.name) and entry.is_dir()):
                    problems.add(Problem(entry.path, "extra-file", "extra: not a part folder (sa_NNNNNN)"))
    except (FileNotFoundError, NotADirectoryError):
        pass


# ------------------------------------------------------------------ running


class _InlineExecutor(Executor):
    """Runs each task at once in this process (``--jobs 1``): no pool, same scheduling code."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future


@dataclass
class _Open:
    """A part being checked: what came back so far and how many tasks are out."""

    unit: _Unit
    started: float
    outstanding: int = 0
    listing: Listing | None = None
    deep: ChunkResult | None = None
    cached: bool = False
    level: str | None = None
    tar: TarResult | None = None
    stamp: list[list[int]] | None = None  # of the unit's folders, taken before listing them


class _Run:
    """Schedules the tasks of all parts over one executor with bounded work in flight."""

    def __init__(self, executor: Executor, jobs: int, deep: bool, tars: bool, force: bool, rescan: bool,
                 checksums: ChecksumList | None, downloads: dict[str, dict[str, Any]], reporter: Reporter,
                 total_files: int | None) -> None:
        self.executor = executor
        self.limit = 2 * jobs
        self.level = DEEP if deep else QUICK
        self.tars = tars
        self.force = force
        self.rescan = rescan or force
        self.checksums = checksums
        self.downloads = downloads
        self.reporter = reporter
        self.progress = reporter.files("verify", total_files)
        self.ready: deque[tuple[Callable[..., Any], tuple[Any, ...], str, _Open]] = deque()
        self.in_flight: dict[Future[Any], tuple[str, _Open]] = {}
        self.open_parts = 0
        self.cache_warned = False

    def run(self, units: Iterable[_Unit], paths: RootPaths) -> list[PartResult]:
        pending = deque(units)
        results: list[PartResult] = []
        try:
            while pending or self.ready or self.in_flight:
                while len(self.in_flight) < self.limit:
                    if self.ready:
                        fn, args, kind, part = self.ready.popleft()
                        self.in_flight[self.executor.submit(fn, *args)] = (kind, part)
                    elif pending and self.open_parts < self.limit:
                        opened = self._open(pending.popleft())
                        if opened.outstanding == 0:
                            results.append(self._finish(opened, paths))
                    else:
                        break
                if not self.in_flight:
                    continue
                done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, part = self.in_flight.pop(future)
                    part.outstanding -= 1
                    self._take(kind, part, future.result())
                    if part.outstanding == 0:
                        results.append(self._finish(part, paths))
        finally:
            self.progress.close()
        return results

    def _open(self, unit: _Unit) -> _Open:
        part = _Open(unit, time.monotonic())
        self.open_parts += 1
        if unit.scan is not None:
            part.stamp = _folder_stamp(unit.stamp_paths)
            unchanged = None if self.rescan else _unchanged_listing(unit.previous, part.stamp, self.level)
            if unchanged is not None:
                part.listing = unchanged
                self._reuse(part, files=unchanged.files)
            else:
                self._queue(unit.scan[0], unit.scan[1], "scan", part)
        if self.tars and unit.tar_path is not None:
            key = _tar_key(unit.tar_path, self.downloads.get(unit.name), self._listed(unit.name))
            cached = _cached_tar(unit.previous, key, self.force)
            if cached is not None:
                part.tar = cached
            else:
                self._queue(check_tar, (unit.tar_path, self.downloads.get(unit.name), self._listed(unit.name), key),
                            "tar", part)
        return part

    def _listed(self, name: str) -> ChecksumList | None:
        return listed_for(self.checksums, name)

    def _queue(self, fn: Callable[..., Any], args: tuple[Any, ...], kind: str, part: _Open) -> None:
        self.ready.append((fn, args, kind, part))
        part.outstanding += 1

    def _take(self, kind: str, part: _Open, result: Any) -> None:
        if kind == "tar":
            part.tar = result
            self.progress.advance(0, result.size or 0)
        elif kind == "scan":
            part.listing = result
            result.listed = True
            self._after_scan(part, result)
        else:
            assert part.deep is not None
            part.deep.pairs += result.pairs
            part.deep.masks += result.masks
            part.deep.bytes += result.bytes
            part.deep.problems.merge(result.problems)
            self.progress.advance(2 * result.pairs, result.bytes)

    def _after_scan(self, part: _Open, listing: Listing) -> None:
        if not self.force and _receipt_holds(part.unit.previous, listing, self.level):
            self._reuse(part, files=listing.files)
            return
        part.level = self.level
        if self.level == QUICK:
            self.progress.advance(listing.files)
            return
        part.deep = ChunkResult(0, 0, 0, Problems())
        for start in range(0, len(listing.paired), CHUNK_PAIRS):
            chunk = listing.paired[start:start + CHUNK_PAIRS]
            self._queue(check_pairs, (part.unit.image_dir, part.unit.annotation_dir, chunk), "pairs", part)

    def _reuse(self, part: _Open, files: int) -> None:
        """The part's verify receipt still holds: take its findings instead of reading files."""
        previous = part.unit.previous
        assert previous is not None
        part.cached = True
        part.level = str(previous["level"])
        if part.level == DEEP:
            part.deep = ChunkResult(int(previous.get("pairs_checked", 0)), int(previous.get("masks_checked", 0)), 0,
                                    Problems.from_dict(previous.get("deep_problems")))
        self.progress.advance(files)

    def _finish(self, part: _Open, paths: RootPaths) -> PartResult:
        self.open_parts -= 1
        unit = part.unit
        result = PartResult(name=unit.name, path=unit.path, level=part.level, cached=part.cached,
                            expected=unit.expected, expected_from=unit.expected_from, tar=part.tar)
        listing = part.listing
        if listing is None:
            kind = "not-extracted" if unit.status_without_files == NOT_EXTRACTED else "missing-part"
            if unit.extracted_before:
                text = "its extract receipt exists but the extracted files are gone"
            elif kind == "not-extracted":
                text = "downloaded but not extracted"
            else:
                text = "no extracted files and no tar"
            result.problems.add(Problem(unit.path, kind, text))
        else:
            result.images, result.annotations, result.listed = listing.images, listing.annotations, listing.listed
            result.problems.merge(listing.problems)
            if not listing.used_manifest:
                _check_counts(result, unit.path)
        if part.deep is not None:
            result.pairs_checked, result.masks_checked = part.deep.pairs, part.deep.masks
            result.problems.merge(part.deep.problems)
        if part.tar is not None:
            result.problems.merge(part.tar.problems)
        result.status = _status(result, listing is not None, unit.status_without_files)
        result.seconds = time.monotonic() - part.started
        try:
            if unit.receipt_name is not None and listing is not None:
                if not part.cached or (part.tar is not None and not part.tar.cached) \
                        or (part.unit.previous or {}).get("folder_stamp") != part.stamp:
                    _write_verify_receipt(paths, unit.receipt_name, result, listing, part)
            elif listing is None and unit.previous is not None:
                state.remove_receipt(paths, "verify", unit.name)  # its files are gone: the old verdict no longer holds
        except OSError as exc:  # the receipts are a cache: a read-only or full ROOT still gets its verdict
            self._cache_unwritable(exc)
        self._announce(result)
        return result

    def _cache_unwritable(self, exc: OSError) -> None:
        if self.cache_warned:
            return
        self.cache_warned = True
        self.reporter.event(
            "cache_unwritable",
            f"cannot save verify results ({exc.strerror or exc}: {exc.filename or 'ROOT/.sa1b'}); "
            "the dataset is checked all the same, the next run checks everything again",
            level="warning",
        )

    def _announce(self, result: PartResult) -> None:
        if result.ok or result.status in (MISSING, NOT_EXTRACTED):  # those are summed up at the end
            return
        first = result.problems.listed[0] if result.problems.listed else None
        more = f" (+{result.problems.total - 1} more)" if result.problems.total > 1 else ""
        self.reporter.event(
            "part_problems", f"{result.name}: {result.status}: {first}{more}",
            level="error" if result.problems.corrupt else "warning",
            part=result.name, status=result.status, problems=result.problems.total,
        )


def _check_counts(result: PartResult, path: str) -> None:
    expected = result.expected
    found = max(result.images, result.annotations)
    if expected is None:
        if found == 0:
            result.problems.add(Problem(path, "count", "holds no images and no annotations"))
        return
    for what, count in (("images", result.images), ("annotations", result.annotations)):
        if count != expected:
            result.problems.add(Problem(path, "count", f"{count:,} {what}, but the {result.expected_from} "
                                        f"records {expected:,} ({count - expected:+,})"))


def _status(result: PartResult, has_files: bool, without_files: str) -> str:
    if result.problems.corrupt:
        return CORRUPT
    if not has_files:
        return without_files
    return INCOMPLETE if result.problems.total else OK


def _receipt_holds(previous: dict[str, Any] | None, listing: Listing, level: str) -> bool:
    """The verify receipt still describes these files, at this level or a deeper one."""
    return (
        isinstance(previous, dict)
        and previous.get("check_version") == CHECK_VERSION
        and previous.get("fingerprint") == listing.fingerprint
        and LEVEL_RANK.get(previous.get("level"), 0) >= LEVEL_RANK[level]  # type: ignore[arg-type]
    )


def _folder_stamp(paths: Sequence[str]) -> list[list[int]] | None:
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


def _unchanged_listing(previous: dict[str, Any] | None, stamp: list[list[int]] | None, level: str) -> Listing | None:
    """The listing a verify receipt recorded, when its folders are stamped exactly as now."""
    if (stamp is None or not isinstance(previous, dict) or previous.get("folder_stamp") != stamp
            or previous.get("check_version") != CHECK_VERSION
            or LEVEL_RANK.get(previous.get("level"), 0) < LEVEL_RANK[level]):  # type: ignore[arg-type]
        return None
    recorded = previous.get("listing")
    if not isinstance(recorded, dict):
        return None
    try:
        return Listing(paired=np.empty(0, dtype=np.int64), images=int(previous["images"]),
                       annotations=int(previous["annotations"]), files=int(recorded["files"]),
                       bytes=int(recorded["bytes"]), fingerprint=previous["fingerprint"],
                       problems=Problems.from_dict(recorded["problems"]), used_manifest=bool(recorded["used_manifest"]))
    except (KeyError, TypeError, ValueError):
        return None


def _tar_key(tar_path: str, download: dict[str, Any] | None, listed: ChecksumList | None) -> dict[str, Any]:
    try:
        info = os.stat(tar_path)
        identity: list[int] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    except FileNotFoundError:
        identity = []
    control = os.path.exists(tar_path + ".aria2")
    return {"file": identity, "control_file": control, "receipt_md5": (download or {}).get("md5"),
            "receipt_sha256": (download or {}).get("sha256"), "receipt_size": (download or {}).get("size"),
            "listed": None if listed is None else {"md5": next(iter(listed.md5.values()), None),
                                                   "sha256": next(iter(listed.sha256.values()), None), "by": listed.label},
            "check_version": CHECK_VERSION}


def _cached_tar(previous: dict[str, Any] | None, key: dict[str, Any], force: bool) -> TarResult | None:
    record = (previous or {}).get("tar")
    if force or not isinstance(record, dict) or record.get("key") != key:
        return None
    return TarResult(path=str(record.get("path", "")), size=record.get("size"), checked=list(record.get("checked", [])),
                     notes=list(record.get("notes", [])), problems=Problems.from_dict(record.get("problems")),
                     key=key, cached=True)


def _write_verify_receipt(paths: RootPaths, name: str, result: PartResult, listing: Listing, part: _Open) -> None:
    record: dict[str, Any] = {
        "part": name, "ok": result.ok, "status": result.status, "level": part.level,
        "check_version": CHECK_VERSION, "fingerprint": listing.fingerprint, "folder_stamp": part.stamp,
        "listing": {"files": listing.files, "bytes": listing.bytes, "used_manifest": listing.used_manifest,
                    "problems": listing.problems.to_dict()},
        "images": result.images, "annotations": result.annotations, "expected": result.expected,
        "pairs_checked": result.pairs_checked, "masks_checked": result.masks_checked,
        "problems": [str(p) for p in result.problems.listed], "problems_total": result.problems.total,
    }
    if part.deep is not None:
        record["deep_problems"] = part.deep.problems.to_dict()
    if part.tar is not None:
        record["tar"] = {"key": part.tar.key, "path": part.tar.path, "size": part.tar.size,
                         "checked": part.tar.checked, "notes": part.tar.notes, "problems": part.tar.problems.to_dict()}
    state.write_receipt(paths, "verify", name, record)


def _total_problems(report: VerifyReport) -> None:
    """Dataset-level count: the pairs found in the checked scope against what it must hold."""
    expected = report.expected_total
    if expected is None:
        return
    for what, count in (("images", report.images), ("annotations", report.annotations)):
        if count != expected:
            report.problems.add(Problem(report.root, "count", f"{count:,} {what} in the checked parts, expected "
                                        f"{expected:,} ({count - expected:+,})"))


def _make_executor(jobs: int) -> Executor:
    if jobs <= 1:
        return _InlineExecutor()
    # fork on Linux: workers start at once and need no importable __main__ (library callers
    # without a main guard); they only run the pure task functions above. spawn elsewhere.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method))


def verify_dataset(
    paths: RootPaths,
    *,
    parts: Sequence[str] | None = None,
    deep: bool = False,
    tars: bool = False,
    checksums: ChecksumList | Path | None = None,
    expected: int | None = None,
    jobs: int | None = None,
    force: bool = False,
    rescan: bool = False,
    reporter: Reporter | None = None,
) -> VerifyReport:
    """Check the dataset under ``paths``; never changes dataset files (only verify receipts).

    ``parts``: part names to check (None: the whole dataset, or with ``expected``
    the parts present). ``checksums``: what ``tars`` compares the tars with (the community reference,
    or a user's list or its path, which implies ``tars``).
    ``rescan``: list every part's files even where its folders are unchanged since its
    verify receipt; ``force``: also read every file again (see the module docstring).
    Raises UsageError for bad part names, InputFileError for a bad checksum list or a user's list
    that names none of the tars to check (one naming only some: a warning event), LayoutError for a
    damaged layout record.
    """
    reporter = reporter or NullReporter()
    started = time.monotonic()
    if isinstance(checksums, Path):
        checksums = parse_checksums(checksums)
    tars = tars or (checksums is not None and not checksums.is_reference)
    listed = checksums if tars else None
    if parts is not None:
        bad = [n for n in parts if not PART_NAME.match(n)]
        if bad:
            raise UsageError(f"not part names (sa_NNNNNN.tar): {', '.join(bad[:5])}")
        names = sorted(set(parts))
    elif expected is not None:
        names = sorted(_present_part_names(paths))
    else:
        names = known_part_names(paths)
    plan = _plan(paths, names, selected=parts is not None, expected=expected)
    if listed is not None and not listed.is_reference:
        _check_coverage(listed, [u.name for u in plan.units if u.tar_path is not None], reporter)
    jobs = max(1, jobs or os.cpu_count() or 1)
    level = DEEP if deep else QUICK
    report = VerifyReport(root=str(paths.root), layout=plan.layout, level=level, tars=tars,
                          expected_total=plan.expected_total, problems=plan.problems)
    reporter.event("plan", f"verifying {len(names)} parts under {paths.root} (layout {plan.layout or 'none'}): "
                   f"{level} check{', tars' if tars else ''}, {jobs} job{'s' if jobs > 1 else ''}",
                   parts=len(names), layout=plan.layout, check=level, tars=tars, jobs=jobs)
    known = [u.expected for u in plan.units if u.scan is not None]
    total_pairs = plan.expected_total or (sum(k for k in known if k) if known and all(known) else None)
    downloads = state.list_receipts(paths, "download")
    with _make_executor(jobs) as executor:
        run = _Run(executor, jobs, deep, tars, force, rescan, listed, downloads, reporter,
                   2 * total_pairs if total_pairs else None)
        try:
            report.parts = run.run(plan.units, paths)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
    report.parts.sort(key=lambda p: p.name)
    _total_problems(report)
    per_part = any(p.level is not None and p.name != ALL_UNIT for p in report.parts)
    if plan.layout in ("split", "flat") and parts is None and per_part:
        _files_of_no_part(paths, plan.layout, report)
    report.seconds = time.monotonic() - started
    return report


def _check_coverage(listed: ChecksumList, tar_names: list[str], reporter: Reporter) -> None:
    """A user's list that names none of the tars to check is the wrong list (another dataset, another
    site's other parts, a typo): refuse it before any work. One that names only some: say so."""
    missing = listed.uncovered(tar_names, "part(s) whose tar is here to check")
    if missing:
        reporter.event("checksums", f"{listed.origin} has no checksum for {len(missing)} of the {len(tar_names)} tar(s) "
                       f"checked ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}): those are compared with "
                       "their download receipts only", level="warning", not_listed=missing)


def verify_directory(folder: str | Path, annotation_folder: str | Path | None = None, *,
                     deep: bool = True) -> PartResult:
    """Check one folder of pairs in this process, without receipts (benchmarks, ad-hoc use)."""
    started = time.monotonic()
    image_dir = str(folder)
    annotation_dir = str(annotation_folder or folder)
    folders = [(image_dir, "both")] if annotation_dir == image_dir else [(image_dir, "jpg"), (annotation_dir, "json")]
    listing = list_folders(folders)
    result = PartResult(name=os.path.basename(image_dir.rstrip("/")), path=image_dir, level=DEEP if deep else QUICK,
                        images=listing.images, annotations=listing.annotations)
    result.problems.merge(listing.problems)
    if deep:
        checked = check_pairs(image_dir, annotation_dir, listing.paired)
        result.pairs_checked, result.masks_checked = checked.pairs, checked.masks
        result.problems.merge(checked.problems)
    result.status = _status(result, True, MISSING)
    result.seconds = time.monotonic() - started
    return result


# ------------------------------------------------------------------ presentation

TABLE_ALL_UP_TO = 40  # more parts than this: the table lists only those with problems
PROBLEM_LINES = 50  # problems printed after the table; the rest are in --report / --json


def table_rows(report: VerifyReport) -> tuple[list[list[str]], list[str]]:
    """(table rows of the parts with files, one line per group of missing parts)."""
    with_files = [p for p in report.parts if p.status not in (MISSING, NOT_EXTRACTED)]
    shown = with_files if len(with_files) <= TABLE_ALL_UP_TO else [p for p in with_files if not p.ok]
    rows = [[p.name, p.status + (" (cached)" if p.cached else ""), p.level or "-", f"{p.images:,}",
             f"{p.annotations:,}", "-" if p.expected is None else f"{p.expected:,}", _problem_cell(p)] for p in shown]
    lines = []
    if len(shown) < len(with_files):
        lines.append(f"{len(with_files) - len(shown)} more parts sound (listed in --report and --json)")
    for status, label in ((NOT_EXTRACTED, "downloaded but not extracted"), (MISSING, "missing")):
        names = [p.name for p in report.parts if p.status == status]
        if names:
            lines.append(f"{label}: {len(names)} part{'s' if len(names) > 1 else ''}: {_name_ranges(names)}")
    return rows, lines


def _problem_cell(part: PartResult) -> str:
    if not part.problems.listed:
        return "-"
    first = part.problems.listed[0].message
    return f"{part.problems.total}: {first[:77] + '...' if len(first) > 80 else first}"


def _name_ranges(names: list[str], limit: int = 20) -> str:
    """``sa_000003.tar .. sa_000007.tar, sa_000009.tar``: consecutive parts as one range."""
    numbers = sorted(int(m.group(1)) for n in names if (m := PART_NAME.match(n)))
    ranges: list[list[int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    text = [f"sa_{a:06d}.tar" if a == b else f"sa_{a:06d}.tar .. sa_{b:06d}.tar" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        text.append(f"and {len(ranges) - limit} more ranges")
    return ", ".join(text)


def problem_lines(report: VerifyReport, limit: int = PROBLEM_LINES) -> list[str]:
    """One line per problem (missing parts are summed up by ``table_rows``), at most ``limit``."""
    summed_up = ("missing-part", "not-extracted")
    problems = [p for part in [report.problems, *(q.problems for q in report.parts)] for p in part.listed
                if p.kind not in summed_up]
    not_listed = report.problems_total - len(problems) - sum(
        1 for part in report.parts for p in part.problems.listed if p.kind in summed_up)
    lines = [f"{'damaged' if p.severity == CORRUPT else 'incomplete'}: {p}" for p in problems[:limit]]
    more = len(problems) - len(lines) + not_listed
    if more > 0:
        lines.append(f"... and {more} more problems (all of them are counted; the first {MAX_LISTED} of each part "
                     "are listed in --report and --json)")
    return lines


def summary_line(report: VerifyReport) -> str:
    summary = report.summary()
    expected = f" (expected {report.expected_total:,} each)" if report.expected_total is not None else ""
    masks = f", {summary['masks_checked']:,} masks" if report.level == DEEP else ""
    cached = f", {summary['cached']} parts unchanged since their last check" if summary["cached"] else ""
    corrupt = report.problems.corrupt + sum(p.problems.corrupt for p in report.parts)
    verdict = "all sound" if summary["ok"] else (
        f"{report.problems_total:,} problems, {corrupt:,} of them damaged files" if corrupt
        else f"{report.problems_total:,} problems (incomplete)")
    return (f"verify ({report.level}{', tars' if report.tars else ''}): {len(report.parts)} parts, "
            f"{report.images:,} images and {report.annotations:,} annotations{expected}{masks}{cached} "
            f"in {report.seconds:.1f}s: {verdict} (exit {int(report.exit_status)})")


__all__ = [
    "ALL_UNIT", "CHECK_VERSION", "FULL_DATASET_PAIRS", "ChunkResult", "Listing", "PairCheck", "PartResult",
    "Problem", "Problems", "TarResult", "VerifyReport", "check_pairs", "check_tar", "deep_check_pair",
    "detect_layout", "known_part_names", "list_folders", "list_manifest", "problem_lines", "summary_line",
    "table_rows", "verify_dataset", "verify_directory",
]
