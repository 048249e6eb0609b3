"""The download loop around aria2c: launched early (while the HEAD requests run), never leaked, woken by events."""

from __future__ import annotations

import time
from pathlib import Path

from sa1b_cli.aria2_daemon import Aria2Daemon, DaemonSettings
from sa1b_cli.download import DownloadOptions, DownloadRun, make_daemon, plan_download
from sa1b_cli.events import NullReporter
from sa1b_cli.links import parse_links
from sa1b_cli.paths import RootPaths
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


def test_plan_launches_the_daemon_only_when_something_is_fetched(
    small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    paths, options, reporter = RootPaths(root), DownloadOptions(), NullReporter()
    links = parse_links(links_file)

    daemon = make_daemon(paths, options)
    plan = plan_download(links.parts, links, paths, options, reporter, daemon)
    assert len(plan.to_fetch) == len(small_parts)
    assert aria2c_pids(root), "aria2c must be starting while the HEAD requests run"
    result = DownloadRun(plan, links, paths, options, reporter, daemon).run()
    assert result.count("complete") == len(small_parts)
    assert _gone(root)

    again = make_daemon(paths, options)
    plan = plan_download(links.parts, links, paths, options, reporter, again)
    assert not plan.to_fetch and not aria2c_pids(root), "a complete set starts no aria2c"
    assert DownloadRun(plan, links, paths, options, reporter, again).run().count("already") == len(small_parts)
    assert _gone(root)


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
