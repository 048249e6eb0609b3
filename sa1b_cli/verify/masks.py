"""The deep check of masks: every RLE of a batch of annotation files in one vectorised pass, compared
with its annotation's size, ``area`` and ``bbox``; each file's first bad mask named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from sa1b_cli import rle
from sa1b_cli.verify.results import Problem, Problems
from sa1b_cli.verify.schema import describe_schema_error


@dataclass
class MaskBatch:
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


def check_mask_batch(batch: MaskBatch, out: Problems) -> None:
    """Check every mask of the batch's files in one vectorised pass; name each file's first bad mask."""
    if not len(batch):
        return
    columns = rle.native_annotation_stats(batch.annotations) or annotation_columns(batch)
    if columns is None:
        _find_the_malformed(batch, out)
        return
    _compare(batch, columns, out)


def _find_the_malformed(batch: MaskBatch, out: Problems) -> None:
    """Some annotation of the batch is not well formed: find its file, one by one (the others are
    checked on the way), and say what is wrong with it."""
    if len(batch) > 1:
        for index in range(len(batch)):
            single = MaskBatch([batch.paths[index]], [batch.sizes[index]], [batch.annotations[index]])
            check_mask_batch(single, out)
        return
    kind = "schema" if _mask_columns(batch.annotations[0]) is None else "rle"
    out.add(Problem(batch.paths[0], kind, f"not an SA-1B annotation: {describe_schema_error(batch.annotations[0])}"))


def _compare(batch: MaskBatch, columns: rle.AnnotationColumns, out: Problems) -> None:
    """What each mask holds against what its annotation says of it."""
    ids, sizes, bbox, area, stats = columns.ids, columns.sizes, columns.bbox, columns.area, columns.stats
    per_file = np.array([len(a) for a in batch.annotations])
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


def annotation_columns(batch: MaskBatch) -> rle.AnnotationColumns | None:
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


def _rle_error_text(stats: rle.MaskStats, index: int, size: np.ndarray) -> str:
    code = int(stats.error[index])
    text = f"invalid RLE: {rle.ERROR_TEXT[code]}"
    if code == rle.WRONG_TOTAL:
        text += f" ({int(stats.total[index])} instead of {int(size[0])} x {int(size[1])} = {int(size[0] * size[1])})"
    return text


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
