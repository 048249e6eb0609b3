"""Reading one part for an export: which of its samples the subset keeps, and where their bytes are.

A gzip part is inflated once through :mod:`sa1b_cli.tarwalk`; the members the subset keeps are
held, in the order they come, in memory while the run's budget has room (:mod:`.memory`), else in
one spill file (``OUT/.sa1b-export/parts/<part>.spill``). Meta's parts hold each image's ``.jpg``
and ``.json`` far apart, so the shards, which want them side by side and sorted, are written from
there afterwards. An extracted part needs neither: its files are read where they are.

The part's index (its kept samples with offsets and sizes) is written atomically once the spill is
on disk; an index file is the proof that the part was read, so a killed export reads again only
the parts without one, and those whose spill a shard still needs but which is gone (or was only
ever in memory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sa1b_cli.store.layout import PartFiles, part_file_locations
from sa1b_cli.export.memory import HeldMembers, MemoryBudget
from sa1b_cli.export.plan import SAMPLE_NAME, SOURCES, Sample, Subset
from sa1b_cli.export.shards import WRITEBACK_EVERY
from sa1b_cli.extract.disk import start_writeback
from sa1b_cli.store.atomic import atomic_write_json, read_json
from sa1b_cli.errors import UsageError
from sa1b_cli.store.parts import part_state
from sa1b_cli.store.paths import RootPaths, part_stem
from sa1b_cli.store.receipts import ReceiptStore
from sa1b_cli.tarwalk import TarReader, TarRefused, open_part_stream

TAR = "tar"
EXTRACTED = "extracted"
INDEX_VERSION = 1
OnFile = Callable[[int], None] | None  # called with each member's size as it is read (progress)


class PartUnreadable(Exception):
    """A part could not be read for the export (a refused or truncated tar, a missing file)."""


class Stopped(Exception):
    """The export was asked to stop while the part was read."""


@dataclass
class PartIndex:
    """What an export keeps of one part: its samples sorted by id, and what it left out."""

    part: str
    source: str  # TAR (bytes in the spill file) or EXTRACTED (the part's files)
    samples: list[Sample] = field(default_factory=list)
    listed_found: list[int] = field(default_factory=list)  # ids of --ids seen in the part
    unpaired: list[str] = field(default_factory=list)  # an image without annotation or the reverse
    other: int = 0  # members that are not sa_<id>.jpg / .json
    unreadable: list[str] = field(default_factory=list)  # annotations that are not JSON (mask filter)
    read_fraction: float | None = None  # the --sample draw the part was filtered by while read (None: none)
    held: HeldMembers | None = field(default=None, repr=False, compare=False)  # kept members in memory, not spilled

    def to_dict(self) -> dict[str, Any]:
        return {"version": INDEX_VERSION, "part": self.part, "source": self.source,
                "samples": [[s.image_id, s.jpg_offset, s.jpg_size, s.json_offset, s.json_size] for s in self.samples],
                "listed_found": self.listed_found, "unpaired": self.unpaired, "other": self.other,
                "unreadable": self.unreadable, "read_fraction": self.read_fraction}

    @classmethod
    def from_dict(cls, data: Any) -> "PartIndex | None":
        """The index read back; None when it is not one this version wrote (then the part is read again)."""
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return None
        try:
            part = str(data["part"])
            samples = [Sample(int(i), part, int(a), int(b), int(c), int(d)) for i, a, b, c, d in data["samples"]]
            return cls(part, str(data["source"]), samples, [int(i) for i in data["listed_found"]],
                       unpaired=[str(n) for n in data["unpaired"]], other=int(data["other"]),
                       unreadable=[str(n) for n in data["unreadable"]],
                       read_fraction=None if data["read_fraction"] is None else float(data["read_fraction"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class PartSource:
    """Where one part is read from: its tar (and the spill it is copied into) or its extracted files."""

    name: str
    kind: str
    tar: Path | None = None
    files: PartFiles | None = None

    def index_path(self, work: Path) -> Path:
        return work / "parts" / f"{part_stem(self.name)}.json"

    def spill_path(self, work: Path) -> Path:
        return work / "parts" / f"{part_stem(self.name)}.spill"

    def paths_of(self, sample: Sample, work: Path) -> tuple[Path, Path]:
        """(the file holding the image, the file holding the annotation)."""
        if self.kind == TAR:
            spill = self.spill_path(work)
            return spill, spill
        assert self.files is not None
        return self.files.path_of(f"sa_{sample.image_id}.jpg"), self.files.path_of(f"sa_{sample.image_id}.json")


def extracted_source(paths: RootPaths, name: str) -> PartSource | None:
    """The part's extracted files, when its extraction's manifest is there."""
    files = part_file_locations(paths, None, name)
    return PartSource(name, EXTRACTED, files=files) if files.entries() is not None else None


def choose_sources(paths: RootPaths, names: list[str], source: str) -> tuple[list[PartSource], list[dict[str, str]]]:
    """Each part's source (its checked tar, or its extracted files) and the parts that cannot be read.

    Only parts whose download receipt still holds (``part_state(...).downloaded``) are read; ``auto``
    reads the tar when it is there and the extracted files when the tar was removed after extraction.
    """
    if source not in SOURCES:
        raise UsageError(f"unknown --from {source!r}; one of {', '.join(SOURCES)}")
    receipts = ReceiptStore(paths)
    chosen: list[PartSource] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        state = part_state(receipts, name)
        if not state.downloaded:
            skipped.append({"part": name, "reason": state.download_problem or "no download receipt"})
            continue
        extracted = extracted_source(paths, name) if state.extracted and source != "tars" else None
        if source == "extracted" or (source == "auto" and state.tar.size is None):
            if extracted is None:
                skipped.append({"part": name, "reason": "not extracted (no extraction manifest)"})
                continue
            chosen.append(extracted)
        elif state.tar.size is not None:
            chosen.append(PartSource(name, TAR, tar=paths.tar(name)))
        else:
            skipped.append({"part": name, "reason": "its tar was removed"})
    return chosen, skipped


def load_index(source: PartSource, work: Path, subset: Subset, superset_ok: bool) -> PartIndex | None:
    """The part's index from an earlier run when it was read with ``subset``'s draw (or, ``superset_ok``,
    with none: it then holds more than asked, which ``--sample N`` chooses from anyway)."""
    index = PartIndex.from_dict(read_json(source.index_path(work)))
    if index is None or index.part != source.name or index.source != source.kind:
        return None
    if index.read_fraction != subset.fraction and not (superset_ok and index.read_fraction is None):
        return None
    return index


def read_part(source: PartSource, work: Path, subset: Subset, stop: threading.Event,
              on_file: OnFile = None, budget: MemoryBudget | None = None) -> PartIndex:
    """Read the part, keep what ``subset`` wants (``--sample N`` is applied later, over all parts),
    and write its index; ``on_file(nbytes)`` is called per member read. A tar's kept members are held
    in memory while ``budget`` has room (``index.held``), else spilled. Raises PartUnreadable."""
    if source.kind == TAR:
        index = _read_tar(source, work, subset, stop, on_file, budget)
    else:
        index = _read_extracted(source, subset, stop, on_file)
    atomic_write_json(source.index_path(work), index.to_dict())
    return index


def collect(part: str, subset: Subset, members: Iterable[tuple[str, int]]) -> PartIndex:
    """The part's index from its member list (names and sizes in tar order), as reading it would give it."""
    collector = _Collector(part, subset)
    offset = 0
    for name, size in members:
        wanted = collector.wanted(name)
        if wanted is not None:
            collector.add(*wanted, offset, size)
            offset += size
    return collector.finish(TAR)


class _Collector:
    """The halves of samples as members come in, in any order."""

    def __init__(self, part: str, subset: Subset) -> None:
        self.index = PartIndex(part, "")
        self.subset = subset
        self.halves: dict[int, dict[str, tuple[int, int]]] = {}
        self.dropped: set[int] = set()

    def wanted(self, name: str) -> tuple[int, str] | None:
        match = SAMPLE_NAME.match(name)
        if match is None:
            self.index.other += 1
            return None
        image_id = int(match.group(1))
        if self.subset.ids is not None and image_id in self.subset.ids and match.group(2) == "jpg":
            self.index.listed_found.append(image_id)
        if not self.subset.wants(image_id) or image_id in self.dropped:
            return None
        return image_id, match.group(2)

    def annotation(self, image_id: int, data: bytes, name: str) -> bool:
        """Apply the mask filter to an annotation's bytes; False when the sample is left out."""
        try:
            masks = len(orjson.loads(data)["annotations"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.index.unreadable.append(name)
            masks = -1
        if masks < 0 or not self.subset.masks_ok(masks):
            self.dropped.add(image_id)
            self.halves.pop(image_id, None)
            return False
        return True

    def add(self, image_id: int, kind: str, offset: int, size: int) -> None:
        if image_id not in self.dropped:
            self.halves.setdefault(image_id, {})[kind] = (offset, size)

    def finish(self, kind: str) -> PartIndex:
        index = self.index
        index.source = kind
        for image_id in sorted(self.halves):
            halves = self.halves[image_id]
            if "jpg" in halves and "json" in halves:
                (jpg_offset, jpg_size), (json_offset, json_size) = halves["jpg"], halves["json"]
                index.samples.append(Sample(image_id, index.part, jpg_offset, jpg_size, json_offset, json_size))
            else:
                index.unpaired.append(f"sa_{image_id}.{'json' if 'jpg' in halves else 'jpg'}")
        index.listed_found.sort()
        index.read_fraction = self.subset.fraction
        return index


def _read_tar(source: PartSource, work: Path, subset: Subset, stop: threading.Event, on_file: OnFile,
              budget: MemoryBudget | None) -> PartIndex:
    assert source.tar is not None
    collector = _Collector(source.name, subset)
    keeper = _Keeper(source.spill_path(work), budget)
    try:
        try:
            with open(source.tar, "rb") as raw:
                stream, compressed = open_part_stream(raw)
                with stream:
                    _walk(TarReader(stream, compressed=compressed), keeper, collector, stop, on_file)
            held = keeper.finish()
        except BaseException:
            keeper.abort()
            raise
    except TarRefused as exc:
        raise PartUnreadable(f"{source.name}: {exc}") from None
    except OSError as exc:
        raise PartUnreadable(f"{source.name}: cannot read or spill: {exc}") from None
    index = collector.finish(TAR)
    index.held = held
    return index


def _walk(reader: TarReader, keeper: _Keeper, collector: _Collector, stop: threading.Event,
          on_file: OnFile) -> None:
    for member in reader.members():
        if stop.is_set():
            raise Stopped()
        wanted = None if member.is_dir else collector.wanted(member.name)
        if wanted is not None:
            _keep_member(reader, member, keeper, wanted, collector)
        if on_file is not None and not member.is_dir:
            on_file(member.size)
    reader.finish()


class _Keeper:
    """Where a part's kept members go, in the order they come: memory while the run's budget has room,
    else (from the first member that does not fit on) the spill file, written back early and synced."""

    def __init__(self, spill: Path, budget: MemoryBudget | None) -> None:
        self.spill = spill
        self.held = HeldMembers(budget) if budget is not None else None
        self.fd = -1
        self.offset = self.flushed = 0
        if self.held is None:
            self._open_spill()

    def _open_spill(self) -> None:
        self.spill.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.spill, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def keep(self, reader: TarReader, member: Any, data: bytes | None) -> None:
        """Keep the member (``data``: its bytes when the caller read them already)."""
        if self.held is not None:
            data = reader.read(member) if data is None else data
            if self.held.keep(data):
                self.offset += len(data)
                return
            self._open_spill()  # over the budget: what is held moves to the spill, the rest follows it
            self.held.write_to(self.fd)
            self.held.release()
            self.held = None
        if data is None:
            reader.copy_to(member, self.fd)
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        self.offset += member.size
        if self.offset - self.flushed >= WRITEBACK_EVERY:
            start_writeback(self.fd)  # so that the sync at the end finds little left to write
            self.flushed = self.offset

    def finish(self) -> HeldMembers | None:
        """The members held in memory (None: they are in the spill, now on disk)."""
        if self.held is not None:
            self.spill.unlink(missing_ok=True)  # an earlier run's spill of this part, if any
            return self.held
        try:
            os.fdatasync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1
        return None

    def abort(self) -> None:
        if self.held is not None:
            self.held.release()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _keep_member(reader: TarReader, member: Any, keeper: _Keeper, wanted: tuple[int, str],
                 collector: _Collector) -> None:
    """Keep one member unless the mask filter drops its sample."""
    image_id, kind = wanted
    data = None
    if kind == "json" and collector.subset.needs_masks:
        data = reader.read(member)
        if not collector.annotation(image_id, data, member.name):
            return
    offset = keeper.offset
    keeper.keep(reader, member, data)
    collector.add(image_id, kind, offset, member.size)


def _read_extracted(source: PartSource, subset: Subset, stop: threading.Event, on_file: OnFile) -> PartIndex:
    assert source.files is not None
    collector = _Collector(source.name, subset)
    for entry in source.files.entries() or []:
        if stop.is_set():
            raise Stopped()
        if on_file is not None:
            on_file(entry.size)
        wanted = collector.wanted(entry.name)
        if wanted is None:
            continue
        image_id, kind = wanted
        if kind == "json" and subset.needs_masks:
            try:
                data = source.files.path_of(entry.name).read_bytes()
            except OSError as exc:
                raise PartUnreadable(f"{source.name}: {entry.name}: {exc}") from None
            if not collector.annotation(image_id, data, entry.name):
                continue
        collector.add(image_id, kind, 0, entry.size)
    return collector.finish(EXTRACTED)
