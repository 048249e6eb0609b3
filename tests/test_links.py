"""``sa1b links``: inspection, diff of two links files, and --check against the loopback CDN."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner, Result

from sa1b_cli.cli import cli
from sa1b_cli.console import human_bytes
from sa1b_cli.errors import ExitStatus
from sa1b_cli.linkinfo import compress_numbers, diff_links, inspect_links, relative_time
from sa1b_cli.links import parse_links, parse_links_text
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo

NOW = datetime(2026, 7, 25, 6, 7, 50, tzinfo=timezone.utc)
HOST = "https://scontent.xx.fbcdn.net"


def _url(token: str, expires: datetime, signature: str = "00_AQsig", host: str = HOST) -> str:
    return f"{host}/m1/v/t6/{token}.tar?_nc_gid&ccb=10-5&oh={signature}&oe={int(expires.timestamp()):X}&_nc_sid=ba4296"


def _links_text(rows: dict[str, str]) -> str:
    return "file_name\tcdn_link\n" + "".join(f"{name}\t{url}\n" for name, url in rows.items())


def _write(path: Path, rows: dict[str, str]) -> Path:
    path.write_text(_links_text(rows))
    return path


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --------------------------------------------------------------------------- helpers


def test_relative_time_and_number_ranges() -> None:
    assert relative_time(NOW + timedelta(days=12, hours=3), NOW) == "in 12 days"
    assert relative_time(NOW - timedelta(days=3, hours=1), NOW) == "expired 3 days ago"
    assert relative_time(NOW + timedelta(hours=5), NOW) == "in 5 hours"
    assert relative_time(NOW + timedelta(minutes=1, seconds=5), NOW) == "in 1 minute"
    assert relative_time(NOW - timedelta(seconds=20), NOW) == "expired less than a minute ago"
    assert compress_numbers([19, 5, 17, 18, 30]) == "5, 17-19, 30"


# --------------------------------------------------------------------------- inspection


def test_inspect_reports_parts_extras_and_expiry() -> None:
    expires = NOW + timedelta(days=12)
    rows = {f"sa_{i:06d}.tar": _url(f"An{i}", expires + timedelta(minutes=i)) for i in range(5)}
    rows["sa_images_ids.txt"] = _url("Anids", expires)
    rows["sa_co_gold.tar"] = _url("Angold", expires)
    report = inspect_links(parse_links_text(_links_text(rows), "links.txt"), now=NOW)
    assert report.parts == [f"sa_{i:06d}.tar" for i in range(5)]
    assert report.extras == ["sa_images_ids.txt", "sa_co_gold.tar"]
    assert report.earliest_expiry == expires
    assert report.latest_expiry == expires + timedelta(minutes=4)
    assert report.expired == [] and report.missing_part_numbers == [] and report.warnings == []
    assert report.hosts == ["scontent.xx.fbcdn.net"]


def test_cli_inspects_a_good_file(tmp_path: Path) -> None:
    expires = datetime.now(timezone.utc) + timedelta(days=12, hours=1)
    rows = {f"sa_{i:06d}.tar": _url(f"An{i}", expires) for i in range(3)}
    rows["sa_images_ids.txt"] = _url("Anids", expires)
    result = _run("links", str(_write(tmp_path / "links.txt", rows)))
    assert result.exit_code == ExitStatus.OK
    assert "3 (sa_000000.tar ... sa_000002.tar)" in result.stdout
    assert "1: sa_images_ids.txt" in result.stdout
    assert f"{expires:%Y-%m-%d %H:%M:%S} UTC (in 12 days)" in result.stdout
    assert "expired           none" in result.stdout
    assert "oh=" not in result.stdout + result.stderr
    assert "WARNING" not in result.stderr


def test_cli_inspects_an_expired_file(tmp_path: Path) -> None:
    expired = datetime.now(timezone.utc) - timedelta(days=3, hours=1)
    rows = {f"sa_{i:06d}.tar": _url(f"An{i}", expired) for i in range(2)}
    result = _run("links", str(_write(tmp_path / "links.txt", rows)))
    assert result.exit_code == ExitStatus.LINKS_EXPIRED  # as the help says (issue 15 item 8; it was 0)
    assert "(expired 3 days ago)" in result.stdout
    assert "2: sa_000000.tar, sa_000001.tar" in result.stdout
    assert "all 2 links have expired (expired 3 days ago): get a fresh links file" in result.stderr


def test_cli_inspects_a_mixed_file_with_gaps_as_json(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    rows = {
        "sa_000000.tar": _url("An0", now - timedelta(hours=3)),
        "sa_000001.tar": _url("An1", now + timedelta(days=20)),
        "sa_000004.tar": _url("An4", now + timedelta(days=20)),
        "sa_000005.tar": f"{HOST}/m1/v/t6/An5.tar?ccb=10-5",
    }
    result = _run("links", str(_write(tmp_path / "links.txt", rows)), "--json")
    assert result.exit_code == ExitStatus.OK
    records = _json_lines(result.stdout)
    [report] = [r for r in records if r["type"] == "links"]
    assert report["part_count"] == 4 and report["extra_count"] == 0
    assert report["expired"] == ["sa_000000.tar"]
    assert report["without_expiry"] == ["sa_000005.tar"]
    assert report["missing_part_numbers"] == [2, 3]
    assert report["all_expired"] is False
    warnings = [r["message"] for r in records if r["type"] == "event" and r["level"] == "warning"]
    assert any("part numbers missing from the links file: 2-3 (2 parts)" in w for w in warnings)
    assert any("1 of 4 links have expired" in w for w in warnings)
    assert any("1 links carry no expiry" in w for w in warnings)


def test_cli_rejects_a_malformed_file_naming_every_line(tmp_path: Path) -> None:
    path = tmp_path / "links.txt"
    path.write_text(
        "file_name\tcdn_link\n"
        f"sa_000000.tar\t{_url('An0', NOW)}\n"
        "sa_000001.tar\n"
        f"../evil.tar\t{_url('An2', NOW)}\n"
        f"sa_000000.tar\t{_url('An3', NOW)}\n"
    )
    result = _run("links", str(path))
    assert result.exit_code == ExitStatus.USAGE
    assert "3 problems in the links file" in result.stderr
    assert f"{path}:3: expected 'NAME<TAB>URL', got 1 field(s)" in result.stderr
    assert f"{path}:4: file name '../evil.tar' contains a path" in result.stderr
    assert f"{path}:5: duplicate file name 'sa_000000.tar' (first on line 2)" in result.stderr


def test_cli_reports_a_missing_file_as_usage(tmp_path: Path) -> None:
    result = _run("links", str(tmp_path / "nope.txt"), "--json")
    assert result.exit_code == ExitStatus.USAGE
    [error] = _json_lines(result.stdout)
    assert error["type"] == "error" and "links file not found" in error["message"]


# --------------------------------------------------------------------------- diff


def _old_and_new(tmp_path: Path) -> tuple[Path, Path, datetime, datetime]:
    old_expiry, new_expiry = NOW, NOW + timedelta(days=21)
    old = {
        "sa_000000.tar": _url("An0", old_expiry),
        "sa_000001.tar": _url("An1", old_expiry),
        "sa_000002.tar": _url("An2", old_expiry),
        "sa_000003.tar": _url("An3", old_expiry),
        "sa_images_ids.txt": _url("Anids", old_expiry),
    }
    new = {
        "sa_000000.tar": _url("An0", new_expiry, "00_AQnew"),
        "sa_000001.tar": _url("An1", new_expiry, "00_AQnew", host="https://scontent-yyz1-1.xx.fbcdn.net"),
        "sa_000002.tar": _url("AnOTHER", new_expiry, "00_AQnew"),
        "sa_images_ids.txt": old["sa_images_ids.txt"],
        "sa_co_gold.tar": _url("Angold", new_expiry),
    }
    return _write(tmp_path / "old.txt", old), _write(tmp_path / "new.txt", new), old_expiry, new_expiry


def test_diff_classifies_every_change(tmp_path: Path) -> None:
    old_path, new_path, old_expiry, new_expiry = _old_and_new(tmp_path)
    diff = diff_links(parse_links(old_path), parse_links(new_path))
    changes = {c.name: c for c in diff.changes}
    assert {n: c.change for n, c in changes.items()} == {
        "sa_000000.tar": "renewed",
        "sa_000001.tar": "renewed",
        "sa_000002.tar": "path_changed",
        "sa_000003.tar": "removed",
        "sa_co_gold.tar": "added",
    }
    assert (changes["sa_000000.tar"].old_expiry, changes["sa_000000.tar"].new_expiry) == (old_expiry, new_expiry)
    assert changes["sa_000001.tar"].note == "host scontent.xx.fbcdn.net -> scontent-yyz1-1.xx.fbcdn.net"
    assert diff.unchanged == ["sa_images_ids.txt"]
    assert any("sa_000002.tar" in w and "fail to resume" in w for w in diff.warnings)


def test_cli_diff_plain_and_json(tmp_path: Path) -> None:
    old_path, new_path, old_expiry, new_expiry = _old_and_new(tmp_path)
    result = _run("links", str(old_path), str(new_path))
    assert result.exit_code == ExitStatus.OK
    renewed_line = next(line for line in result.stdout.splitlines() if line.startswith("sa_000000.tar"))
    assert "renewed" in renewed_line
    assert f"{old_expiry:%Y-%m-%d %H:%M:%S} UTC" in renewed_line and f"{new_expiry:%Y-%m-%d %H:%M:%S} UTC" in renewed_line
    assert "1 added, 1 removed, 2 renewed, 1 path changed, 1 unchanged" in result.stdout
    assert "point to a different object" in result.stderr
    assert "00_AQnew" not in result.stdout + result.stderr

    records = _json_lines(_run("links", str(old_path), str(new_path), "--json").stdout)
    [diff] = [r for r in records if r["type"] == "links_diff"]
    assert diff["counts"] == {"added": 1, "removed": 1, "renewed": 2, "path_changed": 1, "unchanged": 1}
    renewed = next(c for c in diff["changes"] if c["name"] == "sa_000000.tar")
    assert renewed["old_expiry"] == old_expiry.isoformat() and renewed["new_expiry"] == new_expiry.isoformat()


# --------------------------------------------------------------------------- --check against the CDN


def test_check_all_live_reports_total_size(cdn: FakeCDN, links_file: Path, small_parts: list[PartInfo]) -> None:
    result = _run("links", str(links_file), "--check", "--json")
    assert result.exit_code == ExitStatus.OK
    [check] = [r for r in _json_lines(result.stdout) if r["type"] == "check"]
    total = sum(p.path.stat().st_size for p in small_parts)
    assert check["counts"] == {"live": 3, "expired": 0, "missing": 0, "error": 0}
    assert check["total_bytes"] == total
    assert {r["name"]: r["size"] for r in check["results"]} == {p.name: p.path.stat().st_size for p in small_parts}


def test_check_expired_and_missing_parts(cdn: FakeCDN, links_file: Path, small_parts: list[PartInfo]) -> None:
    names = [p.name for p in small_parts]
    cdn.revoke(names[1])
    cdn.remove(names[2])
    result = _run("links", str(links_file), "--check")
    assert result.exit_code == ExitStatus.PARTS_FAILED
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("sa_0")}
    assert lines[names[0]].split()[1] == "live"
    assert lines[names[1]].split()[1] == "expired" and "expired or revoked" in lines[names[1]]
    assert lines[names[2]].split()[1] == "missing" and "404" in lines[names[2]]
    size = small_parts[0].path.stat().st_size
    assert f"3 links: 1 live, 1 expired, 1 missing; {human_bytes(size)} ({size:,} bytes) to expect on disk for the 1 live" in result.stdout
    assert "get a fresh links file" in result.stderr
    assert "oh=" not in result.stdout + result.stderr


def test_check_only_expired_exits_links_expired(cdn: FakeCDN, tmp_path: Path) -> None:
    path = cdn.write_links(tmp_path / "links.txt", expires_at=time.time() + 3600)
    cdn.expire_all()
    result = _run("links", str(path), "--check", "--json")
    assert result.exit_code == ExitStatus.LINKS_EXPIRED
    [check] = [r for r in _json_lines(result.stdout) if r["type"] == "check"]
    assert check["counts"]["expired"] == 3
    assert {r["message"] for r in check["results"]} == {"URL signature expired"}


def test_check_probes_only_the_selected_parts(cdn: FakeCDN, links_file: Path, small_parts: list[PartInfo]) -> None:
    result = _run("links", str(links_file), "--check", "--parts", "1", "--json")
    assert result.exit_code == ExitStatus.OK
    [check] = [r for r in _json_lines(result.stdout) if r["type"] == "check"]
    assert [r["name"] for r in check["results"]] == [small_parts[1].name]
    assert {r.name for r in cdn.log} == {small_parts[1].name}


def test_check_with_two_files_probes_the_new_one(cdn: FakeCDN, tmp_path: Path) -> None:
    old = cdn.write_links(tmp_path / "old.txt", expires_at=time.time() + 60)
    cdn.expire_all()
    new = cdn.write_links(tmp_path / "new.txt")
    result = _run("links", str(old), str(new), "--check", "--json")
    assert result.exit_code == ExitStatus.OK
    records = _json_lines(result.stdout)
    [diff] = [r for r in records if r["type"] == "links_diff"]
    assert diff["counts"]["renewed"] == 3
    [check] = [r for r in records if r["type"] == "check"]
    assert check["counts"]["live"] == 3
