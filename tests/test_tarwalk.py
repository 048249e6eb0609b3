"""The one tar walker: hostile and odd tars, and the promise it exists for.

A part the download check (:func:`sa1b_cli.integrity.check_part`) accepts is a part ``extract``
accepts, with the same counts; a part one refuses the other refuses, for the same reason. Every tar
here is built with ``tarfile`` or from raw 512-byte headers, then gzip-compressed like Meta's parts.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from isal import isal_zlib

from sa1b_cli import extract
from sa1b_cli.integrity import ArchiveError, check_part, hash_file
from sa1b_cli.store import DownloadReceipt, ReceiptStore, RootPaths
from sa1b_cli.tarwalk import Member, TarReader, TarRefused, open_part_stream

BLOCK = 512


# ------------------------------------------------------------------------ building tars


def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, fmt: int = tarfile.USTAR_FORMAT,
           **fields: object) -> bytes:
    """One raw header block (or GNU long-name blocks and the header, with ``fmt=GNU_FORMAT``)."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(fmt, "utf-8", "surrogateescape")


def data_blocks(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A pax extended header (``x``, or global ``g``) holding ``records``, with its data blocks."""
    payload = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length).encode() + body) != length:
            length += 1
        payload += str(length).encode() + body
    return header("././@PaxHeader", len(payload), kind) + data_blocks(payload)


def file_member(name: str, data: bytes, fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    return header(name, len(data), fmt=fmt) + data_blocks(data)


DOT = header(".", kind=tarfile.DIRTYPE)
PAIR = file_member("./sa_1.jpg", b"\xff\xd8jpeg\xff\xd9") + file_member("./sa_1.json", b"{}")
END = bytes(2 * BLOCK)


def tar_of(*pieces: bytes, end: bool = True) -> bytes:
    return b"".join(pieces) + (END if end else b"")


def tarfile_tar(members: list[tuple[str, bytes]], fmt: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def corrupt_checksum(block: bytes) -> bytes:
    return block[:148] + b"0000000\0" + block[156:]


ACCEPTED: dict[str, bytes] = {
    "plain": tar_of(DOT, PAIR),
    "dot entry as an empty regular file": tar_of(header("."), PAIR),
    "no dot entry": tar_of(PAIR),
    "folder entries": tar_of(DOT, header("./sub/", kind=tarfile.DIRTYPE), file_member("./sub/sa_2.jpg", b"x"), PAIR),
    "pax path": tar_of(DOT, pax({"path": "sa_" + "7" * 200 + ".json"}), file_member("./placeholder", b"{}"), PAIR),
    "pax size": tar_of(DOT, pax({"size": "5"}), header("./sa_2.jpg", 0) + data_blocks(b"12345"), PAIR),
    "pax global header of other keys": tar_of(pax({"comment": "made by hand"}, tarfile.XGLTYPE), DOT, PAIR),
    "gnu long name": tar_of(DOT, file_member("./sa_" + "8" * 150 + ".jpg", b"x", tarfile.GNU_FORMAT), PAIR),
    "ustar prefix field": tarfile_tar([("./" + "d" * 120 + "/sa_3.jpg", b"x"), ("./sa_1.json", b"{}")], tarfile.USTAR_FORMAT),
    "contiguous file": tar_of(DOT, header("./sa_2.jpg", 1, tarfile.CONTTYPE) + data_blocks(b"x"), PAIR),
    "upper-case suffixes": tar_of(DOT, file_member("./SA_2.JPG", b"x"), file_member("./sa_2.JSON", b"{}")),
    "a folder entry twice": tar_of(DOT, header("./sub/", kind=tarfile.DIRTYPE), header("./sub/", kind=tarfile.DIRTYPE), PAIR),
}

REFUSED: dict[str, tuple[bytes, str]] = {
    "symlink": (tar_of(DOT, header("./sa_2.jpg", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), PAIR), "symbolic link"),
    "hardlink": (tar_of(DOT, header("./sa_2.jpg", kind=tarfile.LNKTYPE, linkname="sa_1.jpg"), PAIR), "hard link"),
    "character device": (tar_of(DOT, header("./sa_2.jpg", kind=tarfile.CHRTYPE, devmajor=1, devminor=3), PAIR),
                         "character device"),
    "block device": (tar_of(DOT, header("./sa_2.jpg", kind=tarfile.BLKTYPE, devmajor=8), PAIR), "block device"),
    "fifo": (tar_of(DOT, header("./sa_2.jpg", kind=tarfile.FIFOTYPE), PAIR), "FIFO"),
    "gnu sparse file": (tar_of(DOT, header("./sa_2.jpg", kind=tarfile.GNUTYPE_SPARSE, fmt=tarfile.GNU_FORMAT), PAIR),
                        "sparse file"),
    "pax sparse file": (tar_of(DOT, pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}), file_member("./sa_2.jpg", b"x"),
                               PAIR), "sparse file"),
    "unknown member type": (tar_of(DOT, header("./sa_2.jpg", kind=b"V"), PAIR), "tar type"),
    "pax global header setting a path": (tar_of(pax({"path": "sa_9.jpg"}, tarfile.XGLTYPE), DOT, PAIR), "global header"),
    "pax global header setting a size": (tar_of(pax({"size": "9"}, tarfile.XGLTYPE), DOT, PAIR), "global header"),
    "malformed pax header": (tar_of(DOT, header("././@PaxHeader", 8, tarfile.XHDTYPE) + data_blocks(b"garbage\n"), PAIR),
                             "malformed pax"),
    "bad pax size": (tar_of(DOT, pax({"size": "-1"}), file_member("./sa_2.jpg", b"x"), PAIR), "bad size"),
    "absolute path": (tar_of(DOT, file_member("/tmp/sa1b_tarwalk_absolute.jpg", b"x"), PAIR), "absolute path"),
    "dot-dot": (tar_of(DOT, file_member("./../sa1b_tarwalk_dotdot.jpg", b"x"), PAIR), "contains '..'"),
    "dot-dot through pax path": (tar_of(DOT, pax({"path": "a/../../b.jpg"}), file_member("./x.jpg", b"x"), PAIR),
                                 "contains '..'"),
    "control character": (tar_of(DOT, file_member("./sa_2\x1b.jpg", b"x"), PAIR), "control characters"),
    "empty path component": (tar_of(DOT, file_member("./sub//sa_2.jpg", b"x"), PAIR), "empty or '.' path component"),
    "over-long component": (tar_of(DOT, pax({"path": "a" * 300 + ".jpg"}), file_member("./x.jpg", b"x"), PAIR),
                            "longer than 255 bytes"),
    "over-long name": (tar_of(DOT, pax({"path": "d/" * 600 + "a.jpg"}), file_member("./x.jpg", b"x"), PAIR),
                       "longer than 1024 bytes"),
    "dot entry with data": (tar_of(file_member(".", b"x"), PAIR), "regular file without a name"),
    "duplicate": (tar_of(DOT, PAIR, file_member("./sa_1.jpg", b"again")), "appears twice"),
    "duplicate spelled with and without ./": (tar_of(DOT, PAIR, file_member("sa_1.json", b"{}")), "appears twice"),
    "case collision": (tar_of(DOT, PAIR, file_member("./SA_1.jpg", b"x")), "differ only in case"),
    "a file where a folder is": (tar_of(DOT, file_member("./sub", b"x"), file_member("./sub/sa_2.jpg", b"x"), PAIR),
                                 "clashes with the file"),
    "a folder where a file is": (tar_of(DOT, file_member("./sub/sa_2.jpg", b"x"), file_member("./sub", b"x"), PAIR),
                                 "clashes with a folder"),
    "corrupt header checksum": (tar_of(DOT, corrupt_checksum(header("./sa_2.jpg", 1)) + data_blocks(b"x"), PAIR),
                                "corrupt tar header"),
    "truncated inside a member": (tar_of(DOT, PAIR, header("./sa_2.jpg", 5000) + b"x" * 700, end=False), "truncated"),
    "truncated inside a header": (tar_of(DOT, PAIR, end=False) + b"\0" * 100 + b"x", "truncated"),
    "no end-of-archive marker": (tar_of(DOT, PAIR, end=False), "end-of-archive marker"),
    "only a dot entry": (tar_of(DOT), "holds no files"),
}


# ------------------------------------------------------------------------ the two readers


def write_part(directory: Path, data: bytes, index: int) -> Path:
    path = directory / f"sa_{index:06d}.tar"
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def check_verdict(path: Path) -> str | None:
    """None when the download check accepts the part, else its reason."""
    try:
        check_part(path)
    except ArchiveError as exc:
        return str(exc)
    return None


def extract_verdict(tmp_path: Path, part: Path) -> extract.PartExtractResult:
    """Extract ``part`` (layout "parts": no layout rule applies) with a download receipt of its bytes."""
    paths = RootPaths(tmp_path / "root")
    paths.tars.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(part, paths.tar(part.name))
    size, md5, sha256 = hash_file(part)
    ReceiptStore(paths).write(DownloadReceipt(part.name, size=size, md5=md5, sha256=sha256))
    return extract.extract_parts(paths, [part.name], "parts").parts[0]


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_a_part_the_check_accepts_is_a_part_extract_accepts_with_the_same_counts(tmp_path: Path, case: str) -> None:
    part = write_part(tmp_path, ACCEPTED[case], 1)
    check = check_part(part)
    result = extract_verdict(tmp_path, part)
    assert result.status == extract.EXTRACTED, result.message
    assert (result.images, result.annotations) == (check.images, check.annotations)
    assert result.files == check.images + check.annotations + check.others


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_part_the_check_refuses_extract_refuses_for_the_same_reason(tmp_path: Path, case: str) -> None:
    data, reason = REFUSED[case]
    part = write_part(tmp_path, data, 2)
    refused = check_verdict(part)
    assert refused is not None and reason in refused
    result = extract_verdict(tmp_path, part)
    assert result.status == extract.FAILED
    assert reason in result.message
    assert not (tmp_path / "root" / "extracted").exists() or not any((tmp_path / "root" / "extracted").rglob("*.*"))
    assert not list(Path("/tmp").glob("sa1b_tarwalk_*")) and not list(tmp_path.rglob("sa1b_tarwalk_*"))


# ------------------------------------------------------------------------ gzip bombs


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 1 MB of gzip that inflates to a 1 GiB member of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "sa_000003.tar"
    squeeze = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(path, "wb") as out:
        out.write(squeeze.compress(tar_of(DOT, PAIR, end=False) + header("./sa_2.jpg", 1 << 30)))
        for _ in range(1024):
            out.write(squeeze.compress(zeros))
        out.write(squeeze.compress(END))
        out.write(squeeze.flush())
    assert path.stat().st_size < 2 << 20
    return path


def test_a_gzip_bomb_is_refused_by_the_check_and_by_extract_before_it_is_written_out(tmp_path: Path, bomb: Path) -> None:
    refused = check_verdict(bomb)
    assert refused is not None and "gzip bomb" in refused
    result = extract_verdict(tmp_path, bomb)
    assert result.status == extract.FAILED and "gzip bomb" in result.message
    assert not any((tmp_path / "root").rglob("sa_2.jpg"))


def test_a_part_of_incompressible_members_is_far_from_the_bomb_bound(tmp_path: Path) -> None:
    data = tar_of(DOT, file_member("./sa_1.jpg", os.urandom(3 << 20)), file_member("./sa_1.json", b"{}" * 100_000))
    assert check_part(write_part(tmp_path, data, 4)).images == 1


# ------------------------------------------------------------------------ the reader's own API


def reader_of(data: bytes) -> TarReader:
    stream, compressed = open_part_stream(io.BytesIO(gzip.compress(data)))
    assert compressed
    return TarReader(stream, compressed=True)


def test_members_come_in_order_with_offsets_and_unread_data_is_skipped() -> None:
    data = tar_of(DOT, file_member("./a.jpg", b"A" * 700), header("./sub/", kind=tarfile.DIRTYPE),
                  file_member("./sub/b.json", b"{}"), file_member("./notes.TXT", b"n"))
    reader = reader_of(data)
    seen: list[Member] = []
    for member in reader.members():
        seen.append(member)
        if member.name == "sub/b.json":
            assert reader.read(member) == b"{}"
    reader.finish()
    assert [(m.name, m.size, m.is_dir, m.kind) for m in seen] == [
        ("a.jpg", 700, False, "image"), ("sub", 0, True, "other"), ("sub/b.json", 2, False, "annotation"),
        ("notes.TXT", 1, False, "other")]
    assert [m.offset for m in seen] == [512, 2048, 2560, 3584]
    assert reader.member_count == 5  # the "." entry counts as a member, as receipts always recorded
    assert reader.offset == len(data)


def test_copy_to_writes_a_member_through_a_file_descriptor(tmp_path: Path) -> None:
    payload = os.urandom(9 << 20)  # more than one copy buffer
    reader = reader_of(tar_of(DOT, file_member("./big.jpg", payload)))
    target = tmp_path / "big.jpg"
    for member in reader.members():
        fd = os.open(target, os.O_WRONLY | os.O_CREAT)
        try:
            reader.copy_to(member, fd)
        finally:
            os.close(fd)
    reader.finish()
    assert target.read_bytes() == payload


def test_a_truncated_gzip_stream_is_refused_as_truncated() -> None:
    compressed = gzip.compress(tar_of(DOT, file_member("./a.jpg", os.urandom(200_000))))
    stream, _ = open_part_stream(io.BytesIO(compressed[: len(compressed) // 2]))
    reader = TarReader(stream, compressed=True)
    with pytest.raises(TarRefused, match="truncated gzip-compressed tar"):
        for _member in reader.members():
            pass
        reader.finish()


def test_an_uncompressed_part_is_read_as_it_is() -> None:
    stream, compressed = open_part_stream(io.BytesIO(tar_of(DOT, PAIR)))
    assert not compressed
    assert [m.name for m in TarReader(stream).members()] == ["sa_1.jpg", "sa_1.json"]


def test_the_member_cap_counts_members_not_data() -> None:
    reader = TarReader(io.BytesIO(tar_of(*(file_member(f"./sa_{i}.json", b"") for i in range(6)))), max_members=5)
    with pytest.raises(TarRefused, match="more than 5 members"):
        list(reader.members())
