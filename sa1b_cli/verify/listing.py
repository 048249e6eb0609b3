"""The quick check: list a part's files (one directory entry and one ``stat`` each), pair images with
annotations, and compare with what the part's extraction manifest lists (names and sizes)."""

from __future__ import annotations

import os
import re
import stat
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from sa1b_cli.store.layout import ManifestEntry, read_manifest
from sa1b_cli.verify.results import Problem, Problems

MISSING_FROM_MANIFEST = "missing (listed in the part's extraction manifest)"
# ``sa_<id>.jpg`` or ``sa_<id>.json``, the id in ASCII digits without a leading zero.
SA1B_FILE = re.compile(r"sa_([1-9][0-9]*)\.(jpg|json)")


def parse_name(name: str) -> tuple[bool, int] | None:
    """``sa_<id>.jpg`` -> (True, id), ``sa_<id>.json`` -> (False, id); anything else None."""
    match = SA1B_FILE.fullmatch(name)
    return None if match is None else (match[2] == "jpg", int(match[1]))


def image_name(image_id: int) -> str:
    return f"sa_{image_id}.jpg"


def annotation_name(image_id: int) -> str:
    return f"sa_{image_id}.json"


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

    def extra(self, path: str, info: os.stat_result, accepts: str) -> None:
        self.problems.add(Problem(path, "extra-file", f"extra: {_why_extra(os.path.basename(path), info, accepts)}"))

    def size_problem(self, path: str, size: int, recorded: int | None, against_manifest: bool) -> bool:
        """A well-named file that is empty or not the size its manifest lists; False when the manifest
        does not list it at all (then it is an extra file, not one of the part's)."""
        if not against_manifest:
            self.problems.add(Problem(path, "empty-file", "empty (0 bytes)"))
        elif recorded is None:
            self.problems.add(Problem(path, "extra-file", "extra: not in the part's extraction manifest"))
            return False
        elif recorded != size:
            self.problems.add(Problem(path, "size-changed", f"{size} bytes, but {recorded} when it was extracted"))
        return True

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
        _list_folder(folder, accepts, expected_sizes, found)
    if expected_sizes:
        folder = folders[0][0]
        for name in expected_sizes:
            found.missing(os.path.join(folder, name), parse_name(name), MISSING_FROM_MANIFEST)
    return found.finish(folders[0][0], folders[-1][0], expected_sizes is not None)


def _list_folder(folder: str, accepts: str, expected_sizes: dict[str, int] | None, found: _Collector) -> None:
    """One folder of ``list_folders``: a missing or unreadable folder is a problem, not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        found.problems.add(Problem(folder, "missing-folder", "folder is missing"))
        return
    except OSError as exc:
        found.problems.add(Problem(folder, "unreadable", f"cannot open the folder: {exc.strerror or exc}"))
        return
    try:
        found.folder_mtimes += os.fstat(fd).st_mtime_ns
        _scan_folder(fd if os.scandir in os.supports_fd else folder, folder, accepts, expected_sizes, found)
    except OSError as exc:
        found.problems.add(Problem(folder, "unreadable", f"cannot list the folder: {exc.strerror or exc}"))
    finally:
        os.close(fd)


def _scan_folder(target: int | str, folder: str, accepts: str, expected_sizes: dict[str, int] | None,
                 found: _Collector) -> None:
    """The quick check's inner loop: one directory entry and one ``stat`` per file and, for a
    well-named regular file of the right size, no other call. Scanning through a directory fd makes
    each ``stat`` an ``fstatat`` relative to it instead of a walk of the whole path."""
    adders = {"jpg": found.images.append if accepts != "json" else None,
              "json": found.annotations.append if accepts != "jpg" else None}.get
    sa1b_file, is_regular, against_manifest = SA1B_FILE.fullmatch, stat.S_ISREG, expected_sizes is not None
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
            match = sa1b_file(name)
            add = adders(match[2]) if match else None
            if add is None or not is_regular(info.st_mode):
                found.extra(os.path.join(folder, name), info, accepts)
                continue
            recorded = expected_sizes.pop(name, None) if against_manifest else size  # type: ignore[union-attr]
            if (recorded != size or not size) and not found.size_problem(os.path.join(folder, name), size, recorded,
                                                                         against_manifest):
                continue
            add(int(match[1]))  # type: ignore[index]
    found.files += files
    found.bytes += nbytes
    found.newest_mtime, found.newest_ctime = newest_mtime, newest_ctime


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def _why_extra(name: str, info: os.stat_result, accepts: str) -> str:
    if stat.S_ISDIR(info.st_mode):
        return "a folder"
    parsed = parse_name(name)
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
    parsed = parse_name(entry.name)
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
