"""The deep check of pairs: each annotation parses and follows the SA-1B schema, its masks are sound
(``masks``), and its JPEG is structurally whole and as large as the annotation says."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sa1b_cli.jpeg import JpegError, check_jpeg
from sa1b_cli.verify.listing import annotation_name, image_name
from sa1b_cli.verify.masks import MaskBatch, check_mask_batch
from sa1b_cli.verify.results import Problem, Problems
from sa1b_cli.verify.schema import document_error

CHUNK_PAIRS = 500  # pairs per deep-check task: about a second of work
# Masks of several annotation files are decoded in one numpy pass, up to about this much
# JSON: small files share numpy's fixed per-call cost; a full-size SA-1B file fills a batch alone.
MASK_BATCH_BYTES = 96 * 1024


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


def deep_check_pair(image_path: str | Path, annotation_path: str | Path) -> PairCheck:
    """Deep-check one pair: annotation JSON, schema and masks, and the JPEG against it."""
    _keep_freed_memory()
    result = PairCheck()
    batch = MaskBatch()
    _check_pair(str(image_path), str(annotation_path), result, batch)
    check_mask_batch(batch, result.problems)
    return result


def check_pairs(image_dir: str, annotation_dir: str, ids: Sequence[int] | np.ndarray) -> ChunkResult:
    """Deep-check the pairs ``sa_<id>`` of ``ids`` (one task of a deep verify)."""
    _keep_freed_memory()
    result = PairCheck()
    batch = MaskBatch()
    with _cyclic_gc_paused():
        for image_id in np.asarray(ids).tolist():
            _check_pair(os.path.join(image_dir, image_name(image_id)),
                        os.path.join(annotation_dir, annotation_name(image_id)), result, batch)
            if batch.bytes >= MASK_BATCH_BYTES:
                check_mask_batch(batch, result.problems)
                batch = MaskBatch()
        check_mask_batch(batch, result.problems)
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


def _check_pair(image_path: str, annotation_path: str, out: PairCheck, batch: MaskBatch) -> None:
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
                      batch: MaskBatch) -> tuple[int, int] | None:
    """Check one annotation document; returns the image's (width, height) when its header is sound."""
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        out.problems.add(Problem(path, "json", f"not valid JSON: {exc}"))
        return None
    error = document_error(doc)
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
