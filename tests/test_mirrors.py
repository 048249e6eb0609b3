"""Sources beyond Meta's links (issue 12): `--mirror` templates tried in order, with the real aria2c.

Local mirrors (another site's tars/ folder) here; the Hugging Face-like HTTP mirror, which answers 302
to a short-lived signed storage URL, in the tests below them. Every case checks the end state: tars
byte-identical to the originals, no receipt on wrong bytes, and what the servers sent.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from sa1b_cli import state
from sa1b_cli.errors import ExitStatus
from sa1b_cli.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo, make_parts, random_part, write_md5sums
from sa1b_cli.testing.processes import run_sa1b, start_sa1b, wait_for


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gets(server: FakeCDN, name: str | None = None) -> list:
    return [r for r in server.log if r.method == "GET" and (name is None or r.name == name)]


def test_all_links_expired_everything_comes_from_a_local_mirror(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "links.txt", expires_at=time.time() - 3600)
    mirror = small_parts[0].path.parent
    root = tmp_path / "root"
    result = run_sa1b("download", links, "-d", root, "--mirror", f"{mirror}/{{name}}", "--extract")
    assert result.returncode == 0, result.stderr
    assert not gets(cdn), "an expired link is never asked"
    paths = RootPaths(root)
    for part in small_parts:
        assert sha256(paths.tar(part.name)) == part.sha256
        receipt = state.read_receipt(paths, "download", part.name)
        assert receipt["source"] == f"mirror 1 ({mirror})" and state.read_receipt(paths, "extract", part.name)
    status = run_sa1b("status", "-d", root, "--all")
    assert f"3 from mirror 1 ({mirror})" in status.stdout
    assert any("sa_000001.tar" in line and f"from mirror 1 ({mirror})" in line for line in status.stdout.splitlines())


def test_a_wrong_part_on_the_only_mirror_gets_no_receipt_and_its_own_exit_code(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                              tmp_path: Path) -> None:
    """A valid gzip tar with other bytes (another seed, same name), as the audited mirrors hold."""
    sums = write_md5sums(small_parts, tmp_path / "reference.txt")
    wrong_dir = tmp_path / "wrong"
    make_parts(wrong_dir, 1, 4, masks_per_image=3, seed=99)
    for part in small_parts[1:]:
        shutil.copy(part.path, wrong_dir / part.name)
    links = cdn.write_links(tmp_path / "links.txt", expires_at=time.time() - 3600)
    root = tmp_path / "root"
    result = run_sa1b("download", links, "-d", root, "--mirror", str(wrong_dir), "--checksums", sums, "--extract")
    assert result.returncode == ExitStatus.WRONG_BYTES, result.stderr
    assert "does not match the checksum list" in result.stderr and "mirror 1" in result.stderr
    paths = RootPaths(root)
    bad = small_parts[0].name
    assert state.read_receipt(paths, "download", bad) is None and state.read_receipt(paths, "extract", bad) is None
    assert not paths.tar(bad).exists(), "wrong bytes are never kept"
    assert not (root / "extracted" / "sa_000000").exists()
    for part in small_parts[1:]:
        assert sha256(paths.tar(part.name)) == part.sha256


def test_the_community_reference_catches_a_wrong_part_by_default(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path,
                                                                monkeypatch) -> None:
    """Generated parts carry real names but not Meta's bytes: the shipped reference refuses each one."""
    monkeypatch.delenv("SA1B_NO_REFERENCE")
    links = cdn.write_links(tmp_path / "links.txt")
    root = tmp_path / "root"
    result = run_sa1b("download", links, "-d", root, "--parts", "0")
    assert result.returncode == ExitStatus.WRONG_BYTES, result.stderr
    assert "differs from the community reference (not Meta's word)" in result.stderr
    assert state.read_receipt(RootPaths(root), "download", "sa_000000.tar") is None
    assert len(gets(cdn, "sa_000000.tar")) == 2, "fetched once more within the run (a byte may flip on the way), then failed"
    again = run_sa1b("download", links, "-d", root, "--parts", "0", "--no-reference")
    assert again.returncode == 0, again.stderr
    assert state.read_receipt(RootPaths(root), "download", "sa_000000.tar")["md5"] is None


def test_links_revoked_mid_run_continue_from_a_local_mirror_keeping_the_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 12)
    size = big.stat().st_size
    mirror = tmp_path / "other-site" / "tars"
    mirror.mkdir(parents=True)
    shutil.copy(big, mirror / big.name)
    with FakeCDN(src) as server:
        links = server.write_links(tmp_path / "links.txt")
        # The CDN checks the signature per request: the first connections are cut after the revocation,
        # so that aria2 has to ask again (in-flight responses would otherwise run to their end).
        server.set_faults(None, Faults(rate_limit_bytes_per_s=1_500_000, drop_after_bytes=1_500_000, drop_count=4))
        root = tmp_path / "root"
        proc = start_sa1b("download", links, "-d", root, "-x", "4", "--min-split-size", "1M",
                          "--mirror", f"file://{mirror}/{{name}}")
        wait_for(lambda: server.bytes_sent() > 2_000_000, what="2 MB sent")
        server.revoke(big.name)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert sha256(root / "tars" / big.name) == sha256(big)
        assert "continuing from mirror 1" in err and "keeping the" in err
        receipt = state.read_receipt(RootPaths(root), "download", big.name)
        assert receipt["source"].startswith("mirror 1")
        assert server.bytes_sent() < size, "the CDN did not send it all"
        assert not (root / "tars" / f"{big.name}.aria2").exists()


def test_dry_run_names_the_source_of_each_part(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "links.txt")
    cdn.revoke(small_parts[1].name)
    mirror = small_parts[0].path.parent
    result = run_sa1b("download", links, "-d", tmp_path / "root", "--mirror", f"{mirror}/{{name}}", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    import json

    plan = next(json.loads(line)["plan"] for line in result.stdout.splitlines() if '"plan"' in line and json.loads(line).get("plan"))
    sources = {p["name"]: p["source"] for p in plan["parts"]}
    assert sources == {small_parts[0].name: "meta", small_parts[1].name: f"mirror 1 ({mirror})", small_parts[2].name: "meta"}
    assert "oh=" not in result.stdout.replace("oh=REDACTED", "")


def test_mirror_header_is_never_printed(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "links.txt")
    bad = run_sa1b("download", links, "-d", tmp_path / "root", "--mirror", "http://127.0.0.1:9/{name}",
                   "--mirror-header", "Authorization Bearer s3cr3t-token", "--dry-run")
    assert bad.returncode == ExitStatus.USAGE and "s3cr3t" not in bad.stderr + bad.stdout
    odd = run_sa1b("download", links, "-d", tmp_path / "root", "--mirror", "ftp://example.invalid/{name}", "--dry-run")
    assert odd.returncode == ExitStatus.USAGE and "use an http(s) URL, a file:// URL or a path" in odd.stderr


def test_a_checksum_list_for_other_parts_is_refused_and_a_partial_one_warned(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                             links_file: Path, tmp_path: Path) -> None:
    """Issue 16: a list that matches none of the selected parts used to be ignored in silence."""
    other = tmp_path / "other.txt"
    other.write_text("0" * 32 + "  sa_000777.tar\n")
    refused = run_sa1b("download", links_file, "-d", tmp_path / "root", "--checksums", other)
    assert refused.returncode == ExitStatus.USAGE and "names none of the 3 selected part(s)" in refused.stderr
    assert not gets(cdn)
    some = write_md5sums(small_parts[:1], tmp_path / "some.txt")
    partial = run_sa1b("download", links_file, "-d", tmp_path / "root", "--checksums", some)
    assert partial.returncode == 0, partial.stderr
    assert "has no checksum for 2 of the 3 selected part(s)" in partial.stderr


def test_links_check_names_the_source_of_each_part(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path) -> None:
    cdn.revoke(small_parts[0].name)
    plain = run_sa1b("links", links_file, "--check")
    assert plain.returncode == ExitStatus.LINKS_EXPIRED, plain.stderr
    mirror = small_parts[0].path.parent
    served = run_sa1b("links", links_file, "--check", "--mirror", str(mirror))
    assert served.returncode == 0, served.stderr
    assert f"mirror 1 ({mirror})" in served.stdout and "1 served by mirrors, 0 by no source" in served.stdout
    empty = run_sa1b("links", links_file, "--check", "--mirror", str(mirror.parent / "nowhere"))
    assert empty.returncode == ExitStatus.LINKS_EXPIRED and "1 by no source" in empty.stdout
