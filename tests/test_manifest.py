"""`sa1b manifest` and checking one site's copy against another's (issue 12), with the real aria2c."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sa1b_cli.store.atomic import atomic_write_json
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore
from sa1b_cli.checksums import ChecksumList, parse_checksums
from sa1b_cli.errors import ExitStatus, UsageError
from sa1b_cli.manifest import NothingToList, write_manifest
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo, write_md5sums
from sa1b_cli.testing.processes import run_sa1b
from sa1b_cli.verify import check_tar, listed_for


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
    assert any("sa_000000.tar: md5" in line and "differs from the community reference (not Meta's word)" in line
               for line in (result.stdout + result.stderr).splitlines()), result.stdout + result.stderr
    off = run_sa1b("verify", "-d", root, "--tars", "--expected", "12", "--no-reference", "--force")
    assert off.returncode == 0, off.stdout + off.stderr
    other = tmp_path / "other.txt"
    other.write_text("0" * 32 + "  sa_000777.tar\n")
    refused = run_sa1b("verify", "-d", root, "--checksums", other)
    assert refused.returncode == ExitStatus.USAGE and f"{other}: names none of the" in refused.stderr
    shutil.rmtree(root)


def test_verify_against_a_sha256sum_manifest_and_a_list_naming_only_some(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                         links_file: Path, tmp_path: Path) -> None:
    site_a, site_b = tmp_path / "a", tmp_path / "b"
    sums = write_md5sums(small_parts, tmp_path / "reference.txt")
    assert run_sa1b("download", links_file, "-d", site_a, "--checksums", sums).returncode == 0
    assert run_sa1b("manifest", "-d", site_a, "-o", tmp_path / "handover").returncode == 0
    sha_list = tmp_path / "handover" / "sa1b-manifest.sha256"
    assert run_sa1b("download", links_file, "-d", site_b, "--checksums", sha_list, "--extract").returncode == 0
    assert all(ReceiptStore(RootPaths(site_b)).read(DownloadReceipt, p.name).md5 is None for p in small_parts)

    partial = tmp_path / "partial.md5"
    partial.write_text((tmp_path / "handover" / "sa1b-manifest.md5").read_text().splitlines()[1] + "\n")
    warned = run_sa1b("verify", "-d", site_b, "--checksums", partial, "--expected", "12")  # --checksums implies --tars
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert f"{partial} has no checksum for 2 of the 3 tar(s) checked" in warned.stderr

    tar = site_b / "tars" / small_parts[0].name
    data = bytearray(tar.read_bytes())
    data[100] ^= 0x01
    tar.write_bytes(bytes(data))
    bad = run_sa1b("verify", "-d", site_b, "--tars", "--checksums", sha_list, "--expected", "12", "--json")
    assert bad.returncode == ExitStatus.CORRUPT, bad.stdout + bad.stderr
    (damaged,) = [r for r in map(json.loads, bad.stdout.splitlines()) if r["type"] == "part" and r["status"] != "ok"]
    assert damaged["part"] == small_parts[0].name
    listed = [p["message"] for p in damaged["tar"]["problems"] if p["kind"] == "tar-checksum"]
    assert listed == [f"sha256 {hashlib.sha256(data).hexdigest()} differs from the checksum list {sha_list}, "
                      f"which lists {small_parts[0].sha256}"]
    assert damaged["tar"]["checked"] == ["size", "sha256", "checksum list"]  # neither list nor receipt has an md5


def test_manifest_from_receipts_alone(tmp_path: Path) -> None:
    """No tar is read: the receipts are the only input (here written by hand, with no tar at all)."""
    paths = RootPaths(tmp_path / "root")
    digest = {n: (hashlib.md5(n.encode()).hexdigest(), hashlib.sha256(n.encode()).hexdigest()) for n in
              ("sa_000000.tar", "sa_000001.tar", "sa_000002.tar", "sa_000003.tar")}
    for name, (md5, sha) in digest.items():
        receipt = {"complete": True, "size": 10, "md5": md5, "sha256": sha, "source": "mirror 1 (file:///x/{name})"}
        if name == "sa_000001.tar":
            receipt.update(md5=None, source=None)
        if name == "sa_000002.tar":
            receipt["sha256"] = "not hex"
        atomic_write_json(paths.receipt("download", name), {"part": name, "time": "2026-11-01T12:00:00+00:00", **receipt})  # as sa1b 0.x wrote them
    atomic_write_json(paths.receipt("download", "sa_000004.tar"), {"part": "sa_000004.tar", "complete": False, "size": 1})
    result = write_manifest(paths)
    assert [r["name"] for r in result.parts] == ["sa_000000.tar", "sa_000001.tar", "sa_000003.tar"]
    assert result.without_md5 == ["sa_000001.tar"] and result.unusable == ["sa_000002.tar"]
    assert (paths.root / "sa1b-manifest.md5").read_text() == "".join(
        f"{digest[n][0]}  {n}\n" for n in ("sa_000000.tar", "sa_000003.tar"))
    assert (paths.root / "sa1b-manifest.sha256").read_text() == "".join(
        f"{digest[n][1]}  {n}\n" for n in ("sa_000000.tar", "sa_000001.tar", "sa_000003.tar"))
    doc = json.loads((paths.root / "sa1b-manifest.json").read_text())
    assert doc["kind"] == "sa1b-manifest-v1" and doc["created"]
    assert [p["source"] for p in doc["parts"]] == ["mirror 1 (file:///x/{name})", "meta", "mirror 1 (file:///x/{name})"]
    assert all(set(p) == {"name", "size", "md5", "sha256", "source", "checked_at"} and p["checked_at"] for p in doc["parts"])
    assert not [p for p in paths.root.iterdir() if p.name.endswith(".tmp")]
    again = parse_checksums(paths.root / "sa1b-manifest.json")  # what another site's --checksums reads
    assert again.md5 == {n: digest[n][0] for n in ("sa_000000.tar", "sa_000003.tar")} and len(again.sha256) == 3

    assert [r["name"] for r in write_manifest(paths, tmp_path / "out", ["sa_000003.tar"]).parts] == ["sa_000003.tar"]
    with pytest.raises(NothingToList) as none:
        write_manifest(paths, names=["sa_000009.tar"])
    assert none.value.exit_status == ExitStatus.INCOMPLETE and "among the selected parts" in str(none.value)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="cannot write the manifest"):
        write_manifest(paths, tmp_path / "a-file" / "out")


def test_check_tar_compares_what_the_list_gives(tmp_path: Path) -> None:
    tar = tmp_path / "sa_000000.tar"
    tar.write_bytes(b"not Meta's bytes" * 100)
    md5, sha = hashlib.md5(tar.read_bytes()).hexdigest(), hashlib.sha256(tar.read_bytes()).hexdigest()
    receipt = {"size": tar.stat().st_size, "md5": None, "sha256": sha}
    assert check_tar(str(tar), receipt, None, {}).checked == ["size", "sha256"]
    good = ChecksumList("site-a/sa1b-manifest.json", {tar.name: md5}, {tar.name: sha})
    result = check_tar(str(tar), receipt, listed_for(good, tar.name), {})
    assert result.checked == ["size", "sha256", "checksum list"] and not result.problems.listed
    reference = ChecksumList("sa1b-community-md5.txt", {tar.name: "0" * 32, "sa_000001.tar": "1" * 32}, is_reference=True)
    narrowed = listed_for(reference, tar.name)
    assert narrowed is not None and narrowed.md5 == {tar.name: "0" * 32} and narrowed.is_reference
    (problem,) = check_tar(str(tar), receipt, narrowed, {}).problems.listed
    assert problem.message == f"md5 {md5} differs from the community reference (not Meta's word), which lists {'0' * 32}"
    assert listed_for(reference, "sa_000002.tar") is None and listed_for(None, tar.name) is None
