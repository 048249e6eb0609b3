"""Which parts are still to come: the job's part list, the live downloads, and whether a verify checks
only what has arrived.

A nightly verify beside a download that takes weeks must not cry "missing" for parts nobody has
fetched yet. While a download runs on ROOT, or the links file a download read (kept in the store's
knowledge) names parts that are neither downloaded nor extracted, or a tar is only partly there, verify
checks the parts that have arrived and names the rest as awaited (exit 10). A finished download whose
files are missing stays a problem (exit 5).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sa1b_cli.store.knowledge import read_knowledge
from sa1b_cli.store.parts import PartState
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.runs import ActivePart, read_runs
from sa1b_cli.verify.results import DOWNLOADING, MISSING, NOT_EXTRACTED, PARTIAL, PartStatus


@dataclass(frozen=True)
class Arrivals:
    """What the store says is on its way: the live runs' parts and the job's part list."""

    live_runs: int  # download runs on ROOT whose run file is fresh
    live_parts: Mapping[str, ActivePart]  # the parts those runs are working on
    job_parts: tuple[str, ...] | None  # the parts of the links file a download last read (None: never)

    def pending_download(self, states: Collection[PartState]) -> list[str]:
        """The parts of ``states`` the job still has to fetch: partly there, or listed and neither
        downloaded nor extracted."""
        job = set(self.job_parts or ())
        return [s.name for s in states
                if s.partial or (s.name in job and not s.downloaded and not s.extracted)]


def read_arrivals(paths: RootPaths) -> Arrivals:
    """The live downloads (from their run files) and the job's part list (from the knowledge files)."""
    live = [run for run in read_runs(paths, time.time()) if not run.stale]
    part_list = read_knowledge(paths).part_list
    return Arrivals(len(live), {part.name: part for run in live for part in run.active_parts},
                    tuple(part_list) if part_list is not None else None)


def check_arrived_only(requested: bool | None, arrivals: Arrivals, states: Collection[PartState]) -> tuple[bool, str]:
    """(check only what has arrived?, why): as ``requested``, else while a download runs or the job
    still has parts to fetch."""
    if requested is not None:
        return requested, "asked for with --arrived" if requested else ""
    if arrivals.live_runs:
        return True, "a download is running on ROOT"
    pending = arrivals.pending_download(states)
    if pending:
        return True, f"the download is unfinished, {len(pending):,} part{'s' if len(pending) > 1 else ''} still to fetch"
    return False, ""


def without_files(state: PartState, arrivals: Arrivals) -> tuple[PartStatus, str]:
    """The verdict of a part with no files to check, and what there is of it."""
    live = arrivals.live_parts.get(state.name)
    if live is not None:
        done = f", {100 * live.completed / live.total:.0f}%" if live.completed is not None and live.total else ""
        return DOWNLOADING, f"a running download is working on it{done}"
    if state.downloaded and not state.tar_removed:
        return NOT_EXTRACTED, "downloaded but not extracted"
    if state.partial:
        changed = state.download_problem  # a tar that is no longer what its download receipt says
        return PARTIAL, f"no longer downloaded: {changed}" if changed else "partly downloaded (`sa1b download` resumes it)"
    return MISSING, "no extracted files and no tar"
