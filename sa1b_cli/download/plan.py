"""The plan: per selected part, already downloaded, expired, missing, or to fetch from which source
(sizes from a HEAD request), and whether the disk holds it."""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from sa1b_cli.checksums import ChecksumList
from sa1b_cli.download.model import DownloadOptions, DownloadPlan, PartPlan, PlanAction
from sa1b_cli.download.reports import group_by_reason, group_line
from sa1b_cli.errors import DiskSpaceError, ExitStatus, UsageError
from sa1b_cli.events import Reporter
from sa1b_cli.links import LinkEntry, LinksFile
from sa1b_cli.probe import ProbeResult, probe_links
from sa1b_cli.sources import META, PartSources, part_sources, plan_sources
from sa1b_cli.store.parts import PartState, part_state
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import ReceiptStore


def plan_download(
    entries: list[LinkEntry], links: LinksFile, paths: RootPaths, options: DownloadOptions, reporter: Reporter,
) -> DownloadPlan:
    """Decide per part: already complete, expired, or to fetch (with its size from a HEAD request)."""
    _check_root_writable(paths)
    _check_list_covers(options.checksums, [e.name for e in entries], reporter)
    receipts = ReceiptStore(paths)
    states = {entry.name: part_state(receipts, entry.name) for entry in entries}
    parts = [_part_plan(entry, states[entry.name]) for entry in entries]
    sources = _sources_to_fetch(entries, parts, options)
    _settle_sources(entries, parts, sources, options, reporter)
    need, unknown = _space_needed(parts, states, paths, options)
    free = shutil.disk_usage(paths.root).free
    earliest, latest = _expiry_range(entries, links)
    return DownloadPlan(
        sources=sources,
        parts=parts,
        links_path=links.path,
        expires_earliest=earliest.isoformat() if earliest else None,
        expires_latest=latest.isoformat() if latest else None,
        free_bytes=free,
        need_bytes=need,
        unknown_sizes=unknown,
    )


def _part_plan(entry: LinkEntry, state: PartState) -> PartPlan:
    expires = entry.expires_at
    plan = PartPlan(entry.name, entry.redacted_url, expires.isoformat() if expires else None, PlanAction.FETCH)
    if state.downloaded and state.download is not None:
        plan.action, plan.size, plan.source = PlanAction.COMPLETE, state.download.size, state.download.source
    return plan


def _sources_to_fetch(entries: list[LinkEntry], parts: list[PartPlan], options: DownloadOptions) -> dict[str, PartSources]:
    """Each part to fetch with its sources in the order to try them; Meta's link only while it is usable."""
    now = time.time()
    fetching = {p.name for p in parts if p.action == PlanAction.FETCH}
    sources: dict[str, PartSources] = {}
    for entry in entries:
        if entry.name not in fetching:
            continue
        expires = entry.expires_at
        meta_usable = expires is None or expires.timestamp() > now + options.expiry_margin
        found = PartSources(entry.name, part_sources(entry, entry.name, options.mirrors, meta_usable=meta_usable),
                            link_expires=expires)
        if expires is not None and not meta_usable:
            found.passed.append(expired_reason(expires.timestamp(), now, options.expiry_margin))
            found.expired, found.state = True, "expired"
        sources[entry.name] = found
    return sources


def _settle_sources(entries: list[LinkEntry], parts: list[PartPlan], sources: dict[str, PartSources],
                    options: DownloadOptions, reporter: Reporter) -> None:
    """Probe Meta's links and the mirrors, then record per part its size, its source, or why it has none."""
    to_probe = [e for e in entries if e.name in sources and sources[e.name].state != "expired"]
    meta_results: dict[str, ProbeResult] = {}
    if to_probe:
        reporter.event("probe", f"checking {len(to_probe)} link(s) for sizes (HEAD)")
        meta_results = {result.name: result for result in probe_links(to_probe)}
    if options.mirrors and sources:
        reporter.event("probe", f"checking {len(options.mirrors)} mirror(s) for the parts Meta's links cannot serve")
    unreachable = _pass_over_an_unreachable_server(meta_results, sources, reporter)
    listed = options.checksums
    plan_sources(list(sources.values()), meta_results, lambda name: listed is not None and listed.covers(name),
                 bool(options.mirrors))
    for plan in parts:
        found = sources.get(plan.name)
        if found is None:
            continue
        plan.size, plan.source = found.size, found.serving
        if not found.sources:
            plan.action = (PlanAction.EXPIRED if found.expired else
                           PlanAction.UNREACHABLE if plan.name in unreachable else PlanAction.MISSING)
            plan.reason = found.reason


def _pass_over_an_unreachable_server(meta_results: dict[str, ProbeResult], sources: dict[str, PartSources],
                                     reporter: Reporter) -> set[str]:
    """When every probe failed to connect, Meta's server is down or cut off, not one link: say so now and
    go to the mirrors (or fail the parts at once). Retrying each part for minutes (--retries) is for faults
    of single requests. The parts passed over."""
    if not meta_results or not all(result.unreachable for result in meta_results.values()):
        return set()
    first = next(iter(meta_results.values()))
    reason = (f"server unreachable: every HEAD probe failed to connect ({first.message}); check the network, "
              "a proxy or a firewall, then run again")
    reporter.event("unreachable", f"{len(meta_results)} part(s): {reason}", level="error")
    for name in meta_results:
        sources[name].pass_over(reason, expired=False)
    return set(meta_results)


def _space_needed(parts: list[PartPlan], states: dict[str, PartState], paths: RootPaths,
                  options: DownloadOptions) -> tuple[int, int]:
    """Bytes the plan still needs on disk, and how many parts to fetch are of unknown size."""
    fetch = [p for p in parts if p.action == PlanAction.FETCH]
    for plan in parts:
        if plan.action in (PlanAction.FETCH, PlanAction.COMPLETE):
            plan.on_disk = _allocated_bytes(paths.tar(plan.name))
    need = sum(max(0, p.size - p.on_disk) for p in fetch if p.size is not None)
    unknown = sum(1 for p in fetch if p.size is None)
    return need + _extraction_needs(parts, states, options), unknown


def _extraction_needs(parts: list[PartPlan], states: dict[str, PartState], options: DownloadOptions) -> int:
    """With --extract, room for the extracted files: JPEGs do not compress, they take about what the part
    does; with --remove-tars only the parts extracting at once."""
    if not options.extract_layout:
        return 0
    if options.remove_tars:
        return max((p.size or 0 for p in parts), default=0) * max(1, options.jobs)
    wanted = (PlanAction.FETCH, PlanAction.COMPLETE)
    return sum(p.size or 0 for p in parts if p.action in wanted and not states[p.name].extracted)


def _allocated_bytes(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def _expiry_range(entries: list[LinkEntry], links: LinksFile) -> tuple[datetime | None, datetime | None]:
    """When the selected parts' links expire (the whole file's range when none of them says)."""
    selected = [e.expires_at for e in entries if e.expires_at is not None]
    if selected:
        return min(selected), max(selected)
    return links.expiry_range() if entries else (None, None)


def _check_list_covers(listed: ChecksumList | None, selected: list[str], reporter: Reporter) -> None:
    """A user's list for none of the selected parts is refused; one for only some: say which are not covered."""
    if listed is None or listed.is_reference:
        return
    missing = listed.uncovered(selected, "selected part(s)")
    if missing:
        reporter.event("checksums", f"{listed.origin} has no checksum for {len(missing)} of the {len(selected)} "
                       f"selected part(s) ({missing[0]}{' …' if len(missing) > 1 else ''}): those are checked by structure only",
                       level="warning")


def _check_root_writable(paths: RootPaths) -> None:
    """Refuse a ROOT we cannot write (read-only mount, a file in the way) before any request is made."""
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{paths.root}: cannot create the dataset ROOT here ({exc.strerror or exc})") from None
    if not paths.root.is_dir() or not os.access(paths.root, os.W_OK | os.X_OK):
        raise UsageError(f"{paths.root}: cannot write to the dataset ROOT (read-only or not permitted); choose another -d")


def check_disk_space(plan: DownloadPlan, options: DownloadOptions) -> None:
    """Refuse a plan that does not fit on the disk (unless told to ignore it)."""
    if options.ignore_disk_space or plan.need_bytes <= plan.free_bytes:
        return
    from sa1b_cli.console import human_bytes

    raise DiskSpaceError(
        f"not enough free space: the plan needs {human_bytes(plan.need_bytes)} more, "
        f"{human_bytes(plan.free_bytes)} free; free some space, select fewer parts (--parts/--shard) "
        f"or pass --ignore-disk-space"
    )


def plan_findings(plan: DownloadPlan, options: DownloadOptions) -> list[tuple[ExitStatus, str]]:
    """What would stop or fail the real run of this plan, each with the exit code it gives: a dry run
    warns of each and exits with the worst, as the run would."""
    findings: list[tuple[ExitStatus, str]] = []
    try:
        check_disk_space(plan, options)
    except DiskSpaceError as exc:
        findings.append((exc.exit_status, str(exc)))
    for action, status in ((PlanAction.MISSING, ExitStatus.PARTS_FAILED), (PlanAction.UNREACHABLE, ExitStatus.PARTS_FAILED),
                           (PlanAction.EXPIRED, ExitStatus.LINKS_EXPIRED)):
        for reason, names in group_by_reason((p.name, p.reason) for p in plan.parts if p.action == action):
            findings.append((status, group_line(names, reason or str(action))))
    return findings


def expired_reason(expires: float, now: float, margin: float) -> str:
    """Why a link is not used: expired, or expiring within the safety margin (on purpose: a part started
    that close to the expiry would be cut off by a 403 partway)."""
    when = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if expires <= now:
        return f"link expired {when}"
    return f"link expires {when}, within the {margin:.0f} s safety margin (deliberate: it would expire mid-transfer)"


def expiry_message(plan: DownloadPlan) -> str:
    """'links expire 2026-12-01 10:00 UTC (in 5d02h)' for the plan's selected parts."""
    from sa1b_cli.console import human_duration

    if not plan.expires_earliest:
        return "the links carry no expiry (no oe= parameter)"
    earliest = datetime.fromisoformat(plan.expires_earliest)
    left = earliest.timestamp() - time.time()
    when = earliest.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if left <= 0 and any(p.source != META for p in plan.to_fetch):
        return f"links expired at {when} ({human_duration(-left)} ago): the mirrors serve the parts"
    if left <= 0:
        return f"links expired at {when} ({human_duration(-left)} ago): get a fresh links file from Meta's download page"
    return f"links expire at {when} (in {human_duration(left)})"
