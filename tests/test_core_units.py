"""Links parsing, part selection, sharding, locks, console modes and CLI conventions."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest

from sa1b_cli.cli import cli
from sa1b_cli.console import Console, Environment
from sa1b_cli.errors import UsageError
from sa1b_cli.events import PartTransfer, TransferSnapshot
from sa1b_cli.links import LinksFileError, parse_links, parse_links_text, redact_text, redact_url, url_expiry
from sa1b_cli.store.locks import PartLock, read_holder
from sa1b_cli.selection import parse_shard, select

REPO = Path(__file__).resolve().parents[1]
URL = "https://scontent.xx.fbcdn.net/m1/v/t6/AnTOKEN.tar?_nc_gid&ccb=10-5&oh=00_SECRETSIG&oe=6A7424B6&_nc_sid=ba4296"


def links_text(n: int = 3, extras: tuple[str, ...] = ()) -> str:
    rows = ["file_name\tcdn_link"] + [f"sa_{i:06d}.tar\t{URL}" for i in range(n)] + [f"{e}\t{URL}" for e in extras]
    return "\n".join(rows)


# -- links ---------------------------------------------------------------------------------


def test_parses_meta_format_with_extras_and_expiry() -> None:
    links = parse_links_text(links_text(3, ("sa_images_ids.txt", "sa_co_gold.tar")))
    assert [e.name for e in links.parts] == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    assert [e.name for e in links.extras] == ["sa_images_ids.txt", "sa_co_gold.tar"]
    assert url_expiry(URL) == datetime(2026, 8, 6, 6, 7, 50, tzinfo=timezone.utc)
    assert links.parts[0].line == 2


@pytest.mark.parametrize("transform", [
    lambda t: t.replace("\n", "\r\n"),
    lambda t: "\ufeff" + t,
    lambda t: "\n\n" + t.replace("\n", "\n\n") + "\n\n",
    lambda t: t.split("\n", 1)[1],  # no header
    lambda t: t + "\n",
])
def test_tolerates_line_endings_bom_blank_lines_and_missing_header(transform) -> None:
    assert len(parse_links_text(transform(links_text(3))).parts) == 3


def test_bom_in_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "links.txt"
    path.write_bytes(b"\xef\xbb\xbf" + links_text(2).encode())
    assert len(parse_links(path).parts) == 2


@pytest.mark.parametrize("line, message", [
    ("sa_000009.tar", "expected 'NAME<TAB>URL'"),
    (f"sa_000000.tar\t{URL}", "duplicate file name 'sa_000000.tar' (first on line 2)"),
    (f"dir/sa_000009.tar\t{URL}", "contains a path"),
    (f"..\t{URL}", "not allowed"),
    ("sa_000009.tar\tftp://example.invalid/x", "must be http(s)"),
    ("sa_000009.tar\thttp://", "no host"),
    (f"sa_000009.tar\t{URL}\textra", "3 field(s)"),
])
def test_rejects_bad_lines_naming_the_line(line: str, message: str) -> None:
    with pytest.raises(LinksFileError) as info:
        parse_links_text(links_text(2) + "\n" + line, "links.txt")
    assert info.value.line == 4
    assert message in str(info.value)
    assert "SECRETSIG" not in str(info.value)


def test_reports_every_problem_at_once() -> None:
    with pytest.raises(LinksFileError) as info:
        parse_links_text("file_name\tcdn_link\nbad\nworse\nsa_000001.tar\tgopher://x", "f.txt")
    assert [line for line, _ in info.value.problems] == [2, 3, 4]
    assert "3 problems" in str(info.value) and "f.txt:4" in str(info.value)


def test_empty_and_binary_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(LinksFileError, match="no links found"):
        parse_links_text("file_name\tcdn_link\n\n")
    binary = tmp_path / "links.tar"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    with pytest.raises(Exception, match="links.tar:1: not valid UTF-8"):
        parse_links(binary)


def test_redaction_hides_signatures_but_keeps_expiry() -> None:
    redacted = redact_url(URL)
    assert "SECRETSIG" not in redacted and "oh=REDACTED" in redacted and "oe=6A7424B6" in redacted
    assert "SECRETSIG" not in redact_text(f"error 22 for {URL} (status=403)")
    assert redact_url("http://127.0.0.1:8000/x.tar") == "http://127.0.0.1:8000/x.tar"


# -- selection -----------------------------------------------------------------------------


def test_parts_spec_numbers_ranges_names_and_extras() -> None:
    links = parse_links_text(links_text(30, ("sa_images_ids.txt",)))
    chosen = select(links, "0-2,15,sa_000020.tar,sa_000021,sa_images_ids.txt")
    assert [e.name for e in chosen] == [
        "sa_000000.tar", "sa_000001.tar", "sa_000002.tar", "sa_000015.tar", "sa_000020.tar", "sa_000021.tar", "sa_images_ids.txt"]
    assert "sa_images_ids.txt" not in [e.name for e in select(links)]
    with pytest.raises(UsageError, match="sa_000031.tar"):
        select(links, "29-31")
    with pytest.raises(UsageError, match="backwards"):
        select(links, "9-1")


def test_shards_partition_the_parts_by_number() -> None:
    links = parse_links_text(links_text(10))
    shards = [[e.name for e in select(links, None, parse_shard(f"{k}/3", {}))] for k in range(3)]
    assert sorted(sum(shards, [])) == [e.name for e in links.parts]
    assert shards[1] == ["sa_000001.tar", "sa_000004.tar", "sa_000007.tar"]
    # a fresh links file (other rows, other order) keeps each part on its host
    reordered = parse_links_text("\n".join(reversed(links_text(12).splitlines()[1:])))
    assert set(shards[1]) <= {e.name for e in select(reordered, None, parse_shard("1/3", {}))}


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4)),
    ({"JOB_COMPLETION_INDEX": "2", "SA1B_SHARD_COUNT": "5"}, (2, 5)),
])
def test_shard_auto_reads_slurm_and_kubernetes(env: dict[str, str], expected: tuple[int, int]) -> None:
    shard = parse_shard("auto", env)
    assert shard is not None and (shard.index, shard.count) == expected


@pytest.mark.parametrize("spec, env", [("4/4", {}), ("x", {}), ("auto", {}), ("auto", {"JOB_COMPLETION_INDEX": "1"})])
def test_bad_shards_are_usage_errors(spec: str, env: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        parse_shard(spec, env)


# -- locks ---------------------------------------------------------------------------------


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first, second = PartLock(tmp_path / "p.lock"), PartLock(tmp_path / "p.lock")
    assert first.try_acquire() is None
    holder = second.try_acquire()
    assert holder is not None and holder.pid == os.getpid()
    first.release()
    assert second.try_acquire() is None
    second.release()
    assert not (tmp_path / "p.lock").exists()


def test_lock_of_a_dead_process_or_too_old_is_broken(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "p.lock"
    path.write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "token": "t", "started": 0}))
    assert PartLock(path).try_acquire() is None
    other_host = tmp_path / "q.lock"
    other_host.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t", "started": 0}))
    assert PartLock(other_host, stale_after=60).try_acquire() is not None  # fresh lock of another host holds
    old = time.time() - 600
    os.utime(other_host, (old, old))
    assert PartLock(other_host, stale_after=60).try_acquire() is None


def test_refresh_detects_a_stolen_lock(tmp_path: Path) -> None:
    lock = PartLock(tmp_path / "p.lock")
    assert lock.try_acquire() is None and lock.refresh()
    (tmp_path / "p.lock").write_text(json.dumps({"host": "h", "pid": 1, "token": "other"}))
    assert not lock.refresh()
    lock.release()
    assert read_holder(tmp_path / "p.lock").token == "other"  # never removes someone else's lock


# -- console -------------------------------------------------------------------------------


def test_plain_mode_writes_timestamped_lines_without_escape_codes() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(Environment(out, err, False), mode="plain", interval=0)
    console.event("part_done", "sa_000000.tar: complete")
    snapshot = TransferSnapshot([PartTransfer("sa_000001.tar", "active", 5, 10, 1.0)], 5, 10, 1.0, 5.0, 0, 0, 1)
    console.transfer(snapshot)
    progress = console.files("extract", 10)
    progress.advance(5, 100)
    progress.close()
    lines = err.getvalue().splitlines()
    assert len(lines) >= 3
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", line) for line in lines)
    assert "\x1b" not in err.getvalue() and "\r" not in err.getvalue()
    assert "50%" in lines[1]


def test_json_mode_writes_only_json_lines_to_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(Environment(out, err, True), mode="json", interval=0)
    console.event("plan", "hello", parts=3)
    console.files("verify", 2).close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[0]["kind"] == "plan" and records[0]["parts"] == 3 and records[1]["type"] == "progress"
    assert err.getvalue() == ""


# -- CLI conventions -----------------------------------------------------------------------


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(cli)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}  # type: ignore[misc]


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name in _commands():
        assert f"sa1b {name}" in readme, f"README does not document `sa1b {name}`"


def test_every_option_has_an_sa1b_environment_variable() -> None:
    """Every option a user can see; a hidden, deprecated spelling (demo's old ``-d``) is not one to set from cron."""
    for name, command in _commands().items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help" and not param.hidden:
                names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
                assert names and all(n.startswith("SA1B_") for n in names), f"{name} {param.opts}"


def test_every_command_has_help() -> None:
    from click.testing import CliRunner

    for name in _commands():
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output and len(result.output) > 200


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme


def test_verify_report_to_an_unwritable_place_is_a_clear_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(cli, ["verify", "-d", str(root), "--report", str(tmp_path / "a-file" / "r.json")])
    assert result.exit_code == 2
    assert "cannot write the report" in result.output and "Traceback" not in result.output
