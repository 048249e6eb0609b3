"""`sa1b status --json` while a throttled download runs: numbers move, nothing breaks, the end is seen."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import make_parts
from sa1b_cli.testing.processes import sa1b_command, sa1b_env

N_PARTS = 3
DOWNLOAD_SECONDS = 5.0  # throttled: long enough for several status calls, short enough for the suite


def status_json(root: Path) -> dict:
    result = subprocess.run(sa1b_command("status", "-d", root, "--json"), capture_output=True, text=True,
                            env=sa1b_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["type"] == "status"
    return record


def test_status_follows_a_running_download(tmp_path: Path) -> None:
    parts = make_parts(tmp_path / "parts", N_PARTS, 20, width=320, height=240, masks_per_image=5, seed=5)
    total = sum(p.size for p in parts)
    root = tmp_path / "root"
    with FakeCDN(tmp_path / "parts") as cdn:
        cdn.set_faults(None, Faults(rate_limit_bytes_per_s=max(p.size for p in parts) / DOWNLOAD_SECONDS))
        links = cdn.write_links(tmp_path / "segment_anything_links.txt")
        download = subprocess.Popen(sa1b_command("download", links, "-d", root, "--json"), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=sa1b_env())
        samples: list[dict] = []
        try:
            while download.poll() is None:
                if root.is_dir():
                    samples.append(status_json(root))
                else:
                    time.sleep(0.1)
            stdout, stderr = download.communicate(timeout=60)
        finally:
            if download.poll() is None:
                download.kill()
                download.wait()
    assert download.returncode == 0, stderr

    running = [s for s in samples if any(not r["stale"] for r in s["runs"])]
    assert len(running) >= 2, f"only {len(running)} status calls saw the download running"
    for sample in running:
        live = [r for r in sample["runs"] if not r["stale"]]
        assert len(live) == 1 and live[0]["command"] == "download" and live[0]["pid"] == download.pid
        assert 0 <= sample["fetched_bytes"] <= total
        assert set(sample["counts"]) >= {"downloading", "downloaded", "pending"}
    moving = sorted({s["fetched_bytes"] for s in running if 0 < s["fetched_bytes"] < total})
    assert len(moving) >= 2, f"completed bytes never moved between calls: {[s['fetched_bytes'] for s in running]}"
    assert any(s["counts"]["downloading"] > 0 for s in running)
    assert any(p["state"] == "downloading" and 0 < (p["percent"] or 0) < 100 for s in running for p in s["parts"])

    final = status_json(root)
    assert final["counts"]["downloaded"] == N_PARTS and final["part_count"] == N_PARTS
    assert final["downloaded_bytes"] == final["fetched_bytes"] == total and final["partial_bytes"] == 0
    assert not [r for r in final["runs"] if not r["stale"]] and final["rate_bytes_per_s"] is None
    assert all(p["percent"] == 100.0 for p in final["parts"])

    # what the run taught the store: status without --links knows the whole job and the run's rate
    assert final["part_total"] == N_PARTS and final["total_bytes"] == total and final["remaining_bytes"] == 0
    assert final["past_rate_bytes_per_s"] > 0, "the finished run's average rate is kept"
    assert any(s["eta_basis"] == "everything left to fetch, as the running download says" for s in running), \
        "while it runs, status shows the download's own ETA"
