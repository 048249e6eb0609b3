"""What the tool has learned about the job, kept across runs: part sizes, the part list, past runs' rates.

``status`` needs them to say how much is left (``of 1,000 parts``, bytes to fetch, an ETA between
runs) without a links file at hand. Sizes come from HEAD probes, aria2 and receipts; the part list
from the last links file a download read; rates from finished runs.

No two processes ever rewrite one file: each writes its own ``.sa1b/knowledge/<host>-<pid>.json``
(atomically, holding only facts the merged view lacked), and readers merge every file, the newest
fact winning. A writer folds the files of dead processes of its own host into its own file and then
removes them, so the folder stays small; their facts are in its file before they go.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from sa1b_cli.store.atomic import atomic_write_json, read_json
from sa1b_cli.store.locks import NAMESPACE, pid_alive
from sa1b_cli.store.paths import RootPaths, host_tag
from sa1b_cli.store.runs import as_float, as_int, scan

RATE_RUNS = 5  # the ETA between runs uses the average rate of this many last runs
KEPT_RUNS = 20  # a file keeps this many last runs (older ones tell nothing the ETA uses)


@dataclass(frozen=True)
class RunRate:
    """One finished download's bytes and time (its average rate)."""

    run: str
    ended: float
    transferred_bytes: int
    seconds: float


@dataclass
class Knowledge:
    """Every host's facts merged: ``sizes`` {part: bytes}, the last part list seen, finished runs."""

    sizes: dict[str, int] = field(default_factory=dict)
    size_times: dict[str, float] = field(default_factory=dict)
    part_list: list[str] | None = None
    part_list_time: float = 0.0
    runs: list[RunRate] = field(default_factory=list)

    def recent_rate(self, count: int = RATE_RUNS) -> float | None:
        """Bytes per second over the last ``count`` finished runs (None when none moved a byte)."""
        last = sorted(self.runs, key=lambda r: r.ended)[-count:]
        seconds = sum(r.seconds for r in last)
        moved = sum(r.transferred_bytes for r in last)
        return moved / seconds if seconds > 0 and moved > 0 else None

    def merge(self, record: dict[str, Any]) -> None:
        """Add one file's facts, keeping the newer of two sizes of a part and of two part lists."""
        sizes = record.get("sizes")
        for name, entry in (sizes.items() if isinstance(sizes, dict) else ()):
            self._merge_size(name, entry)
        listed = record.get("part_list")
        if isinstance(listed, dict) and isinstance(listed.get("names"), list):
            when = as_float(listed.get("time")) or 0.0
            if self.part_list is None or when >= self.part_list_time:
                self.part_list = [n for n in listed["names"] if isinstance(n, str)]
                self.part_list_time = when
        known = {(r.run, r.ended) for r in self.runs}
        for item in record.get("runs") if isinstance(record.get("runs"), list) else ():
            rate = _run_rate(item)
            if rate is not None and (rate.run, rate.ended) not in known:
                self.runs.append(rate)
                known.add((rate.run, rate.ended))

    def _merge_size(self, name: str, entry: Any) -> None:
        """``entry`` is [bytes, when learned]; the later of two facts wins."""
        if not isinstance(entry, list) or len(entry) != 2:
            return
        size, when = as_int(entry[0]), as_float(entry[1])
        if size is not None and when is not None and when >= self.size_times.get(name, -1.0):
            self.sizes[name], self.size_times[name] = size, when

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "host": socket.gethostname(), "namespace": NAMESPACE,
            "sizes": {name: [size, self.size_times[name]] for name, size in sorted(self.sizes.items())},
            "runs": [{"run": r.run, "ended": r.ended, "bytes": r.transferred_bytes, "seconds": r.seconds}
                     for r in sorted(self.runs, key=lambda r: r.ended)[-KEPT_RUNS:]],
        }
        if self.part_list is not None:
            record["part_list"] = {"names": self.part_list, "time": self.part_list_time}
        return record


def _run_rate(item: Any) -> RunRate | None:
    if not isinstance(item, dict) or not isinstance(item.get("run"), str):
        return None
    ended, moved, seconds = as_float(item.get("ended")), as_int(item.get("bytes")), as_float(item.get("seconds"))
    if ended is None or moved is None or seconds is None:
        return None
    return RunRate(item["run"], ended, moved, seconds)


def read_knowledge(paths: RootPaths) -> Knowledge:
    """Every readable knowledge file merged (torn or foreign files are skipped)."""
    merged = Knowledge()
    for path in _files(paths):
        record = read_json(path)
        if isinstance(record, dict):
            merged.merge(record)
    return merged


def known_sizes(paths: RootPaths) -> dict[str, int]:
    """Every part size any run learned: {part name: bytes}."""
    return read_knowledge(paths).sizes


def record_sizes(paths: RootPaths, sizes: Mapping[str, int | None]) -> None:
    """Keep part sizes learned now (HEAD probes, aria2, receipts); unknown (None) sizes are skipped."""
    merged = read_knowledge(paths)
    now = time.time()
    new = Knowledge()
    for name, size in sizes.items():
        if size is not None and merged.sizes.get(name) != size:
            new.sizes[name], new.size_times[name] = size, now
    if new.sizes:
        _publish(paths, new)


def record_part_list(paths: RootPaths, names: Iterable[str]) -> None:
    """Keep the part list of the links file a run read, so ``status`` says "of N" without it."""
    names = sorted(names)
    if read_knowledge(paths).part_list != names:
        _publish(paths, Knowledge(part_list=names, part_list_time=time.time()))


def record_run_rate(paths: RootPaths, transferred_bytes: int, seconds: float) -> None:
    """Keep a finished run's average rate (a run that moved nothing tells nothing and is skipped)."""
    if transferred_bytes > 0 and seconds > 0:
        _publish(paths, Knowledge(runs=[RunRate(host_tag(), time.time(), transferred_bytes, seconds)]))


def _files(paths: RootPaths) -> list[Path]:
    return [paths.knowledge / e for e in scan(paths.knowledge) if e.endswith(".json") and not e.startswith(".")]


def _publish(paths: RootPaths, new: Knowledge) -> None:
    """Add ``new`` to this process's file, folding in the files of dead processes of this host; best
    effort: what status shows must never stop a download."""
    mine = paths.knowledge / f"{host_tag()}.json"
    combined = Knowledge()
    absorbed = [path for path in _files(paths) if path != mine and _written_by_dead_process(path)]
    for path in [mine, *absorbed]:
        record = read_json(path)
        if isinstance(record, dict):
            combined.merge(record)
    combined.merge(new.to_record())
    try:
        atomic_write_json(mine, combined.to_record())
        for path in absorbed:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _written_by_dead_process(path: Path) -> bool:
    """A file of this host and pid namespace whose writer (``<host>-<pid>.json``) is gone."""
    host, _, pid = path.stem.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    record = read_json(path)
    return isinstance(record, dict) and record.get("namespace") == NAMESPACE and not pid_alive(int(pid))
