"""A receipt is proof of checked bytes: when `verify --tars` later finds the tar damaged, it withdraws the
receipt (saying why, for `status`), and `download` fetches the part again (issue 16 item 4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sa1b_cli.errors import ExitStatus
from sa1b_cli.store import Store
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo
from sa1b_cli.testing.processes import run_sa1b


def _damage_in_place(path: Path) -> None:
    """Flip bytes in the middle of the file, keeping its size (a bad sector, a bit flip on a disk)."""
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        chunk = handle.read(64)
        handle.seek(-len(chunk), 1)
        handle.write(bytes(b ^ 0xFF for b in chunk))


def test_a_tar_verify_found_damaged_is_fetched_again(small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path,
                                                      tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run_sa1b("download", links_file, "-d", root).returncode == 0
    victim = small_parts[1]
    tar = root / "tars" / victim.name
    _damage_in_place(tar)

    checked = run_sa1b("verify", "-d", root, "--tars", "--parts", "1")
    assert checked.returncode == ExitStatus.CORRUPT, checked.stdout + checked.stderr
    assert "its download receipt is withdrawn" in checked.stdout + checked.stderr
    part = Store(root).part(victim.name)
    assert not part.downloaded and part.download_failure is not None
    assert "verify --tars found the tar damaged" in part.download_failure.reason
    status = run_sa1b("status", "-d", root, "--all")
    assert "verify --tars found the tar damaged" in status.stdout, status.stdout
    assert Store(root).part(small_parts[0].name).downloaded, "only the damaged part loses its proof"

    requests_before = len(cdn.log)
    again = run_sa1b("download", links_file, "-d", root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert hashlib.sha256(tar.read_bytes()).hexdigest() == victim.sha256
    fetched = {r.name for r in cdn.log[requests_before:] if r.method == "GET"}
    assert fetched == {victim.name}, fetched
    assert Store(root).part(victim.name).downloaded
