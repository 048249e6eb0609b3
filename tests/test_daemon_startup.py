"""The download loop around aria2c: started with its first parts (before aria2p is imported), never leaked, woken by events."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sa1b_cli.aria2_daemon import Aria2Daemon, DaemonSettings, InputEntry
from sa1b_cli.download import DownloadOptions, DownloadRun, plan_download
from sa1b_cli.events import NullReporter
from sa1b_cli.links import parse_links
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo
from sa1b_cli.testing.processes import aria2c_pids


def _gone(root: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while aria2c_pids(root):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_launched_daemon_answers_once_started(tmp_path: Path) -> None:
    daemon = Aria2Daemon(DaemonSettings(download_dir=tmp_path / "tars"))
    daemon.launch()
    daemon.launch()  # idempotent: one process
    assert len(aria2c_pids(tmp_path)) == 1
    try:
        daemon.start()
        assert daemon.api_client.get_version()["version"]
        assert aria2c_pids(tmp_path) == [daemon.proc.pid]  # type: ignore[union-attr]
    finally:
        daemon.stop()
    assert _gone(tmp_path)


def test_a_launched_daemon_never_started_is_stopped(tmp_path: Path) -> None:
    daemon = Aria2Daemon(DaemonSettings(download_dir=tmp_path / "tars"))
    daemon.launch()
    assert aria2c_pids(tmp_path)
    daemon.stop()
    assert _gone(tmp_path)


def test_a_run_starts_aria2c_with_its_first_parts_and_a_complete_set_starts_none(
    small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    paths, options, reporter = RootPaths(root), DownloadOptions(jobs=1), NullReporter()
    links = parse_links(links_file)

    plan = plan_download(links.parts, links, paths, options, reporter)
    assert len(plan.to_fetch) == len(small_parts) and not aria2c_pids(root), "the plan itself starts nothing"
    run = DownloadRun(plan, links, paths, options, reporter)
    result = run.run()
    assert result.count("complete") == len(small_parts)  # jobs=1: two on aria2c's input file, one over RPC
    assert _gone(root)

    plan = plan_download(links.parts, links, paths, options, reporter)
    run = DownloadRun(plan, links, paths, options, reporter)
    assert not plan.to_fetch and run.run().count("already") == len(small_parts)
    assert not aria2c_pids(root), "a complete set starts no aria2c"


def test_head_start_parts_download_before_any_rpc_and_are_not_added_again_on_restart(
    small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path
) -> None:
    tars = tmp_path / "tars"
    daemon = Aria2Daemon(DaemonSettings(download_dir=tars))
    first, second = small_parts[0], small_parts[1]
    gids = {first.name: "0123456789abcdef", second.name: "fedcba9876543210"}
    entries = [InputEntry(cdn.signed_url(p.name), {"gid": gids[p.name], "out": p.name}) for p in (first, second)]
    daemon.launch(entries)
    try:
        pid = aria2c_pids(tmp_path)[0]
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"--input-file=-" in command_line and b"oh=" not in command_line, "signed URLs go on stdin only"
        deadline = time.monotonic() + 10
        while sum(cdn.bytes_sent(p.name) for p in (first, second)) < first.size + second.size:
            assert time.monotonic() < deadline, "the head start did not download on its own"
            time.sleep(0.01)
        daemon.start()  # the first RPC only now
        client = daemon.api_client
        for part in (first, second):
            status = client.tell_status(gids[part.name], ["status", "totalLength"])
            assert status["totalLength"] == str(part.size)
        daemon.restart()
        assert daemon.api_client.tell_active(["gid"]) == [] and daemon.api_client.tell_waiting(0, 10, ["gid"]) == []
    finally:
        daemon.stop()
    assert (tars / first.name).stat().st_size == first.size
    assert _gone(tmp_path)


def test_download_start_up_imports_only_what_it_needs_before_aria2c_runs() -> None:
    """aria2p (with requests, loguru, websocket-client) is imported while the head start downloads;
    httpx comes without its own command-line client (rich, pygments), which sa1b never runs."""
    code = (
        "import sys, sa1b_cli.cli, sa1b_cli.download, sa1b_cli.aria2_daemon, sa1b_cli.links, sa1b_cli.store.locks\n"
        "import httpx\n"
        "assert httpx.Client and 'httpx._main' not in sys.modules\n"
        "print(sorted(m for m in ('aria2p', 'requests', 'websocket', 'loguru', 'rich', 'pygments') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_loop_is_woken_by_aria2_and_by_finished_checks_not_only_by_its_timer(
    small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path
) -> None:
    """With a poll timer of an hour, the run can only end if aria2's notifications and the end of each
    check wake the loop: every part must still be downloaded, checked and receipted."""
    root = tmp_path / "root"
    paths, options, reporter = RootPaths(root), DownloadOptions(poll_interval=3600.0), NullReporter()
    links = parse_links(links_file)
    plan = plan_download(links.parts, links, paths, options, reporter)
    result = DownloadRun(plan, links, paths, options, reporter).run()
    assert result.count("complete") == len(small_parts)
    for part in small_parts:
        assert paths.receipt("download", part.name).exists()
    assert _gone(root)


def test_the_secret_file_is_private_while_aria2c_starts_and_gone_after(tmp_path: Path) -> None:
    daemon = Aria2Daemon(DaemonSettings(download_dir=tmp_path / "tars"))
    daemon.launch()
    try:
        conf = daemon._conf_path
        assert conf is not None and conf.stat().st_mode & 0o777 == 0o600
        assert conf.read_text() == f"rpc-secret={daemon.secret}\n"
        daemon.start()
        assert not conf.exists() and daemon.api_client.get_version()
    finally:
        daemon.stop()
    assert daemon._conf_path is None


def test_a_secret_file_left_by_a_killed_run_is_removed_by_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sa1b killed in aria2c's first ~50 ms leaves its 0600 secret file behind: the next launch removes it
    (and leaves those of live processes alone)."""
    import tempfile

    from sa1b_cli.aria2_daemon import SECRET_PREFIX

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"{SECRET_PREFIX}{gone.pid}-abc.conf"
    live = tmp_path / f"{SECRET_PREFIX}{os.getppid()}-def.conf"
    for path in (stale, live):
        path.write_text("rpc-secret=0\n")
    daemon = Aria2Daemon(DaemonSettings(download_dir=tmp_path / "tars"))
    daemon.launch()
    try:
        assert not stale.exists() and live.exists()
        daemon.start()
        assert sorted(tmp_path.glob(f"{SECRET_PREFIX}*")) == [live], "our own file goes once aria2c answers"
    finally:
        daemon.stop()
