"""Which rows of the links file a run works on: ``--parts`` and ``--shard``.

Shards split by part number (``sa_000123`` goes to shard ``123 % N``), not by
position, so a host keeps the same parts when a fresh links file is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sa1b_cli.errors import UsageError
from sa1b_cli.links import PART_NAME, LinkEntry, LinksFile

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str | None, env: Mapping[str, str]) -> Shard | None:
    """``K/N`` (0-based K) or ``auto`` (Slurm array / Kubernetes indexed job, from ``env``: the cli passes the
    process environment in)."""
    if spec is None or spec == "":
        return None
    if spec.strip().lower() == "auto" or spec.strip().lower().startswith("auto/"):
        return _auto_shard(spec.strip(), env)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match:
        raise UsageError(f"--shard must be K/N (0 <= K < N) or 'auto', got {spec!r}")
    return _checked(int(match.group(1)), int(match.group(2)), spec)


def _checked(index: int, count: int, spec: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {spec}: need 0 <= K < N (K is 0-based)")
    return Shard(index, count)


def _auto_shard(spec: str, env: Mapping[str, str]) -> Shard:
    explicit_count = spec.partition("/")[2]
    if "SLURM_ARRAY_TASK_ID" in env:
        try:
            task = int(env["SLURM_ARRAY_TASK_ID"])
            low = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            count = int(explicit_count or env["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise UsageError(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is missing or not a number"
            ) from None
        return _checked(task - low, count, f"auto (Slurm task {task}, min {low}, count {count})")
    if "JOB_COMPLETION_INDEX" in env:
        raw_count = explicit_count or env.get("SA1B_SHARD_COUNT") or env.get("JOB_COMPLETIONS")
        if not raw_count:
            raise UsageError(
                "--shard auto: JOB_COMPLETION_INDEX is set but the number of shards is unknown; "
                "use --shard auto/N or set SA1B_SHARD_COUNT"
            )
        try:
            return _checked(int(env["JOB_COMPLETION_INDEX"]), int(raw_count), f"auto (index {env['JOB_COMPLETION_INDEX']})")
        except ValueError:
            raise UsageError("--shard auto: JOB_COMPLETION_INDEX and the shard count must be numbers") from None
    raise UsageError(
        "--shard auto: neither SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (Slurm array) "
        "nor JOB_COMPLETION_INDEX (Kubernetes indexed job) is set"
    )


def parse_parts_spec(spec: str, links: LinksFile) -> list[LinkEntry]:
    """Resolve ``0-9,15,sa_000020.tar,sa_images_ids.txt`` against the links file."""
    by_name = links.by_name()
    by_index = {e.part_index: e for e in links.entries if e.part_index is not None}
    chosen: dict[str, LinkEntry] = {}
    missing: list[str] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        for wanted, entry in _resolve_item(item, by_name, by_index):
            if entry is None:
                missing.append(wanted)
            else:
                chosen[entry.name] = entry
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise UsageError(f"--parts: not in the links file {links.path}: {shown}")
    if not chosen:
        raise UsageError(f"--parts {spec!r} selects nothing")
    return sorted(chosen.values(), key=lambda e: e.name)


def _resolve_item(item: str, by_name: dict[str, LinkEntry],
                  by_index: dict[int, LinkEntry]) -> list[tuple[str, LinkEntry | None]]:
    """(what was asked for, its row or None) for one item of a --parts spec: a range, a number or a name."""
    range_match = _RANGE.match(item)
    if range_match:
        low, high = int(range_match.group(1)), int(range_match.group(2))
        if low > high:
            raise UsageError(f"--parts: range {item!r} is backwards")
        return [(f"sa_{index:06d}.tar", by_index.get(index)) for index in range(low, high + 1)]
    if item.isdigit():
        return [(f"sa_{int(item):06d}.tar", by_index.get(int(item)))]
    name = item
    if name not in by_name and PART_NAME.match(name + ".tar"):
        name += ".tar"
    return [(item, by_name.get(name))]


def shard_of(entry_name: str, position: int, shard: Shard) -> bool:
    match = PART_NAME.match(entry_name)
    key = int(match.group(1)) if match else position
    return key % shard.count == shard.index


def select(links: LinksFile, parts_spec: str | None = None, shard: Shard | None = None) -> list[LinkEntry]:
    """The rows a run works on: all parts by default (extras only when named)."""
    entries = parse_parts_spec(parts_spec, links) if parts_spec else links.parts
    if shard is not None:
        entries = [e for pos, e in enumerate(entries) if shard_of(e.name, pos, shard)]
    return entries


def select_names(names: list[str], parts_spec: str | None, shard: Shard | None) -> list[str]:
    """Like ``select`` for commands without a links file (extract, verify).

    Parts named in ``parts_spec`` are selected even when ROOT has nothing of them yet,
    so the command can report them as not downloaded (or missing) instead of refusing.
    """
    known = set(names) | (set(_part_names_in_spec(parts_spec)) if parts_spec else set())
    stand_in = LinksFile(path="(parts on disk)", entries=[LinkEntry(n, "http://localhost/", 0) for n in sorted(known)])
    if parts_spec:
        chosen = [e.name for e in parse_parts_spec(parts_spec, stand_in)]
    else:
        chosen = sorted(names)
    if shard is not None:
        chosen = [n for pos, n in enumerate(chosen) if shard_of(n, pos, shard)]
    return chosen


def _part_names_in_spec(spec: str) -> list[str]:
    """The part file names that numbers, ranges and part names in ``spec`` stand for."""
    found: list[str] = []
    for raw in spec.split(","):
        item = raw.strip()
        range_match = _RANGE.match(item)
        if range_match:
            low, high = int(range_match.group(1)), int(range_match.group(2))
            found.extend(f"sa_{i:06d}.tar" for i in range(low, min(high, low + 1_000_000) + 1))
        elif item.isdigit():
            found.append(f"sa_{int(item):06d}.tar")
        elif PART_NAME.match(item) or PART_NAME.match(item + ".tar"):
            found.append(item if item.endswith(".tar") else item + ".tar")
    return found
