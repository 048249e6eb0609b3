"""`sa1b download` against the loopback CDN with the real aria2c: resume, expiry, faults, locks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path


from sa1b_cli.store import DownloadReceipt, ExtractReceipt, ReceiptStore
from sa1b_cli.errors import ExitStatus
from sa1b_cli.store.locks import PartLock
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.store.members import read_member_list
from sa1b_cli.testing.generator import PartInfo, random_part, tar_member_sizes, write_md5sums
from sa1b_cli.testing.processes import aria2c_pids, crash_download_midway, run_sa1b, start_sa1b, wait_for


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the basic contract --------------------------------------------------------------------


def test_download_all_parts_then_second_run_does_no_transfer(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root)
    assert result.returncode == 0, result.stderr
    for part in small_parts:
        got = root / "tars" / part.name
        assert sha256(got) == part.sha256
        rec = ReceiptStore(RootPaths(root)).read(DownloadReceipt, part.name)
        assert rec is not None and rec.sha256 == part.sha256
        assert rec.md5 is None, "md5 costs CPU and serves only a checksum list: none was given"
        assert rec.size == part.size and rec.compressed is True
        assert rec.images == rec.annotations == part.n_pairs
        assert "REDACTED" in rec.url
        assert not (root / "tars" / f"{part.name}.aria2").exists()
    assert "3/3 parts complete" in result.stdout
    assert not aria2c_pids(root)

    requests_before = len(cdn.log)
    again = run_sa1b("download", links_file, "-d", root, "--json")
    assert again.returncode == 0, again.stderr
    assert len(cdn.log) == requests_before, "a complete set must cause no network traffic at all"
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["type"] == "summary" and summary["complete"] == 3 and summary["bytes_fetched"] == 0


def test_signed_urls_never_appear_in_output_or_state(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root, "--json", "--log-interval", "0.1")
    assert result.returncode == 0, result.stderr
    signatures = [line.split("oh=")[1].split("&")[0] for line in links_file.read_text().splitlines()[1:]]
    everything = result.stdout + result.stderr
    for path in (root / ".sa1b").rglob("*"):
        if path.is_file():
            everything += path.read_text(errors="replace")
    for signature in signatures:
        assert signature not in everything


def test_dry_run_prints_plan_and_fetches_nothing(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    result = run_sa1b("download", links_file, "-d", tmp_path / "root", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "sa_000002.tar" in result.stdout and "fetch" in result.stdout
    assert "links expire at" in result.stderr
    assert all(r.method == "HEAD" for r in cdn.log)
    assert not (tmp_path / "root" / "tars").exists() or not any((tmp_path / "root" / "tars").iterdir())


def test_parts_and_shard_selection(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root, "--parts", "0,sa_000002.tar", "--shard", "1/2")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (root / "tars").glob("*.tar")) == []  # shard 1/2 holds odd parts only
    result = run_sa1b("download", links_file, "-d", root, "--parts", "0-2", "--shard", "0/2", env={"SA1B_JOBS": "1"})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (root / "tars").glob("*.tar")) == ["sa_000000.tar", "sa_000002.tar"]


def test_bad_links_file_is_rejected_with_line_numbers_and_nothing_fetched(cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    lines = links_file.read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([lines[0], lines[1], "garbage-without-tab", lines[1], "../evil.tar\thttp://127.0.0.1/x", "sa_000009.tar\tftp://x/y"]) + "\n")
    result = run_sa1b("download", bad, "-d", tmp_path / "root")
    assert result.returncode == 2
    assert "bad.txt:3" in result.stderr and "bad.txt:4" in result.stderr and "duplicate" in result.stderr
    assert "bad.txt:5" in result.stderr and "bad.txt:6" in result.stderr
    assert "Traceback" not in result.stderr
    assert cdn.log == []


def test_extras_are_listed_but_only_fetched_by_name(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    ids = tmp_path / "parts" / "sa_images_ids.txt"
    ids.write_text("1\n2\n3\n")
    cdn.add_file("sa_images_ids.txt", ids)
    links = cdn.write_links(tmp_path / "links.txt")
    root = tmp_path / "root"
    result = run_sa1b("download", links, "-d", root, "--parts", "0")
    assert result.returncode == 0, result.stderr
    assert not (root / "tars" / "sa_images_ids.txt").exists()
    result = run_sa1b("download", links, "-d", root, "--parts", "sa_images_ids.txt")
    assert result.returncode == 0, result.stderr
    assert (root / "tars" / "sa_images_ids.txt").read_text() == "1\n2\n3\n"
    assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, "sa_images_ids.txt").size == 6


# -- expiry ---------------------------------------------------------------------------------


def test_expired_links_are_not_attempted_and_a_fresh_file_completes(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    old = cdn.write_links(tmp_path / "old.txt", expires_at=time.time() - 3600)
    root = tmp_path / "root"
    result = run_sa1b("download", old, "-d", root)
    assert result.returncode == 8, result.stderr
    assert "expired" in result.stderr and "fresh links file" in result.stderr
    assert cdn.log == []
    fresh = cdn.write_links(tmp_path / "fresh.txt")
    result = run_sa1b("download", fresh, "-d", root)
    assert result.returncode == 0, result.stderr
    assert all(sha256(root / "tars" / p.name) == p.sha256 for p in small_parts)


def test_403_mid_run_fails_that_part_only_and_resumes_with_fresh_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 24)
    random_part(src, 1, 2)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        # The CDN checks the signature per request: cut the connection after the revocation so
        # that aria2 has to ask again.
        server.set_faults("sa_000000.tar", Faults(rate_limit_bytes_per_s=2_000_000, drop_after_bytes=8_000_000, drop_count=1))
        root = tmp_path / "root"
        proc = start_sa1b("download", links, "-d", root, "-x", "2", "--retry-wait", "0.2")
        wait_for(lambda: server.bytes_sent("sa_000000.tar") > 4_000_000)
        server.revoke("sa_000000.tar")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 8, err
        assert "revoked / refused (HTTP 403) although the link's expiry is" in err
        assert (root / "tars" / "sa_000001.tar").exists() and ReceiptStore(RootPaths(root)).read(DownloadReceipt, "sa_000001.tar") is not None
        assert not RootPaths(root).receipt("download", "sa_000000.tar").exists()
        assert server.wait_idle(10)  # the server is done with every request: the count is final
        had = server.bytes_sent("sa_000000.tar")
        server.clear_faults()
        server.reset_log()
        fresh = server.write_links(tmp_path / "fresh.txt")
        result = run_sa1b("download", fresh, "-d", root)
        assert result.returncode == 0, result.stderr
        assert sha256(root / "tars" / "sa_000000.tar") == sha256(big)
        gets = [r for r in server.requests_for("sa_000000.tar") if r.method == "GET"]
        assert any((r.range_start or 0) >= had * 0.9 for r in gets), "a fresh links file must resume, not restart"
        # aria2's first request has no Range (it learns the length before loading the control file);
        # what that response pushes into the socket buffers before aria2 closes it is all that is wasted.
        assert server.bytes_sent("sa_000000.tar") < big.stat().st_size - had + 6_000_000


# -- resume ---------------------------------------------------------------------------------


def test_sigkill_then_rerun_resumes_from_the_bytes_on_disk(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 32)
    size = big.stat().st_size
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=3_000_000))
        root = tmp_path / "root"
        kill_time = crash_download_midway(root, links, "-x", "4", "--min-split-size", "1M",
                                          bytes_sent=server.bytes_sent, after_bytes=size * 0.4, settle=1.5)
        assert server.wait_idle(10)  # the server is done with every request: the count is final
        before = server.bytes_sent()
        assert (root / "tars" / "sa_000000.tar.aria2").exists()
        server.clear_faults()
        result = run_sa1b("download", links, "-d", root)
        assert result.returncode == 0, result.stderr
        assert sha256(root / "tars" / "sa_000000.tar") == sha256(big)
        second = [r for r in server.log if r.method == "GET" and r.time > kill_time]
        ranged = sum(r.bytes_sent for r in second if r.range_header)
        probe = sum(r.bytes_sent for r in second if not r.range_header)
        # aria2's first request after a resume has no Range (it learns the length before it loads the
        # control file) and is closed at once: what the server pushed into the socket buffers by then
        # (a few MB on loopback, about a TCP window on a real link) is wasted. The ranged requests
        # carry the rest: they may re-fetch only what was in flight at the kill (the last unsaved
        # second), plus, per connection, the one rate-limited send (rate/20) that may still sit in the
        # socket buffers at the kill: the server counts a send before it reaches aria2 (a run failed by
        # 8 KB over the bare 3 MB once in five suites). docs/benchmarks.md measures the share on large parts.
        in_socket_buffers = 4 * 3_000_000 // 20
        refetched = ranged - (size - before)
        assert refetched <= 3_000_000 + in_socket_buffers, f"ranged requests re-fetched {refetched} bytes"
        assert probe <= 8_000_000
        assert not aria2c_pids(root)


def test_sigterm_stops_cleanly_and_rerun_resumes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 24)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=3_000_000))
        root = tmp_path / "root"
        proc = start_sa1b("download", links, "-d", root)
        wait_for(lambda: server.bytes_sent() > 3_000_000, timeout=60)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - started < 8
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "resume" in err
        assert not aria2c_pids(root)
        assert not any(RootPaths(root).locks.glob("*.lock"))
        server.clear_faults()
        result = run_sa1b("download", links, "-d", root)
        assert result.returncode == 0, result.stderr
        assert sha256(root / "tars" / "sa_000000.tar") == sha256(big)


def test_file_without_control_file_is_adopted_or_resumed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    complete, partial, garbage = (random_part(src, i, 6) for i in range(3))
    root = tmp_path / "root"
    (root / "tars").mkdir(parents=True)
    shutil.copyfile(complete, root / "tars" / complete.name)  # e.g. copied from another machine
    data = partial.read_bytes()
    half = len(data) // 2
    (root / "tars" / partial.name).write_bytes(data[:half])  # e.g. an interrupted wget
    (root / "tars" / garbage.name).write_bytes(b"\0" * garbage.stat().st_size)  # full size, wrong bytes
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        result = run_sa1b("download", links, "-d", root)
        assert result.returncode == 0, result.stderr
        for part in (complete, partial, garbage):
            assert sha256(root / "tars" / part.name) == sha256(part)
        assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, complete.name).adopted is True
        assert not [r for r in server.requests_for(complete.name) if r.method == "GET"]
        partial_gets = [r for r in server.requests_for(partial.name) if r.method == "GET"]
        assert any((r.range_start or 0) >= half - (1 << 20) for r in partial_gets), f"not resumed: {partial_gets}"  # piece-aligned
        assert "downloading it again" in result.stderr  # the garbage file was checked, then replaced


# -- faults ---------------------------------------------------------------------------------


def test_503_bursts_and_dropped_connections_are_retried(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    cdn.set_faults("sa_000000.tar", Faults(status_503_count=4, retry_after=0))
    cdn.set_faults("sa_000001.tar", Faults(drop_after_bytes=5000, drop_count=3))
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root, "--retry-wait", "0.2")
    assert result.returncode == 0, result.stderr
    for part in small_parts:
        assert sha256(root / "tars" / part.name) == part.sha256


def test_server_ignoring_range_does_not_corrupt_a_partial_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 16)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=2_000_000))
        root = tmp_path / "root"
        crash_download_midway(root, links, "-x", "2", "--min-split-size", "1M",
                              bytes_sent=server.bytes_sent, after_bytes=4_000_000, settle=1.2)
        server.set_faults(None, Faults(ignore_range=True))
        result = run_sa1b("download", links, "-d", root)
        assert result.returncode == 0, result.stderr
        assert "ignored Range" in result.stderr
        assert sha256(root / "tars" / "sa_000000.tar") == sha256(big)


def test_corrupted_bytes_fail_the_part_and_no_receipt_is_written(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    cdn.set_faults("sa_000001.tar", Faults(corrupt_offsets=(small_parts[1].size // 2,)))
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root)
    assert result.returncode == 3, result.stderr
    assert "sa_000001.tar" in result.stderr and "archive check failed" in result.stderr
    assert not RootPaths(root).receipt("download", "sa_000001.tar").exists()
    assert RootPaths(root).receipt("download", "sa_000000.tar").exists()
    cdn.clear_faults()
    result = run_sa1b("download", links_file, "-d", root)
    assert result.returncode == 0, result.stderr
    assert sha256(root / "tars" / "sa_000001.tar") == small_parts[1].sha256


def test_checksum_list_catches_corruption_that_the_structure_cannot(tmp_path: Path) -> None:
    src = tmp_path / "src"
    plain = random_part(src, 0, 2, compress=False)  # a plain tar: a flipped data byte keeps it readable
    sums = tmp_path / "md5.txt"
    sums.write_text(f"{hashlib.md5(plain.read_bytes()).hexdigest()}  {plain.name}\n")
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(corrupt_offsets=(2048 + 100,)))
        root = tmp_path / "root"
        result = run_sa1b("download", links, "-d", root, "--checksums", sums)
        assert result.returncode == ExitStatus.WRONG_BYTES  # its own exit reason (issue 12); was 3 with the other failures
        assert "does not match the checksum list" in result.stderr
        assert not RootPaths(root).receipt("download", plain.name).exists()
        # corruption in transit is fetched again within the run, once, before the part fails
        assert len([r for r in server.log if r.method == "GET"]) == 2


def test_checksum_list_accepts_good_parts(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    sums = write_md5sums(small_parts, tmp_path / "checklist.txt")
    result = run_sa1b("download", links_file, "-d", tmp_path / "root", "--checksums", sums)
    assert result.returncode == 0, result.stderr
    assert ReceiptStore(RootPaths(tmp_path / "root")).read(DownloadReceipt, "sa_000000.tar").checksum_list_md5 == small_parts[0].md5


def test_not_enough_disk_space_is_refused_unless_overridden(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    cdn.set_faults(None, Faults(wrong_length=1 << 60))  # HEAD claims an exabyte
    result = run_sa1b("download", links_file, "-d", tmp_path / "root")
    assert result.returncode == 7
    assert "not enough free space" in result.stderr and "--ignore-disk-space" in result.stderr
    assert not [r for r in cdn.log if r.method == "GET"]


# -- locks ----------------------------------------------------------------------------------


def test_a_part_locked_by_a_live_run_is_skipped_and_a_stale_lock_is_broken(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = RootPaths(root)
    live = PartLock(paths.lock("sa_000000.tar"))
    assert live.try_acquire() is None  # held by this (live) test process
    stale = paths.lock("sa_000001.tar")
    stale.write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 12345, "token": "dead", "started": 0}))
    try:
        result = run_sa1b("download", links_file, "-d", root)
    finally:
        live.release()
    assert result.returncode == 4, result.stderr
    assert "sa_000000.tar: skipped, locked by" in result.stderr
    assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, "sa_000001.tar") is not None and ReceiptStore(RootPaths(root)).read(DownloadReceipt, "sa_000002.tar") is not None
    assert not paths.lock("sa_000001.tar").exists()
    result = run_sa1b("download", links_file, "-d", root)
    assert result.returncode == 0, result.stderr


def test_two_runs_at_once_fetch_each_part_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    parts = [random_part(src, i, 3) for i in range(4)]
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=3_000_000))
        root = tmp_path / "root"
        first = start_sa1b("download", links, "-d", root, "-j", "2")
        second = start_sa1b("download", links, "-d", root, "-j", "2")
        first.communicate(timeout=90)
        second.communicate(timeout=90)
        assert {first.returncode, second.returncode} <= {0, 4}
        result = run_sa1b("download", links, "-d", root)
        assert result.returncode == 0
        for part in parts:
            assert sha256(root / "tars" / part.name) == sha256(part)
            gets = sum(r.bytes_sent for r in server.requests_for(part.name) if r.method == "GET")
            assert gets <= part.stat().st_size * 1.05, f"{part.name} fetched twice"


def test_a_run_whose_lock_is_broken_stops_writing_that_part(tmp_path: Path) -> None:
    """A host that stalled past the lock timeout must not keep writing a part another host now owns."""
    import threading

    from sa1b_cli.download import DownloadOptions, DownloadRun, plan_download
    from sa1b_cli.events import RecordingReporter
    from sa1b_cli.links import parse_links

    src = tmp_path / "src"
    random_part(src, 0, 8)
    with FakeCDN(src) as server:
        server.set_faults(None, Faults(rate_limit_bytes_per_s=1_000_000))
        links = parse_links(server.write_links(tmp_path / "links.txt"))
        paths = RootPaths(tmp_path / "root")
        options = DownloadOptions(lock_refresh_every=0.2, poll_interval=0.1)
        reporter = RecordingReporter()
        plan = plan_download(links.parts, links, paths, options, reporter)
        run = DownloadRun(plan, links, paths, options, reporter)
        worker = threading.Thread(target=run.run)
        worker.start()
        wait_for(lambda: server.bytes_sent() > 1_000_000)
        lock = paths.lock("sa_000000.tar")
        lock.write_text(json.dumps({"host": "other-host", "pid": 1, "token": "theirs", "started": time.time()}))
        worker.join(timeout=30)
        assert not worker.is_alive()
        outcome = run.result.outcomes["sa_000000.tar"]
        assert outcome.status == "locked" and "lock lost" in outcome.reason
        assert json.loads(lock.read_text())["token"] == "theirs"  # the other run's lock is left alone
        assert not aria2c_pids(paths.root)
        part = paths.tar("sa_000000.tar")
        before = part.stat().st_mtime_ns
        time.sleep(1.0)
        assert part.stat().st_mtime_ns == before, "the part kept being written by a run that no longer owns it"
        assert not paths.receipt("download", "sa_000000.tar").exists()


def test_download_extract_checks_each_part_in_the_read_that_unpacks_it(
    small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path
) -> None:
    """With --extract a part is inflated once: the extraction's read gives the download receipt, which
    must say exactly what a separate check of the same file says."""
    from sa1b_cli.download import DownloadOptions, DownloadRun, plan_download
    from sa1b_cli.events import NullReporter
    from sa1b_cli.integrity import check_part
    from sa1b_cli.links import parse_links

    paths = RootPaths(tmp_path / "root")
    links = parse_links(links_file)
    options = DownloadOptions(extract_layout="parts")
    plan = plan_download(links.parts, links, paths, options, NullReporter())
    result = DownloadRun(plan, links, paths, options, NullReporter()).run()
    assert result.exit_status == 0 and all(o.extracted for o in result.outcomes.values())
    for part in small_parts:
        receipt = ReceiptStore(paths).read(DownloadReceipt, part.name)
        assert receipt is not None and receipt.checked_while_extracting and not receipt.checked_while_downloading
        alone = check_part(part.path)
        assert (receipt.size, receipt.md5, receipt.sha256) == (part.size, None, part.sha256)
        assert (receipt.members, receipt.images, receipt.annotations) == (alone.members, alone.images, alone.annotations)
        listed = read_member_list(paths, receipt)  # what export plans from
        assert listed is not None and list(listed.members) == tar_member_sizes(part.path) == alone.member_sizes
        extracted = ReceiptStore(paths).read(ExtractReceipt, part.name)
        assert extracted is not None and extracted.source_sha256 == part.sha256 and extracted.images == part.n_pairs
    assert not any(paths.tmp.iterdir())


def test_download_extract_refuses_a_part_against_the_checksum_list_before_publishing_it(
    small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path
) -> None:
    from sa1b_cli.checksums import ChecksumList
    from sa1b_cli.download import DownloadOptions, DownloadRun, plan_download
    from sa1b_cli.events import NullReporter
    from sa1b_cli.links import parse_links

    bad = small_parts[1]
    paths = RootPaths(tmp_path / "root")
    links = parse_links(links_file)
    checksums = ChecksumList("test-list", md5={p.name: p.md5 for p in small_parts} | {bad.name: "0" * 32})
    options = DownloadOptions(extract_layout="parts", checksums=checksums)
    plan = plan_download(links.parts, links, paths, options, NullReporter())
    result = DownloadRun(plan, links, paths, options, NullReporter()).run()
    outcome = result.outcomes[bad.name]
    assert outcome.status == "failed" and "does not match the checksum list" in outcome.reason
    assert ReceiptStore(paths).read(DownloadReceipt, bad.name) is None and ReceiptStore(paths).read(ExtractReceipt, bad.name) is None
    assert not (paths.root / "extracted" / bad.name[:-4]).exists() and not any(paths.tmp.iterdir())
    for good in small_parts:
        if good is not bad:
            assert result.outcomes[good.name].extracted is True
            receipt = ReceiptStore(paths).read(DownloadReceipt, good.name)
            assert receipt is not None and receipt.md5 == receipt.checksum_list_md5 == good.md5


def test_a_part_whose_size_changed_on_the_server_while_partial_starts_over(tmp_path: Path) -> None:
    """Issue 16.1: every rerun used to fail with "Download aborted. (aria2 error 1)" and a 5-minute back-off."""
    src = tmp_path / "src"
    old = random_part(src, 0, 8)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        server.set_faults(None, Faults(rate_limit_bytes_per_s=2_000_000))
        root = tmp_path / "root"
        crash_download_midway(root, links, "-x", "2", bytes_sent=server.bytes_sent, after_bytes=old.stat().st_size * 0.3, settle=1.2)
        assert (root / "tars" / "sa_000000.tar.aria2").exists()
        new = random_part(tmp_path / "new", 0, 6)
        shutil.copy(new, old)  # same name and token, another size
        server.clear_faults()
        result = run_sa1b("download", links, "-d", root, "--retry-wait", "0.2")
        assert result.returncode == 0, result.stderr
        assert "discarding it and starting over" in result.stderr
        assert sha256(root / "tars" / "sa_000000.tar") == sha256(new)


def test_a_part_damaged_in_transit_is_fetched_again_within_the_run(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                   links_file: Path, tmp_path: Path) -> None:
    """Issue 16.7: a flipped byte on the way used to be fetched again only by the next run."""
    part = small_parts[1]
    cdn.set_faults(part.name, Faults(corrupt_offsets=(part.size // 2,), corrupt_count=1))
    result = run_sa1b("download", links_file, "-d", tmp_path / "root")
    assert result.returncode == 0, result.stderr
    assert "archive check failed" in result.stderr and "downloading it again" in result.stderr
    assert sha256(tmp_path / "root" / "tars" / part.name) == part.sha256
    assert len([r for r in cdn.requests_for(part.name) if r.method == "GET"]) == 2
