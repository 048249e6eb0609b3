"""Synthetic SA-1B data: real JPEGs, real annotation JSON, real-looking part tars.

Tests, ``sa1b demo`` and the benchmarks need data that the extractor and verifier
treat exactly like Meta's, without 10 TB of downloads. Everything here is
deterministic for a given ``seed`` (same arguments -> same bytes, same md5).

Public API
----------
- :func:`make_pair` -> ``(jpeg_bytes, json_bytes)`` for one image id.
- :func:`make_jpeg`, :func:`make_annotation` -> the two halves separately.
- :func:`write_part` -> :class:`PartInfo`; writes ``sa_{index:06d}.tar`` like a real
  part: a ``./`` directory entry first, then ``./sa_<id>.jpg`` / ``./sa_<id>.json``
  members in seeded random order, gzip-compressed unless ``compress=False``.
- :func:`make_parts` (several parts, rising image ids), :func:`write_md5sums`
  (``md5sum`` format), :func:`write_image_ids` (``sa_images_ids.txt``).
- :func:`write_hostile_tar` (kinds in :data:`HOSTILE_KINDS`) and
  :func:`truncate_file` for extraction-safety and broken-download tests.
- RLE helpers, from :mod:`sa1b_cli.testing.masks`: :func:`column_mask` (a mask given
  per-column row intervals, built as COCO run lengths without a bitmap),
  :func:`encode_counts` / :func:`decode_counts` (the pycocotools ``rleToString`` /
  ``rleFrString`` string codec).

Each image draws ``masks_per_image`` masks from a pool of pre-encoded templates
rendered once per image size (:func:`~sa1b_cli.testing.masks.annotation_templates`),
so 10,000 images x 100 masks take seconds, not minutes. ``area`` and ``bbox`` are
exact (what pycocotools ``area``/``toBbox`` return); pycocotools itself is only used
by the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np
from PIL import Image

from sa1b_cli.testing.masks import MaskRLE, annotation_templates, column_mask, decode_counts, encode_counts

__all__ = [
    "HOSTILE_KINDS",
    "MaskRLE",
    "PartInfo",
    "column_mask",
    "decode_counts",
    "encode_counts",
    "make_annotation",
    "make_jpeg",
    "make_pair",
    "make_parts",
    "part_name",
    "random_part",
    "truncate_file",
    "write_hostile_tar",
    "write_image_ids",
    "write_md5sums",
    "write_part",
]

#: Kinds accepted by :func:`write_hostile_tar`.
HOSTILE_KINDS = ("absolute", "dotdot", "symlink", "hardlink", "device", "fifo")

#: mtime written into every tar member and gzip header, so output is reproducible.
FIXED_MTIME = 1_680_000_000
_SHUFFLE_BLOCK = 256  # pairs whose members are shuffled together (bounds memory)


# ------------------------------------------------------------------ image + json


def _rng(image_id: int, seed: int | None, salt: int) -> random.Random:
    """Cheap deterministic per-image RNG (numpy Generators cost ~30 us to seed)."""
    return random.Random(f"{image_id}:{seed or 0}:{salt}")


def make_annotation(image_id: int, *, width: int = 64, height: int = 48, masks_per_image: int = 5,
                    seed: int | None = None) -> bytes:
    """Annotation JSON for one image, exactly in the SA-1B schema (UTF-8 bytes)."""
    _check_size(width, height)
    pool = annotation_templates(width, height)
    picks = _rng(image_id, seed, 1).choices(pool, k=masks_per_image)
    base = image_id * max(1000, masks_per_image) + 1
    anns = ", ".join([f'{{"id": {base + k}, {t}' for k, t in enumerate(picks)])
    head = (f'{{"image_id": {image_id}, "width": {width}, "height": {height}, '
            f'"file_name": "sa_{image_id}.jpg"}}')
    return f'{{"image": {head}, "annotations": [{anns}]}}'.encode()


@lru_cache(maxsize=16)
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached coordinate ramps and a grain tile twice the image height (for offsets)."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    grain = np.random.default_rng([width, height]).random((height, width, 1), dtype=np.float32) * 2 - 1
    return xs, ys, np.concatenate([grain, grain])


def make_jpeg(image_id: int, *, width: int = 64, height: int = 48, seed: int | None = None,
              jpeg_quality: int = 85, noise: float = 12.0) -> bytes:
    """A real baseline JPEG: seeded gradient, a few rectangles and cached grain.

    ``noise`` is the grain amplitude (0 = smooth, tiny files; ~60 plus quality 95
    gives file sizes nearer real SA-1B images at the same resolution).
    """
    _check_size(width, height)
    r = _rng(image_id, seed, 2)
    xs, ys, grain = _grid(width, height)
    c = np.array([r.random() * 255 for _ in range(9)], dtype=np.float32).reshape(3, 3)
    img = c[0] + (c[1] - c[0]) * xs + (c[2] - c[0]) * ys
    if noise:
        shift = r.randrange(height)
        img += grain[shift:shift + height] * np.float32(noise)
    for _ in range(r.randint(1, 3)):
        x0, x1 = sorted((r.randint(0, width), r.randint(0, width)))
        y0, y1 = sorted((r.randint(0, height), r.randint(0, height)))
        img[y0:y1, x0:x1] = (r.random() * 255, r.random() * 255, r.random() * 255)
    np.clip(img, 0, 255, out=img)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8), "RGB").save(buf, "JPEG", quality=jpeg_quality)
    return buf.getvalue()


def make_pair(image_id: int, *, width: int = 64, height: int = 48, masks_per_image: int = 5,
              seed: int | None = None, jpeg_quality: int = 85, noise: float = 12.0) -> tuple[bytes, bytes]:
    """``(jpeg_bytes, json_bytes)`` for ``sa_<image_id>``.

    Deterministic per (image_id, seed); ``seed=None`` is the same as ``seed=0``.
    See :func:`make_jpeg` for ``noise``.
    """
    return (
        make_jpeg(image_id, width=width, height=height, seed=seed, jpeg_quality=jpeg_quality, noise=noise),
        make_annotation(image_id, width=width, height=height, masks_per_image=masks_per_image, seed=seed),
    )


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1 or width > 65500 or height > 65500:
        raise ValueError(f"bad image size {width}x{height}")


# ------------------------------------------------------------------------- tars


@dataclass
class PartInfo:
    """What :func:`write_part` wrote; ``md5``/``sha256`` are of the file on disk."""

    name: str
    path: Path
    size: int
    md5: str
    sha256: str
    n_pairs: int
    first_id: int
    last_id: int
    compressed: bool
    part_index: int

    @property
    def image_ids(self) -> range:
        return range(self.first_id, self.last_id + 1)


class _HashingWriter:
    """File wrapper that hashes (md5 + sha256) and counts what goes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def part_name(part_index: int) -> str:
    """``sa_000123.tar`` (the real parts are gzip despite the name)."""
    return f"sa_{part_index:06d}.tar"


def _member(name: str, size: int = 0, type_: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = type_
    ti.mtime = FIXED_MTIME
    ti.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


class _TarSink:
    """A tar stream to a file (optionally gzip), hashed on the fly."""

    def __init__(self, path: Path, compress: bool, compresslevel: int) -> None:
        self.path = path
        self.raw = open(path, "wb")
        self.hw = _HashingWriter(self.raw)
        self.gz = (gzip.GzipFile(filename="", mode="wb", fileobj=self.hw,
                                 compresslevel=compresslevel, mtime=FIXED_MTIME) if compress else None)
        self.tar = tarfile.open(fileobj=self.gz or self.hw, mode="w|",  # type: ignore[call-overload]
                                format=tarfile.GNU_FORMAT)
        self.tar.addfile(_member(".", type_=tarfile.DIRTYPE))

    def add(self, name: str, data: bytes) -> None:
        self.tar.addfile(_member(name, len(data)), io.BytesIO(data))

    def add_info(self, ti: tarfile.TarInfo, data: bytes | None = None) -> None:
        self.tar.addfile(ti, io.BytesIO(data) if data is not None else None)

    def close(self) -> _HashingWriter:
        self.tar.close()
        if self.gz is not None:
            self.gz.close()
        self.raw.close()
        return self.hw


def write_part(path: Path, part_index: int, n_pairs: int, *, first_image_id: int | None = None,
               compress: bool = True, width: int = 64, height: int = 48, masks_per_image: int = 5,
               seed: int | None = None, jpeg_quality: int = 85, noise: float = 12.0,
               compresslevel: int = 1) -> PartInfo:
    """Write one part tar like Meta's and return its :class:`PartInfo`.

    ``path`` is a directory (the file is named ``sa_{part_index:06d}.tar`` in it)
    or a full file path. Image ids are ``first_image_id .. +n_pairs-1``
    (default ``part_index * n_pairs + 1``, so ids rise with the part index).
    Members are shuffled within blocks of 256 pairs (seeded): the ``.jpg`` and
    ``.json`` of one image are usually far apart, as in real parts, while memory
    stays bounded for big benchmark parts. ``compresslevel`` defaults to 1:
    level 6 doubles generation time for no benefit to the tests (inflate speed
    is about the same).
    """
    path = Path(path)
    name = part_name(part_index)
    if path.is_dir():
        path = path / name
    first = part_index * n_pairs + 1 if first_image_id is None else first_image_id
    ids = list(range(first, first + n_pairs))
    order_rng = np.random.default_rng([part_index, seed or 0, 0x7A2])
    order_rng.shuffle(ids)
    sink = _TarSink(path, compress, compresslevel)
    try:
        for b in range(0, len(ids), _SHUFFLE_BLOCK):
            members: list[tuple[str, bytes]] = []
            for image_id in ids[b:b + _SHUFFLE_BLOCK]:
                jpg, js = make_pair(image_id, width=width, height=height, masks_per_image=masks_per_image,
                                    seed=seed, jpeg_quality=jpeg_quality, noise=noise)
                members.append((f"./sa_{image_id}.jpg", jpg))
                members.append((f"./sa_{image_id}.json", js))
            for i in order_rng.permutation(len(members)).tolist():
                sink.add(*members[i])
        hw = sink.close()
    except BaseException:
        sink.raw.close()
        raise
    return PartInfo(name=path.name, path=path, size=hw.size, md5=hw.md5.hexdigest(),
                    sha256=hw.sha256.hexdigest(), n_pairs=n_pairs, first_id=first,
                    last_id=first + n_pairs - 1, compressed=compress, part_index=part_index)


def random_part(directory: Path, index: int, megabytes: int, *, compress: bool = True) -> Path:
    """A part-shaped tar of incompressible members (``megabytes`` of them, 1 MiB each), big enough
    to be caught mid-transfer; gzip-compressed like Meta's unless ``compress=False``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sa_{index:06d}.tar"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("."), None)
        for member in range(megabytes):
            for suffix, size in ((".jpg", 1 << 20), (".json", 200)):
                info = tarfile.TarInfo(f"./sa_{index * 1000 + member}{suffix}")
                info.size = size
                tar.addfile(info, io.BytesIO(os.urandom(size)))
    data = gzip.compress(raw.getvalue(), compresslevel=1) if compress else raw.getvalue()
    path.write_bytes(data)
    return path


def make_parts(directory: Path, n_parts: int, pairs_per_part: int | Sequence[int], *, first_part: int = 0,
               **kw: object) -> list[PartInfo]:
    """Write parts ``first_part .. first_part+n_parts-1`` into ``directory``.

    ``pairs_per_part`` may be a sequence to give parts different sizes (real
    parts differ); ids are then consecutive across parts. With an int, part ``i``
    holds ids ``i * pairs_per_part + 1 ..`` exactly like :func:`write_part`'s default.
    ``kw`` goes to :func:`write_part`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = [pairs_per_part] * n_parts if isinstance(pairs_per_part, int) else list(pairs_per_part)
    if len(counts) != n_parts:
        raise ValueError("pairs_per_part has the wrong length")
    next_id = first_part * counts[0] + 1 if counts else 1
    parts = []
    for i, n in enumerate(counts):
        info = write_part(directory, first_part + i, n, first_image_id=next_id, **kw)  # type: ignore[arg-type]
        parts.append(info)
        next_id += n
    return parts


def tar_member_sizes(path: Path) -> list[tuple[str, int]]:
    """(name, size) of every regular file of a tar, in order, as Python's tarfile reads it: the independent
    reading a member list is compared with."""
    with tarfile.open(path) as archive:
        return [(m.name.removeprefix("./"), m.size) for m in archive if m.isreg()]


def write_md5sums(parts: Iterable[PartInfo], path: Path) -> Path:
    """Write ``<md5>  sa_000000.tar`` lines (``md5sum -c`` format, like the community list)."""
    path = Path(path)
    path.write_text("".join(f"{p.md5}  {p.name}\n" for p in parts))
    return path


def write_image_ids(parts: Iterable[PartInfo], path: Path) -> Path:
    """Write ``sa_images_ids.txt``: every image id, one integer a line."""
    path = Path(path)
    with open(path, "w") as f:
        for p in parts:
            f.write("".join(f"{i}\n" for i in p.image_ids))
    return path


# ------------------------------------------------------------- broken / hostile


def write_hostile_tar(path: Path, kind: str, *, compress: bool = True) -> str:
    """Write a part-like tar (``./``, one good pair ``sa_1``) plus one hostile member.

    Returns the hostile member's name. Kinds:
    ``absolute`` (``/tmp/sa1b_hostile_absolute.jpg``), ``dotdot``
    (``./../sa1b_hostile_dotdot.jpg``), ``symlink`` / ``hardlink``
    (``./sa_2.jpg`` -> ``/etc/passwd``), ``device`` (char device 1,3 as
    ``./sa_2.jpg``), ``fifo`` (``./sa_2.jpg``). A safe extractor must refuse or
    skip the member and never write outside its target directory.
    """
    if kind not in HOSTILE_KINDS:
        raise ValueError(f"unknown hostile kind {kind!r}; one of {HOSTILE_KINDS}")
    path = Path(path)
    sink = _TarSink(path, compress, 6)
    jpg, js = make_pair(1, width=16, height=12, masks_per_image=1)
    sink.add("./sa_1.jpg", jpg)
    sink.add("./sa_1.json", js)
    payload = b"hostile\n"
    if kind == "absolute":
        name = "/tmp/sa1b_hostile_absolute.jpg"
        sink.add(name, payload)
    elif kind == "dotdot":
        name = "./../sa1b_hostile_dotdot.jpg"
        sink.add(name, payload)
    else:
        name = "./sa_2.jpg"
        if kind == "symlink":
            sink.add_info(_member(name, 0, tarfile.SYMTYPE, linkname="/etc/passwd"))
        elif kind == "hardlink":
            sink.add_info(_member(name, 0, tarfile.LNKTYPE, linkname="/etc/passwd"))
        elif kind == "device":
            sink.add_info(_member(name, 0, tarfile.CHRTYPE, devmajor=1, devminor=3))
        else:
            sink.add_info(_member(name, 0, tarfile.FIFOTYPE))
    sink.close()
    return name


def truncate_file(path: Path, keep_bytes: int) -> Path:
    """Cut a file to ``keep_bytes`` (negative: drop that many from the end).

    Simulates an interrupted download or a short mirror copy.
    """
    path = Path(path)
    size = path.stat().st_size
    keep = keep_bytes if keep_bytes >= 0 else max(0, size + keep_bytes)
    os.truncate(path, min(keep, size))
    return path
