"""What `sa1b download` says and exits with: dry runs, the summary, grouped warnings, signals, rates, locks."""

from __future__ import annotations

import io
import json
import signal
import socket
import time
from pathlib import Path

from sa1b_cli.console import Console, Environment
from sa1b_cli.events import TransferSnapshot
from sa1b_cli.store.locks import PartLock
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo, random_part
from sa1b_cli.testing.processes import aria2c_pids, run_sa1b, start_sa1b, wait_for


def json_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# -- dry runs exit as the run would -----------------------------------------------------------


def test_dry_run_exits_7_when_the_plan_does_not_fit(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path,
                                                    tmp_path: Path) -> None:
    cdn.set_faults(None, Faults(wrong_length=1 << 60))  # HEAD claims an exabyte
    result = run_sa1b("download", links_file, "-d", tmp_path / "root", "--dry-run")
    assert result.returncode == 7, result.stderr
    assert "WARNING" in result.stderr and "not enough free space" in result.stderr
    assert "download plan:" in result.stdout
    assert run_sa1b("download", links_file, "-d", tmp_path / "root", "--dry-run", "--ignore-disk-space").returncode == 0


def test_dry_run_exits_8_with_every_link_expired_and_3_with_a_part_missing(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                         tmp_path: Path) -> None:
    old = cdn.write_links(tmp_path / "old.txt", expires_at=time.time() - 3600)
    expired = run_sa1b("download", old, "-d", tmp_path / "root", "--dry-run")
    assert expired.returncode == 8, expired.stderr
    assert "3 parts: link expired" in expired.stderr and "(the run would exit 8)" in expired.stderr
    fresh = cdn.write_links(tmp_path / "fresh.txt")
    cdn.remove(small_parts[1].name)  # the CDN answers 404 for it
    missing = run_sa1b("download", fresh, "-d", tmp_path / "root", "--dry-run")
    assert missing.returncode == 3, missing.stderr
    assert f"{small_parts[1].name}: not found on the server" in missing.stderr
    assert "(the run would exit 3)" in missing.stderr


def test_dry_run_shows_complete_parts_with_their_size_on_disk(small_parts: list[PartInfo], cdn: FakeCDN,
                                                              links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run_sa1b("download", links_file, "-d", root).returncode == 0
    result = run_sa1b("download", links_file, "-d", root, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    [plan] = [r for r in json_records(result.stdout) if r.get("kind") == "plan"]
    for part in plan["plan"]["parts"]:
        assert part["action"] == "complete" and part["on_disk"] >= part["size"] > 0


# -- the summary --------------------------------------------------------------------------------


def test_summary_counts_failed_extractions_and_the_average_rate(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "extracted").write_text("a file where the extraction folder goes")
    result = run_sa1b("download", links_file, "-d", root, "--extract")
    assert result.returncode == 3, result.stderr
    assert "3/3 parts complete" in result.stdout
    assert "extract: 0 extracted, 3 failed" in result.stdout
    assert "/s on average" in result.stdout
    assert "downloaded, but extraction failed: " in result.stderr and "reservation" not in result.stderr


def test_bytes_fetched_count_parts_that_failed(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path,
                                               tmp_path: Path) -> None:
    cdn.set_faults(small_parts[0].name, Faults(corrupt_offsets=(small_parts[0].size // 2,)))
    result = run_sa1b("download", links_file, "-d", tmp_path / "root", "--json")
    assert result.returncode == 3, result.stderr
    summary = json_records(result.stdout)[-1]
    assert summary["parts"][small_parts[0].name]["status"] == "failed"
    assert cdn.wait_idle(10)
    sent = sum(r.bytes_sent for r in cdn.log if r.method == "GET")
    assert sent * 0.9 <= summary["bytes_fetched"] <= sent, "the bytes that crossed the network, the failed part's too"


def test_a_revoked_link_is_not_called_expired(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path,
                                              tmp_path: Path) -> None:
    cdn.revoke(small_parts[0].name)
    result = run_sa1b("download", links_file, "-d", tmp_path / "root")
    assert result.returncode == 8, result.stderr
    assert "revoked / refused (HTTP 403) although the link's expiry is 20" in result.stderr


# -- signals and other runs ---------------------------------------------------------------------


def test_sighup_stops_like_sigterm(tmp_path: Path) -> None:
    src = tmp_path / "src"
    random_part(src, 0, 12)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=2_000_000))
        root = tmp_path / "root"
        proc = start_sa1b("download", links, "-d", root)
        wait_for(lambda: server.bytes_sent() > 2_000_000, timeout=60)
        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        assert "state saved" in err and "Traceback" not in err
        assert not aria2c_pids(root)
        assert not any(RootPaths(root).locks.glob("*.lock"))


def test_runs_sharing_a_root_both_exit_0_when_together_they_finish_everything(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for index in range(4):
        random_part(src, index, 3)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=2_000_000))
        root = tmp_path / "root"
        runs = [start_sa1b("download", links, "-d", root, "-j", "1") for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], [err for _out, err in outputs]
        assert any("done by another run" in out + err for out, err in outputs)


def test_the_progress_line_counts_a_part_held_elsewhere_as_locked(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                  links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    held = PartLock(RootPaths(root).lock(small_parts[0].name))
    assert held.try_acquire() is None  # this test process: no download run behind it
    try:
        result = run_sa1b("download", links_file, "-d", root, "--log-interval", "0.1")
    finally:
        held.release()
    assert result.returncode == 4, result.stderr
    assert "parts 2/3 done, 0 active, 0 failed, 1 locked" in result.stderr


# -- an unreachable server, grouped warnings ----------------------------------------------------


def test_an_unreachable_server_is_reported_at_once(small_parts: list[PartInfo], tmp_path: Path) -> None:
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with FakeCDN(small_parts[0].path.parent) as server:
        links = tmp_path / "links.txt"
        links.write_text(server.links_text().replace(f":{server.port}/", f":{port}/"))
    started = time.monotonic()
    result = run_sa1b("download", links, "-d", tmp_path / "root", "--retry-wait", "30")
    assert time.monotonic() - started < 30, "--retries is for transient faults, not a server that is down"
    assert result.returncode == 3, result.stderr
    assert "server unreachable" in result.stderr
    assert run_sa1b("download", links, "-d", tmp_path / "root", "--dry-run").returncode == 3


def test_parts_ending_alike_are_said_in_one_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    names = [random_part(src, index, 1).name for index in range(6)]
    with FakeCDN(src) as server:
        # Expiring 64 s from now: the first parts start, the others fall inside the 60 s safety margin.
        links = server.write_links(tmp_path / "links.txt", expires_at=time.time() + 64)
        server.set_faults(None, Faults(rate_limit_bytes_per_s=150_000))
        result = run_sa1b("download", links, "-d", tmp_path / "root", "-j", "1", "-x", "1")
        assert result.returncode == 8, result.stderr
        margin = [line for line in result.stderr.splitlines() if "safety margin" in line]
        assert len(margin) == 1, result.stderr
        assert " parts: link expires " in margin[0] and f"… {names[-1]})" in margin[0]
        links = server.write_links(tmp_path / "links2.txt", expires_at=time.time() + 64)
        again = run_sa1b("download", links, "-d", tmp_path / "root2", "-j", "1", "-x", "1", "--json")
        details = [r for r in json_records(again.stdout) if r.get("level") == "detail" and r["kind"] == "part_expired"]
        assert len(details) >= 2 and all("safety margin" in r["message"] for r in details)


# -- rates and the live view --------------------------------------------------------------------


def test_the_rate_stays_smooth_across_part_hand_overs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for index in range(8):
        random_part(src, index, 1)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=1_000_000))
        # Two parts at a time at 1 MB/s each: 2 MB/s all along, while parts end and the next ones start.
        result = run_sa1b("download", links, "-d", tmp_path / "root", "-j", "2", "-x", "1", "--json",
                          "--log-interval", "0.1")
        assert result.returncode == 0, result.stderr
        speeds = [r["speed"] for r in json_records(result.stdout) if r.get("type") == "progress"]
        during = speeds[1:-1]  # the first counts aria2's start-up too
        assert len(during) >= 4 and all(1_000_000 < speed < 3_000_000 for speed in during), speeds


def test_the_live_view_is_not_drawn_again_after_the_download_ended() -> None:
    out = io.StringIO()
    console = Console(Environment(stdout=out, stderr=out, stderr_isatty=True), mode="rich")
    final = TransferSnapshot([], 10, 10, 1.0, 0.0, 1, 0, 1)
    console.transfer(final)
    console.transfer(final)  # the run's last, forced snapshot
    console.event("verify", "the next stage's output")
    console.close()
    text = out.getvalue()
    assert text.count("10 B / 10 B") == 1 and text.rstrip().endswith("the next stage's output")
