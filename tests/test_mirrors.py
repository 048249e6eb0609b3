"""Sources beyond Meta's links (issue 12): `--mirror` templates tried in order, with the real aria2c.

Local mirrors (another site's tars/ folder) here; the Hugging Face-like HTTP mirror, which answers 302
to a short-lived signed storage URL, in the tests below them. Every case checks the end state: tars
byte-identical to the originals, no receipt on wrong bytes, and what the servers sent.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path

from sa1b_cli.store import DownloadReceipt, ExtractReceipt, ReceiptStore
from sa1b_cli.errors import ExitStatus
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo, make_parts, random_part, write_md5sums
from sa1b_cli.testing.mirror import FakeMirror
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
        receipt = ReceiptStore(paths).read(DownloadReceipt, part.name)
        assert receipt.source == f"mirror 1 ({mirror})" and ReceiptStore(paths).read(ExtractReceipt, part.name)
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
    assert ReceiptStore(paths).read(DownloadReceipt, bad) is None and ReceiptStore(paths).read(ExtractReceipt, bad) is None
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
    assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, "sa_000000.tar") is None
    assert len(gets(cdn, "sa_000000.tar")) == 2, "fetched once more within the run (a byte may flip on the way), then failed"
    again = run_sa1b("download", links, "-d", root, "--parts", "0", "--no-reference")
    assert again.returncode == 0, again.stderr
    assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, "sa_000000.tar").md5 is None


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
        receipt = ReceiptStore(RootPaths(root)).read(DownloadReceipt, big.name)
        assert receipt.source.startswith("mirror 1")
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


# -- an HTTP mirror like the Hugging Face backup (302 to a short-lived signed storage URL) ---------------


def same_size_twins(directory: Path, wrong_directory: Path, index: int, megabytes: int) -> Path:
    """A gzip part and a wrong twin of the same size (another JPEG byte, stored deflate): both valid tars."""
    import gzip
    import io
    import os
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        top = tarfile.TarInfo(".")
        top.type = tarfile.DIRTYPE
        tar.addfile(top, None)
        for member in range(megabytes):
            info = tarfile.TarInfo(f"./sa_{index * 1000 + member}.jpg")
            info.size = 1 << 20
            tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    good = raw.getvalue()
    wrong = bytearray(good)
    wrong[1024 + 512 + 100] ^= 0xFF  # inside the first JPEG's data: the tar stays valid
    name = f"sa_{index:06d}.tar"
    for folder, data in ((directory, good), (wrong_directory, bytes(wrong))):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(gzip.compress(data, compresslevel=0))
    assert (directory / name).stat().st_size == (wrong_directory / name).stat().st_size
    return directory / name


def test_all_links_expired_everything_comes_from_an_http_mirror(small_parts: list[PartInfo], cdn: FakeCDN, tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "links.txt", expires_at=time.time() - 3600)
    with FakeMirror(small_parts[0].path.parent) as mirror:
        root = tmp_path / "root"
        result = run_sa1b("download", links, "-d", root, "--mirror", mirror.template)
        assert result.returncode == 0, result.stderr
        assert not gets(cdn)
        for part in small_parts:
            assert sha256(root / "tars" / part.name) == part.sha256
            assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, part.name).source == "mirror 1 (127.0.0.1)"
        assert mirror.storage.bytes_sent() == sum(p.size for p in small_parts), "each byte fetched once"
        assert all(r.status == 302 for r in mirror.log)


def test_a_mirror_redirect_target_that_expires_mid_transfer_is_resumed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 10)
    size = big.stat().st_size
    # A target's expiry is a whole second (``oe``, as Meta's), so a ttl of T lives between T-1 and T seconds. At 1 MB/s
    # per connection each first GET is cut at 2 s; the connection that finishes its 2.2 MB remainder first then asks
    # for the other's last half on a target resolved at least 2.2 s before: past even the longest 1.9 s. Every GET
    # before that is within 0.1 s of its resolve, well inside the shortest 0.9 s. (With a ttl of 1.5 s at 1.5 MB/s the
    # second request could come 1.47 s after its resolve and meet no 403: one red full suite in twelve.)
    with FakeCDN(src) as cdn, FakeMirror(src, target_ttl=1.9) as mirror:
        links = cdn.write_links(tmp_path / "links.txt", expires_at=time.time() - 3600)
        mirror.storage.set_faults(None, Faults(rate_limit_bytes_per_s=1_000_000, drop_after_bytes=2_000_000, drop_count=2))
        root = tmp_path / "root"
        result = run_sa1b("download", links, "-d", root, "--mirror", mirror.template, "-x", "2", "--min-split-size", "1M",
                          "--retry-wait", "0.2")
        assert result.returncode == 0, result.stderr
        assert sha256(root / "tars" / big.name) == sha256(big)
        expired = [r for r in mirror.storage.log if r.status == 403]
        assert expired, "a connection met the expired redirect target"
        assert len([r for r in mirror.log if r.method == "GET"]) >= 2, "the mirror was asked again for a fresh target"
        assert mirror.storage.bytes_sent() < size * 1.35, "resumed, not restarted"


def test_a_gated_mirror_gets_its_header_and_the_header_is_never_shown(small_parts: list[PartInfo], cdn: FakeCDN,
                                                                      tmp_path: Path) -> None:
    links = cdn.write_links(tmp_path / "links.txt", expires_at=time.time() - 3600)
    secret = "Authorization: Bearer hf_s3cr3tT0ken"
    with FakeMirror(small_parts[0].path.parent, required_header=secret) as mirror:
        root = tmp_path / "root"
        refused = run_sa1b("download", links, "-d", root, "--mirror", mirror.template, "--parts", "0")
        assert refused.returncode != 0 and "hf_s3cr3t" not in refused.stderr + refused.stdout
        result = run_sa1b("download", links, "-d", root, "--mirror", mirror.template, "--json", "--parts", "0",
                          env={"SA1B_MIRROR_HEADER": secret})
        assert result.returncode == 0, result.stderr
        assert "hf_s3cr3t" not in result.stderr + result.stdout
        for path in (root / ".sa1b").rglob("*"):
            assert not path.is_file() or b"hf_s3cr3t" not in path.read_bytes(), path
        assert sha256(root / "tars" / "sa_000000.tar") == small_parts[0].sha256
        assert not [r for r in cdn.log if "Authorization" in str(r)], "never sent to Meta's CDN"


def test_both_sources_at_once_and_a_wrong_mirror_copy_is_caught_and_fetched_from_meta(tmp_path: Path) -> None:
    src, wrong = tmp_path / "src", tmp_path / "wrong"
    part = same_size_twins(src, wrong, 0, 6)
    sums = tmp_path / "reference.txt"
    sums.write_text(f"{hashlib.md5(part.read_bytes()).hexdigest()}  {part.name}\n")
    with FakeCDN(src) as cdn, FakeMirror(wrong) as mirror:
        links = cdn.write_links(tmp_path / "links.txt")
        for server in (cdn, mirror.storage):
            server.set_faults(None, Faults(rate_limit_bytes_per_s=1_000_000))
        root = tmp_path / "root"
        plan = run_sa1b("download", links, "-d", root, "--mirror", mirror.template, "--checksums", sums, "--dry-run")
        assert "meta + mirror 1 (127.0.0.1)" in plan.stdout, plan.stdout
        result = run_sa1b("download", links, "-d", root, "--mirror", mirror.template, "--checksums", sums, "--extract",
                          "-x", "4", "--min-split-size", "1M")
        assert result.returncode == 0, result.stderr
        # mixed bytes of a gzip part fail its CRC before the md5 is compared: either way, each source alone next
        assert "meta + mirror 1 (127.0.0.1) disagree" in result.stderr and "fetching it again from meta alone" in result.stderr
        assert sha256(root / "tars" / part.name) == sha256(part)
        assert mirror.storage.bytes_sent() > 0 and cdn.bytes_sent() > 0, "both sources served the mixed attempt"
        assert cdn.bytes_sent() >= part.stat().st_size, "then Meta's link alone served all of it"
        receipt = ReceiptStore(RootPaths(root)).read(DownloadReceipt, part.name)
        assert receipt.source == "meta" and ReceiptStore(RootPaths(root)).read(ExtractReceipt, part.name)


def test_links_revoked_mid_run_continue_from_an_http_mirror_keeping_the_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_part(src, 0, 12)
    size = big.stat().st_size
    with FakeCDN(src) as cdn, FakeMirror(src) as mirror:
        links = cdn.write_links(tmp_path / "links.txt")
        # cut the first connections after the revocation, so that aria2 has to ask again (see the local case)
        cdn.set_faults(None, Faults(rate_limit_bytes_per_s=1_500_000, drop_after_bytes=1_500_000, drop_count=4))
        root = tmp_path / "root"
        proc = start_sa1b("download", links, "-d", root, "-x", "4", "--min-split-size", "1M", "--mirror", mirror.template)
        wait_for(lambda: cdn.bytes_sent() > 2_000_000, what="2 MB sent")
        cdn.revoke(big.name)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert sha256(root / "tars" / big.name) == sha256(big)
        assert "continuing from mirror 1 (127.0.0.1), keeping the" in err
        # aria2's first request to a new source has no Range (it learns the length before it loads the control
        # file) and is closed at once; what it pushed into the socket buffers is wasted (see test_download).
        # The ranged requests fetch only what the kept bytes lack, plus what was in flight (a piece per connection).
        kept = int(re.search(r"keeping the (\d+) bytes fetched", err).group(1))
        ranged = sum(r.bytes_sent for r in mirror.storage.log if r.range_header)
        assert kept >= 1_000_000 and ranged <= size - kept + 4 * (1 << 20), (kept, ranged, size)
        assert ReceiptStore(RootPaths(root)).read(DownloadReceipt, big.name).source == "mirror 1 (127.0.0.1)"
