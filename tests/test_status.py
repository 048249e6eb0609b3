"""``sa1b status``: the job's state from receipts, failures, aria2 control files and run files."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sa1b_cli.cli import cli
from sa1b_cli.errors import ExitStatus
from sa1b_cli.integrity import check_part
from sa1b_cli.links import parse_links_text
from sa1b_cli.store.atomic import atomic_write_json
from sa1b_cli.store.knowledge import record_part_list, record_run_rate, record_sizes
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ExtractReceipt, ReceiptStore, Stage, VerifyReceipt
from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.status import EXPECTED_PAIRS, collect_status, map_rows
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo
from sa1b_cli.testing.processes import run_sa1b

PIECE = 1 << 20
PARTIAL_NAME = "sa_000005.tar"
PARTIAL_SIZE = 6 * PIECE


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _control_file(version: int, piece_length: int, total: int, done: list[int], info_hash: bytes = b"") -> bytes:
    """An aria2 control file as documented in aria2's "Control File" technical note."""
    order = ">" if version == 1 else "="
    pieces = -(-total // piece_length)
    bitfield = bytearray(-(-pieces // 8))
    for index in done:
        bitfield[index >> 3] |= 0x80 >> (index & 7)
    head = struct.pack(">H", version) + struct.pack(order + "II", 0, len(info_hash)) + info_hash
    body = struct.pack(order + "IQQI", piece_length, total, 0, len(bitfield)) + bytes(bitfield)
    return head + body + struct.pack(order + "I", 0)


@pytest.fixture(scope="session")
def aria2_partial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real partial download by aria2c (throttled loopback CDN, stopped with SIGTERM): (data, control)."""
    from aria2c import ARIA2C

    served = tmp_path_factory.mktemp("aria2_served")
    (served / PARTIAL_NAME).write_bytes(os.urandom(PARTIAL_SIZE))
    out = tmp_path_factory.mktemp("aria2_out")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with FakeCDN(served) as cdn:
        cdn.set_faults(None, Faults(rate_limit_bytes_per_s=2 * PIECE))
        command = [str(ARIA2C), "--no-conf", "-q", f"--dir={out}", f"--out={PARTIAL_NAME}", "--auto-save-interval=1",
                   "--file-allocation=none", "-x1", "-s1", cdn.signed_url(PARTIAL_NAME)]
        process = subprocess.Popen(command, env=env)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                data = out / PARTIAL_NAME
                if data.exists() and data.stat().st_size >= 2 * PIECE + PIECE // 2:
                    break
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)  # aria2c saves the control file on SIGTERM
            process.wait(15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert (out / f"{PARTIAL_NAME}.aria2").exists(), "aria2c left no control file"
    return out / PARTIAL_NAME, out / f"{PARTIAL_NAME}.aria2"


def _receipt_from_part(paths: RootPaths, part: PartInfo) -> dict:
    shutil.copyfile(part.path, paths.tar(part.name))
    check = check_part(paths.tar(part.name))
    receipt = DownloadReceipt(part=part.name, size=check.size, md5=check.md5, sha256=check.sha256,
                              compressed=check.compressed, members=check.members, images=check.images,
                              annotations=check.annotations, url="http://127.0.0.1/m1/v/t6/An.tar?oh=REDACTED")
    return ReceiptStore(paths).write(receipt).to_dict()


def _write_run(paths: RootPaths, tag: str, **fields: object) -> None:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time() - 600, "updated": time.time(),
              "command": "download", "links_expire_earliest": None, "links_expire_latest": None,
              "rate_bytes_per_s": 0.0, "completed_bytes": 0, "total_bytes": None, "active_parts": []}
    record.update(fields)
    atomic_write_json(paths.runs / f"{tag}.json", record)


def _links(names: list[str], expires: datetime) -> str:
    rows = "".join(f"{n}\thttps://scontent.xx.fbcdn.net/m1/v/t6/An{n}?oh=00_x&oe={int(expires.timestamp()):X}\n" for n in names)
    return "file_name\tcdn_link\n" + rows


# --------------------------------------------------------------------------- aria2 control files


def test_control_file_versions_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "c.aria2"
    total = 5 * PIECE + 1000  # the last piece is short
    for version in (0, 1):
        path.write_bytes(_control_file(version, PIECE, total, done=[0, 2, 5], info_hash=b"\x01" * 20))
        info = read_control_file(path)
        assert info is not None
        assert (info.version, info.piece_length, info.total_length) == (version, PIECE, total)
        assert (info.pieces_done, info.piece_count, info.completed_length) == (3, 6, 2 * PIECE + 1000)
    good = _control_file(1, PIECE, total, done=[1])
    for damaged in (good[:20], b"\x00\x07" + good[2:], good[:-6] + b"\xff"):
        path.write_bytes(damaged)
        assert read_control_file(path) is None
    assert read_control_file(tmp_path / "missing.aria2") is None


def test_real_aria2_control_file(aria2_partial: tuple[Path, Path]) -> None:
    data, control = aria2_partial
    info = read_control_file(control)
    assert info is not None and info.version == 1
    assert (info.piece_length, info.total_length, info.piece_count) == (PIECE, PARTIAL_SIZE, 6)
    assert 0 < info.pieces_done < 6
    assert info.completed_length == info.pieces_done * PIECE <= data.stat().st_size


# --------------------------------------------------------------------------- collect_status


def test_empty_root(tmp_path: Path) -> None:
    report = collect_status(RootPaths(tmp_path))
    assert report.parts == [] and report.runs == []
    assert report.images_extracted == 0 and report.fetched_bytes == 0
    assert report.remaining_bytes is None, "without --links the parts not started yet are unknown"
    assert report.eta == (None, "no download running")
    assert report.links_expire_earliest is None
    result = _run("status", "-d", str(tmp_path))
    assert result.exit_code == ExitStatus.OK
    assert "none found" in result.stdout
    assert f"0 of {EXPECTED_PAIRS:,} extracted (0.00%)" in result.stdout
    [record] = [json.loads(line) for line in _run("status", "-d", str(tmp_path), "--json").stdout.splitlines()]
    assert record["type"] == "status" and record["part_count"] == 0 and record["remaining_bytes"] is None


@pytest.fixture
def busy_root(tmp_path: Path, small_parts: list[PartInfo], aria2_partial: tuple[Path, Path]) -> tuple[RootPaths, dict]:
    """A ROOT in the middle of a job: every per-part state once, a links file for parts 0-9."""
    paths = RootPaths(tmp_path / "root")
    paths.tars.mkdir(parents=True)
    receipts = {p.name: _receipt_from_part(paths, p) for p in small_parts}
    store = ReceiptStore(paths)
    for part in small_parts[:2]:
        store.write(ExtractReceipt(part=part.name, images=part.n_pairs, annotations=part.n_pairs))
    store.write(VerifyReceipt(part=small_parts[0].name, ok=True, problems=[]))
    store.write(VerifyReceipt(part=small_parts[1].name, ok=False, status="corrupt", problems=["sa_5.json: bad RLE"], problems_total=3))
    store.write_failure(Stage.EXTRACT, small_parts[2].name, "truncated gzip stream at byte 1234")
    data, control = aria2_partial
    shutil.copyfile(data, paths.tar(PARTIAL_NAME))
    shutil.copyfile(control, paths.control_file(PARTIAL_NAME))
    store.write_failure(Stage.DOWNLOAD, "sa_000006.tar", "link expired (HTTP 403); get a fresh links file")
    paths.tar("sa_000007.tar").write_bytes(b"dropped in by hand")
    (paths.tars / ".sa_000008.tar.tmp").write_bytes(b"hidden temp file: ignored")
    expires = datetime.now(timezone.utc) + timedelta(days=12, hours=1)
    links_path = tmp_path / "links.txt"
    links_path.write_text(_links([f"sa_{i:06d}.tar" for i in range(10)] + ["sa_images_ids.txt"], expires))
    return paths, {"receipts": receipts, "links": links_path, "expires": expires}


def test_every_part_state(busy_root: tuple[RootPaths, dict], small_parts: list[PartInfo]) -> None:
    paths, facts = busy_root
    links = parse_links_text(facts["links"].read_text(), str(facts["links"]))
    report = collect_status(paths, links)
    states = {p.name: p.state for p in report.parts}
    assert states == {
        "sa_000000.tar": "verified",
        "sa_000001.tar": "verify problems",
        "sa_000002.tar": "extract failed",
        "sa_000003.tar": "pending",
        "sa_000004.tar": "pending",
        PARTIAL_NAME: "partial",
        "sa_000006.tar": "download failed",
        "sa_000007.tar": "unconfirmed",
        "sa_000008.tar": "pending",
        "sa_000009.tar": "pending",
    }, "extras of the links file are listed only once something was done with them"
    by_name = {p.name: p for p in report.parts}
    assert by_name["sa_000001.tar"].verify_problems == "corrupt: 3 problem(s), first: sa_5.json: bad RLE"
    assert by_name["sa_000002.tar"].extract_failure == "truncated gzip stream at byte 1234"
    assert by_name["sa_000006.tar"].download_failure.startswith("link expired")
    info = read_control_file(paths.control_file(PARTIAL_NAME))
    partial = by_name[PARTIAL_NAME]
    assert (partial.size, partial.completed_bytes) == (PARTIAL_SIZE, info.completed_length)
    assert partial.percent == pytest.approx(100 * info.completed_length / PARTIAL_SIZE)
    assert report.images_extracted == small_parts[0].n_pairs + small_parts[1].n_pairs
    assert report.annotations_extracted == report.images_extracted
    downloaded = sum(r["size"] for r in facts["receipts"].values())
    assert report.downloaded_bytes == downloaded
    assert report.fetched_bytes == downloaded + info.completed_length
    allocated = sum(f.stat().st_blocks * 512 for f in paths.tars.iterdir())
    assert report.tars_disk_bytes == allocated >= downloaded
    assert report.remaining_bytes is None and report.unknown_size_parts == 6
    assert report.remaining_known_bytes == PARTIAL_SIZE - info.completed_length
    assert report.links_expire_earliest == facts["expires"].replace(microsecond=0)
    assert report.links_expiry_source == f"links file {facts['links']}"


def test_cli_plain_json_and_all(busy_root: tuple[RootPaths, dict], small_parts: list[PartInfo]) -> None:
    paths, facts = busy_root
    root, links = str(paths.root), str(facts["links"])
    plain = _run("status", "-d", root, "--links", links)
    assert plain.exit_code == ExitStatus.OK
    out = plain.stdout
    assert "10: 1 verified, 1 verify problems, 1 extract failed, 1 download failed, 1 partial, 1 unconfirmed, 4 pending" in out
    assert f"{2 * 4} of {EXPECTED_PAIRS:,} extracted" in out
    assert "in 12 days" in out and "from links file" in out
    partial_line = next(line for line in out.splitlines() if line.startswith(PARTIAL_NAME))
    assert "partial" in partial_line and "%" in partial_line
    assert "extract: truncated gzip stream" in out and "download: link expired" in out
    assert "sa_000003.tar" not in out and "sa_000000.tar" not in out, "without --all only parts needing attention"
    everything = _run("status", "-d", root, "--links", links, "--all", "--expected", "24").stdout
    assert "sa_000003.tar" in everything and "sa_000000.tar" in everything
    assert "8 of 24 extracted (33.33%)" in everything

    [record] = [json.loads(line) for line in _run("status", "-d", root, "--links", links, "--json").stdout.splitlines()]
    assert record["type"] == "status"
    assert record["counts"]["pending"] == 4 and record["counts"]["verified"] == 1
    assert record["images_extracted"] == 8 and record["unknown_size_parts"] == 6
    assert {p["name"]: p["state"] for p in record["parts"]}[PARTIAL_NAME] == "partial"


def test_fresh_run_file_gives_progress_rate_eta_and_expiry(busy_root: tuple[RootPaths, dict]) -> None:
    paths, _facts = busy_root
    expire = datetime(2026, 8, 6, 6, 7, 50, tzinfo=timezone.utc)
    _write_run(paths, "here-1", rate_bytes_per_s=2_000_000.0, completed_bytes=4_000_000, total_bytes=10_000_000,
               links_expire_earliest=expire.isoformat(), links_expire_latest=(expire + timedelta(hours=2)).isoformat(),
               active_parts=[{"name": PARTIAL_NAME, "completed": 5_000_000, "total": PARTIAL_SIZE, "speed": 1_500_000.0},
                             {"name": "sa_000004.tar", "completed": 0, "total": None, "speed": 0.0},
                             {"name": "sa_000003.tar", "completed": 0, "total": None, "speed": 0.0, "status": "queued"}])
    report = collect_status(paths)
    [run] = report.runs
    assert not run.stale and run.eta_seconds == pytest.approx(3.0)
    by_name = {p.name: p for p in report.parts}
    partial = by_name[PARTIAL_NAME]
    assert partial.state == "downloading" and partial.active_run == "here-1"
    assert (partial.completed_bytes, partial.size) == (5_000_000, PARTIAL_SIZE), "the run file beats the control file"
    assert "sa_000003.tar" not in by_name, "a queued entry is not an active part"
    assert (by_name["sa_000004.tar"].state, by_name["sa_000004.tar"].percent) == ("downloading", None)
    assert report.rate_bytes_per_s == 2_000_000.0
    assert report.eta == (pytest.approx(3.0), "running downloads only; other parts' sizes unknown")
    assert (report.links_expire_earliest, report.links_expire_latest) == (expire, expire + timedelta(hours=2))
    assert report.links_expiry_source == "live run here-1"
    out = _run("status", "-d", str(paths.root)).stdout
    assert "download, updated" in out and "in run here-1 at 1.4 MiB/s" in out
    assert "? %" in next(line for line in out.splitlines() if line.startswith("sa_000004.tar"))


def test_stale_runs_are_shown_but_not_counted(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    expire = datetime(2026, 8, 6, tzinfo=timezone.utc)
    _write_run(paths, "old-1", updated=time.time() - 600, rate_bytes_per_s=5e6, links_expire_earliest=expire.isoformat(),
               active_parts=[{"name": "sa_000001.tar", "completed": 10, "total": 100, "speed": 1.0}])
    _write_run(paths, "dead-2", pid=dead.pid, rate_bytes_per_s=5e6)
    _write_run(paths, "other-3", host="another-host.invalid", pid=dead.pid, rate_bytes_per_s=1e6)
    report = collect_status(paths)
    runs = {r.tag: r for r in report.runs}
    assert runs["old-1"].stale and runs["old-1"].stale_reason.startswith("not updated for 6")
    assert runs["dead-2"].stale and runs["dead-2"].stale_reason == f"process {dead.pid} is gone"
    assert not runs["other-3"].stale, "a pid on another host cannot be checked; a fresh update counts"
    assert report.rate_bytes_per_s == 1e6
    assert report.parts == [], "parts of a stale run are not downloading"
    assert (report.links_expire_earliest, report.links_expiry_source) == (expire, "stale run old-1")
    out = _run("status", "-d", str(tmp_path)).stdout
    assert "stale run (not updated for" in out and f"stale run (process {dead.pid} is gone)" in out


def test_eta_covers_everything_when_all_sizes_are_known(tmp_path: Path, small_parts: list[PartInfo]) -> None:
    paths = RootPaths(tmp_path)
    paths.tars.mkdir()
    _receipt_from_part(paths, small_parts[0])
    _write_run(paths, "here-1", rate_bytes_per_s=1000.0,
               active_parts=[{"name": "sa_000001.tar", "completed": 1000, "total": 5000, "speed": 1000.0}])
    links = parse_links_text(_links(["sa_000000.tar", "sa_000001.tar"], datetime.now(timezone.utc) + timedelta(days=3)))
    report = collect_status(paths, links)
    assert report.remaining_bytes == 4000
    assert report.eta == (pytest.approx(4.0), "everything left to fetch")


def test_garbage_and_torn_files_are_tolerated(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    paths.receipts_dir("download").mkdir(parents=True)
    paths.receipt("download", "sa_000001.tar").write_text('{"part": "sa_000001.tar", "size": 12')
    atomic_write_json(paths.receipt("download", "sa_000002.tar"), {"part": "sa_000002.tar", "size": "big", "complete": True})
    atomic_write_json(paths.receipt("download", "sa_000004.tar"), {"part": "sa_000004.tar", "size": 9, "complete": False})
    atomic_write_json(paths.receipt("extract", "sa_000002.tar"), {"images": None, "annotations": [1]})
    atomic_write_json(paths.failure("download", "sa_000003.tar"), ["not", "a", "dict"])
    atomic_write_json(paths.runs / "h-1.json", [1, 2])
    atomic_write_json(paths.runs / "h-2.json", {"updated": "yesterday", "active_parts": "many"})
    paths.tars.mkdir()
    paths.tar("sa_000009.tar").write_bytes(b"\0" * 100)
    paths.control_file("sa_000009.tar").write_bytes(b"\x00\x01garbage")
    report = collect_status(paths)
    by_name = {p.name: p for p in report.parts}
    assert by_name["sa_000002.tar"].state == "extracted" and by_name["sa_000002.tar"].size is None
    assert by_name["sa_000003.tar"].state == "pending", "an unreadable failure record is no failure"
    assert by_name["sa_000004.tar"].state == "pending", "an incomplete receipt is no receipt"
    assert by_name["sa_000009.tar"].state == "partial" and by_name["sa_000009.tar"].percent is None
    assert "sa_000001.tar" not in by_name, "a torn receipt counts as absent"
    assert [r.stale_reason for r in report.runs] == ["no update time"]
    out = _run("status", "-d", str(tmp_path), "--all").stdout
    assert "? %" in next(line for line in out.splitlines() if line.startswith("sa_000009.tar"))


def test_survives_files_changing_underneath(tmp_path: Path) -> None:
    """Receipts, control files, partial data and run files appear, change and vanish while status reads."""
    paths = RootPaths(tmp_path)
    paths.tars.mkdir()
    receipts = ReceiptStore(paths)
    stop = threading.Event()

    def churn() -> None:
        index = 0
        while not stop.is_set():
            name = f"sa_{index % 7:06d}.tar"
            receipts.write(DownloadReceipt(part=name, size=index))
            paths.tar(name).write_bytes(b"x" * (index % 5000))
            paths.control_file(name).write_bytes(_control_file(1, 1024, 8192, done=[0, 3])[: index % 60])
            (paths.runs / "w-1.json").write_text('{"updated": ' + str(time.time())[: index % 12])
            receipts.write_failure(Stage.EXTRACT, name, "boom")
            for path in (paths.receipt("download", name), paths.tar(name), paths.control_file(name), paths.failure("extract", name)):
                if index % 3 == 0:
                    path.unlink(missing_ok=True)
            if index % 11 == 0:
                shutil.rmtree(paths.tars, ignore_errors=True)
                paths.tars.mkdir(exist_ok=True)
            index += 1

    paths.runs.mkdir(parents=True)
    worker = threading.Thread(target=churn)
    worker.start()
    try:
        deadline = time.monotonic() + 1.0
        rounds = 0
        while time.monotonic() < deadline:
            report = collect_status(paths)
            json.dumps(report.to_dict())
            rounds += 1
    finally:
        stop.set()
        worker.join()
    assert rounds > 5


def test_status_writes_nothing_and_rejects_a_missing_root(busy_root: tuple[RootPaths, dict]) -> None:
    paths, facts = busy_root

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in paths.root.rglob("*")}

    _write_run(paths, "here-1", rate_bytes_per_s=10.0)
    before = snapshot()
    assert _run("status", "-d", str(paths.root), "--links", str(facts["links"]), "--all").exit_code == ExitStatus.OK
    assert _run("status", "-d", str(paths.root), "--json").exit_code == ExitStatus.OK
    assert snapshot() == before
    missing = _run("status", "-d", str(paths.root / "nope"))
    assert missing.exit_code == ExitStatus.USAGE and "no such directory" in missing.stderr
    assert _run("status", "-d", str(paths.root), "--expected", "0").exit_code == ExitStatus.USAGE


# --------------------------------------------------------------------------- how much is left, at a glance

FAILURE = "link expired (HTTP 403); get a fresh links file"


def _columns(text: str) -> str:
    """Table output with every gap between columns made two spaces wide."""
    return re.sub(r"(\S)  +", r"\1  ", text)


def _job(paths: RootPaths, parts: int, downloaded: int, failed: int, size: int = 1000) -> list[str]:
    """A ROOT a download worked on: the part list and every size recorded, ``downloaded`` parts done
    (a tar of ``size`` bytes and its receipt), the next ``failed`` failed with one reason, a finished
    run of 1,000 B/s recorded."""
    names = [f"sa_{i:06d}.tar" for i in range(parts)]
    store = ReceiptStore(paths)
    paths.tars.mkdir(parents=True, exist_ok=True)
    for name in names[:downloaded]:
        paths.tar(name).write_bytes(b"x" * size)
        store.write(DownloadReceipt(part=name, size=size))
    for name in names[downloaded:downloaded + failed]:
        store.write_failure(Stage.DOWNLOAD, name, FAILURE)
    record_part_list(paths, names)
    record_sizes(paths, {name: size for name in names})
    record_run_rate(paths, 20_000, 20.0)
    return names


def test_without_links_status_knows_the_whole_job_from_what_runs_recorded(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    _job(paths, parts=60, downloaded=10, failed=7)
    report = collect_status(paths)
    assert report.links_path is None and report.part_total == len(report.parts) == 60
    assert report.counts["pending"] == 43 and report.remaining_bytes == 50_000 and report.total_bytes == 60_000
    assert report.eta == (pytest.approx(50.0), "everything left to fetch, at the last runs' average rate")

    result = run_sa1b("status", "-d", tmp_path)
    assert result.returncode == ExitStatus.OK, result.stderr
    out = _columns(result.stdout)
    assert "10 of 60 parts downloaded, 9.8 KiB of 58.6 KiB (16.7%)" in out
    assert "to fetch  48.8 KiB" in out and "the last runs averaged 1000 B/s" in out and "50s (everything left" in out
    assert "7 parts: sa_000010.tar … sa_000016.tar  download failed" in out and f"download: {FAILURE}" in out
    assert "sa_000012.tar" not in out, "one row for the seven parts that failed alike"
    assert f"sa_000000 +  {'D' * 10}{'F' * 7}{'.' * 33}" in out and f"sa_000050 +  {'.' * 10}" in out, "the map, 50 a row"
    assert "legend  D downloaded 10, F download failed 7, . pending 43" in out

    everything = _columns(run_sa1b("status", "-d", tmp_path, "--all").stdout)
    assert all(f"sa_{i:06d}.tar  download failed" in everything for i in range(10, 17)), "--all: each part"
    [record] = [json.loads(line) for line in run_sa1b("status", "-d", tmp_path, "--json").stdout.splitlines()]
    assert record["part_total"] == 60 and record["total_bytes"] == 60_000 and record["past_rate_bytes_per_s"] == 1000.0
    assert sum(p["download_failure"] == FAILURE for p in record["parts"]) == 7, "--json: each part"


def test_map_on_request_for_a_small_job(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    _job(paths, parts=4, downloaded=1, failed=0)
    assert "legend" not in run_sa1b("status", "-d", tmp_path).stdout, "a small job is read part by part"
    out = _columns(run_sa1b("status", "-d", tmp_path, "--map").stdout)
    assert "sa_000000 +  D..." in out and "legend  D downloaded 1, . pending 3" in out


def test_one_rate_and_one_eta_with_the_running_download(tmp_path: Path) -> None:
    """The download's own rate and ETA (in its run file) are what status shows, not an ETA of its own."""
    paths = RootPaths(tmp_path)
    names = _job(paths, parts=3, downloaded=1, failed=0, size=10_000_000)
    _write_run(paths, "here-1", rate_bytes_per_s=68_608.0, completed_bytes=10_000_000, total_bytes=30_000_000,
               eta_seconds=470.0, active_parts=[{"name": names[1], "completed": 0, "total": 10_000_000, "speed": 68_608.0}])
    report = collect_status(paths)
    seconds, basis = report.eta
    assert basis == "everything left to fetch, as the running download says" and 465 < seconds <= 470
    out = _columns(run_sa1b("status", "-d", tmp_path).stdout)
    assert "rate  67.0 KiB/s from 1 live run(s)" in out
    assert re.search(r"ETA  7m(4\d|50)s \(everything left to fetch, as the running download says\)", out)


def test_map_cells_are_coloured_on_a_terminal(tmp_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    paths = RootPaths(tmp_path)
    _job(paths, parts=3, downloaded=1, failed=1)
    rows = map_rows(collect_status(paths), styled=True)
    table = Table()
    for column in ("from", "parts"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, color_system="standard", width=100).print(table)
    coloured = screen.getvalue()
    text = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert "DF." in text and "legend" in text and "D downloaded 1, F download failed 1, . pending 1" in text
    assert "\x1b[36mD" in coloured and "\x1b[31mF" in coloured, "downloaded cyan, failed red"
