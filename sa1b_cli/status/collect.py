"""Where a long job stands, read from the state files alone.

``status`` takes no lock and never writes, so it can run at any time, on any host
sharing the ROOT, while downloads and extractions are running. Everything it reads
may be rewritten or removed under it (receipts renamed into place, aria2 control
files saved every few seconds, run files refreshed, partial files deleted when a
part completes); every read tolerates that and an unreadable file counts as absent.
Whether a part is downloaded, extracted or verified is the store's word
(:func:`sa1b_cli.store.parts.part_state` rules); status only adds what live runs say.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.links import PART_NAME, LinksFile
from sa1b_cli.status.model import EXPECTED_PAIRS, PartStatus, StatusReport
from sa1b_cli.store.knowledge import Knowledge, read_knowledge
from sa1b_cli.store.parts import PartState, Phase, StoreSnapshot, TarFile
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import ReceiptStore, Stage, VerifyReceipt
from sa1b_cli.store.runs import ActivePart, RunInfo, read_runs, scan


@dataclass
class _Snapshot:
    """Everything read from the store once, before any part is looked at: the store's own snapshot
    (receipts, failures, ``tars/``) and what status alone needs besides."""

    store: StoreSnapshot
    download_receipt_files: set[str]  # also receipts that prove nothing: the part was touched
    knowledge: Knowledge

    @classmethod
    def read(cls, paths: RootPaths) -> "_Snapshot":
        receipts = ReceiptStore(paths)
        return cls(StoreSnapshot.read(receipts), receipts.named(Stage.DOWNLOAD), read_knowledge(paths))

    def part_state(self, name: str) -> PartState:
        return self.store.state(name)


def collect_status(
    paths: RootPaths, links: LinksFile | None = None, expected: int = EXPECTED_PAIRS, now: float | None = None
) -> StatusReport:
    """Read receipts, failures, partial files, run files and what past runs learned into a report.

    The parts listed are the union of the job's part list (the links file when given, else the
    last one a download recorded) and every part named by a receipt, a failure record, a file in
    ``tars/`` or a live run.
    """
    now = time.time() if now is None else now
    snapshot = _Snapshot.read(paths)
    runs = read_runs(paths, now)
    active = {part.name: (run, part) for run in runs if not run.stale for part in run.active_parts}
    part_list = [e.name for e in links.parts] if links is not None else snapshot.knowledge.part_list
    names = _part_names(snapshot, links, part_list).union(active)
    parts = [_part_status(snapshot, name, active.get(name)) for name in sorted(names)]
    earliest, latest, source = _links_expiry(links, runs)
    return StatusReport(
        root=str(paths.root), now=datetime.fromtimestamp(now, tz=timezone.utc), expected_pairs=expected,
        parts=parts, runs=runs, links_path=links.path if links else None,
        links_expire_earliest=earliest, links_expire_latest=latest, links_expiry_source=source,
        tars_disk_bytes=_disk_usage(paths.tars), part_total=len(part_list) if part_list is not None else None,
        past_rate_bytes_per_s=snapshot.knowledge.recent_rate(),
    )


def _part_names(snapshot: _Snapshot, links: LinksFile | None, part_list: list[str] | None) -> set[str]:
    """The job's part list and every part some file names (a file in ``tars/`` only when it is named
    like a part or is an extra of the links file)."""
    known_extras = {e.name for e in links.extras} if links else set()
    store = snapshot.store
    on_disk = {n for n in store.tar_files | store.control_files if PART_NAME.match(n) or n in known_extras}
    return on_disk.union(snapshot.download_receipt_files, store.downloads, store.extracts, store.verifies,
                         *store.failed.values(), part_list or ())


def _part_status(snapshot: _Snapshot, name: str, active: tuple[RunInfo, ActivePart] | None) -> PartStatus:
    state = snapshot.part_state(name)
    phase = state.phase
    part = PartStatus(
        name=name, state=phase.value, downloaded=state.downloaded, download_problem=state.download_problem,
        download_failure=state.download_failure.reason if state.download_failure else None,
        extracted=state.extracted, extract_failure=state.extract_failure.reason if state.extract_failure else None,
    )
    if state.downloaded and state.download is not None:
        part.size = part.completed_bytes = state.download.size
        part.download_failure = None
        part.source = state.download.source
    elif active is not None:
        run, progress = active
        part.active_run, part.speed, part.source = run.tag, progress.speed, progress.source
        part.size, part.completed_bytes = progress.total, progress.completed
        if phase in (Phase.DOWNLOAD_FAILED, Phase.PARTIAL, Phase.UNCONFIRMED, Phase.PENDING):
            part.state = Phase.DOWNLOADING.value
    if not part.downloaded and state.tar.has_control_file and (part.completed_bytes is None or part.size is None):
        _fill_from_control_file(snapshot.store.receipts.paths, part, state.tar)
    if part.size is None and not part.downloaded:
        part.size = snapshot.knowledge.sizes.get(name, state.download.size if state.download else None)
    _add_stage_outcomes(part, state)
    return part


def _add_stage_outcomes(part: PartStatus, state: PartState) -> None:
    """What extraction and verification recorded of the part."""
    if state.extract is not None:
        part.extract_failure = None
        download = state.download
        part.images = state.extract.images if state.extract.images is not None else (download.images if download else None)
        part.annotations = (state.extract.annotations if state.extract.annotations is not None
                            else (download.annotations if download else None))
    if state.verify is not None:
        part.verified, part.verify_problems = _verify_outcome(state.verify)


def _verify_outcome(receipt: VerifyReceipt) -> tuple[bool, str | None]:
    """(ok, problem summary): the receipt's verdict, its status, problems_total and the first problem listed."""
    if receipt.ok:
        return True, None
    listed = receipt.problems
    total = receipt.problems_total or len(listed)
    parts = [receipt.status] if receipt.status else []
    if total:
        parts.append(f"{total} problem(s)" + (f", first: {listed[0]}" if listed else ""))
    return False, ": ".join(parts) or "problems found"


def _fill_from_control_file(paths: RootPaths, part: PartStatus, tar: TarFile) -> None:
    """Estimate a partial part's progress from aria2's control file, capped by the data file's size."""
    info = read_control_file(paths.control_file(part.name))
    if info is None:
        return
    part.size = part.size if part.size is not None else info.total_length
    if part.completed_bytes is None:
        part.completed_bytes = min(info.completed_length, tar.size or 0)


def _links_expiry(links: LinksFile | None, runs: list[RunInfo]) -> tuple[datetime | None, datetime | None, str | None]:
    """From the links file when given, else from the live runs, else from the latest stale run."""
    if links is not None:
        earliest, latest = links.expiry_range()
        return earliest, latest, f"links file {links.path}"
    live = [r for r in runs if not r.stale and r.links_expire_earliest is not None]
    if live:
        return (
            min(r.links_expire_earliest for r in live if r.links_expire_earliest),
            max((r.links_expire_latest or r.links_expire_earliest) for r in live if r.links_expire_earliest),
            "live run " + ", ".join(r.tag for r in live),
        )
    return _stale_run_expiry(runs)


def _stale_run_expiry(runs: list[RunInfo]) -> tuple[datetime | None, datetime | None, str | None]:
    stale = sorted((r for r in runs if r.links_expire_earliest is not None), key=lambda r: r.updated or 0.0)
    if not stale:
        return None, None, None
    last = stale[-1]
    return last.links_expire_earliest, last.links_expire_latest or last.links_expire_earliest, f"stale run {last.tag}"


def _disk_usage(directory: Path) -> int:
    """Bytes allocated to the files directly in ``directory``."""
    total = 0
    for entry in scan(directory):
        try:
            total += os.stat(directory / entry).st_blocks * 512
        except OSError:
            continue
    return total
