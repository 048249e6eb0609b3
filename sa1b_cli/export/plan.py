"""What an export writes: its settings, the subset of samples it keeps, and where shards are cut.

Everything here is a pure function of the settings and the samples seen, so an export killed and
run again plans exactly the same shards, and the receipt records enough to plan them once more.

- ``--sample FRACTION`` keeps an image when a keyed hash of (seed, image id) falls below the
  fraction: each image decides alone, so a part can be filtered while it is read, and the same
  seed keeps the same images whatever else is exported. ``--sample N`` keeps the N images whose
  hash is lowest (needs every candidate first).
- ``--ids FILE`` keeps exactly the images listed; ids not found in the parts read are reported.
- ``--min-masks/--max-masks`` keep images by the length of their ``annotations`` list.
- Samples are ordered by part (parts in number order) and by image id within a part; SA-1B's ids
  rise with the part number, so that is the order of image ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sa1b_cli.errors import InputFileError, UsageError

FORMATS = ("webdataset", "folders")
SOURCES = ("auto", "tars", "extracted")  # --from: the checked tars, the extracted files, or whichever is there
DEFAULT_SHARD_SIZE = 1 << 30
FOLDER_CHUNK_SAMPLES = 1000  # samples per resumable chunk of --format folders
TAR_BLOCK = 512
SAMPLE_NAME = re.compile(r"^sa_(\d{1,18})\.(jpg|json)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_ID_LINE = re.compile(r"^(?:sa_)?(\d{1,18})(?:\.(?:jpg|json))?$")


def parse_size(text: str) -> int:
    """``1G`` / ``500M`` / ``64KiB`` / ``1048576`` -> bytes (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--shard-size {text!r}: give bytes with an optional K, M, G or T suffix, e.g. 1G")
    value = float(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper())
    if value < TAR_BLOCK * 4:
        raise UsageError(f"--shard-size {text!r} is too small: a shard holds at least one sample")
    return int(value)


def parse_sample(text: str) -> tuple[float | None, int | None]:
    """``0.01`` or ``1%`` -> a fraction; ``500`` -> a count. (fraction, count), one of them None."""
    spec = text.strip()
    try:
        if spec.endswith("%"):
            fraction = float(spec[:-1]) / 100
        elif re.fullmatch(r"\d+", spec):
            count = int(spec)
            if count < 1:
                raise UsageError("--sample N needs N >= 1")
            return None, count
        else:
            fraction = float(spec)
    except ValueError:
        raise UsageError(f"--sample {text!r}: give a fraction (0.01), a percentage (1%) or a count (500)") from None
    if not 0 < fraction <= 1:
        raise UsageError(f"--sample {text!r}: a fraction must be above 0 and at most 1")
    return fraction, None


def read_ids_file(path: Path) -> list[int]:
    """Image ids of ``path``: one ``1234`` or ``sa_1234`` a line (blank lines and ``#`` comments skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(str(path), None, f"cannot read the id list: {exc}") from None
    ids: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        match = _ID_LINE.match(entry)
        if not match:
            raise InputFileError(str(path), number, f"{entry[:60]!r} is neither an image id nor sa_<id>")
        ids.append(int(match.group(1)))
    if not ids:
        raise InputFileError(str(path), None, "the id list holds no ids")
    return ids


def sample_key(seed: int, image_id: int) -> float:
    """A value in [0, 1) fixed by (seed, image id): the draw ``--sample`` compares with."""
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Subset:
    """Which samples an export keeps."""

    fraction: float | None = None
    count: int | None = None
    seed: int = 0
    ids: frozenset[int] | None = None
    min_masks: int | None = None
    max_masks: int | None = None

    @property
    def needs_masks(self) -> bool:
        return self.min_masks is not None or self.max_masks is not None

    def wants(self, image_id: int) -> bool:
        """Whether an image can be kept, before its annotation is read (``--sample FRACTION``, ``--ids``)."""
        if self.ids is not None and image_id not in self.ids:
            return False
        return self.fraction is None or sample_key(self.seed, image_id) < self.fraction

    def masks_ok(self, masks: int) -> bool:
        return (self.min_masks is None or masks >= self.min_masks) and (self.max_masks is None or masks <= self.max_masks)

    def chosen_by_count(self, candidates: Iterable[int]) -> set[int]:
        """The ``count`` candidates with the lowest draw (ties by id): ``--sample N``."""
        ranked = sorted(candidates, key=lambda image_id: (sample_key(self.seed, image_id), image_id))
        return set(ranked[: self.count])

    def describe(self) -> dict[str, Any]:
        """The subset as the receipt records it (the ids by count and digest, not one by one)."""
        data: dict[str, Any] = {"fraction": self.fraction, "count": self.count, "seed": self.seed,
                                "min_masks": self.min_masks, "max_masks": self.max_masks, "ids": None}
        if self.ids is not None:
            listed = "\n".join(map(str, sorted(self.ids))).encode()
            data["ids"] = {"count": len(self.ids), "sha256": hashlib.sha256(listed).hexdigest()}
        return data


@dataclass(frozen=True)
class Settings:
    """Everything that decides an export's bytes; two runs into one OUT must agree on all of it."""

    format: str
    parts: tuple[str, ...]
    subset: Subset = field(default_factory=Subset)
    shard_size: int | None = None
    samples_per_shard: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"unknown --format {self.format!r}; one of {', '.join(FORMATS)}")
        if self.shard_size is not None and self.samples_per_shard is not None:
            raise UsageError("give --shard-size or --samples-per-shard, not both")

    @property
    def chunk_samples(self) -> int | None:
        """Samples per shard (or per folder chunk); None: cut by size."""
        if self.format == "folders":
            return self.samples_per_shard or FOLDER_CHUNK_SAMPLES
        return self.samples_per_shard

    @property
    def chunk_bytes(self) -> int:
        return self.shard_size or DEFAULT_SHARD_SIZE

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["parts"] = list(self.parts)
        data["subset"] = self.subset.describe()
        data["shard_size"] = None if self.chunk_samples else self.chunk_bytes
        data["samples_per_shard"] = self.chunk_samples
        return data


@dataclass(frozen=True, slots=True)  # slots: a full export plans 11 million of them
class Sample:
    """One image and its annotation, where their bytes are (``source``: a part's spill file or folder)."""

    image_id: int
    part: str
    jpg_offset: int
    jpg_size: int
    json_offset: int
    json_size: int

    @property
    def tar_bytes(self) -> int:
        """What the sample takes in a tar: two headers and the padded data."""
        return 2 * TAR_BLOCK + _padded(self.jpg_size) + _padded(self.json_size)


def _padded(size: int) -> int:
    return size + (-size % TAR_BLOCK)


def shard_name(index: int) -> str:
    return f"sa1b-{index:06d}.tar"


class ShardCut:
    """Where shards end: ``samples_per_shard`` samples each, or as many as fit ``shard_size`` (at least one).
    Fed the samples in order, it says when the next one starts a new shard."""

    def __init__(self, settings: Settings) -> None:
        self.per_shard, self.limit = settings.chunk_samples, settings.chunk_bytes
        self.samples = 0
        self.size = 2 * TAR_BLOCK  # the end-of-archive blocks

    def starts_new(self, sample: Sample) -> bool:
        if not self.samples:
            return False
        full = self.samples >= self.per_shard if self.per_shard else self.size + sample.tar_bytes > self.limit
        if full:
            self.samples, self.size = 0, 2 * TAR_BLOCK
        return full

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.size += sample.tar_bytes
