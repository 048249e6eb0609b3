"""Many hosts over one shared ROOT: sharded and unsharded `sa1b download --extract` runs at the same time,
and the Slurm array script.

Each process stands for a host: its own aria2c, its own run file, per-part locks in
the shared ROOT. Together they must fetch every part exactly once, never collide on
a file, and leave a ROOT that `status` and `verify` on any host see as complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sa1b_cli.errors import ExitStatus
from sa1b_cli.store.locks import PartLock
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults, RequestRecord
from sa1b_cli.testing.generator import PartInfo, make_parts
from sa1b_cli.testing.processes import sa1b_command, sa1b_env

REPO = Path(__file__).resolve().parents[1]
SLURM_SCRIPT = REPO / "scripts" / "sa1b-slurm.sh"
N_PARTS, PAIRS, SHARDS = 10, 6, 4
PART_SECONDS = 2.0  # each transfer is throttled to take about this long, so the runs overlap


def run_concurrently(commands: list[list[str]], timeout: float = 90) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sa1b_env()) for c in commands]
    done = []
    for command, proc in zip(commands, procs):
        stdout, stderr = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(command, proc.returncode, stdout, stderr))
    return done


def json_summary(result: subprocess.CompletedProcess[str]) -> dict:
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["type"] == "summary", record
    return record


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[PartInfo]:
    return make_parts(tmp_path_factory.mktemp("fleet_parts"), N_PARTS, PAIRS, masks_per_image=2, seed=7)


@pytest.fixture
def cdn(parts: list[PartInfo]) -> Iterator[FakeCDN]:
    with FakeCDN(parts[0].path.parent) as server:
        server.set_faults(None, Faults(rate_limit_bytes_per_s=max(p.size for p in parts) / PART_SECONDS))
        yield server


def body_gets(cdn: FakeCDN, name: str) -> list[RequestRecord]:
    return [r for r in cdn.requests_for(name) if r.method == "GET" and r.status in (200, 206)]


def assert_each_part_fetched_once(cdn: FakeCDN, parts: list[PartInfo]) -> None:
    """GET body bytes per part add up to its size: no part was transferred twice, not even in pieces."""
    for part in parts:
        gets = body_gets(cdn, part.name)
        assert gets, f"{part.name} was never fetched"
        assert sum(r.bytes_sent for r in gets) == part.size, (part.name, [(r.range_header, r.bytes_sent) for r in gets])
        assert sum(1 for r in gets if r.bytes_sent == part.size) <= 1


def assert_clean_shared_root(root: Path, parts: list[PartInfo]) -> None:
    """Every part has its receipts and files; no lock, temporary directory or run file is left behind."""
    paths = RootPaths(root)
    for part in parts:
        download = json.loads(paths.receipt("download", part.name).read_text())
        assert download["complete"] is True and download["sha256"] == part.sha256
        extract = json.loads(paths.receipt("extract", part.name).read_text())
        assert extract["images"] == extract["annotations"] == PAIRS
        assert len(list((root / "extracted" / part.name[:-4]).glob("sa_*.jpg"))) == PAIRS
    assert not [p.name for p in paths.locks.iterdir()], "locks left behind"
    assert not list(paths.tmp.iterdir()), "temporary extraction directories left behind"
    assert not list(paths.runs.iterdir()), "run files left behind"
    assert not list(paths.tars.glob("*.aria2")), "aria2 control files left behind"


def assert_any_host_sees_everything(root: Path) -> None:
    """`status` and `verify`, run afterwards as another host would, see every host's work."""
    status, verify = run_concurrently([
        sa1b_command("status", "-d", root, "--json"),
        sa1b_command("verify", "-d", root, "--expected", N_PARTS * PAIRS, "--deep", "--tars", "--json", "--jobs", "1"),
    ])
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout.strip().splitlines()[-1])
    # verify runs at the same time: a part it has finished already shows as "verified"
    counts = report["counts"]
    assert counts.get("extracted", 0) + counts.get("verified", 0) == N_PARTS and report["part_count"] == N_PARTS
    assert report["images_extracted"] == report["annotations_extracted"] == N_PARTS * PAIRS
    assert report["partial_bytes"] == 0 and not [r for r in report["runs"] if not r["stale"]]
    assert verify.returncode == ExitStatus.OK, verify.stdout[-3000:] + verify.stderr
    summary = json_summary(verify)
    assert summary["parts"] == N_PARTS and summary["statuses"] == {"ok": N_PARTS}
    assert summary["images"] == summary["annotations"] == summary["pairs_checked"] == N_PARTS * PAIRS


def test_four_shards_at_once_share_one_root_without_collisions(parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "segment_anything_links.txt")
    root = tmp_path / "shared_root"
    commands = [sa1b_command("download", links, "-d", root, "--shard", f"{k}/{SHARDS}", "--extract", "--json",
                             "--log-interval", "1") for k in range(SHARDS)]
    results = run_concurrently(commands)

    fetched_by: dict[str, int] = {}
    for shard, result in enumerate(results):
        assert result.returncode == 0, f"shard {shard}: {result.stderr}"
        summary = json_summary(result)
        mine = {p.name for p in parts if p.part_index % SHARDS == shard}
        assert set(summary["parts"]) == mine, f"shard {shard} worked outside its shard"
        for name, outcome in summary["parts"].items():
            assert outcome["status"] == "complete" and outcome["extracted"] is True, outcome
            fetched_by[name] = shard
    assert sorted(fetched_by) == [p.name for p in parts]
    assert_each_part_fetched_once(cdn, parts)
    first_get = {p.name: min(r.time for r in body_gets(cdn, p.name)) for p in parts}
    by_shard = [min(first_get[p.name] for p in parts if p.part_index % SHARDS == k) for k in range(SHARDS)]
    assert min(abs(a - b) for i, a in enumerate(by_shard) for b in by_shard[i + 1:]) < PART_SECONDS, \
        "the shards never downloaded at the same time: the test proves nothing about concurrency"
    assert_clean_shared_root(root, parts)
    assert_any_host_sees_everything(root)


def test_two_unsharded_runs_at_once_split_the_work_part_by_part(parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "segment_anything_links.txt")
    root = tmp_path / "shared_root"
    command = sa1b_command("download", links, "-d", root, "--extract", "--json", "--jobs", "3")
    results = run_concurrently([command, command])

    completed_by: dict[str, list[int]] = {p.name: [] for p in parts}
    for run, result in enumerate(results):
        assert result.returncode in (ExitStatus.OK, ExitStatus.LOCKED), f"run {run}: {result.stderr}"
        summary = json_summary(result)
        for name, outcome in summary["parts"].items():
            assert outcome["status"] in ("complete", "locked", "already"), outcome
            if outcome["status"] == "complete":
                assert outcome["extracted"] is True
                completed_by[name].append(run)
        locked = [n for n, o in summary["parts"].items() if o["status"] == "locked"]
        assert (result.returncode == ExitStatus.LOCKED) == bool(locked)
    assert all(len(runs) == 1 for runs in completed_by.values()), completed_by
    assert {runs[0] for runs in completed_by.values()} == {0, 1}, "one run did all the work: they did not share it"
    assert_each_part_fetched_once(cdn, parts)
    assert_clean_shared_root(root, parts)
    assert_any_host_sees_everything(root)


def test_slurm_array_script_shards_retries_a_locked_part_and_verifies(parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    """scripts/sa1b-slurm.sh as two array tasks; task 1 meets a part locked by another run, retries, finishes."""
    cdn.clear_faults()
    links = cdn.write_links(tmp_path / "segment_anything_links.txt")
    root = tmp_path / "shared_root"
    shim = tmp_path / "bin" / "sa1b"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sa1b_cli "$@"\n')
    shim.chmod(0o755)
    other_run = PartLock(RootPaths(root).lock("sa_000001.tar"))
    assert other_run.try_acquire() is None
    env = {**sa1b_env(), "SA1B_BIN": str(shim), "SA1B_RETRY_WAIT": "1", "SA1B_ROUNDS": "5", "SA1B_PARTS": f"0-{N_PARTS - 1}",
           "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2"}
    logs = [tmp_path / f"task{k}.log" for k in (0, 1)]
    tasks = [subprocess.Popen(["bash", str(SLURM_SCRIPT), str(links), str(root)], stdout=subprocess.DEVNULL,
                              stderr=log.open("w"), env={**env, "SLURM_ARRAY_TASK_ID": str(k)})
             for k, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + 60
        while "ended with exit 4" not in logs[1].read_text():
            assert tasks[1].poll() is None and time.monotonic() < deadline, logs[1].read_text()
            time.sleep(0.1)
        other_run.release()
        codes = [task.wait(timeout=90) for task in tasks]
    finally:
        other_run.release()
        for task in tasks:
            if task.poll() is None:
                task.kill()
                task.wait()
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    assert "round 1/5 ended with exit 4" in logs[1].read_text()
    assert "shard verified with exit 0" in logs[0].read_text() and "shard verified with exit 0" in logs[1].read_text()
    assert_each_part_fetched_once(cdn, parts)
    assert_clean_shared_root(root, parts)
