"""`sa1b manifest` and checking one site's copy against another's (issue 12), with the real aria2c."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from sa1b_cli.errors import ExitStatus
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo, write_md5sums
from sa1b_cli.testing.processes import run_sa1b


def test_manifest_round_trip_between_two_roots(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    site_a, site_b = tmp_path / "a", tmp_path / "b"
    sums = write_md5sums(small_parts, tmp_path / "reference.txt")
    assert run_sa1b("download", links_file, "-d", site_a, "--checksums", sums).returncode == 0
    made = run_sa1b("manifest", "-d", site_a, "--json")
    assert made.returncode == 0, made.stderr
    manifest = json.loads((site_a / "sa1b-manifest.json").read_text())
    assert manifest["kind"] == "sa1b-manifest-v1"
    assert [(p["name"], p["size"], p["md5"], p["sha256"], p["source"]) for p in manifest["parts"]] == [
        (p.name, p.size, p.md5, p.sha256, "meta") for p in small_parts]
    assert all(p["checked_at"] for p in manifest["parts"])
    for tool, listing in (("md5sum", "sa1b-manifest.md5"), ("sha256sum", "sa1b-manifest.sha256")):
        checked = subprocess.run([tool, "-c", site_a / listing], cwd=site_a / "tars", capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    gets = len([r for r in cdn.log if r.method == "GET"])
    assert run_sa1b("download", links_file, "-d", site_b, "--checksums", site_a / "sa1b-manifest.json", "--extract").returncode == 0
    assert len([r for r in cdn.log if r.method == "GET"]) == gets + len(small_parts)
    good = run_sa1b("verify", "-d", site_b, "--tars", "--checksums", site_a / "sa1b-manifest.json", "--expected", "12")
    assert good.returncode == 0, good.stdout + good.stderr

    tar = site_b / "tars" / small_parts[2].name
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tar.write_bytes(bytes(data))
    bad = run_sa1b("verify", "-d", site_b, "--tars", "--checksums", site_a / "sa1b-manifest.json", "--expected", "12", "--force")
    assert bad.returncode == ExitStatus.CORRUPT, bad.stdout + bad.stderr
    assert f"{small_parts[2].name}: md5" in bad.stdout + bad.stderr and "sa1b-manifest.json" in bad.stdout + bad.stderr


def test_manifest_without_receipts_and_parts_without_md5(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path,
                                                         tmp_path: Path) -> None:
    empty = run_sa1b("manifest", "-d", tmp_path / "nothing")
    assert empty.returncode == ExitStatus.INCOMPLETE and "no downloaded part" in empty.stderr
    root = tmp_path / "root"
    assert run_sa1b("download", links_file, "-d", root).returncode == 0  # SA1B_NO_REFERENCE: no md5 computed
    made = run_sa1b("manifest", "-d", root, "-o", tmp_path / "out")
    assert made.returncode == 0 and "3 part(s) have no md5" in made.stderr
    assert (tmp_path / "out" / "sa1b-manifest.md5").read_text() == ""
    assert len((tmp_path / "out" / "sa1b-manifest.sha256").read_text().splitlines()) == 3


def test_verify_tars_uses_the_community_reference_by_default(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path,
                                                             tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    assert run_sa1b("download", links_file, "-d", root, "--extract").returncode == 0
    monkeypatch.delenv("SA1B_NO_REFERENCE")
    result = run_sa1b("verify", "-d", root, "--tars", "--expected", "12")
    assert result.returncode == ExitStatus.CORRUPT
    assert "differs from the community reference (not Meta's word)" in result.stdout + result.stderr
    off = run_sa1b("verify", "-d", root, "--tars", "--expected", "12", "--no-reference", "--force")
    assert off.returncode == 0, off.stdout + off.stderr
    other = tmp_path / "other.txt"
    other.write_text("0" * 32 + "  sa_000777.tar\n")
    refused = run_sa1b("verify", "-d", root, "--checksums", other)
    assert refused.returncode == ExitStatus.USAGE and "names none of the" in refused.stderr
    shutil.rmtree(root)
