"""store.knowledge: every size, part list and run rate learned, kept across runs and hosts without a lost fact."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from sa1b_cli.store.atomic import atomic_write_json
from sa1b_cli.store.knowledge import KEPT_RUNS, known_sizes, read_knowledge, record_part_list, record_run_rate, record_sizes
from sa1b_cli.store.paths import RootPaths, host_tag

WRITERS = 4
SIZES_EACH = 50


def _record_in_another_process(root: Path, first: int) -> subprocess.Popen[bytes]:
    """A separate process (its own pid, so its own file) recording SIZES_EACH sizes one call at a time."""
    code = ("import sys; from pathlib import Path; from sa1b_cli.store.knowledge import record_sizes; "
            "from sa1b_cli.store.paths import RootPaths; paths = RootPaths(Path(sys.argv[1])); first = int(sys.argv[2])\n"
            f"for i in range(first, first + {SIZES_EACH}): record_sizes(paths, {{f'sa_{{i:06d}}.tar': 1000 + i}})")
    return subprocess.Popen([sys.executable, "-c", code, str(root), str(first)])


def test_concurrent_writers_lose_no_size_and_dead_writers_files_are_folded_in(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    writers = [_record_in_another_process(tmp_path, k * SIZES_EACH) for k in range(WRITERS)]
    for writer in writers:
        assert writer.wait(60) == 0
    expected = {f"sa_{i:06d}.tar": 1000 + i for i in range(WRITERS * SIZES_EACH)}
    assert known_sizes(paths) == expected

    record_sizes(paths, {"sa_000999.tar": 7})
    assert [p.name for p in paths.knowledge.glob("*.json")] == [f"{host_tag()}.json"], "dead writers' files folded in"
    assert known_sizes(paths) == {**expected, "sa_000999.tar": 7}


def test_newest_fact_wins_across_hosts_and_garbage_is_skipped(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    atomic_write_json(paths.knowledge / "other-host.invalid-12.json", {
        "host": "other-host.invalid", "sizes": {"sa_000001.tar": [111, 1.0], "sa_000002.tar": [222, 9e12]},
        "part_list": {"names": ["sa_000001.tar"], "time": 1.0},
        "runs": [{"run": "other-12", "ended": 5.0, "bytes": 4000, "seconds": 2.0}]})
    (paths.knowledge / "torn-1.json").write_text('{"sizes": {"sa_000003.tar": [3')
    atomic_write_json(paths.knowledge / "odd-2.json", {"sizes": {"sa_000004.tar": ["big", 1.0], "sa_000005.tar": 5},
                                                       "runs": [{"run": 1}], "part_list": "all"})
    record_sizes(paths, {"sa_000001.tar": 112, "sa_000002.tar": 221, "sa_000006.tar": None})
    record_part_list(paths, ["sa_000002.tar", "sa_000001.tar"])
    record_run_rate(paths, 6000, 1.0)
    record_run_rate(paths, 0, 3.0)
    knowledge = read_knowledge(paths)
    assert knowledge.sizes == {"sa_000001.tar": 112, "sa_000002.tar": 222}, "a later fact wins, an unknown size is none"
    assert knowledge.part_list == ["sa_000001.tar", "sa_000002.tar"]
    assert knowledge.recent_rate() == (4000 + 6000) / 3.0, "a run that moved nothing is not recorded"
    mine = json.loads((paths.knowledge / f"{host_tag()}.json").read_text())
    assert mine["host"] == socket.gethostname() and "other-12" not in json.dumps(mine), "another host's file stays its own"


def test_an_unwritable_state_folder_never_stops_the_caller(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    paths.state.mkdir()
    paths.knowledge.write_text("a file where the folder should be")
    record_sizes(paths, {"sa_000001.tar": 1})
    record_run_rate(paths, 10, 1.0)
    assert known_sizes(paths) == {}


def test_a_file_keeps_the_last_runs_only(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    for index in range(KEPT_RUNS + 5):
        record_run_rate(paths, 1000 * (index + 1), 1.0)
    knowledge = read_knowledge(paths)
    assert len(knowledge.runs) == KEPT_RUNS
    assert knowledge.recent_rate() == sum(1000 * (i + 1) for i in range(KEPT_RUNS, KEPT_RUNS + 5)) / 5.0
