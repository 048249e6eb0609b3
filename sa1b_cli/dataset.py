"""Reading SA-1B in Python: samples from an export, the extracted layout, or the downloaded parts.

- :class:`ExportDataset` (map-style: ``len``, ``dataset[i]``) over an ``sa1b export`` folder: the wids
  index (``shardindex.json``) says how many samples each shard holds; a shard's member offsets are
  read from its tar headers the first time it is used, in each process on its own.
- :class:`ExtractedDataset` (map-style) over ``sa1b extract``'s layout, from the parts' manifests.
- :class:`PartsDataset` (iterable) over the downloaded parts themselves, each read once. Meta's parts
  hold an image's ``.jpg`` and ``.json`` far apart, so halves wait in memory for their pair (up to
  about half a part); for training, export first.

No torch dependency: the datasets are plain Python objects that pickle without open files, so a torch
``DataLoader`` with workers takes them as they are (``PartsDataset`` shares the parts out among the
workers when torch is there). Each :class:`Sample` gives the image bytes (``.image()``: a PIL image),
the annotation dict and, on request, the masks decoded to a numpy bool array
(:func:`sa1b_cli.export.masks.decode_masks`).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sa1b_cli.export.masks import decode_masks
from sa1b_cli.export.shards import WIDS_INDEX, read_range
from sa1b_cli.store.layout import PartFiles, part_file_locations
from sa1b_cli.store.parts import part_state
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ExtractReceipt, ReceiptStore
from sa1b_cli.tarwalk import TarReader, open_part_stream

_MEMBER = re.compile(r"^(sa_(\d{1,18}))\.(jpg|json)$")


@dataclass
class Sample:
    """One SA-1B image with its annotation (``masks`` filled when the dataset was asked to decode them)."""

    key: str  # "sa_123"
    jpg: bytes
    annotation: dict[str, Any]
    masks: np.ndarray | None = field(default=None, repr=False)

    @property
    def image_id(self) -> int:
        return int(self.key[3:])

    def image(self) -> Any:
        """The image as a PIL image (decoded now)."""
        from PIL import Image

        return Image.open(io.BytesIO(self.jpg))

    def decode_masks(self) -> np.ndarray:
        """(n, height, width) bool: every mask of the image, decoded now."""
        return decode_masks(self.annotation["annotations"])


def _sample(key: str, jpg: bytes, annotation: bytes, with_masks: bool) -> Sample:
    sample = Sample(key, jpg, orjson.loads(annotation))
    if with_masks:
        sample.masks = sample.decode_masks()
    return sample


class ExportDataset:
    """The samples of an ``sa1b export --format webdataset`` folder, in shard order."""

    def __init__(self, export_dir: str | os.PathLike[str], *, masks: bool = False) -> None:
        self.directory = Path(export_dir)
        self.masks = masks
        with open(self.directory / WIDS_INDEX, encoding="utf-8") as handle:
            index = json.load(handle)
        self.shards = [(str(s["url"]), int(s["nsamples"])) for s in index["shardlist"]]
        self.starts = [0]
        for _url, count in self.shards:
            self.starts.append(self.starts[-1] + count)
        self._members: dict[int, list[tuple[str, int, int, int, int]]] = {}

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = bisect_right(self.starts, index) - 1
        key, jpg_offset, jpg_size, json_offset, json_size = self._shard_members(shard)[index - self.starts[shard]]
        fd = os.open(self.directory / self.shards[shard][0], os.O_RDONLY | os.O_CLOEXEC)
        try:
            jpg, annotation = read_range(fd, jpg_offset, jpg_size), read_range(fd, json_offset, json_size)
        finally:
            os.close(fd)
        return _sample(key, jpg, annotation, self.masks)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_members": {}}  # each worker reads the headers it needs itself

    def _shard_members(self, shard: int) -> list[tuple[str, int, int, int, int]]:
        members = self._members.get(shard)
        if members is None:
            members = self._members[shard] = _pairs_of_shard(self.directory / self.shards[shard][0])
            if len(members) != self.shards[shard][1]:
                raise ValueError(f"{self.shards[shard][0]}: {len(members)} samples, the index says {self.shards[shard][1]}")
        return members


def _pairs_of_shard(path: Path) -> list[tuple[str, int, int, int, int]]:
    """(key, jpg offset, size, json offset, size) of each sample of a shard, from its headers alone."""
    pairs: list[tuple[str, int, int, int, int]] = []
    halves: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as handle:
        offset = 0
        while (block := handle.read(tarfile.BLOCKSIZE)) and block.strip(b"\0"):
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            match = _MEMBER.match(info.name)
            if match:
                halves[match.group(3)] = (offset + tarfile.BLOCKSIZE, info.size)
                if len(halves) == 2:
                    pairs.append((match.group(1), *halves["jpg"], *halves["json"]))
                    halves = {}
            offset += tarfile.BLOCKSIZE + info.size + (-info.size % tarfile.BLOCKSIZE)
            handle.seek(offset)
    return pairs


class ExtractedDataset:
    """The samples of ``sa1b extract``'s layout (any of parts/split/flat), part by part, by id within a part."""

    def __init__(self, root: str | os.PathLike[str], *, masks: bool = False) -> None:
        self.paths = RootPaths(Path(root))
        self.masks = masks
        self.items: list[tuple[PartFiles, str]] = []
        for name in sorted(ReceiptStore(self.paths).all(ExtractReceipt)):
            files = part_file_locations(self.paths, None, name)
            names = {entry.name for entry in files.entries() or []}
            ids = sorted(int(m.group(2)) for n in names if (m := _MEMBER.match(n)) and m.group(3) == "jpg")
            self.items.extend((files, f"sa_{i}") for i in ids if f"sa_{i}.json" in names)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        files, key = self.items[index]
        return _sample(key, files.path_of(f"{key}.jpg").read_bytes(), files.path_of(f"{key}.json").read_bytes(),
                       self.masks)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))


def _worker_share() -> tuple[int, int]:
    """(this DataLoader worker, how many): (0, 1) outside a DataLoader, or without torch."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return 0, 1
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class PartsDataset:
    """The samples of the downloaded parts (those with a download receipt that still holds), read once each."""

    def __init__(self, root: str | os.PathLike[str], *, masks: bool = False) -> None:
        self.paths = RootPaths(Path(root))
        self.masks = masks
        receipts = ReceiptStore(self.paths)
        self.parts = [name for name in sorted(receipts.all(DownloadReceipt))
                      if part_state(receipts, name).downloaded and self.paths.tar(name).exists()]

    def __iter__(self) -> Iterator[Sample]:
        worker, workers = _worker_share()
        for name in self.parts[worker::workers]:
            yield from self._part_samples(name)

    def _part_samples(self, name: str) -> Iterator[Sample]:
        waiting: dict[str, dict[str, bytes]] = {}
        with open(self.paths.tar(name), "rb") as raw:
            stream, compressed = open_part_stream(raw)
            with stream:
                reader = TarReader(stream, compressed=compressed)
                for member in reader.members():
                    match = None if member.is_dir else _MEMBER.match(member.name)
                    if match is None:
                        continue
                    halves = waiting.setdefault(match.group(1), {})
                    halves[match.group(3)] = reader.read(member)
                    if len(halves) == 2:
                        del waiting[match.group(1)]
                        yield _sample(match.group(1), halves["jpg"], halves["json"], self.masks)
                reader.finish()
