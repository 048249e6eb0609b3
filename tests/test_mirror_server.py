"""The Hugging Face-like test mirror itself (sa1b_cli/testing/mirror.py), spoken to with httpx.

The resolve endpoint answers 302 to a short-lived signed URL on a separate storage server; what aria2c
makes of that is in tests/test_mirrors.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo, make_parts
from sa1b_cli.testing.mirror import FakeMirror


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:  # loopback: never a proxy
        yield c


def test_resolve_redirects_to_a_signed_url_on_another_port(small_parts: list[PartInfo], client: httpx.Client) -> None:
    part = small_parts[1]
    with FakeMirror(small_parts[0].path.parent) as mirror:
        assert mirror.template == f"http://127.0.0.1:{mirror.port}/datasets/Aber-r/SA-1B_backup/resolve/main/{{name}}"
        url = mirror.template.format(name=part.name)
        for method in ("HEAD", "GET"):
            answer = client.request(method, url)
            assert answer.status_code == 302 and answer.content == b""
            target = urlsplit(answer.headers["location"])
            assert target.hostname == "127.0.0.1" and target.port == mirror.storage.port != mirror.port
            assert "oe=" in target.query and "oh=" in target.query  # signed, with an expiry
        fetched = client.get(url, follow_redirects=True)
        assert fetched.status_code == 200 and fetched.content == part.path.read_bytes()
        assert [(r.method, r.name, r.status) for r in mirror.log] == [("HEAD", part.name, 302), ("GET", part.name, 302),
                                                                     ("GET", part.name, 302)]
        assert mirror.log[-1].location == str(fetched.url)
        assert mirror.storage.bytes_sent(part.name) == part.size  # the resolve endpoint sends no body bytes


def test_range_requests_work_through_the_redirect(small_parts: list[PartInfo], client: httpx.Client) -> None:
    part = small_parts[0]
    data = part.path.read_bytes()
    with FakeMirror(part.path.parent) as mirror:
        answer = client.get(mirror.url(part.name), headers={"Range": "bytes=100-1099"}, follow_redirects=True)
        assert answer.status_code == 206 and answer.content == data[100:1100]
        assert answer.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        tail = client.get(mirror.url(part.name), headers={"Range": "bytes=-10"}, follow_redirects=True)
        assert tail.status_code == 206 and tail.content == data[-10:]
        assert mirror.log[0].headers.get("Range") == "bytes=100-1099"  # the range reached the resolve endpoint too
        (first, last) = [r for r in mirror.storage.log if r.method == "GET"]
        assert (first.range_start, first.range_end) == (100, 1099) and first.status == 206
        assert mirror.storage.bytes_sent() == 1000 + 10


def test_an_expired_target_gets_403_and_the_resolve_url_gives_a_fresh_one(small_parts: list[PartInfo],
                                                                            client: httpx.Client) -> None:
    """As a transfer that outlives its redirect target: the first bytes from the old target, a resume
    against it refused, the rest from a fresh target."""
    part = small_parts[2]
    data = part.path.read_bytes()
    half = len(data) // 2
    # oe is a whole second, so a ttl of 2 lives 1-2 s: the first GET, just after the resolve, is always in time.
    with FakeMirror(part.path.parent, target_ttl=2) as mirror:
        old = client.get(mirror.url(part.name)).headers["location"]
        first = client.get(old, headers={"Range": f"bytes=0-{half - 1}"})
        assert first.status_code == 206
        deadline = time.monotonic() + 5
        while (refused := client.get(old, headers={"Range": f"bytes={half}-"})).status_code != 403:
            assert refused.status_code == 206 and time.monotonic() < deadline, "the target never expired"
            time.sleep(0.2)
        assert refused.text == "URL signature expired"
        fresh = client.get(mirror.url(part.name)).headers["location"]
        assert fresh != old
        rest = client.get(fresh, headers={"Range": f"bytes={half}-"})
        assert rest.status_code == 206 and first.content + rest.content == data


def test_a_required_header_gets_401_without_it(small_parts: list[PartInfo], client: httpx.Client) -> None:
    part = small_parts[0]
    with FakeMirror(part.path.parent, required_header="Authorization: Bearer t0ken") as mirror:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = client.get(mirror.url(part.name), headers=headers)
            assert refused.status_code == 401 and "location" not in refused.headers
        assert client.head(mirror.url(part.name)).status_code == 401
        allowed = client.get(mirror.url(part.name), headers={"Authorization": "Bearer t0ken"}, follow_redirects=True)
        assert allowed.status_code == 200 and allowed.content == part.path.read_bytes()
        assert [r.status for r in mirror.log] == [401, 401, 401, 302]
        assert mirror.log[-1].headers.get("Authorization") == "Bearer t0ken" and "Authorization" not in mirror.log[0].headers
        assert len(mirror.storage.log) == 1  # the refused requests never got a target
        assert allowed.history[0].status_code == 302


def test_unknown_names_and_other_paths_get_404(small_parts: list[PartInfo], client: httpx.Client) -> None:
    with FakeMirror(small_parts[0].path.parent) as mirror:
        assert client.get(mirror.url("sa_000777.tar")).status_code == 404
        assert client.head(mirror.url("sa_000777.tar")).status_code == 404
        base = f"http://127.0.0.1:{mirror.port}"
        for path in ("/", f"/datasets/other/repo/resolve/main/{small_parts[0].name}", "/datasets/Aber-r/SA-1B_backup/resolve/main/"):
            assert client.get(base + path).status_code == 404, path
        assert client.get(mirror.url("sa_000777.tar")).text == "Entry not found"
        assert not mirror.storage.log
    with pytest.raises(ValueError, match="loopback"):
        FakeMirror(small_parts[0].path.parent, host="0.0.0.0")


def test_a_mirror_serves_its_own_directory(small_parts: list[PartInfo], tmp_path: Path, client: httpx.Client) -> None:
    """The mirror's copy may differ from Meta's (a valid tar with other bytes, as the audited mirrors hold)."""
    wrong_dir = tmp_path / "wrong"
    (wrong,) = make_parts(wrong_dir, 1, 4, masks_per_image=3, seed=99)
    assert wrong.name == small_parts[0].name and wrong.sha256 != small_parts[0].sha256
    with FakeCDN(small_parts[0].path.parent) as cdn, FakeMirror(wrong_dir, repo="someone/sa1b") as mirror:
        assert "/datasets/someone/sa1b/resolve/main/" in mirror.template
        from_mirror = client.get(mirror.url(wrong.name), follow_redirects=True).content
        from_cdn = client.get(cdn.signed_url(wrong.name)).content
        assert from_mirror == wrong.path.read_bytes() and from_cdn == small_parts[0].path.read_bytes()
        assert client.get(mirror.url(small_parts[1].name)).status_code == 404


def test_mirror_as_a_separate_process(small_parts: list[PartInfo], tmp_path: Path, client: httpx.Client) -> None:
    directory = tmp_path / "served"
    shutil.copytree(small_parts[0].path.parent, directory)
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    proc = subprocess.Popen([sys.executable, "-m", "sa1b_cli.testing.mirror", "--dir", str(directory),
                             "--header", "Authorization: Bearer t"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        url = started["template"].format(name=small_parts[0].name)
        assert client.get(url).status_code == 401
        answer = client.get(url, headers={"Authorization": "Bearer t"}, follow_redirects=True)
        assert answer.content == small_parts[0].path.read_bytes()
        stats = client.get(f"http://127.0.0.1:{started['storage_port']}/__cdn/stats").json()
        assert stats["bytes_sent"] == small_parts[0].size
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        if proc.stdout:
            proc.stdout.close()
