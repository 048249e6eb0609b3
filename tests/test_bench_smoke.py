"""The benchmark script runs end to end at its quick sizes and writes its report (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_a_markdown_report(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--output", str(output),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = output.read_text()
    for heading in ("## Download", "## Resume after a kill", "## Extract", "## Verify", "## End to end"):
        assert heading in report
    assert "| sa1b download |" in report and "| aria2c -i |" in report
    assert "| sa1b extract | tar -xzf loop | tar -xzf loop + sync |" in report
    assert "| verify --deep |" in report and "| naive loop |" in report
    assert "python scripts/bench.py --quick" in report
    assert "cores" in report  # the machine is described
    table_rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert len(table_rows) >= 20
    assert not (tmp_path / "work" / "runs").exists()  # per-run directories are cleaned up


def test_generator_benchmark_prints_its_table() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_generator.py"), "--pairs", "10", "--repeats", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "pool" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| tests (64x48)", "| benchmark parts (750x1125)", "| SA-1B (1500x2250)"]
    assert "write_part of 10 pairs" in proc.stdout
