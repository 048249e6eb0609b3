"""The check of a finished part: read it to its end (or take the streaming check's result, or the
read of the extraction that unpacks it), compare it with the checksum list, write its receipt.

Only a receipt marks a part downloaded; it is written here and nowhere else. Runs in the run's
worker threads.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from sa1b_cli.download.active import ActivePart, Step
from sa1b_cli.download.model import DownloadOptions, Outcome, PartOutcome
from sa1b_cli.events import Reporter
from sa1b_cli.integrity import ArchiveError, PartCheck, StreamingCheck, check_part, hash_file
from sa1b_cli.links import PART_NAME, redact_url
from sa1b_cli.sources import copy_local
from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.store.atomic import Reservation
from sa1b_cli.store.members import write_member_list
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.parts import part_state
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore

EXTRACTION_FAILED = "downloaded, but extraction failed (see above)"
CHECK_FINDINGS = ("size", "md5", "sha256", "compressed", "members", "images", "annotations")  # a read's, as its receipt keeps them


class CheckStopped(Exception):
    """Raised inside a check when the run is being stopped."""


@dataclass(frozen=True)
class _Read:
    """How a part's check came about, as its receipt records it."""

    adopting: bool  # a file found in tars/ without aria2's control file
    streamed: bool = False
    extracting: bool = False


class PartChecker:
    """Checks parts for one run, writes their download receipts and, with ``--extract``, extracts them."""

    def __init__(self, paths: RootPaths, options: DownloadOptions, reporter: Reporter, stop: threading.Event) -> None:
        self.paths = paths
        self.receipts = ReceiptStore(paths)
        self.options = options
        self.reporter = reporter
        self.stop = stop

    def stop_check(self, _n: int) -> None:
        """Called for every block a check reads: ends it at once when the run stops."""
        if self.stop.is_set():
            raise CheckStopped()

    def want_md5(self, name: str) -> bool:
        """md5 only where the checksum list (or reference) gives one: sha256 identifies a part, md5 costs a
        quarter of a check's CPU."""
        return self.options.checksums is not None and self.options.checksums.wants_md5(name)

    def extraction_pending(self, name: str) -> bool:
        """With --extract: a part not extracted yet (never, or its extraction failed, was killed, ran out
        of space). Such a part is checked by the read that unpacks it (one read, not two)."""
        return (bool(self.options.extract_layout) and PART_NAME.match(name) is not None
                and not part_state(self.receipts, name).extracted)

    def copy_then_check(self, name: str, a: ActivePart) -> PartOutcome:
        """Copy a part from a local mirror (only what is missing), then check it."""
        source, tar, control = a.sources[0], self.paths.tar(name), self.paths.control_file(name)
        progress = read_control_file(control) if control.exists() else None
        a.expected_size = a.total = os.stat(source.location).st_size
        a.completed = progress.completed_length if progress is not None else 0

        def on_bytes(n: int) -> None:
            self.stop_check(n)
            a.completed += n
            a.fetched += n

        copy_local(source, tar, progress, on_bytes)
        control.unlink(missing_ok=True)
        a.step = Step.CHECKING
        return self.check(name, a, False)

    def check(self, name: str, a: ActivePart, adopting: bool) -> PartOutcome:
        """Read the part to its end, then write its receipt (and extract)."""
        stream, a.stream = a.stream, None
        size = self.paths.tar(name).stat().st_size
        if a.expected_size is not None and size != a.expected_size:
            if stream is not None:
                stream.abort()
            if adopting:
                return PartOutcome(name, Outcome.REFETCH, f"file is {size} bytes, the server has {a.expected_size}")
            return PartOutcome(name, Outcome.FAILED, f"size {size} differs from Content-Length {a.expected_size}")
        if stream is None and self.extraction_pending(name):
            # The extraction may fill the disk: its download receipt's space is taken first.
            reserved = Reservation(self.paths.receipt("download", name))
            try:
                extracted = self._check_while_extracting(name, a, adopting, reserved)
                return extracted if extracted is not None else self._read_and_accept(name, a, None, adopting, reserved)
            finally:
                reserved.release()
        return self._read_and_accept(name, a, stream, adopting, None)

    def _read_and_accept(self, name: str, a: ActivePart, stream: StreamingCheck | None, adopting: bool,
                         reserved: Reservation | None) -> PartOutcome:
        """Check a downloaded part by reading it (or take the streaming check's result), then accept it."""
        size = self.paths.tar(name).stat().st_size
        streamed = None if stream is None or adopting else stream.result(size)
        check = streamed if streamed is not None else self._read(name, a, adopting)
        if isinstance(check, PartOutcome):
            return check
        outcome = self._accept(name, a, check, _Read(adopting, streamed=streamed is not None), reserved)
        if outcome.status == Outcome.COMPLETE and self.options.extract_layout and PART_NAME.match(name):
            outcome.extracted = self.extract(name)
            if not outcome.extracted:
                outcome.reason = EXTRACTION_FAILED
        return outcome

    def _read(self, name: str, a: ActivePart, adopting: bool) -> PartCheck | PartOutcome:
        """Read the whole part now (adopted, or the streaming check could not be trusted); an outcome
        when its archive is damaged."""
        tar = self.paths.tar(name)
        if not name.endswith(".tar"):  # an extra such as sa_images_ids.txt: no structure to check, only hashes
            size, md5, sha256 = hash_file(tar, self.stop_check, md5=self.want_md5(name))
            return PartCheck(size=size, md5=md5, sha256=sha256, compressed=False)
        try:
            return check_part(tar, self.stop_check, md5=self.want_md5(name))
        except ArchiveError as exc:
            if a.mixed_with is not None:  # two sources whose bytes do not fit together: each alone next
                return PartOutcome(name, Outcome.FAILED, f"archive check failed: {exc}; {a.serving} disagree", wrong_bytes=True)
            if adopting or not a.refetched_damaged:  # damaged on the way, most likely: once more within this run
                a.refetched_damaged = a.refetched_damaged or not adopting
                return PartOutcome(name, Outcome.REFETCH, f"archive check failed: {exc}")
            return PartOutcome(name, Outcome.FAILED, f"archive check failed: {exc}")

    def _check_while_extracting(self, name: str, a: ActivePart, adopting: bool, reserved: Reservation) -> PartOutcome | None:
        """Check a part by unpacking it: the extraction's read hashes it and the download receipt is written
        from that read. None when the extraction did not get through: the caller then checks the part on
        its own and extracts it the ordinary way, which tells a corrupt download from a failed extraction."""
        from sa1b_cli.extract import INTERRUPTED, SourceCheck, extract_part

        accepted: list[PartOutcome] = []

        def accept(check: PartCheck) -> bool:
            accepted.append(self._accept(name, a, check, _Read(adopting, extracting=True), reserved))
            return accepted[-1].status == Outcome.COMPLETE

        result = extract_part(
            self.paths, name, self.options.extract_layout, self.reporter, lock_held=True,
            remove_tar=self.options.remove_tars, stop=self.stop, source_check=SourceCheck(accept, self.want_md5(name)),
        )
        if result.status == INTERRUPTED:
            raise CheckStopped()
        if not accepted:
            return None
        if accepted[-1].status != Outcome.COMPLETE:
            return accepted[-1]  # refused by the checksum list: failed, nothing extracted
        # The read got through and the receipt is written: the download is sound whatever the extraction did.
        accepted[-1].extracted = bool(result.ok)
        if not result.ok:  # said nowhere else: the extraction reports no event when it checks the source
            accepted[-1].reason = f"downloaded, but extraction failed: {result.message or result.status}"
        return accepted[-1]

    def _accept(self, name: str, a: ActivePart, check: PartCheck, read: _Read, reserved: Reservation | None) -> PartOutcome:
        """Compare a read part with the checksum list and write its download receipt."""
        listed = self.options.checksums
        mismatch = listed.mismatch(name, check.md5, check.sha256) if listed is not None else None
        if mismatch:
            return PartOutcome(name, Outcome.FAILED, f"{mismatch}; {a.serving} sent other bytes", wrong_bytes=True)
        receipt = DownloadReceipt(
            part=name,
            **{found: getattr(check, found) for found in CHECK_FINDINGS},
            url=redact_url(a.entry.url) if not a.sources or a.sources[0].is_meta else a.sources[0].shown,
            source=a.serving,
            content_length=a.expected_size,
            checksum_list_md5=listed.md5.get(name) if listed is not None else None,
            adopted=read.adopting,
            checked_while_downloading=read.streamed,
            checked_while_extracting=read.extracting,
        )
        if check.member_sizes:  # first: a receipt then comes with its list, unless the disk is full
            write_member_list(self.paths, name, check.size, check.sha256, check.member_sizes)
        self.receipts.write(receipt, reserved)
        return PartOutcome(name, Outcome.COMPLETE, size=check.size)

    def extract_only(self, name: str, size: int | None) -> PartOutcome:
        """Extract a part that an earlier run downloaded."""
        outcome = PartOutcome(name, Outcome.ALREADY, size=size, extracted=self.extract(name))
        if not outcome.extracted:
            outcome.reason = EXTRACTION_FAILED
        return outcome

    def extract(self, name: str) -> bool:
        from sa1b_cli.extract import extract_part

        result = extract_part(
            self.paths, name, self.options.extract_layout, self.reporter, lock_held=True,
            remove_tar=self.options.remove_tars, stop=self.stop,
        )
        return bool(result.ok)
