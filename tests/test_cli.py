"""The command line edge: one exit-status order, errors through the console, the environment at the edge,
every option documented, --quiet quiet, one --parts parser, and links-file damage that never shows a signature.

Process-level tests run the installed ``sa1b`` as a separate process (``run_sa1b``), as a user or cron would.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sa1b_cli.cli import cli
from sa1b_cli.console import Console, Environment
from sa1b_cli.demo import DemoDirectory, DemoResult
from sa1b_cli.errors import SEVERITY, ExitStatus, worst
from sa1b_cli.events import PartTransfer, TransferSnapshot
from sa1b_cli.links import HTML_PAGE, LinksFileError, cut_link_warnings, parse_links_text
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo
from sa1b_cli.testing.processes import run_sa1b, sa1b_command, sa1b_env

REPO = Path(__file__).resolve().parents[1]
HOST = "https://scontent.xx.fbcdn.net"
SIGNATURE = "00_AQDsecretSIGNATUREvalue9876"


def _url(token: str, expires: datetime, signature: str = SIGNATURE) -> str:
    return f"{HOST}/m1/v/t6/{token}.tar?_nc_gid&ccb=10-5&oh={signature}&oe={int(expires.timestamp()):X}&_nc_sid=ba4296"


def _links(path: Path, expires: datetime, count: int = 2) -> Path:
    path.write_text("file_name\tcdn_link\n" + "".join(f"sa_{i:06d}.tar\t{_url(f'An{i}', expires)}\n" for i in range(count)))
    return path


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(cli)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}  # type: ignore[misc]


# -- one exit-status policy --------------------------------------------------------------------------------


def test_the_severity_order_ranks_every_status_once_and_is_not_numeric() -> None:
    assert sorted(SEVERITY) == sorted(ExitStatus)
    assert worst([ExitStatus.LOCKED, ExitStatus.PARTS_FAILED]) == ExitStatus.PARTS_FAILED  # 3 outranks 4
    assert worst([ExitStatus.LINKS_EXPIRED, ExitStatus.PARTS_FAILED]) == ExitStatus.PARTS_FAILED
    assert worst([ExitStatus.INCOMPLETE, ExitStatus.CORRUPT]) == ExitStatus.CORRUPT
    assert worst([ExitStatus.PARTS_FAILED, ExitStatus.WRONG_BYTES, ExitStatus.INTERRUPTED]) == ExitStatus.INTERRUPTED
    assert worst([]) == ExitStatus.OK


def test_the_demo_ranks_its_stages_by_the_same_order_as_download() -> None:
    result = DemoResult(DemoDirectory(Path("/nonexistent")), 1, 1)
    result.stages = {"download": ExitStatus.PARTS_FAILED, "extract": ExitStatus.LOCKED, "verify": ExitStatus.OK}
    assert result.exit_status == ExitStatus.PARTS_FAILED  # the numeric maximum said LOCKED (4)


def test_extract_ranks_its_parts_by_the_same_order() -> None:
    """A run stopped after a part failed says "not final" (130), as every command does, not "failed" (3).

    Built from real results, not through a process: the extract command re-raises the interrupt, which
    exits 130 before the result's status is asked; library callers and reports read ``exit_status``."""
    from sa1b_cli.extract.results import ExtractResult, PartExtractResult, PartStatus

    def result(*statuses: PartStatus) -> ExtractResult:
        return ExtractResult("parts", [PartExtractResult(f"sa_{i:06d}.tar", s) for i, s in enumerate(statuses)])

    assert result(PartStatus.FAILED, PartStatus.INTERRUPTED).exit_status == ExitStatus.INTERRUPTED
    assert result(PartStatus.LOCKED, PartStatus.FAILED).exit_status == ExitStatus.PARTS_FAILED
    assert result(PartStatus.EXTRACTED, PartStatus.LOCKED, PartStatus.NOT_DOWNLOADED).exit_status == ExitStatus.LOCKED
    assert result(PartStatus.EXTRACTED, PartStatus.ALREADY, PartStatus.NOT_DOWNLOADED).exit_status == ExitStatus.OK
    assert result(PartStatus.FAILED, PartStatus.INTERRUPTED).summary()["exit_code"] == ExitStatus.INTERRUPTED


def test_the_readme_writes_the_order_down() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    order = ", ".join(str(int(status)) for status in SEVERITY)
    assert f"worst first: {order}" in readme


# -- every error goes through the console --------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--json", "download", "--max-speed", "foo", "L"],
    ["download", "L", "--json", "--max-speed", "foo"],
    ["--json", "links", "L", "--no-such-option"],
])
def test_click_usage_errors_under_json_print_a_json_error_record(args: list[str]) -> None:
    result = run_sa1b(*args)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    [record] = _json_lines(result.stdout)
    assert record["type"] == "error" and record["exit_code"] == 2 and record["time"].endswith("Z")
    assert "Usage:" in result.stderr  # people still get click's usage text


def test_a_usage_error_without_json_prints_nothing_on_stdout() -> None:
    result = run_sa1b("download", "--max-speed", "foo", "L")
    assert result.returncode == ExitStatus.USAGE and result.stdout == ""
    assert "--max-speed" in result.stderr


def test_an_unexpected_failure_is_an_internal_error_with_exit_1(tmp_path: Path) -> None:
    """A hostile environment: stdout on a full disk. One clear line on stderr, no traceback without --debug."""
    links = _links(tmp_path / "links.txt", datetime.now(timezone.utc) + timedelta(days=9))
    with open("/dev/full", "w") as full:
        result = subprocess.run(sa1b_command("links", links), stdout=full, stderr=subprocess.PIPE, text=True,
                                env=sa1b_env(), timeout=60)
    assert result.returncode == ExitStatus.ERROR, result.stderr
    assert "internal error: OSError" in result.stderr and "No space left on device" in result.stderr
    assert "--debug" in result.stderr and "Traceback" not in result.stderr
    with open("/dev/full", "w") as full:
        debug = subprocess.run(sa1b_command("links", links, "--debug"), stdout=full, stderr=subprocess.PIPE,
                               text=True, env=sa1b_env(), timeout=60)
    assert debug.returncode == ExitStatus.ERROR and "Traceback" in debug.stderr


def test_debug_json_and_quiet_are_accepted_on_every_command_and_before_it() -> None:
    for name, command in _commands().items():
        names = {p.name for p in command.params}
        assert {"debug", "json_output", "quiet"} <= names, name
        result = CliRunner().invoke(cli, [name, "--debug", "--json", "--quiet", "--help"])
        assert result.exit_code == 0, (name, result.output)
    assert {"debug", "json_output", "quiet"} <= {p.name for p in cli.params}


def test_demo_debug_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine\n")
    result = run_sa1b("demo", "--debug", "--dir", tmp_path, "--count", 1, "--pairs", 1)
    assert result.returncode == ExitStatus.USAGE
    assert "No such option" not in result.stderr and "not empty and not a demo directory" in result.stderr


@pytest.mark.parametrize("where", ["/sys/sa1b-demo-read-only", "a-file/demo"])
def test_demo_in_a_directory_it_cannot_write_is_bad_usage(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("")
    directory = Path(where) if where.startswith("/") else tmp_path / where
    result = run_sa1b("demo", "--dir", directory, "--count", 1, "--pairs", 1)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    assert "cannot write the demo directory here" in result.stderr and "give a writable directory" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


# -- links: exit codes as the help says, one --parts parser ---------------------------------------------------


def test_links_with_every_link_expired_exits_8_as_its_help_says(tmp_path: Path) -> None:
    links = _links(tmp_path / "links.txt", datetime.now(timezone.utc) - timedelta(days=2))
    result = run_sa1b("links", links)
    assert result.returncode == ExitStatus.LINKS_EXPIRED, result.stderr
    assert "8 links expired" in CliRunner().invoke(cli, ["links", "--help"]).output.replace("\n", " ").replace("  ", " ")
    assert run_sa1b("links", tmp_path / "missing.txt").returncode == ExitStatus.USAGE
    (tmp_path / "bad.txt").write_text("file_name\tcdn_link\nsa_000000.tar\n")
    assert run_sa1b("links", tmp_path / "bad.txt").returncode == ExitStatus.USAGE


@pytest.mark.parametrize(("spec", "needle"), [
    ("abc", "not in the links file"), ("3-1", "is backwards"), ("0-2000", "not in the links file"),
])
def test_links_parts_are_parsed_like_downloads(tmp_path: Path, spec: str, needle: str) -> None:
    links = _links(tmp_path / "links.txt", datetime.now(timezone.utc) + timedelta(days=9))
    result = run_sa1b("links", links, "--parts", spec)
    assert result.returncode == ExitStatus.USAGE and needle in result.stderr, result.stderr
    download = run_sa1b("download", links, "-d", tmp_path / "root", "--parts", spec, "--dry-run")
    assert download.returncode == ExitStatus.USAGE and needle in download.stderr


def test_max_speed_takes_g_and_mb(cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    for speed in ("1G", "10MB", "10MiB", "512K"):
        result = run_sa1b("download", links_file, "-d", tmp_path / "root", "--max-speed", speed, "--dry-run")
        assert result.returncode == 0, (speed, result.stderr)
    assert run_sa1b("download", links_file, "-d", tmp_path / "root", "--max-speed", "1.5G").returncode == 2


# -- links-file damage ------------------------------------------------------------------------------------------


def _pieces(secret: str) -> list[str]:
    return [secret[i:i + 4] for i in range(len(secret) - 3)]


def _shown_text(text: str) -> str:
    try:
        links = parse_links_text(text, "links.txt")
    except LinksFileError as exc:
        return str(exc)
    return "\n".join(cut_link_warnings(links))


def test_a_damaged_line_never_shows_a_piece_of_the_signature() -> None:
    """The URL cut at every position: the tail dropped, moved to the next line, or split off by a space or tab."""
    line = f"sa_000000.tar\t{_url('AnToken', datetime(2026, 8, 1, tzinfo=timezone.utc))}"
    for cut in range(len("sa_000000.tar\t"), len(line) + 1):
        for damaged in (line[:cut], f"{line[:cut]}\n{line[cut:]}", f"{line[:cut]} {line[cut:]}", f"{line[:cut]}\t{line[cut:]}"):
            shown = _shown_text(f"file_name\tcdn_link\nsa_000001.tar\t{_url('An1', datetime(2026, 8, 1))}\n{damaged}\n")
            leaked = [piece for piece in _pieces(SIGNATURE) if piece in shown]
            assert not leaked, (cut, damaged, shown)


def test_a_damaged_links_file_through_the_cli_shows_no_signature(tmp_path: Path) -> None:
    line = f"sa_000000.tar\t{_url('AnToken', datetime(2026, 8, 1, tzinfo=timezone.utc))}"
    cut = line.index(SIGNATURE) + 9
    path = tmp_path / "links.txt"
    path.write_text(f"file_name\tcdn_link\n{line[:cut]}\n{line[cut:]}\n")
    result = run_sa1b("links", path, "--json")
    assert result.returncode == ExitStatus.USAGE
    assert f"{path}:3: expected 'NAME<TAB>URL', got 1 field(s)" in result.stderr
    assert not [piece for piece in _pieces(SIGNATURE) if piece in result.stdout + result.stderr]


def test_a_saved_html_page_is_named_once(tmp_path: Path) -> None:
    page = tmp_path / "segment_anything_links.txt"
    page.write_text("<!DOCTYPE html>\n<html><head><title>SA-1B</title></head>\n<body>\n"
                    + "".join(f"<a href='https://x/{i}'>sa_{i:06d}.tar</a>\n" for i in range(40)) + "</body></html>\n")
    result = run_sa1b("links", page)
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr.strip() == f"sa1b: error: {page}: {HTML_PAGE}"


def test_a_meta_link_cut_before_oe_and_oh_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "links.txt"
    good = _url("An0", datetime.now(timezone.utc) + timedelta(days=9))
    path.write_text(f"file_name\tcdn_link\nsa_000000.tar\t{good}\nsa_000001.tar\t{HOST}/m1/v/t6/An1.tar?_nc_gid&ccb=10-5\n")
    result = run_sa1b("links", path)
    assert result.returncode == ExitStatus.OK
    assert f"{path}:3: sa_000001.tar: Meta link without 'oe' and 'oh' (cut off partway?)" in result.stderr
    assert f"1 links carry no expiry ('oe' parameter); their expiry is unknown: {path}:3 (sa_000001.tar)" in result.stderr


# -- --quiet is quiet --------------------------------------------------------------------------------------------


def test_links_check_quiet_prints_the_summary_line_only(cdn: FakeCDN, links_file: Path, small_parts: list[PartInfo]) -> None:
    result = run_sa1b("links", links_file, "--check", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2, result.stdout  # the inspection's line and the check's line
    assert f"{len(small_parts)} links: {len(small_parts)} live" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("mode", ["plain", "rich"])
def test_quiet_is_decided_in_the_console_for_every_command(mode: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(Environment(out, err, mode == "rich"), mode=mode, interval=0, quiet=True)
    console.event("plan", "an info line")
    console.event("links", "a warning", level="warning")
    console.print_table("parts", ["part"], [["sa_000000.tar"]])
    console.print_note("a detail")
    progress = console.files("verify", 10)
    progress.advance(10)
    progress.close()
    console.transfer(TransferSnapshot(parts=[PartTransfer("sa_000000.tar", "active", 5, 10)], completed_bytes=5,
                                      total_bytes=10, done=1, total_parts=1))
    console.print_result("verify: the summary")
    console.close()
    assert out.getvalue().splitlines()[-1].endswith("verify: the summary") and len(out.getvalue().splitlines()) == 1
    assert "a warning" in err.getvalue()
    for shown in ("an info line", "sa_000000.tar", "a detail", "files", "10 B"):
        assert shown not in out.getvalue() + err.getvalue(), shown


def test_dry_run_quiet_prints_the_totals_not_the_table(cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    result = run_sa1b("download", links_file, "-d", tmp_path / "root", "--dry-run", "--quiet")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "download plan: 3 selected: 3 to fetch" in line and "needs" in line


def test_verify_and_status_quiet_print_no_table_and_no_progress(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    verify = run_sa1b("verify", "-d", root, "--quiet", "--expected", "0")
    assert "part " not in verify.stdout and "files/s" not in verify.stderr, verify.stdout + verify.stderr
    assert len(verify.stdout.splitlines()) == 1 and " verify (quick): 0 parts" in verify.stdout
    status = run_sa1b("status", "-d", root, "--quiet")
    assert status.returncode == 0, status.stderr
    assert len(status.stdout.splitlines()) == 1 and " status: root " in status.stdout, status.stdout


# -- the environment, read at the edge ----------------------------------------------------------------------------


def test_each_command_has_its_own_jobs_and_expected_variables_and_the_old_names_still_work() -> None:
    commands = _commands()
    for name in ("download", "links", "extract", "verify"):
        [jobs] = [p for p in commands[name].params if p.name == "jobs"]
        assert list(jobs.envvar) == [f"SA1B_{name.upper()}_JOBS", "SA1B_JOBS"]
    for name in ("status", "verify"):
        [expected] = [p for p in commands[name].params if p.name == "expected"]
        assert list(expected.envvar) == [f"SA1B_{name.upper()}_EXPECTED", "SA1B_EXPECTED"]


def test_the_per_command_name_wins_and_sets_only_its_command(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert run_sa1b("extract", "-d", root, env={"SA1B_JOBS": "0"}).returncode == ExitStatus.USAGE  # old name works
    assert run_sa1b("extract", "-d", root, env={"SA1B_JOBS": "0", "SA1B_EXTRACT_JOBS": "2"}).returncode == 0
    assert run_sa1b("extract", "-d", root, env={"SA1B_VERIFY_JOBS": "0"}).returncode == 0
    refused = run_sa1b("verify", "-d", root, env={"SA1B_VERIFY_JOBS": "0"})
    assert refused.returncode == ExitStatus.USAGE and "SA1B_VERIFY_JOBS" in refused.stderr


def test_the_core_reads_no_environment() -> None:
    """Only the cli package reads os.environ; the core is given what it needs (SA1B_RLE_BACKEND: cli/edge.py).

    aria2_daemon.py is no reader: it copies the environment into aria2c's (loopback added to no_proxy), so that
    the child process finds what any program does (PATH, HOME, proxies, certificates); sa1b decides nothing by it.
    testing/ starts processes for tests and benchmarks, as a user's shell would."""
    readers = []
    for path in sorted((REPO / "sa1b_cli").rglob("*.py")):
        relative = path.relative_to(REPO / "sa1b_cli").as_posix()
        if relative.startswith(("cli/", "testing/")) or relative == "aria2_daemon.py":
            continue
        if re.search(r"os\.environ|getenv", path.read_text()):
            readers.append(relative)
    assert readers == []


# -- every command and every option documented --------------------------------------------------------------------


def _section(readme: str, name: str) -> str:
    """README's command reference entry for ``sa1b NAME`` (up to the next entry)."""
    match = re.search(rf"^#### `sa1b {re.escape(name)}`\n(.*?)(?=^#{{2,4}} )", readme, re.S | re.M)
    assert match, f"README's command reference has no '#### `sa1b {name}`' entry"
    return match.group(1)


def _documented_names(param: click.Parameter) -> list[str]:
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
    return [opt for opt in param.opts if opt.startswith("--")] + envvars


def test_every_command_is_in_the_readme_reference() -> None:
    readme = (REPO / "README.md").read_text()
    for name in _commands():
        _section(readme, name)


def test_every_option_and_environment_variable_of_every_command_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = []
    for name, command in [("", cli), *_commands().items()]:
        section = _section(readme, name) if name else _section(readme, "[OPTIONS]")
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                missing += [f"{name or 'sa1b'} {doc}" for doc in _documented_names(param) if f"`{doc}`" not in section]
    assert missing == []
