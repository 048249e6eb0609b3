"""Bad input is refused clearly: malformed links files (fuzzed), hostile tars, broken files, bad options.

Every refusal must name what is wrong (the file and line, the part, the option), exit with the
documented code (2 bad usage or input, 3 parts failed, 6 corrupt) and never show a traceback
unless ``--debug`` is given. Commands run as real processes, as a user or cron would run them, except
the many option checks, which call the same click command in this process.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sa1b_cli.cli import cli
from sa1b_cli.errors import ExitStatus, InputFileError
from sa1b_cli.integrity import ArchiveError, check_part, hash_file
from sa1b_cli.store import DownloadReceipt, ExtractReceipt, ReceiptStore
from sa1b_cli.links import LinksFileError, parse_links, parse_links_text, redact_text, redact_url
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.generator import HOSTILE_KINDS, write_hostile_tar, write_part
from sa1b_cli.testing.processes import run_sa1b

GOOD_URL = "https://scontent.xx.fbcdn.net/m1/v/t6/An{token}.tar?_nc_gid&ccb=10-5&oh=00_{sig}&oe={oe:X}&_nc_sid=ba4296"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (fast, for the many option checks); same shape as ``run_sa1b``'s result."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit code, every needle in stderr, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout


def good_links_text(n: int = 3) -> str:
    rows = [f"sa_{i:06d}.tar\t{GOOD_URL.format(token=i, sig=f'sig{i}', oe=2_000_000_000)}" for i in range(n)]
    return "file_name\tcdn_link\n" + "\n".join(rows) + "\n"


# -- links files: fuzzing and round trips --------------------------------------------------------

_FRAGMENTS = ["file_name\tcdn_link", "sa_000001.tar", "sa_000001.tar\thttp://h/x?oe=FF&oh=s", "\t", " ", "\r", "\n",
              "\r\n", "\ufeff", "http://[::1/x", "http://h:99999/", "https://", "ftp://h/x", "../x.tar", "/abs.tar",
              ".hidden", "sa_images_ids.txt", "?oe=ZZZZ", "&oh=", "\x00", "\x0c", "\x85", "\u2028", "é", "\ud800",
              "a" * 300, "http://u:p@h/x"]
_links_like = st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=12), max_size=14).map("".join)


@FUZZ
@given(st.one_of(st.text(), _links_like))
def test_any_text_parses_or_is_refused_naming_lines(text: str) -> None:
    try:
        links = parse_links_text(text, "links.txt")
    except LinksFileError as exc:
        assert exc.problems
        for line, message in exc.problems:
            assert message
            assert line is None or 1 <= line <= text.count("\n") + text.count("\r") + 1
        first_line = exc.problems[0][0]
        assert (f"links.txt:{first_line}:" if first_line else "links.txt:") in str(exc)  # names the file and line
        return
    assert links.entries
    for entry in links.entries:  # what parsed is usable further on
        assert "/" not in entry.name and urlsplit(entry.url).scheme.lower() in ("http", "https")
        assert entry.expires_at is None or entry.expires_at.tzinfo is not None
        assert entry.part_index is None or entry.name == f"sa_{entry.part_index:06d}.tar"
        assert "oh=" not in entry.redacted_url or "oh=REDACTED" in entry.redacted_url


@FUZZ
@given(st.text())
def test_redaction_never_raises_and_never_shows_a_signature(noise: str) -> None:
    url = f"https://h.example/p{noise}?oh=SIGNATURE&oe=1&_nc_sid=SID"
    text = f"error for {url}: {noise}"
    for redacted in (redact_url(url), redact_text(text)):
        assert "SIGNATURE" not in redacted or "SIGNATURE" in noise
        assert "SID" not in redacted or "SID" in noise


_names = st.one_of(st.integers(0, 999).map(lambda i: f"sa_{i:06d}.tar"),
                   st.sampled_from(["sa_images_ids.txt", "sa_co_gold.tar"]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.dictionaries(_names, st.tuples(st.text("abcdefXYZ0189-_", min_size=1, max_size=20), st.integers(0, 2**32 - 1)),
                         min_size=1, max_size=12),
    crlf=st.booleans(), bom=st.booleans(), header=st.booleans(), final_newline=st.booleans(),
    blank_lines=st.lists(st.integers(0, 12), max_size=4), spaces_around=st.booleans(),
)
def test_valid_files_round_trip(rows: dict, crlf: bool, bom: bool, header: bool, final_newline: bool,
                                blank_lines: list[int], spaces_around: bool) -> None:
    urls = {name: GOOD_URL.format(token=token, sig=token[::-1], oe=oe) for name, (token, oe) in rows.items()}
    lines = [f" {n}\t{u} " if spaces_around else f"{n}\t{u}" for n, u in urls.items()]
    for position in sorted(blank_lines, reverse=True):
        lines.insert(min(position, len(lines)), "")
    if header:
        lines.insert(0, "file_name\tcdn_link")
    newline = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + newline.join(lines) + (newline if final_newline else "")

    links = parse_links_text(text, "links.txt")

    assert {e.name: e.url for e in links.entries} == urls
    assert [e.name for e in links.parts] == sorted(n for n in urls if n.startswith("sa_0"))
    for entry in links.entries:  # line numbers are the editor's (1-based, counting every line)
        assert text.lstrip("\ufeff").split(newline)[entry.line - 1].strip().startswith(entry.name)
        assert entry.expires_at is not None and entry.expires_at.timestamp() == rows[entry.name][1]


@pytest.mark.parametrize(("content", "line", "problem"), [
    (b"", None, "no links found"),
    (b"file_name\tcdn_link\n", None, "no links found"),
    (b"file_name\tcdn_link\nsa_000000.tar\thttp://h/\xff\xfe\n", 2, "not valid UTF-8"),
    (b"file_name\tcdn_link\nsa_000000.tar\thttp://h/x\n\x00\x01binary", 3, "NUL byte"),
    (b"file_name\tcdn_link\nsa_000000.tar\thttp://h/a\x0cb\nsa_000001.tar\thttp://h/x\n", 2, "whitespace or control"),
    (b"file_name\tcdn_link\nsa_000000.tar\thttp://[::1/x?oh=SECRET\n", 2, "malformed URL"),
])
def test_broken_links_files_name_the_line(tmp_path: Path, content: bytes, line: int | None, problem: str) -> None:
    path = tmp_path / "links.txt"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        parse_links(path)
    assert caught.value.line == line and problem in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}:" if line else f"{path}:")
    assert "SECRET" not in str(caught.value)


def test_cli_refuses_unusable_links_files_without_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "links.bin"
    binary.write_bytes(gzip.compress(b"file_name\tcdn_link\n"))
    many = tmp_path / "many.txt"
    many.write_text("file_name\tcdn_link\n" + "".join(f"junk{i}\n" for i in range(30)))
    cases = [
        (binary, "links.bin:1: not valid UTF-8"),
        (tmp_path / "absent.txt", "absent.txt: links file not found"),
        (tmp_path, "is a directory"),
        (many, "30 problems in the links file"),
    ]
    for links, message in cases:
        result = invoke("download", links, "-d", tmp_path / "root", "--dry-run")
        assert_refused(result, ExitStatus.USAGE, message)
    assert "many.txt:2:" in result.stderr and "and 10 more problems" in result.stderr
    assert not (tmp_path / "root" / "tars").exists()


def test_cli_refuses_a_malformed_checksum_list_naming_the_line(tmp_path: Path) -> None:
    links = tmp_path / "links.txt"
    links.write_text(good_links_text())
    sums = tmp_path / "checklist.txt"
    sums.write_text(f"{'a' * 32}  sa_000000.tar\nnot a checksum line\n")
    assert_refused(invoke("download", links, "-d", tmp_path / "root", "--checksums", sums, "--dry-run"),
                   ExitStatus.USAGE, "checklist.txt:2:", "expected '<32 hex md5>")
    sums.write_text(f"{'a' * 32}  sa_000000.tar\n{'b' * 32}  sa_000000.tar\n")
    assert_refused(invoke("download", links, "-d", tmp_path / "root", "--checksums", sums, "--dry-run"),
                   ExitStatus.USAGE, "checklist.txt:2:", "listed twice")


# -- options out of range ---------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--jobs", "0"], {}, "--jobs"),
    ([], {"SA1B_JOBS": "0"}, "SA1B_JOBS"),
    (["--connections", "99"], {}, "--connections"),
    (["--shard", "5/4"], {}, "--shard 5/4"),
    (["--shard", "1/0"], {}, "--shard 1/0"),
    (["--shard", "auto"], {"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_COUNT"),
    (["--parts", "9-1"], {}, "'9-1' is backwards"),
    (["--parts", "7"], {}, "not in the links file"),
    (["--max-speed", "fast"], {}, "--max-speed"),
    (["--max-speed", "1.5M"], {}, "--max-speed"),  # aria2c takes whole numbers only
    (["--min-split-size", "0"], {}, "--min-split-size"),  # aria2c: 1M .. 1024M
    (["--min-split-size", "2048M"], {}, "--min-split-size"),
    (["--stall-timeout", "1"], {}, "--stall-timeout"),
    (["--retries", "-1"], {}, "--retries"),
    (["--remove-tars"], {}, "--remove-tars needs --extract"),
    (["--extract", "--layout", "nested"], {}, "--layout"),
])
def test_options_out_of_range_are_usage_errors(tmp_path: Path, args: list[str], env: dict[str, str], needle: str) -> None:
    links = tmp_path / "links.txt"
    links.write_text(good_links_text())
    result = invoke("download", links, "-d", tmp_path / "root", "--dry-run", *args, env=env)
    assert_refused(result, ExitStatus.USAGE, needle)
    assert "checking" not in result.stderr  # refused before any network request


def test_root_that_cannot_be_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    links = tmp_path / "links.txt"
    links.write_text(good_links_text())
    a_file = tmp_path / "afile"
    a_file.write_text("")
    assert_refused(invoke("download", links, "-d", a_file), ExitStatus.USAGE, "afile")
    assert_refused(invoke("download", links, "-d", a_file / "sub"), ExitStatus.USAGE, "afile/sub")
    assert_refused(invoke("extract", "-d", a_file), ExitStatus.USAGE, "afile")


@pytest.fixture
def read_only_root(tmp_path: Path):
    """A directory on a read-only bind mount (root ignores chmod, so a mode of 0555 would prove nothing)."""
    source, mount = tmp_path / "ro-source", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    bind = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root in a mount namespace): {bind.stderr.strip()}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_read_only_root_is_refused_before_any_transfer(tmp_path: Path, read_only_root: Path) -> None:
    links = tmp_path / "links.txt"
    links.write_text(good_links_text())
    result = run_sa1b("download", links, "-d", read_only_root)
    assert_refused(result, ExitStatus.USAGE, str(read_only_root), "cannot write")
    assert "internal error" not in result.stderr and "checking" not in result.stderr


# -- hostile and broken tars through `sa1b extract` --------------------------------------------


def add_downloaded(paths: RootPaths, source: Path, name: str) -> None:
    """``source`` as ROOT/tars/NAME with its download receipt, as `sa1b download` leaves it (a hostile tar,
    which the download check refuses, as if it was replaced after its download)."""
    paths.tars.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, paths.tar(name))
    try:
        check = check_part(paths.tar(name))
        fields = {"size": check.size, "md5": check.md5, "sha256": check.sha256, "compressed": check.compressed,
                  "members": check.members, "images": check.images, "annotations": check.annotations}
    except ArchiveError:
        size, md5, sha256 = hash_file(paths.tar(name))
        fields = {"size": size, "md5": md5, "sha256": sha256}
    ReceiptStore(paths).write(DownloadReceipt(name, url="https://x/REDACTED", **fields))


def visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in ("tars", ".sa1b"))


def test_hostile_tars_fail_their_part_with_a_reason_and_touch_nothing(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path / "root")
    expected = {
        "absolute": "absolute path", "dotdot": "contains '..'", "symlink": "symbolic link",
        "hardlink": "hard link", "device": "character device", "fifo": "FIFO",
    }
    assert set(expected) == set(HOSTILE_KINDS)
    names = {}
    for index, kind in enumerate(HOSTILE_KINDS, start=10):
        names[kind] = f"sa_{index:06d}.tar"
        write_hostile_tar(tmp_path / names[kind], kind)
        add_downloaded(paths, tmp_path / names[kind], names[kind])
    good = write_part(tmp_path / "good.tar", 1, 3, masks_per_image=1, first_image_id=100)
    add_downloaded(paths, good.path, "sa_000001.tar")
    absolute_target = Path("/tmp/sa1b_hostile_absolute.jpg")
    existed = absolute_target.exists()

    result = run_sa1b("extract", "-d", paths.root, "--layout", "split", "--jobs", "2")

    assert_refused(result, ExitStatus.PARTS_FAILED)
    for kind, name in names.items():
        line = next((l for l in result.stderr.splitlines() if f"{name}: extraction failed" in l), "")
        assert expected[kind] in line, (kind, result.stderr)
        assert ReceiptStore(paths).read(ExtractReceipt, name) is None
    assert {p.name for p in visible_files(paths.root)} == {f"sa_{i}.{e}" for i in good.image_ids for e in ("jpg", "json")}
    assert existed or not absolute_target.exists()
    assert not list(tmp_path.rglob("sa1b_hostile_*"))
    assert "6 failed" in result.stdout + result.stderr


def test_names_colliding_across_parts_fail_the_second_part(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path / "root")
    first = write_part(tmp_path, 0, 3, masks_per_image=1, first_image_id=1, seed=1)
    second = write_part(tmp_path, 1, 3, first_image_id=3, masks_per_image=1, seed=2)  # sa_3 in both
    add_downloaded(paths, first.path, first.name)
    assert run_sa1b("extract", "-d", paths.root, "--layout", "flat").returncode == 0
    before = (paths.root / "extracted" / "sa_3.jpg").read_bytes()
    add_downloaded(paths, second.path, second.name)
    result = run_sa1b("extract", "-d", paths.root)
    assert_refused(result, ExitStatus.PARTS_FAILED, "sa_000001.tar", "already exists")
    assert (paths.root / "extracted" / "sa_3.jpg").read_bytes() == before


def test_member_count_cap_refuses_a_tar_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A million-member archive would take minutes to build; the cap is lowered so the real walker hits it."""
    from sa1b_cli import extract

    paths = RootPaths(tmp_path / "root")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for i in range(60):
            info = tarfile.TarInfo(f"./sa_{i}.json")
            tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "bomb.tar").write_bytes(gzip.compress(raw.getvalue()))
    add_downloaded(paths, tmp_path / "bomb.tar", "sa_000005.tar")
    monkeypatch.setattr(extract.unpack, "MAX_MEMBERS", 50)
    result = CliRunner().invoke(cli, ["extract", "-d", str(paths.root)])
    assert result.exit_code == ExitStatus.PARTS_FAILED
    assert "more than 50 members" in result.output and "Traceback" not in result.output
    assert visible_files(paths.root) == []


def test_debug_shows_the_traceback_of_an_internal_error(tmp_path: Path) -> None:
    """Without --debug an unexpected error is one line; with it, the traceback (for a bug report)."""
    links = tmp_path / "links.txt"
    links.write_text(good_links_text())
    broken = tmp_path / "root"
    (broken / ".sa1b").mkdir(parents=True)
    (broken / ".sa1b" / "layout.json").mkdir()  # a directory where a file must be: not a usage problem
    plain = run_sa1b("extract", "-d", broken)
    debug = run_sa1b("--debug", "extract", "-d", broken)
    assert plain.returncode == debug.returncode == ExitStatus.USAGE
    assert re.search(r"^sa1b: error: .*layout\.json", plain.stderr, re.M) and "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr


# -- damaged and hostile files under ROOT for `sa1b verify` --------------------------------------


def test_verify_names_every_hostile_file_without_hanging_or_following_links(tmp_path: Path) -> None:
    """JSON bombs, wrong types, non-UTF-8, a FIFO (reading it would block), a link to /dev/zero (reading
    it never ends), a PNG posing as a JPEG, a folder where a file belongs, a 5 MB mask string."""
    from sa1b_cli.extract import extract_parts

    paths = RootPaths(tmp_path / "root")
    part = write_part(tmp_path, 0, 8, masks_per_image=2)
    add_downloaded(paths, part.path, part.name)
    assert extract_parts(paths, [part.name], "parts", durable=False).parts[0].ok
    folder = paths.root / "extracted" / "sa_000000"
    hostile = {
        folder / "sa_1.json": lambda p: p.write_bytes(b"[" * 100_000 + b"]" * 100_000),
        folder / "sa_2.json": lambda p: p.write_bytes(b'{"image": {"image_id": 1e400, "width": "x"}, "annotations": 7}'),
        folder / "sa_3.json": lambda p: p.write_bytes(b"\xff\xfe\x00 not text"),
        folder / "sa_4.json": lambda p: (p.unlink(), os.mkfifo(p)),
        folder / "sa_5.jpg": lambda p: (p.unlink(), os.symlink("/dev/zero", p)),
        folder / "sa_6.jpg": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100)),
        folder / "sa_7.jpg": lambda p: (p.unlink(), p.mkdir()),
        folder / "sa_8.json": lambda p: p.write_bytes(p.read_bytes().replace(b'"counts": "', b'"counts": "' + b"0" * 5_000_000, 1)),
    }
    for path, damage in hostile.items():
        damage(path)

    result = run_sa1b("verify", "-d", paths.root, "--deep", "--expected", 8, "-j", "1")

    assert_refused(result, ExitStatus.CORRUPT)
    for path in hostile:
        assert str(path) in result.stdout, (path, result.stdout)


def test_verify_works_on_a_read_only_dataset(tmp_path: Path, read_only_root: Path) -> None:
    """A finished dataset is often shared read-only; verifying it must not need write access."""
    from sa1b_cli.extract import extract_parts

    source = tmp_path / "ro-source"  # what the read-only mount shows
    paths = RootPaths(source)
    part = write_part(tmp_path, 0, 4, masks_per_image=1)
    add_downloaded(paths, part.path, part.name)
    assert extract_parts(paths, [part.name], "parts", durable=False).parts[0].ok
    result = run_sa1b("verify", "-d", read_only_root, "--deep", "--expected", 4, "-j", "1")
    assert result.returncode == ExitStatus.OK, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot save verify results" in result.stderr  # said once, the verdict stands
