"""Tests of the test doubles themselves: the SA-1B data generator and the FakeCDN."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from sa1b_cli.testing.cdn import EXPIRED_BODY, CDNProcess, FakeCDN, Faults
from sa1b_cli.testing.generator import (
    HOSTILE_KINDS,
    PartInfo,
    column_mask,
    decode_counts,
    encode_counts,
    make_pair,
    make_parts,
    truncate_file,
    write_hostile_tar,
    write_image_ids,
    write_md5sums,
    write_part,
)
from sa1b_cli.testing.masks import annotation_templates

mask_api = pytest.importorskip("pycocotools.mask")
# pycocotools' own numpy-2 deprecation noise
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

URL_RE = re.compile(
    r"^http://127\.0\.0\.1:(\d+)/m1/v/t6/(An[A-Za-z0-9_-]+)\.tar\?_nc_gid&ccb=10-5&oh=(00_[A-Za-z0-9_-]+)"
    r"&oe=([0-9A-F]+)&_nc_sid=ba4296$"
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_partial(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes, bool]:
    """(status, body bytes received, complete?) even when the server cuts the body."""
    got = bytearray()
    with httpx.Client(timeout=timeout) as c, c.stream("GET", url, headers=headers) as r:
        try:
            for chunk in r.iter_raw():
                got += chunk
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return r.status_code, bytes(got), False
    return r.status_code, bytes(got), True


# ----------------------------------------------------------------- generator


def test_annotation_json_has_the_sa1b_schema() -> None:
    jpg, js = make_pair(42, width=80, height=60, masks_per_image=20, seed=3)
    doc = json.loads(js)
    assert set(doc) == {"image", "annotations"}
    assert doc["image"] == {"image_id": 42, "width": 80, "height": 60, "file_name": "sa_42.jpg"}
    assert len(doc["annotations"]) == 20
    keys = {"id", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "point_coords", "crop_box"}
    ids = set()
    for a in doc["annotations"]:
        assert set(a) == keys
        assert isinstance(a["id"], int)
        ids.add(a["id"])
        assert set(a["segmentation"]) == {"size", "counts"}
        assert a["segmentation"]["size"] == [60, 80]
        assert isinstance(a["segmentation"]["counts"], str)
        assert len(a["bbox"]) == 4 and all(isinstance(v, float) for v in a["bbox"])
        assert isinstance(a["area"], int) and a["area"] > 0
        assert 0.0 < a["predicted_iou"] <= 1.0 and 0.0 < a["stability_score"] <= 1.0
        assert len(a["point_coords"]) == 1 and len(a["point_coords"][0]) == 2
        assert a["crop_box"] == [0.0, 0.0, 80.0, 60.0]
    assert len(ids) == 20
    assert sum(decode_counts(doc["annotations"][0]["segmentation"]["counts"])) == 80 * 60


@pytest.mark.parametrize(("width", "height"), [(64, 48), (7, 5), (1, 1), (300, 200), (1500, 2250)])
def test_masks_agree_with_pycocotools(width: int, height: int) -> None:
    big = width * height > 100_000  # decoding full bitmaps is the slow part
    for image_id in range(1, 2 if big else 4):
        _, js = make_pair(image_id, width=width, height=height, masks_per_image=15 if big else 60)
        for a in json.loads(js)["annotations"]:
            rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            assert int(mask_api.area(rle)) == a["area"]
            assert mask_api.toBbox(rle).tolist() == a["bbox"]
            bitmap = mask_api.decode(rle)
            assert bitmap.shape == (height, width)
            assert int(bitmap.sum()) == a["area"]
            x, y = (int(v) for v in a["point_coords"][0])
            assert bitmap[y, x] == 1
            # canonical: pycocotools would encode the bitmap to the very same string
            assert mask_api.encode(np.asfortranarray(bitmap))["counts"] == rle["counts"]
            assert sum(decode_counts(rle["counts"])) == width * height


def test_counts_codec_matches_pycocotools_on_random_bitmaps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 40, size=2))
        bitmap = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        ref = mask_api.encode(np.asfortranarray(bitmap))["counts"]
        counts = decode_counts(ref)
        assert encode_counts(counts) == ref.decode()
        assert sum(counts) == h * w


def test_column_mask_edge_cases() -> None:
    full = column_mask(4, 3, 0, [0, 0, 0], [4, 4, 4])
    assert full.counts == (0, 12) and full.area == 12 and full.bbox == (0.0, 0.0, 3.0, 4.0)
    last = column_mask(4, 3, 2, [3], [4])
    assert last.counts == (11, 1)
    band = column_mask(5, 4, 1, [2, 0], [5, 3])  # touches across the column boundary: one run
    assert band.counts == (7, 6, 7)
    for m in (full, last, band):
        rle = {"size": [m.height, m.width], "counts": m.counts_string.encode()}
        assert int(mask_api.area(rle)) == m.area
        assert tuple(mask_api.toBbox(rle).tolist()) == m.bbox
    with pytest.raises(ValueError):
        column_mask(4, 3, 0, [2], [2])


def test_jpegs_are_real_sized_and_varied() -> None:
    seen = set()
    for image_id in range(1, 6):
        jpg, _ = make_pair(image_id, width=96, height=64, jpeg_quality=70)
        assert jpg[:2] == b"\xff\xd8" and jpg[-2:] == b"\xff\xd9"
        with Image.open(io.BytesIO(jpg)) as im:
            assert im.format == "JPEG" and im.size == (96, 64)
            im.load()
        seen.add(sha256(jpg))
    assert len(seen) == 5
    assert make_pair(3, seed=9) == make_pair(3, seed=9)
    assert make_pair(3, seed=9)[0] != make_pair(3, seed=10)[0]


def _header_names(path: Path) -> list[str]:
    """Raw member names from the tar headers (tarfile hides the trailing slash)."""
    with tarfile.open(path) as tf:
        return [m.name + ("/" if m.isdir() else "") for m in tf.getmembers()]


def test_write_part_layout_gzip(tmp_path: Path) -> None:
    info = write_part(tmp_path, 2, 30, masks_per_image=2, seed=5)
    assert info.name == "sa_000002.tar" and info.path == tmp_path / "sa_000002.tar" and info.part_index == 2
    data = info.path.read_bytes()
    assert data[:2] == b"\x1f\x8b" and info.compressed
    assert info.size == len(data)
    assert info.md5 == hashlib.md5(data).hexdigest() and info.sha256 == sha256(data)
    assert list(info.image_ids) == list(range(61, 91))
    names = _header_names(info.path)
    assert names[0] == "./"
    with tarfile.open(info.path) as tf:
        first = tf.getmembers()[0]
        assert first.isdir()
        members = tf.getmembers()[1:]
        assert all(m.isfile() for m in members)
        got = {m.name: tf.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    expected = {f"./sa_{i}.{ext}" for i in info.image_ids for ext in ("jpg", "json")}
    assert set(got) == expected and len(members) == 60
    assert [m.name for m in members] != sorted(m.name for m in members)  # shuffled
    jpg, js = make_pair(70, masks_per_image=2, seed=5)
    assert got["./sa_70.jpg"] == jpg and got["./sa_70.json"] == js
    # deterministic
    again = write_part(tmp_path / "again.tar", 2, 30, masks_per_image=2, seed=5)
    assert again.md5 == info.md5 and again.name == "again.tar"


def test_write_part_plain_tar(tmp_path: Path) -> None:
    info = write_part(tmp_path, 0, 3, compress=False, first_image_id=1000)
    data = info.path.read_bytes()
    assert info.name == "sa_000000.tar" and not info.compressed
    assert data[257:262] == b"ustar" and data[:2] != b"\x1f\x8b"
    assert list(info.image_ids) == [1000, 1001, 1002]
    assert _header_names(info.path)[0] == "./"


def test_make_parts_md5sums_and_ids(tmp_path: Path) -> None:
    parts = make_parts(tmp_path / "p", 3, 2)
    assert [p.name for p in parts] == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    assert [(p.first_id, p.last_id) for p in parts] == [(1, 2), (3, 4), (5, 6)]
    sums = write_md5sums(parts, tmp_path / "checklist.txt").read_text().splitlines()
    assert sums[1] == f"{parts[1].md5}  sa_000001.tar"
    for line in sums:
        md5, name = line.split("  ")
        assert hashlib.md5((tmp_path / "p" / name).read_bytes()).hexdigest() == md5
    if shutil.which("md5sum"):
        subprocess.run(["md5sum", "-c", "--quiet", str(tmp_path / "checklist.txt")], cwd=tmp_path / "p", check=True)
    ids = write_image_ids(parts, tmp_path / "sa_images_ids.txt").read_text().split()
    assert ids == [str(i) for i in range(1, 7)]
    uneven = make_parts(tmp_path / "u", 2, [3, 1], first_part=5)
    assert [(p.name, p.first_id, p.last_id) for p in uneven] == [("sa_000005.tar", 16, 18), ("sa_000006.tar", 19, 19)]


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_tars(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "sa_000000.tar"
    name = write_hostile_tar(path, kind)
    with tarfile.open(path) as tf:
        members = tf.getmembers()
    assert members[0].isdir() and members[-1].name == name
    bad = members[-1]
    check = {"absolute": lambda: name.startswith("/") and bad.isfile(),
             "dotdot": lambda: ".." in name and bad.isfile(),
             "symlink": bad.issym, "hardlink": bad.islnk, "device": bad.ischr, "fifo": bad.isfifo}[kind]
    assert check()


def test_truncate_file(tmp_path: Path, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    truncate_file(p.path, 100)
    assert p.path.stat().st_size == 100
    truncate_file(p.path, -10)
    assert p.path.stat().st_size == 90
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        with tarfile.open(p.path) as tf:
            tf.getmembers()


def test_masks_are_rendered_once_per_image_size_not_per_image() -> None:
    """What keeps generation fast (10,000 images x 100 masks in seconds, see
    ``scripts/bench_generator.py``): every image draws its masks verbatim from one pool
    rendered per image size; no mask is encoded again for an image."""
    annotation_templates.cache_clear()
    pool_counts = {json.loads("{" + t)["segmentation"]["counts"] for t in annotation_templates(64, 48)}
    for i in range(300):
        doc = json.loads(make_pair(i, masks_per_image=100)[1])
        assert len(doc["annotations"]) == 100
        assert {a["segmentation"]["counts"] for a in doc["annotations"]} <= pool_counts
    info = annotation_templates.cache_info()
    assert (info.misses, info.hits) == (1, 300)


# ----------------------------------------------------------------------- cdn


def test_links_file_and_urls(cdn: FakeCDN, links_file: Path, small_parts: list[PartInfo]) -> None:
    text = links_file.read_text()
    lines = text.split("\n")
    assert lines[0] == "file_name\tcdn_link" and text.endswith("\n")
    rows = dict(line.split("\t") for line in lines[1:] if line)
    assert sorted(rows) == [p.name for p in small_parts]
    for name, url in rows.items():
        m = URL_RE.match(url)
        assert m, url
        assert int(m.group(1)) == cdn.port and name not in url
        assert int(m.group(4), 16) > time.time() + 19 * 86400
    name = small_parts[0].name
    again = cdn.signed_url(name, expires_at=time.time() + 3600)
    m1, m2 = URL_RE.match(rows[name]), URL_RE.match(again)
    assert m1 and m2 and m1.group(2) == m2.group(2) and m1.group(3) != m2.group(3)
    extra = links_file.parent / "ids.txt"
    extra.write_text("1\n")
    text = cdn.links_text(extras={"sa_images_ids.txt": extra}, shuffle_seed=1, final_newline=False)
    assert "sa_images_ids.txt\thttp://" in text and not text.endswith("\n")
    url = text.split("sa_images_ids.txt\t")[1].split("\n")[0]
    assert httpx.get(url).content == b"1\n"


def test_full_get_head_and_ranges(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[1]
    url = cdn.signed_url(p.name)
    data = p.path.read_bytes()
    with httpx.Client() as c:
        r = c.get(url)
        assert r.status_code == 200 and sha256(r.content) == p.sha256
        assert r.headers["content-length"] == str(p.size) and r.headers["accept-ranges"] == "bytes"
        h = c.head(url)
        assert h.status_code == 200 and h.headers["content-length"] == str(p.size) and h.content == b""
        r = c.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{p.size}"
        r = c.get(url, headers={"Range": "bytes=100-"})
        assert r.status_code == 206 and r.content == data[100:]
        assert r.headers["content-range"] == f"bytes 100-{p.size - 1}/{p.size}"
        r = c.get(url, headers={"Range": "bytes=-7"})
        assert r.status_code == 206 and r.content == data[-7:]
        r = c.get(url, headers={"Range": f"bytes=5-{p.size + 100}"})
        assert r.status_code == 206 and r.content == data[5:]
        r = c.get(url, headers={"Range": f"bytes={p.size}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{p.size}"
    log = cdn.requests_for(p.name)
    assert [r.status for r in log] == [200, 200, 206, 206, 206, 206, 416]
    assert (log[2].range_start, log[2].range_end) == (10, 19)
    assert cdn.bytes_sent(p.name) == p.size + 10 + (p.size - 100) + 7 + (p.size - 5)
    assert cdn.bytes_sent() == cdn.bytes_sent(p.name)
    cdn.reset_log()
    assert cdn.log == [] and cdn.bytes_sent() == 0


def test_parallel_ranges_reassemble(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[2]
    url = cdn.signed_url(p.name)
    step = -(-p.size // 6)
    pieces: dict[int, bytes] = {}

    def fetch(a: int) -> None:
        with httpx.Client() as c:
            pieces[a] = c.get(url, headers={"Range": f"bytes={a}-{a + step - 1}"}).content

    threads = [threading.Thread(target=fetch, args=(a,)) for a in range(0, p.size, step)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sha256(b"".join(pieces[a] for a in sorted(pieces))) == p.sha256


def test_expiry_signature_revoke_404(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    name = small_parts[0].name
    with httpx.Client() as c:
        expired = c.get(cdn.signed_url(name, expires_at=time.time() - 1))
        assert expired.status_code == 403 and expired.content == EXPIRED_BODY == b"URL signature expired"
        good = cdn.signed_url(name)
        assert c.get(good).status_code == 200
        first = good.split("oh=00_", 1)[1][0]
        tampered = good.replace(f"oh=00_{first}", f"oh=00_{'Z' if first != 'Z' else 'Y'}", 1)
        assert c.get(tampered).status_code == 403
        assert c.get(re.sub(r"oe=[0-9A-F]+", "oe=7FFFFFFF", good)).status_code == 403
        assert c.get(re.sub(r"&oh=[^&]+", "", good)).status_code == 403
        cdn.expire_all()
        r = c.get(good)
        assert r.status_code == 403 and r.text == "URL signature expired"
        fresh = cdn.signed_url(name)
        assert c.get(fresh).status_code == 200
        cdn.revoke(name)
        r = c.get(fresh)
        assert r.status_code == 403 and r.content != EXPIRED_BODY
        assert c.get(cdn.signed_url(name)).status_code == 200
        other = cdn.signed_url(small_parts[1].name)
        assert c.get(other.replace(cdn.token(small_parts[1].name), "AnUnknownToken")).status_code == 404
        assert c.get(cdn.base_url + "/nothing").status_code == 404
        cdn.remove(small_parts[1].name)
        assert c.get(other).status_code == 404


def test_fault_drop(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    url = cdn.signed_url(p.name)
    cdn.set_faults(p.name, Faults(drop_after_bytes=1000, drop_count=1))
    status, body, complete = get_partial(url)
    assert status == 200 and not complete and body == p.path.read_bytes()[:1000]
    assert cdn.requests_for(p.name)[-1].bytes_sent == 1000
    assert cdn.requests_for(p.name)[-1].fault == "drop"
    status, body, complete = get_partial(url)  # count used up
    assert complete and sha256(body) == p.sha256
    cdn.set_faults(None, Faults(drop_after_bytes=10, drop_count=None))  # default for every file
    for q in small_parts[1:]:
        for _ in range(2):
            assert get_partial(cdn.signed_url(q.name))[2] is False


def test_fault_503_then_ok(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    url = cdn.signed_url(p.name)
    faults = Faults(status_503_count=2, retry_after=7)
    cdn.set_faults(p.name, faults)
    with httpx.Client() as c:
        for _ in range(2):
            r = c.get(url)
            assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert c.get(url).status_code == 200
    assert faults.status_503_count == 0
    assert cdn.bytes_sent(p.name) == p.size


def test_bytes_sent_never_behind_what_the_client_received(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    """The count is raised before each send, so a client that holds the whole body
    never reads a short count (before: about 1 response in 30 was short)."""
    p = small_parts[0]
    url = cdn.signed_url(p.name)
    with httpx.Client() as c:
        for i in range(1, 201):
            assert c.get(url).status_code == 200
            assert cdn.bytes_sent(p.name) == i * p.size
    assert cdn.wait_idle(5) and all(r.finished for r in cdn.log)


def test_wait_idle_waits_for_the_server_to_finish(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    cdn.set_faults(p.name, Faults(stall_after_bytes=100, stall_seconds=0.5))
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(len(httpx.get(cdn.signed_url(p.name)).content)))
    reader.start()
    deadline = time.monotonic() + 5
    while not (cdn.log and cdn.log[-1].bytes_sent == 100) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cdn.wait_idle(0.05)  # the server is still stalling on that request
    reader.join(5)
    assert got == [p.size] and cdn.wait_idle(5) and cdn.log[-1].finished and cdn.log[-1].bytes_sent == p.size


def test_fault_ignore_range_and_wrong_length(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    url = cdn.signed_url(p.name)
    cdn.set_faults(p.name, Faults(ignore_range=True))
    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 200 and sha256(r.content) == p.sha256 and "accept-ranges" not in r.headers
    cdn.set_faults(p.name, Faults(wrong_length=p.size + 50))
    assert httpx.head(url).headers["content-length"] == str(p.size + 50)
    status, body, complete = get_partial(url)
    assert not complete and sha256(body) == p.sha256
    cdn.set_faults(p.name, None)
    assert httpx.get(url).status_code == 200


def test_fault_corrupt(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    url = cdn.signed_url(p.name)
    data = p.path.read_bytes()
    cdn.set_faults(p.name, Faults(corrupt_offsets=(5, p.size - 1)))
    r = httpx.get(url)
    assert r.status_code == 200 and len(r.content) == p.size and sha256(r.content) != p.sha256
    diff = [i for i in range(p.size) if r.content[i] != data[i]]
    assert diff == [5, p.size - 1]
    assert httpx.get(url, headers={"Range": "bytes=6-20"}).content == data[6:21]
    assert httpx.get(url, headers={"Range": "bytes=3-6"}).content[2] == data[5] ^ 0xFF


def test_fault_stall_and_close_unblocks(small_parts_dir: Path, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    cdn = FakeCDN(small_parts_dir)
    try:
        cdn.set_faults(p.name, Faults(stall_after_bytes=100, stall_seconds=60))
        got = bytearray()
        with pytest.raises(httpx.ReadTimeout):
            with httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as c, c.stream("GET", cdn.signed_url(p.name)) as r:
                for chunk in r.iter_raw():
                    got += chunk
        assert len(got) == 100
        # a second client keeps its connection stalled while we close the server
        s = socket.create_connection(("127.0.0.1", cdn.port))
        s.sendall(f"GET {cdn.signed_url(p.name).split(str(cdn.port), 1)[1]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.1)
    finally:
        t = time.monotonic()
        cdn.close()
        assert time.monotonic() - t < 3
    s.settimeout(2)
    received = b""
    while chunk := s.recv(65536):
        received += chunk
    s.close()
    assert received.startswith(b"HTTP/1.1 200")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", cdn.port), timeout=1).close()


def test_fault_rate_limit(cdn: FakeCDN, tmp_path: Path) -> None:
    blob = tmp_path / "blob.tar"
    blob.write_bytes(os.urandom(300_000))
    cdn.add_file("blob.tar", blob)
    cdn.set_faults("blob.tar", Faults(rate_limit_bytes_per_s=1_000_000))
    t = time.monotonic()
    r = httpx.get(cdn.signed_url("blob.tar"))
    elapsed = time.monotonic() - t
    assert r.status_code == 200 and len(r.content) == 300_000
    assert elapsed > 0.15  # ~0.3 s at 1 MB/s; no tight upper bound


def test_cdn_process(small_parts_dir: Path, small_parts: list[PartInfo], tmp_path: Path) -> None:
    links = tmp_path / "links.txt"
    with CDNProcess(small_parts_dir, links, expires_in=3600) as proc:
        rows = dict(line.split("\t") for line in links.read_text().splitlines()[1:])
        p = small_parts[0]
        m = URL_RE.match(rows[p.name])
        assert m and int(m.group(1)) == proc.port
        assert abs(int(m.group(4), 16) - (time.time() + 3600)) < 60
        assert sha256(httpx.get(rows[p.name]).content) == p.sha256
        assert proc.bytes_sent(p.name) == p.size
        proc.set_faults(p.name, Faults(status_503_count=1))
        assert httpx.get(rows[p.name]).status_code == 503
        assert httpx.get(rows[p.name]).status_code == 200
        proc.expire_all()
        assert httpx.get(rows[p.name]).text == "URL signature expired"
        fresh = dict(line.split("\t") for line in proc.links_text().splitlines()[1:])
        assert httpx.get(fresh[p.name]).status_code == 200
        assert [r["status"] for r in proc.log()] == [200, 503, 200, 403, 200]
        proc.reset_log()
        assert proc.stats()["requests"] == 0
    assert proc.proc.returncode == 0


ARIA2C = shutil.which("aria2c") or shutil.which("aria2c", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(ARIA2C is None, reason="aria2c not installed")
def test_aria2c_downloads_from_fake_cdn(cdn: FakeCDN, tmp_path: Path) -> None:
    blob = tmp_path / "sa_000009.tar"
    blob.write_bytes(os.urandom(3_000_000))
    cdn.add_file(blob.name, blob)
    out = tmp_path / "out"
    subprocess.run(
        [str(ARIA2C), "--no-conf", "-q", "-d", str(out), "-x4", "-s4", "-k1M", "--file-allocation=none",
         "--max-tries=1", "-o", blob.name, cdn.signed_url(blob.name)],
        check=True, timeout=30,
    )
    assert sha256((out / blob.name).read_bytes()) == sha256(blob.read_bytes())
    assert any(r.status == 206 for r in cdn.requests_for(blob.name))


def test_fault_corrupt_count_limits_the_corrupted_responses(cdn: FakeCDN, small_parts: list[PartInfo]) -> None:
    p = small_parts[0]
    faults = Faults(corrupt_offsets=(p.size - 1,), corrupt_count=1)
    cdn.set_faults(p.name, faults)
    url = cdn.signed_url(p.name)
    assert httpx.get(url, headers={"Range": "bytes=0-9"}).content == p.path.read_bytes()[:10]  # offset not in it
    assert faults.corrupt_count == 1
    assert sha256(httpx.get(url).content) != p.sha256 and faults.corrupt_count == 0
    assert sha256(httpx.get(url).content) == p.sha256
