"""``sa1b verify`` on a dataset still arriving, run as a separate process beside a real download.

A nightly verify beside a download that takes weeks checks the parts that have arrived, names the
others in one line and exits 10; a finished download whose files are missing still exits 5; the
progress total is the files actually checked; the demo's suggested commands succeed on its ROOT.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from sa1b_cli.errors import ExitStatus
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo, make_parts
from sa1b_cli.testing.processes import run_sa1b, start_sa1b, wait_for

N_PARTS, PAIRS = 4, 8
SLOW_SECONDS = 120.0  # a throttled part lasts this long: the test stops the download long before


@pytest.fixture
def parts(tmp_path: Path) -> list[PartInfo]:
    return make_parts(tmp_path / "parts", N_PARTS, PAIRS, width=320, height=240, masks_per_image=4, seed=11)


def verify_json(root: Path, *options: str) -> tuple[int, list[dict]]:
    result = run_sa1b("verify", "-d", root, "--json", "-j", "1", *options)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def summary_of(records: list[dict]) -> dict:
    assert records[-1]["type"] == "summary", records[-1]
    return records[-1]


def final_progress(records: list[dict]) -> dict:
    return next(r for r in records if r["type"] == "progress" and r["final"])


def statuses(records: list[dict]) -> dict[str, tuple[str, bool]]:
    return {r["part"]: (r["status"], r["awaited"]) for r in records if r["type"] == "part"}


def live_run_holds(root: Path, name: str) -> bool:
    for run_file in (root / ".sa1b" / "runs").glob("*.json"):
        try:
            record = json.loads(run_file.read_text())
        except (OSError, ValueError):
            continue
        if any(p.get("name") == name and p.get("status") == "active" for p in record.get("active_parts", [])):
            return True
    return False


def test_verify_beside_a_running_download_checks_what_has_arrived(tmp_path: Path, parts: list[PartInfo]) -> None:
    root = tmp_path / "root"
    with FakeCDN(tmp_path / "parts") as cdn:
        links = cdn.write_links(tmp_path / "segment_anything_links.txt")
        first = run_sa1b("download", links, "-d", root, "--parts", "0-1", "--extract", "--quiet")
        assert first.returncode == 0, first.stdout + first.stderr
        for part in parts[2:]:
            cdn.set_faults(part.name, Faults(rate_limit_bytes_per_s=part.size / SLOW_SECONDS))
        download = start_sa1b("download", links, "-d", root, "--extract", "--jobs", "1", "--quiet", output=False)
        try:
            wait_for(lambda: live_run_holds(root, "sa_000002.tar"), timeout=60, what="sa_000002.tar downloading")
            code, records = verify_json(root)
            plain = run_sa1b("verify", "-d", root, "-j", "1")
        finally:
            download.terminate()
            download.wait(timeout=60)

    assert code == ExitStatus.PARTIAL == 10
    summary = summary_of(records)
    assert summary["arrived_only"] and summary["arrived_reason"] == "a download is running on ROOT"
    assert summary["not_arrived"] == ["sa_000002.tar", "sa_000003.tar"] and summary["checked_parts"] == 2
    assert summary["problems_total"] == 0 and summary["missing_parts"] == []
    assert statuses(records) == {"sa_000000.tar": ("ok", False), "sa_000001.tar": ("ok", False),
                                 "sa_000002.tar": ("downloading", True), "sa_000003.tar": ("missing", True)}
    progress = final_progress(records)
    assert progress["total_files"] == progress["files"] == 2 * 2 * PAIRS, progress  # not 22.4M

    assert plain.returncode == 10, plain.stdout + plain.stderr
    assert ("not arrived yet: 2 parts: 1 being downloaded (sa_000002.tar); 1 not downloaded yet (sa_000003.tar)"
            in plain.stdout)
    assert "downloaded but not extracted" not in plain.stdout
    assert f"verify: {2 * 2 * PAIRS}/{2 * 2 * PAIRS} files (100%)" in plain.stderr

    # the download stopped halfway through sa_000002.tar: still unfinished by the links file it read
    assert (root / "tars" / "sa_000002.tar.aria2").exists()
    code, records = verify_json(root)
    assert code == 10
    assert summary_of(records)["arrived_reason"] == "the download is unfinished, 2 parts still to fetch"
    assert statuses(records)["sa_000002.tar"] == ("partial", True)
    complete = run_sa1b("verify", "-d", root, "-j", "1", "--complete")
    assert complete.returncode == ExitStatus.INCOMPLETE, complete.stdout + complete.stderr
    assert "partly downloaded: 1 part: sa_000002.tar" in complete.stdout
    assert "missing: 1 part: sa_000003.tar" in complete.stdout and "downloaded but not extracted" not in complete.stdout

    both = run_sa1b("verify", "-d", root, "--arrived", "--expected", "16")
    assert both.returncode == ExitStatus.USAGE and "--expected" in both.stderr


def test_a_finished_download_with_files_missing_still_needs_a_person(tmp_path: Path, parts: list[PartInfo]) -> None:
    root = tmp_path / "root"
    with FakeCDN(tmp_path / "parts") as cdn:
        links = cdn.write_links(tmp_path / "segment_anything_links.txt")
        assert run_sa1b("download", links, "-d", root, "--parts", "0-2", "--extract", "--quiet").returncode == 0
        assert run_sa1b("download", links, "-d", root, "--parts", "3", "--quiet").returncode == 0

    code, records = verify_json(root)  # every part downloaded: nothing is to come, one is not extracted
    assert code == ExitStatus.INCOMPLETE
    assert not summary_of(records)["arrived_only"] and summary_of(records)["missing_parts"] == ["sa_000003.tar"]
    assert statuses(records)["sa_000003.tar"] == ("not-extracted", False)

    assert run_sa1b("extract", "-d", root, "--quiet").returncode == 0
    code, records = verify_json(root)
    assert code == ExitStatus.OK, summary_of(records)
    assert summary_of(records)["parts"] == N_PARTS  # the links file's parts, not the dataset's 1,000
    progress = final_progress(records)
    assert progress["total_files"] == progress["files"] == 2 * N_PARTS * PAIRS

    shutil.rmtree(root / "extracted" / "sa_000001")
    for options in ((), ("--arrived",)):
        code, records = verify_json(root, *options)
        assert code == ExitStatus.INCOMPLETE, (options, summary_of(records))
        assert summary_of(records)["missing_parts"] == ["sa_000001.tar"]


def test_the_demos_suggested_commands_succeed_on_its_root(tmp_path: Path) -> None:
    demo = run_sa1b("demo", "--dir", tmp_path / "demo", "--parts", "2", "--pairs", "4", "--json", timeout=300)
    assert demo.returncode == 0, demo.stderr
    steps = json.loads(demo.stdout.splitlines()[-1])["next_steps"]
    commands = steps[-1].split("try: ", 1)[1].split(" and ")
    assert [c.split()[1] for c in commands] == ["status", "verify"]
    for command in commands:
        result = run_sa1b(*shlex.split(command)[1:])
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert "verify (deep): 2 parts, 8 images and 8 annotations" in result.stdout and "all sound" in result.stdout
