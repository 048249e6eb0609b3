"""`sa1b demo`: generate, serve on loopback, download -> extract -> verify, then say what to run for real."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from sa1b_cli.demo import META_DOWNLOAD_PAGE, DemoDirectory, DemoResult, prepare_directory
from sa1b_cli.errors import ExitStatus, UsageError
from sa1b_cli.links import parse_links
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.verify import verify_dataset
from sa1b_cli.testing.processes import run_sa1b, start_sa1b, wait_for

PARTS, PAIRS = 2, 10


def summary_of(result: subprocess.CompletedProcess[str]) -> dict:
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["type"] == "summary" and record["command"] == "demo"
    return record


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One real demo run shared by the tests that only look at what it left."""
    directory = tmp_path_factory.mktemp("demo") / "sa1b-demo"
    return directory, run_sa1b("demo", "--dir", directory, "--count", PARTS, "--pairs", PAIRS)


def test_demo_runs_green_and_says_what_to_run_on_real_data(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    directory, result = demo_run
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert f"download: {PARTS}/{PARTS} parts complete, 0 failed" in out
    assert f"extract: {PARTS} parts extracted" in out
    assert f"verify: {PARTS * PAIRS} images and {PARTS * PAIRS} annotation files" in out and "all sound" in out
    assert META_DOWNLOAD_PAGE in out
    assert "sa1b download segment_anything_links.txt -d /data/sa1b" in out and "--extract" in out
    assert "sa1b verify -d /data/sa1b" in out and "sa1b status -d /data/sa1b" in out
    assert str(directory) in out
    # the real download path ran: aria2c fetched over loopback and the checks wrote progress lines
    assert "checking 2 link(s) for sizes (HEAD)" in result.stderr
    assert "sa_000001.tar: complete and checked" in result.stderr


def test_demo_leaves_a_meta_style_links_file_and_a_dataset_that_verifies(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    directory, result = demo_run
    assert result.returncode == 0, result.stderr
    demo = DemoDirectory(directory)
    links = parse_links(demo.links)
    assert [e.name for e in links.parts] == ["sa_000000.tar", "sa_000001.tar"]
    assert [e.name for e in links.extras] == ["sa_images_ids.txt"]
    for entry in links.entries:
        assert entry.url.startswith("http://127.0.0.1:") and "oh=00_" in entry.url and entry.expires_at is not None
    extracted = sorted(p.name for p in (demo.dataset / "extracted").rglob("sa_*.*") if p.is_file())
    ids = range(1, PARTS * PAIRS + 1)
    assert extracted == sorted([f"sa_{i}.jpg" for i in ids] + [f"sa_{i}.json" for i in ids])
    report = verify_dataset(RootPaths(demo.dataset), expected=PARTS * PAIRS, deep=True, tars=True, jobs=1, force=True)
    assert report.exit_status == ExitStatus.OK, report.summary()
    assert report.images == report.annotations == PARTS * PAIRS
    assert report.summary()["masks_checked"] > 0


def test_demo_again_on_its_directory_fetches_nothing(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    directory, first = demo_run
    assert first.returncode == 0, first.stderr
    again = run_sa1b("demo", "--dir", directory, "--count", PARTS, "--pairs", PAIRS, "--json")
    assert again.returncode == 0, again.stderr
    summary = summary_of(again)
    assert summary["stages"] == {"download": 0, "extract": 0, "verify": 0} and summary["exit_code"] == 0
    assert summary["stage_summaries"]["download"]["bytes_fetched"] == 0
    assert summary["stage_summaries"]["extract"]["already"] == PARTS
    assert any(META_DOWNLOAD_PAGE in line for line in summary["next_steps"])


def test_demo_exit_code_is_the_worst_stage(demo_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """A damaged extracted file (same size, so extract still counts the part as done) fails verify: exit 6."""
    directory, first = demo_run
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(directory), str(copy)], check=True)
    annotation = copy / "dataset" / "extracted" / "sa_000000" / "sa_3.json"
    data = bytearray(annotation.read_bytes())
    data[0:1] = b"["  # no longer a JSON object
    annotation.write_bytes(bytes(data))
    result = run_sa1b("demo", "--dir", copy, "--count", PARTS, "--pairs", PAIRS, "--json")
    summary = summary_of(result)
    assert summary["stages"]["download"] == 0 and summary["stages"]["extract"] == 0
    assert summary["stages"]["verify"] == ExitStatus.CORRUPT
    assert result.returncode == summary["exit_code"] == ExitStatus.CORRUPT


def test_worst_stage_is_the_highest_exit_code() -> None:
    result = DemoResult(DemoDirectory(Path("/nonexistent")), 1, 1)
    assert result.exit_status == ExitStatus.OK
    result.stages = {"download": ExitStatus.PARTS_FAILED, "extract": ExitStatus.OK, "verify": ExitStatus.INCOMPLETE}
    assert result.exit_status == ExitStatus.INCOMPLETE


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    keep = tmp_path / "important.txt"
    keep.write_text("do not touch\n")
    result = run_sa1b("demo", "--dir", tmp_path, "--count", 1, "--pairs", 1)
    assert result.returncode == ExitStatus.USAGE
    assert "not empty and not a demo directory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["important.txt"] and keep.read_text() == "do not touch\n"


def test_demo_refuses_an_earlier_demo_of_another_size(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    directory, _ = demo_run
    marker = (directory / "sa1b-demo.json").read_text()
    with pytest.raises(UsageError, match=f"holds a demo of {PARTS} parts x {PAIRS} pairs") as caught:
        prepare_directory(directory, PARTS + 1, PAIRS)
    assert caught.value.exit_status == ExitStatus.USAGE
    assert (directory / "sa1b-demo.json").read_text() == marker


def test_demo_with_a_mirror_catches_its_wrong_part_and_gets_it_from_meta_later(tmp_path: Path) -> None:
    from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore

    directory = tmp_path / "demo"
    result = run_sa1b("demo", "--dir", directory, "--count", PARTS, "--pairs", PAIRS, "--mirror", "--json")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    via_mirror = summary["stage_summaries"]["download (mirror)"]
    wrong = f"sa_{int(PARTS) - 1:06d}.tar"
    assert via_mirror["wrong_bytes"] == 1 and via_mirror["parts"][wrong]["wrong_bytes"] is True
    assert "does not match the checksum list" in via_mirror["parts"][wrong]["reason"]
    paths = RootPaths(directory / "dataset")
    receipts = ReceiptStore(paths)
    assert receipts.read(DownloadReceipt, wrong).source == "meta"
    assert receipts.read(DownloadReceipt, "sa_000000.tar").source == "mirror 1 (localhost)"
    assert summary["stages"] == {"download (mirror)": 0, "download": 0, "extract": 0, "verify": 0}


def test_demo_names_its_folder_dir_and_its_part_count_count(tmp_path: Path) -> None:
    """Elsewhere -d is the dataset ROOT and --parts a selection ('0-9,15'): the demo's are --dir and --count."""
    directory = tmp_path / "demo"
    result = run_sa1b("demo", "--dir", directory, "--count", 1, "--pairs", 1)
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr
    assert json.loads((directory / "sa1b-demo.json").read_text()) == {"parts": 1, "pairs_per_part": 1}
    assert (directory / "dataset" / ".sa1b").is_dir()  # the dataset ROOT is DIR/dataset, as the help says
    help_text = " ".join(run_sa1b("demo", "--help").stdout.split())
    assert "--count N" in help_text and "--dir DIR" in help_text and "sa1b status -d DIR/dataset" in help_text
    assert "-d," not in help_text and "--parts" not in help_text.split("Options:")[1]


def test_demo_still_takes_the_old_d_and_parts_with_a_warning(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = run_sa1b("demo", "-d", directory, "--parts", 1, "--pairs", 1)
    assert result.returncode == 0, result.stderr
    assert "demo -d is deprecated, use --dir" in result.stderr
    assert "demo --parts is deprecated, use --count" in result.stderr
    assert json.loads((directory / "sa1b-demo.json").read_text()) == {"parts": 1, "pairs_per_part": 1}
    by_env = run_sa1b("demo", "--dir", directory, "--pairs", 1, "--json", env={"SA1B_DEMO_PARTS": "1"})
    assert by_env.returncode == 0, by_env.stderr
    warning = json.loads(by_env.stdout.splitlines()[0])
    assert warning["level"] == "warning" and "SA1B_DEMO_PARTS is deprecated, use SA1B_DEMO_COUNT" in warning["message"]
    assert summary_of(by_env)["parts"] == 1


@pytest.mark.parametrize(("args", "said"), [
    (["--parts", "0-9"], "not a selection; use --count N"),
    (["--parts", "2", "--count", "3"], "give --count only"),
    (["-d", "{tmp}/a", "--dir", "{tmp}/b"], "give --dir only"),
])
def test_demo_refuses_old_names_that_do_not_fit(tmp_path: Path, args: list[str], said: str) -> None:
    result = run_sa1b("demo", *[arg.format(tmp=tmp_path) for arg in args], "--pairs", 1)
    assert result.returncode == ExitStatus.USAGE and said in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_the_demo_under_cron_puts_the_error_on_its_own_line(tmp_path: Path) -> None:
    """Plain mode (stderr not a terminal): every line is whole, the error after the last progress line."""
    proc = start_sa1b("demo", "--dir", tmp_path / "demo", "--count", 4, "--log-interval", "0.2")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    wait_for(lambda: any(" active, 0 failed" in line for line in lines), timeout=60, what="a progress line")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == ExitStatus.INTERRUPTED
    reader.join(timeout=10)
    assert lines[-1] == "sa1b: error: interrupted; state saved, run the same command again to resume\n", lines[-3:]
    assert all(line.endswith("\n") for line in lines)
    assert [line for line in lines if "sa1b: error" in line] == [lines[-1]], lines[-3:]
