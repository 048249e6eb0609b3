"""What a verify run checks: one unit per part (or one for shared folders no manifest accounts for),
each with where its files are, what it should hold, and its last verify receipt."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sa1b_cli.store.layout import PartFiles, extracted_dir, part_file_locations, read_layout
from sa1b_cli.store.parts import PartState, part_states, parts_under_root
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore, VerifyReceipt
from sa1b_cli.verify.arrivals import Arrivals, check_arrived_only, without_files
from sa1b_cli.verify.listing import Listing, list_folders, list_manifest, parse_name
from sa1b_cli.verify.results import ALL_UNIT, FULL_DATASET_PAIRS, FULL_DATASET_PARTS, MISSING, PartStatus, Problem, Problems

PART_FOLDER = re.compile(r"^sa_\d{6}$")


@dataclass
class Unit:
    """One part (or ``(all)``) to check, as planned in the parent."""

    name: str
    path: str  # the folder (or manifest) that stands for the part
    scan: tuple[Callable[..., Listing], tuple[Any, ...]] | None  # the listing task, None: no files
    image_dir: str = ""
    annotation_dir: str = ""
    status_without_files: PartStatus = MISSING
    note: str = ""  # without files: what there is of the part
    extracted_before: bool = False  # an extract receipt exists (so missing files were there once)
    awaited: bool = False  # not arrived yet in a check of what has arrived: no problem, more to come
    expected: int | None = None
    expected_from: str | None = None
    tar_path: str | None = None
    download: DownloadReceipt | None = None  # what the tar is compared with
    previous: VerifyReceipt | None = None  # the last verify receipt
    receipt_name: str | None = None  # where results are cached; None: not cached
    stamp_paths: list[str] = field(default_factory=list)  # folders (and manifest) whose stamp stands for the files


@dataclass
class Plan:
    units: list[Unit]
    layout: str | None
    expected_total: int | None
    problems: Problems
    arrived_only: bool = False  # only the parts that have arrived are checked
    arrived_reason: str = ""


DATASET_PARTS = frozenset(f"sa_{i:06d}.tar" for i in range(FULL_DATASET_PARTS))


def known_part_names(paths: RootPaths) -> list[str]:
    """Every part name a selection may use: the dataset's 1,000 and any found under ROOT."""
    return sorted(DATASET_PARTS | parts_under_root(ReceiptStore(paths)))


def job_part_names(paths: RootPaths, arrivals: Arrivals) -> list[str]:
    """What a verify without a selection covers: the parts of the links file a download last read
    (else the dataset's 1,000) and any found under ROOT."""
    job = DATASET_PARTS if arrivals.job_parts is None else set(arrivals.job_parts)
    return sorted(job | parts_under_root(ReceiptStore(paths)))


def present_part_names(paths: RootPaths) -> list[str]:
    """The parts ROOT holds anything of (what ``--expected`` without a selection checks)."""
    return sorted(parts_under_root(ReceiptStore(paths)))


def detect_layout(paths: RootPaths) -> str | None:
    """The recorded layout, else the one the folders show, else None (nothing extracted)."""
    recorded = read_layout(paths)
    if recorded:
        return recorded
    if (paths.root / "images").is_dir() or (paths.root / "annotations").is_dir():
        return "split"
    try:
        with os.scandir(extracted_dir(paths)) as entries:
            for entry in entries:
                if PART_FOLDER.match(entry.name) and entry.is_dir():
                    return "parts"
                if parse_name(entry.name):
                    return "flat"
    except (FileNotFoundError, NotADirectoryError):
        pass
    return None


def plan(paths: RootPaths, names: list[str], arrivals: Arrivals, *, selected: bool, expected: int | None,
         arrived: bool | None) -> Plan:
    """The units of a run over ``names`` (``selected``: named by the user, not the whole dataset).

    ``arrived``: check only the parts that have arrived (None: while a download runs or is unfinished,
    unless ``expected`` says what must be there). The dataset's 11,185,362 pairs are expected of a
    complete check of all its 1,000 parts; any other scope is held to what its parts' receipts record.
    """
    layout = detect_layout(paths)
    receipts = ReceiptStore(paths)
    states = part_states(receipts, names)
    arrived_only, reason = check_arrived_only(arrived, arrivals, states.values()) if expected is None else (False, "")
    units = [_part_unit(paths, layout, states[name], arrivals, arrived_only) for name in names]
    problems = Problems()
    if layout in ("split", "flat") and not any(u.scan for u in units):
        units.extend(_whole_folder_unit(paths, layout, receipts.read(VerifyReceipt, ALL_UNIT)))
    if layout in (None, "parts") and not selected:
        _extra_part_folders(paths, problems)
    whole_dataset = not selected and not arrived_only and DATASET_PARTS <= set(names)
    expected_total = expected if expected is not None else (FULL_DATASET_PAIRS if whole_dataset else None)
    return Plan(units, layout, expected_total, problems, arrived_only, reason)


def _part_unit(paths: RootPaths, layout: str | None, state: PartState, arrivals: Arrivals, arrived_only: bool) -> Unit:
    tar = paths.tar(state.name)
    has_tar = state.tar.size is not None or state.tar.has_control_file
    count, source = _expected_pairs(state)
    status, note = without_files(state, arrivals)
    unit = Unit(name=state.name, path=str(tar), scan=None, expected=count, expected_from=source,
                tar_path=str(tar) if has_tar else None, download=state.download, previous=state.verify,
                status_without_files=status, note=note, extracted_before=state.extracted)
    locations = part_file_locations(paths, layout or "parts", state.name)
    unit.image_dir, unit.annotation_dir = str(locations.image_dir), str(locations.annotation_dir)
    if layout in (None, "parts"):
        _scan_own_folder(unit, locations, state.extracted)
    elif state.extracted and locations.manifest.exists():
        unit.path = str(locations.manifest)
        unit.scan = (list_manifest, (unit.path, unit.image_dir, unit.annotation_dir, layout))
        unit.receipt_name = state.name
        unit.stamp_paths = list(dict.fromkeys([unit.path, unit.image_dir, unit.annotation_dir]))
    unit.awaited = arrived_only and unit.scan is None and not state.extracted
    if unit.awaited and not state.downloaded:
        unit.tar_path = None  # a tar still being written is no download to re-hash
    return unit


def _scan_own_folder(unit: Unit, locations: PartFiles, extracted: bool) -> None:
    """Layout ``parts``: the part's folder, against its manifest when extract wrote one."""
    unit.path = str(locations.folder)
    if not locations.folder.is_dir():
        return
    manifest = str(locations.manifest) if extracted and locations.manifest.exists() else None
    unit.scan = (list_folders, ([(unit.path, "both")], manifest))
    unit.receipt_name = unit.name
    unit.stamp_paths = [unit.path] + ([manifest] if manifest else [])


def _expected_pairs(state: PartState) -> tuple[int | None, str | None]:
    for receipt, source in ((state.extract, "extract receipt"), (state.download, "download receipt")):
        if receipt is not None and receipt.images is not None:
            return receipt.images, source
    return None, None


def _whole_folder_unit(paths: RootPaths, layout: str, previous: VerifyReceipt | None) -> list[Unit]:
    """Files in shared folders no manifest accounts for: check the folders as one unit."""
    folders = shared_folders(paths, layout)
    if not any(os.path.isdir(folder) for folder, _ in folders):
        return []
    return [Unit(name=ALL_UNIT, path=", ".join(f for f, _ in folders), scan=(list_folders, (folders, None)),
                 image_dir=folders[0][0], annotation_dir=folders[-1][0], previous=previous, receipt_name=ALL_UNIT,
                 stamp_paths=[f for f, _ in folders])]


def shared_folders(paths: RootPaths, layout: str) -> list[tuple[str, str]]:
    """The folders all parts share in layout ``split`` or ``flat``, each with what it accepts."""
    if layout == "split":
        return [(str(paths.root / "images"), "jpg"), (str(paths.root / "annotations"), "json")]
    return [(str(extracted_dir(paths)), "both")]


def _extra_part_folders(paths: RootPaths, problems: Problems) -> None:
    try:
        with os.scandir(extracted_dir(paths)) as entries:
            for entry in entries:
                if not (PART_FOLDER.match(entry.name) and entry.is_dir()):
                    problems.add(Problem(entry.path, "extra-file", "extra: not a part folder (sa_NNNNNN)"))
    except (FileNotFoundError, NotADirectoryError):
        pass
