"""End to end: links file to verified dataset, sa1b against aria2c + a tar loop + the naive check."""

from __future__ import annotations

import sys
from pathlib import Path

from .base import BenchBase
from .common import FULL_DATASET_PAIRS, fmt_mb, fmt_s, fresh_dir, median
from .data import total_size
from .extract import TAR_LOOP
from .report import Section, Table


def _medians(runs: list[list[float]]) -> tuple[float, list[float]]:
    """The median total of runs of stage times, and the median of each stage."""
    return median([sum(run) for run in runs]), [median(list(stage)) for stage in zip(*runs)]


class EndToEndBench(BenchBase):
    """The end-to-end benchmark."""

    def bench_end_to_end(self) -> Section:
        p = self.profile
        parts = self.e2e_set
        pairs = sum(x.pairs for x in parts)
        links = self.links_for(parts, "e2e")
        contenders = ["sa1b", "aria2c + tar + naive check"]
        stages: dict[str, list[list[float]]] = {c: [] for c in contenders}
        fetch_cpu: dict[str, list[float]] = {c: [] for c in contenders}  # CPU of getting the files unpacked
        for order in self.rounds(contenders):
            for who in order:
                dest = fresh_dir(self.runs / "e2e" / who.split()[0])
                walls, cpu = self._sa1b_pipeline(links, dest) if who == "sa1b" else self._baseline_pipeline(links, dest)
                stages[who].append(walls)
                fetch_cpu[who].append(cpu)
                self.say(f"  end to end {who}: {fmt_s(sum(walls))}")
        sa_total, sa_stages = _medians(stages["sa1b"])
        base_total, base_stages = _medians(stages["aria2c + tar + naive check"])
        section = Section(
            "End to end: links file to verified dataset",
            f"{len(parts)} part, {fmt_mb(total_size(parts))}, {pairs} pairs at {p.verify_size[0]}x{p.verify_size[1]} "
            f"with {p.masks} masks each. sa1b: `sa1b download --extract` then `sa1b verify --deep`. Baseline: "
            "`aria2c -i` (same settings), a `tar -xzf` loop, the naive pycocotools check of every pair.")
        section.tables.append(Table(f"Median of {p.repeats}", ["pipeline", "stages", "total", "vs baseline"], [
            ["sa1b", f"download+extract {fmt_s(sa_stages[0])}, verify --deep {fmt_s(sa_stages[1])}", fmt_s(sa_total),
             f"{base_total / sa_total:.1f}x faster"],
            ["aria2c + tar + naive check", f"aria2c {fmt_s(base_stages[0])}, tar {fmt_s(base_stages[1])}, "
             f"naive check {fmt_s(base_stages[2])}", fmt_s(base_total), "1.0x"],
        ]))
        naive_days = FULL_DATASET_PAIRS / (pairs / base_stages[2]) / 86400
        deep = (f" and {FULL_DATASET_PAIRS / self.deep_rate / 3600:,.1f} hours for sa1b's deep check on one core "
                "(its rate in the verify section)" if self.deep_rate else "")
        ours_cpu, theirs_cpu = (median(fetch_cpu[c]) for c in contenders)
        theirs_fetch = base_stages[0] + base_stages[1]
        section.notes.append(
            f"Getting the files unpacked, without the final check: `sa1b download --extract` {fmt_s(sa_stages[0])} "
            f"({ours_cpu:.2f} CPU-s, every part checked: sizes, gzip CRC, tar structure, sha256) against "
            f"`aria2c -i` then the `tar -xzf` loop {fmt_s(theirs_fetch)} ({theirs_cpu:.2f} CPU-s, nothing checked): "
            f"{sa_stages[0] / theirs_fetch:.2f}x the time. sa1b checks each part in the same read that unpacks it, "
            "so the part is inflated once, as by tar; the rest is its fixed start-up per run.")
        section.notes.append(
            f"Almost all of the baseline's time is the naive check (a bitmap per mask). At these rates checking all "
            f"{FULL_DATASET_PAIRS:,} pairs would take {naive_days:,.0f} days for the naive loop on one core{deep}; "
            "the transfer itself is the same aria2c in both.")
        return section

    def _sa1b_pipeline(self, links: Path, dest: Path) -> tuple[list[float], float]:
        """Wall time of each stage (download+extract, verify --deep) and the CPU of getting the files unpacked."""
        fetched = self.runner.run(self.download_args(links, dest, "--extract"))
        verified = self.runner.run(self.verify_cmd(dest, self.e2e_set, "--deep"))
        return [fetched.wall, verified.wall], fetched.cpu

    def _baseline_pipeline(self, links: Path, dest: Path) -> tuple[list[float], float]:
        """Wall time of each stage (aria2c, the tar loop, the naive check) and the CPU of the first two."""
        fetched = self.runner.run(self.aria2c_cmd(links, dest / "tars"))
        unpacked = self.runner.run(["bash", "-c", TAR_LOOP, "loop", str(dest / "tars"), str(dest / "extracted")])
        checked = self.runner.run([sys.executable, str(self.naive_script), str(dest / "extracted"), "0"], sync=False)
        return [fetched.wall, unpacked.wall, checked.wall], fetched.cpu + unpacked.cpu
