"""Where ROOT is: a ``-d`` one level too deep is refused with the -d to use, and ``download`` never
defaults to the working directory. Every test runs the installed ``sa1b`` as a separate process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sa1b_cli.errors import ExitStatus
from sa1b_cli.testing.generator import PartInfo
from sa1b_cli.testing.processes import run_sa1b, sa1b_command, sa1b_env

# Every command that takes -d, with what else it needs to run.
COMMANDS_WITH_ROOT = {
    "extract": [],
    "verify": [],
    "status": [],
    "manifest": [],
    "export": ["-o", "{out}"],
}


@pytest.fixture
def downloaded_root(links_file: Path, tmp_path: Path) -> Path:
    """A ROOT with the small parts downloaded and extracted by sa1b itself."""
    root = tmp_path / "root"
    result = run_sa1b("download", links_file, "-d", root, "--extract")
    assert result.returncode == 0, result.stderr
    return root


def _without_root_variable() -> dict[str, str]:
    env = sa1b_env()
    env.pop("SA1B_ROOT", None)
    return env


def _assert_refused_inside(result: subprocess.CompletedProcess[str], given: Path, root: Path) -> None:
    assert result.returncode == ExitStatus.USAGE, (result.returncode, result.stdout, result.stderr)
    assert f"{given} is inside the sa1b ROOT {root.resolve()}: use -d {root.resolve()}" in result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_ROOT))
def test_a_root_inside_another_root_is_refused_with_the_root_to_use(command: str, downloaded_root: Path,
                                                                    tmp_path: Path) -> None:
    extra = [arg.format(out=tmp_path / "export") for arg in COMMANDS_WITH_ROOT[command]]
    for inside in (downloaded_root / "tars", downloaded_root / "extracted" / "sa_000000", downloaded_root / ".sa1b"):
        _assert_refused_inside(run_sa1b(command, "-d", inside, *extra), inside, downloaded_root)
    assert not (downloaded_root / "tars" / "tars").exists() and not (downloaded_root / "tars" / ".sa1b").exists()
    assert not (tmp_path / "export").exists()


def test_download_into_a_roots_tars_is_refused_before_any_request(downloaded_root: Path, links_file: Path) -> None:
    inside = downloaded_root / "tars"
    _assert_refused_inside(run_sa1b("download", links_file, "-d", inside), inside, downloaded_root)
    _assert_refused_inside(run_sa1b("download", links_file, env={"SA1B_ROOT": str(inside)}), inside, downloaded_root)
    assert not (inside / "tars").exists() and not (inside / ".sa1b").exists()


def test_the_refusal_is_a_json_error_record_under_json(downloaded_root: Path) -> None:
    result = run_sa1b("--json", "extract", "-d", downloaded_root / "tars")
    assert result.returncode == ExitStatus.USAGE
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["type"] == "error" and record["exit_code"] == ExitStatus.USAGE
    assert f"use -d {downloaded_root.resolve()}" in record["message"]


def test_the_working_directory_inside_a_root_is_refused_too(downloaded_root: Path) -> None:
    result = subprocess.run(sa1b_command("extract"), cwd=downloaded_root / "tars", capture_output=True, text=True,
                            env=_without_root_variable(), timeout=120)
    _assert_refused_inside(result, Path("."), downloaded_root)


def test_tars_copied_by_hand_without_state_still_mark_a_root(small_parts: list[PartInfo], tmp_path: Path) -> None:
    root = tmp_path / "copied"
    (root / "tars").mkdir(parents=True)
    shutil.copyfile(small_parts[0].path, root / "tars" / small_parts[0].name)
    _assert_refused_inside(run_sa1b("extract", "-d", root / "tars"), root / "tars", root)


def test_a_root_itself_a_fresh_folder_and_a_root_beside_a_stray_state_folder_are_fine(downloaded_root: Path,
                                                                                      tmp_path: Path) -> None:
    assert run_sa1b("status", "-d", downloaded_root).returncode == 0
    assert run_sa1b("extract", "-d", downloaded_root).returncode == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert run_sa1b("extract", "-d", fresh).returncode == 0
    home = tmp_path / "home"  # a run without -d once left home/.sa1b: a ROOT below home is still a ROOT
    (home / ".sa1b").mkdir(parents=True)
    (home / "sa1b").mkdir()
    assert run_sa1b("extract", "-d", home / "sa1b").returncode == 0


def test_download_needs_a_root_and_never_fills_the_working_directory(links_file: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cron-home"
    cwd.mkdir()
    refused = subprocess.run(sa1b_command("download", links_file), cwd=cwd, capture_output=True, text=True,
                             env=_without_root_variable(), timeout=120)
    assert refused.returncode == ExitStatus.USAGE, refused.stderr
    assert "-d DIR" in refused.stderr and "SA1B_ROOT" in refused.stderr
    assert list(cwd.iterdir()) == []  # no tars/, no .sa1b/


def test_download_takes_its_root_from_the_variable(links_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "from-variable"
    result = run_sa1b("download", links_file, "--parts", "0", env={"SA1B_ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    assert (root / "tars" / "sa_000000.tar").is_file()
