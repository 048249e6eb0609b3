"""Export straight into place: every shard planned from the parts' member lists before a byte is inflated,
then each part read once, every kept member written (``pwrite``) at its offset in its shard.

Meta's parts hold their members in random order and shards want them sorted, so without a plan a
part's kept bytes must wait somewhere (memory, or a spill file for a real 11 GB part) until the
part's end: written, synced, read back and deleted. The download check's member list
(:mod:`sa1b_cli.store.members`) gives every name and size up front, so the plan (samples, shard
cuts, each member's offset) is known first. Then the disk carries each byte once, as for
``sa1b extract``; parts are placed in parallel; nothing is held in memory.

A shard file is created at its final size (the gaps, tar padding and the end-of-archive blocks, are
zeros, as a tar's are). Once every part with samples in it is placed it is finished: md5 and sha256
read back (``integrity.hash_files``: from the page cache, usually; a part's shards side by side in SIMD
lanes), synced, renamed into place, then its record written. ``--format folders`` writes each member as its own file (hashed from the bytes as they
come) and a chunk's record once its parts are placed and the files flushed. A run killed at any point
keeps the shards (chunks) with a record; the next run writes the others again, from their parts,
byte for byte as an uninterrupted run would.

Used when every part is read from its tar with a member list matching its receipt, and no mask
filter needs the annotations' contents; otherwise :mod:`.read` reads the parts first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sa1b_cli.events import Reporter
from sa1b_cli.export.plan import TAR_BLOCK, Sample, Settings, ShardCut, shard_name
from sa1b_cli.export.read import TAR, OnFile, PartIndex, PartSource, PartUnreadable, Stopped, collect
from sa1b_cli.export.shards import (
    WRITEBACK_EVERY,
    ShardRecord,
    finished_record,
    folder_chunk_record,
    record_path,
    tar_header,
    write_folder_file,
)
from sa1b_cli.extract.disk import start_writeback, sync_filesystem
from sa1b_cli.integrity import hash_files
from sa1b_cli.store.atomic import atomic_write_json
from sa1b_cli.store.members import read_member_list
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore
from sa1b_cli.tarwalk import TarReader, TarRefused, open_part_stream

MAX_OPEN_PER_READER = 16  # shard files a reader keeps open (a part of 1 GB shards spans about 12)
_END_OF_ARCHIVE = 2 * TAR_BLOCK


@dataclass(frozen=True)
class Place:
    """Where one kept member goes: its shard, the offset of its header there, its name in the shard, its size."""

    shard: int
    offset: int  # 0 in a folder export (a file of its own)
    name: str  # in the shard, or (a folder export) the file's path under OUT
    size: int


@dataclass
class PlannedShard:
    """One shard of the plan: its samples, its size, the parts it is made of, and its record when an earlier
    run finished it."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    size: int = _END_OF_ARCHIVE
    parts: set[str] = field(default_factory=set)
    kept: ShardRecord | None = None


@dataclass
class Placement:
    """The whole export, planned: each part's index, the shards, and the shards still to write that each part
    to read has samples in (where its members go is worked out when it is read: for the whole dataset, a
    place per member held at once would take gigabytes)."""

    folders: bool  # --format folders: chunks of files rather than tar shards
    indices: dict[str, PartIndex]
    shards: list[PlannedShard]
    shards_of: dict[str, list[int]]  # parts to read -> numbers of their shards still to write
    members: dict[str, int]  # members of each part to read (the progress total)

    def places_for(self, part: str) -> dict[str, Place]:
        """Each member of ``part`` in a shard still to write, by its tar name: its header's offset there."""
        places: dict[str, Place] = {}
        for number in self.shards_of[part]:
            offset = 0
            for sample in self.shards[number].samples:
                if sample.part == part:
                    jpg, json = f"sa_{sample.image_id}.jpg", f"sa_{sample.image_id}.json"
                    if self.folders:
                        places[jpg] = Place(number, 0, f"images/{jpg}", sample.jpg_size)
                        places[json] = Place(number, 0, f"annotations/{json}", sample.json_size)
                    else:
                        places[jpg] = Place(number, offset, jpg, sample.jpg_size)
                        json_offset = offset + TAR_BLOCK + sample.jpg_size + (-sample.jpg_size % TAR_BLOCK)
                        places[json] = Place(number, json_offset, json, sample.json_size)
                offset += sample.tar_bytes
        return places


def plan(paths: RootPaths, sources: list[PartSource], settings: Settings, out: Path, work: Path) -> Placement | None:
    """The export planned from member lists; None when a part has none that matches its receipt, is read
    from its extracted files, or a mask filter must read the annotations. Raises ValueError when OUT holds a
    shard of this export's name and first sample whose samples differ (the export's state does not match)."""
    if settings.subset.needs_masks:
        return None
    receipts = ReceiptStore(paths)
    indices: dict[str, PartIndex] = {}
    members: dict[str, int] = {}
    for source in sources:
        receipt = receipts.read(DownloadReceipt, source.name) if source.kind == TAR else None
        listed = read_member_list(paths, receipt) if receipt is not None else None
        if listed is None:
            return None
        indices[source.name] = collect(source.name, settings.subset, listed.members)
        members[source.name] = len(listed.members)
    shards = _cut(settings, _chosen(settings, indices))
    for shard in shards:
        shard.kept = finished_record(out, work, shard.name, shard.samples[0].image_id)
        if shard.kept is not None and (shard.kept.samples, shard.kept.last_id) != (len(shard.samples),
                                                                                   shard.samples[-1].image_id):
            raise ValueError(f"{shard.name}: its record holds samples {shard.kept.first_id}..{shard.kept.last_id} "
                             f"({shard.kept.samples}), this export cuts {len(shard.samples)} up to "
                             f"{shard.samples[-1].image_id}")
    shards_of: dict[str, list[int]] = {}
    for number, shard in enumerate(shards):
        if shard.kept is None:
            for part in sorted(shard.parts):
                shards_of.setdefault(part, []).append(number)
    ordered = {name: shards_of[name] for name in indices if name in shards_of}  # parts are read in order
    return Placement(settings.format == "folders", indices, shards, ordered, {name: members[name] for name in ordered})


def _chosen(settings: Settings, indices: dict[str, PartIndex]) -> list[Sample]:
    """The samples the subset keeps, in export order (parts in order, ids within a part)."""
    samples = [sample for index in indices.values() for sample in index.samples]
    if settings.subset.count is None:
        return samples
    chosen = settings.subset.chosen_by_count(sample.image_id for sample in samples)
    return [sample for sample in samples if sample.image_id in chosen]


def _cut(settings: Settings, samples: Iterable[Sample]) -> list[PlannedShard]:
    cut = ShardCut(settings)
    shards: list[PlannedShard] = []
    for sample in samples:
        if not shards or cut.starts_new(sample):
            shards.append(PlannedShard(shard_name(len(shards))))
        cut.add(sample)
        shard = shards[-1]
        shard.samples.append(sample)
        shard.size += sample.tar_bytes
        shard.parts.add(sample.part)
    return shards


class _ShardFiles:
    """The shard files of a run, each created at its final size by the first part that writes to it. Nothing
    here holds a file open: readers keep their own few open (:class:`_OpenShards`), so a small
    ``--samples-per-shard`` (a thousand shards a part) does not run out of file descriptors."""

    def __init__(self, out: Path, shards: list[PlannedShard]) -> None:
        self.out, self.shards = out, shards
        self.created: set[int] = set()
        self.guard = threading.Lock()

    def temporary(self, number: int) -> Path:
        return self.out / f".{self.shards[number].name}.partial"

    def open(self, number: int) -> int:
        """A new descriptor of the shard for writing (the caller closes it)."""
        with self.guard:
            if number not in self.created:
                fd = os.open(self.temporary(number), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                self.created.add(number)
                try:
                    os.ftruncate(fd, self.shards[number].size)
                except BaseException:
                    os.close(fd)
                    raise
                return fd
        return os.open(self.temporary(number), os.O_RDWR | os.O_CLOEXEC)

    def start_writeback(self, number: int) -> None:
        fd = self.open(number)
        try:
            start_writeback(fd)
        finally:
            os.close(fd)

    def publish(self, number: int) -> None:
        """Sync the shard and rename it into place."""
        fd = self.open(number)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(self.temporary(number), self.out / self.shards[number].name)
        with self.guard:
            self.created.discard(number)

    def discard(self) -> None:
        """Delete every shard not published (a failed or interrupted run)."""
        with self.guard:
            for number in self.created:
                self.temporary(number).unlink(missing_ok=True)
            self.created.clear()


class _OpenShards:
    """The shard files one reader has open, at most MAX_OPEN_PER_READER (the least recently written closed
    first): a part spreads its members over all its shards in random order."""

    def __init__(self, files: _ShardFiles) -> None:
        self.files = files
        self.fds: OrderedDict[int, int] = OrderedDict()

    def fd(self, number: int) -> int:
        if number in self.fds:
            self.fds.move_to_end(number)
            return self.fds[number]
        if len(self.fds) >= MAX_OPEN_PER_READER:
            os.close(self.fds.popitem(last=False)[1])
        self.fds[number] = self.files.open(number)
        return self.fds[number]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class PlacedExport:
    """One run of a placement: parts placed by ``jobs`` threads, shards hashed and published as they fill."""

    def __init__(self, placement: Placement, sources: list[PartSource], out: Path, work: Path, jobs: int,
                 reporter: Reporter) -> None:
        self.placement, self.out, self.work, self.jobs, self.reporter = placement, out, work, jobs, reporter
        self.stop = threading.Event()  # set when the run fails or is interrupted: the readers end
        self.tars = {s.name: s.tar for s in sources}
        self.files = _ShardFiles(out, placement.shards)
        self.parts_read = self.shards_written = 0
        self.records: dict[int, ShardRecord] = {n: s.kept for n, s in enumerate(placement.shards) if s.kept is not None}
        self.written: dict[int, dict[str, str]] = {}  # a folder export's files written, by chunk: their sha256

    def run(self, on_file: OnFile) -> list[ShardRecord]:
        """Place every part still needed; the records of all shards, in order. Raises PartUnreadable, Stopped."""
        waiting = {n: set(s.parts) for n, s in enumerate(self.placement.shards) if s.kept is None}
        if self.placement.folders:
            (self.out / "images").mkdir(parents=True, exist_ok=True)
            (self.out / "annotations").mkdir(parents=True, exist_ok=True)
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="sa1b-export") as readers, \
                    ThreadPoolExecutor(self.jobs, thread_name_prefix="sa1b-hash") as hashers:
                # a part being placed (its name) or the shards it completed being hashed (their numbers)
                pending: dict[Future[Any], str | tuple[int, ...]] = {
                    readers.submit(self._place, part, on_file): part for part in self.placement.shards_of}
                try:
                    while pending:
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            what = pending.pop(future)
                            result = future.result()
                            if isinstance(what, str):
                                self._placed(what, waiting, hashers, pending)
                            else:
                                self._publish(what, result)
                except BaseException:
                    self.stop.set()
                    readers.shutdown(wait=True, cancel_futures=True)
                    hashers.shutdown(wait=True, cancel_futures=True)
                    raise
        except BaseException:
            self.files.discard()
            raise
        return [self.records[n] for n in range(len(self.placement.shards))]

    def _placed(self, part: str, waiting: dict[int, set[str]], hashers: ThreadPoolExecutor,
                pending: dict[Future[Any], str | tuple[int, ...]]) -> None:
        """A part is in place: hash the shards it completes, together (publish every folder chunk it completes)."""
        self.parts_read += 1
        index = self.placement.indices[part]
        self.reporter.event("part", f"{part}: {len(index.samples)} samples kept", part=part, samples=len(index.samples))
        complete: list[int] = []
        for number in self.placement.shards_of[part]:
            waiting[number].discard(part)
            if not waiting[number] and self.placement.folders:
                self._publish_chunk(number)
            elif not waiting[number]:
                self.files.start_writeback(number)  # the disk writes the rest while the hashes read it back
                complete.append(number)
        if complete:
            paths = [self.files.temporary(number) for number in complete]
            pending[hashers.submit(hash_files, paths, self.jobs)] = tuple(complete)

    def _publish(self, numbers: tuple[int, ...], hashed: list[tuple[int, str | None, str]]) -> None:
        """Publish shards, given ``hash_files``' (size, md5, sha256) of each."""
        for number, (_size, md5, sha256) in zip(numbers, hashed):
            shard = self.placement.shards[number]
            self.files.publish(number)
            record = ShardRecord(shard.name, len(shard.samples), shard.samples[0].image_id,
                                 shard.samples[-1].image_id, shard.size, md5, sha256)
            atomic_write_json(record_path(self.work, record.name), record.to_dict())
            self._published(number, record)

    def _publish_chunk(self, number: int) -> None:
        chunk = self.placement.shards[number]
        sync_filesystem(self.out)  # one flush per chunk rather than an fsync per file
        self._published(number, folder_chunk_record(self.work, chunk.name, chunk.samples, self.written.pop(number)))

    def _published(self, number: int, record: ShardRecord) -> None:
        self.records[number] = record
        self.shards_written += 1
        self.reporter.event("shard", f"{record.name}: {record.samples} samples published", shard=record.name,
                            samples=record.samples, bytes=record.size)

    def _place(self, part: str, on_file: OnFile) -> str:
        """Read one part, writing each member the plan places: at its offset in its shard (header, then data), or
        (a folder export) as its own file."""
        places = self.placement.places_for(part)
        tar = self.tars[part]
        assert tar is not None
        placed = unsynced = 0
        shards = _OpenShards(self.files)
        try:
            with open(tar, "rb") as raw:
                stream, compressed = open_part_stream(raw)
                with stream:
                    reader = TarReader(stream, compressed=compressed)
                    for member in reader.members():
                        if self.stop.is_set():
                            raise Stopped()
                        if member.is_dir:
                            continue
                        place = places.get(member.name)
                        if place is not None:
                            if member.size != place.size:
                                raise PartUnreadable(f"{part}: member {member.name!r} is {member.size} bytes, its member "
                                                     f"list says {place.size}; the part changed since its check "
                                                     "(sa1b verify --tars)")
                            if self.placement.folders:
                                digest = write_folder_file(self.out / place.name, reader.read(member))
                                self.written.setdefault(place.shard, {})[place.name] = digest
                            else:
                                fd = shards.fd(place.shard)
                                os.pwrite(fd, tar_header(place.name, place.size), place.offset)
                                reader.copy_to(member, fd, at=place.offset + TAR_BLOCK)
                                unsynced += member.size
                                if unsynced >= WRITEBACK_EVERY:
                                    start_writeback(fd)  # the disk works while the part is read; the sync finds little left
                                    unsynced = 0
                            placed += 1
                        if on_file is not None:
                            on_file(member.size)
                    reader.finish()
        except TarRefused as exc:
            raise PartUnreadable(f"{part}: {exc}") from None
        except OSError as exc:
            raise PartUnreadable(f"{part}: cannot read it or write its shards: {exc}") from None
        finally:
            shards.close()
        if placed != len(places):
            raise PartUnreadable(f"{part}: {len(places) - placed} members of its member list are not in the tar; "
                                 "the part changed since its check (sa1b verify --tars)")
        return part

