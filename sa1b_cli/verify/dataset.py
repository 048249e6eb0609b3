"""``verify_dataset``: plan, run and sum up a verify of the dataset under ROOT (``verify_directory`` for
one folder of pairs without receipts)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from sa1b_cli.checksums import ChecksumList, parse_checksums
from sa1b_cli.errors import UsageError
from sa1b_cli.events import NullReporter, Reporter
from sa1b_cli.links import PART_NAME
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.verify.deep import check_pairs
from sa1b_cli.verify.listing import list_folders, parse_name
from sa1b_cli.verify.arrivals import Arrivals, read_arrivals
from sa1b_cli.verify.plan import Plan, job_part_names, plan, present_part_names, shared_folders
from sa1b_cli.verify.pool import Run, RunOptions, make_executor, status_of
from sa1b_cli.verify.results import ALL_UNIT, DEEP, MISSING, QUICK, PartResult, Problem, VerifyReport


def verify_dataset(
    paths: RootPaths,
    *,
    parts: Sequence[str] | None = None,
    deep: bool = False,
    tars: bool = False,
    checksums: ChecksumList | Path | None = None,
    expected: int | None = None,
    jobs: int | None = None,
    force: bool = False,
    rescan: bool = False,
    arrived: bool | None = None,
    reporter: Reporter | None = None,
) -> VerifyReport:
    """Check the dataset under ``paths``; never changes dataset files (only verify receipts).

    ``parts``: part names to check (None: the whole dataset, or with ``expected``
    the parts present). ``checksums``: what ``tars`` compares the tars with (the community reference,
    or a user's list or its path, which implies ``tars``).
    ``rescan``: list every part's files even where its folders are unchanged since its
    verify receipt; ``force``: also read every file again (see the package docstring).
    ``arrived``: check only the parts that have arrived and report the others as awaited (exit 10 when
    all checked are sound); False: every part must be there; None: the first while a download runs on
    ROOT or is unfinished (``arrivals``), unless ``expected`` is given.
    Raises UsageError for bad part names or ``arrived`` with ``expected``, InputFileError for a bad checksum list or a user's list
    that names none of the tars to check (one naming only some: a warning event), LayoutError for a
    damaged layout record.
    """
    reporter = reporter or NullReporter()
    started = time.monotonic()
    if arrived and expected is not None:
        raise UsageError("--arrived checks what has arrived so far, --expected says what must all be there: give one")
    options = _options(deep, tars, checksums, force, rescan)
    arrivals = read_arrivals(paths)
    names = _names_to_check(paths, parts, expected, arrivals)
    planned = plan(paths, names, arrivals, selected=parts is not None, expected=expected, arrived=arrived)
    if options.checksums is not None and not options.checksums.is_reference:
        _check_coverage(options.checksums, [u.name for u in planned.units if u.tar_path is not None], reporter)
    jobs = max(1, jobs or os.cpu_count() or 1)
    report = VerifyReport(root=str(paths.root), layout=planned.layout, level=options.level, tars=options.tars,
                          expected_total=planned.expected_total, problems=planned.problems,
                          arrived_only=planned.arrived_only, arrived_reason=planned.arrived_reason)
    _announce_plan(paths, planned, len(names), options, jobs, reporter)
    report.parts = sorted(_run(paths, planned, options, jobs, reporter), key=lambda p: p.name)
    _total_problems(report)
    if parts is None:
        _files_of_no_part(paths, planned.layout, report)
    report.seconds = time.monotonic() - started
    return report


def _options(deep: bool, tars: bool, checksums: ChecksumList | Path | None, force: bool, rescan: bool) -> RunOptions:
    """A user's checksum list (not the community reference) implies ``tars``; without ``tars`` no list is compared with."""
    if isinstance(checksums, Path):
        checksums = parse_checksums(checksums)
    tars = tars or (checksums is not None and not checksums.is_reference)
    return RunOptions(deep=deep, tars=tars, force=force, rescan=rescan, checksums=checksums if tars else None)


def _names_to_check(paths: RootPaths, parts: Sequence[str] | None, expected: int | None,
                    arrivals: Arrivals) -> list[str]:
    """The parts named (checked for shape), else those present (with ``expected``), else the job's
    (the links file's parts, or all 1,000)."""
    if parts is not None:
        bad = [n for n in parts if not PART_NAME.match(n)]
        if bad:
            raise UsageError(f"not part names (sa_NNNNNN.tar): {', '.join(bad[:5])}")
        return sorted(set(parts))
    if expected is not None:
        return present_part_names(paths)
    return job_part_names(paths, arrivals)


def _announce_plan(paths: RootPaths, planned: Plan, parts: int, options: RunOptions, jobs: int,
                   reporter: Reporter) -> None:
    with_files = sum(u.scan is not None for u in planned.units)
    scope = (f"what has arrived ({planned.arrived_reason}): {with_files} of {parts} parts" if planned.arrived_only
             else f"{parts} parts")
    reporter.event("plan", f"verifying {scope} under {paths.root} (layout {planned.layout or 'none'}): "
                   f"{options.level} check{', tars' if options.tars else ''}, {jobs} job{'s' if jobs > 1 else ''}",
                   parts=parts, layout=planned.layout, check=options.level.value, tars=options.tars, jobs=jobs,
                   arrived_only=planned.arrived_only, arrived_reason=planned.arrived_reason)


def files_to_check(planned: Plan) -> int | None:
    """The files this run will check: two per pair its receipts record, over the units with files
    (None when one of them records no count); what the progress total counts against."""
    counts = [u.expected for u in planned.units if u.scan is not None]
    return None if any(c is None for c in counts) else 2 * sum(c for c in counts if c is not None)


def _run(paths: RootPaths, planned: Plan, options: RunOptions, jobs: int, reporter: Reporter) -> list[PartResult]:
    with make_executor(jobs) as executor:
        run = Run(executor, jobs, options, paths, reporter, files_to_check(planned))
        try:
            return run.run(planned.units)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise


def _check_coverage(listed: ChecksumList, tar_names: list[str], reporter: Reporter) -> None:
    """A user's list that names none of the tars to check is the wrong list (another dataset, another
    site's other parts, a typo): refuse it before any work. One that names only some: say so."""
    missing = listed.uncovered(tar_names, "part(s) whose tar is here to check")
    if missing:
        reporter.event("checksums", f"{listed.origin} has no checksum for {len(missing)} of the {len(tar_names)} tar(s) "
                       f"checked ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}): those are compared with "
                       "their download receipts only", level="warning", not_listed=missing)


def _total_problems(report: VerifyReport) -> None:
    """Dataset-level count: the pairs found in the checked scope against what it must hold."""
    expected = report.expected_total
    if expected is None:
        return
    for what, count in (("images", report.images), ("annotations", report.annotations)):
        if count != expected:
            report.problems.add(Problem(report.root, "count", f"{count:,} {what} in the checked parts, expected "
                                        f"{expected:,} ({count - expected:+,})"))


def _files_of_no_part(paths: RootPaths, layout: str | None, report: VerifyReport) -> None:
    """Shared split/flat folders checked part by part: name what is no SA-1B file; count SA-1B files
    no manifest lists.

    A plain listing (no ``stat``): the parts' own checks already stat every listed file.
    """
    per_part = any(p.level is not None and p.name != ALL_UNIT for p in report.parts)
    if layout not in ("split", "flat") or not per_part:
        return
    listed = {"jpg": report.images, "json": report.annotations}
    for folder, accepts in shared_folders(paths, layout):
        found = _sa1b_files_in(folder, accepts, report)
        for kind, what in (("jpg", "images"), ("json", "annotations")):
            if found[kind] > listed[kind]:
                report.problems.add(Problem(folder, "extra-file", f"extra: {found[kind] - listed[kind]:,} {what} here "
                                            "belong to no extracted part (in no extraction manifest)"))


def _sa1b_files_in(folder: str, accepts: str, report: VerifyReport) -> dict[str, int]:
    """Images and annotations in a shared folder; anything else there is an extra file of ``report``."""
    found = {"jpg": 0, "json": 0}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                parsed = parse_name(entry.name)
                kind = None if parsed is None else ("jpg" if parsed[0] else "json")
                if kind is None or accepts not in ("both", kind) or not entry.is_file():
                    why = "not an SA-1B image or annotation" if kind is None else f"not a .{accepts} file"
                    report.problems.add(Problem(entry.path, "extra-file", f"extra: {why}"))
                else:
                    found[kind] += 1
    except FileNotFoundError:
        pass
    return found


def verify_directory(folder: str | Path, annotation_folder: str | Path | None = None, *,
                     deep: bool = True) -> PartResult:
    """Check one folder of pairs in this process, without receipts (benchmarks, ad-hoc use)."""
    started = time.monotonic()
    image_dir = str(folder)
    annotation_dir = str(annotation_folder or folder)
    folders = [(image_dir, "both")] if annotation_dir == image_dir else [(image_dir, "jpg"), (annotation_dir, "json")]
    listing = list_folders(folders)
    result = PartResult(name=os.path.basename(image_dir.rstrip("/")), path=image_dir, level=DEEP if deep else QUICK,
                        images=listing.images, annotations=listing.annotations)
    result.problems.merge(listing.problems)
    if deep:
        checked = check_pairs(image_dir, annotation_dir, listing.paired)
        result.pairs_checked, result.masks_checked = checked.pairs, checked.masks
        result.problems.merge(checked.problems)
    result.status = status_of(result, True, MISSING)
    result.seconds = time.monotonic() - started
    return result
