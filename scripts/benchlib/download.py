"""Download: sa1b against raw aria2c, a wget/curl loop and an httpx loop, unthrottled and
throttled, with the controller's CPU."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from sa1b_cli.integrity import check_part
from sa1b_cli.testing.cdn import CDNProcess, Faults

from .base import BenchBase
from .common import MiB, Timed, fmt_mb, fmt_rate, fmt_s, fresh_dir, median, ratio
from .data import Part, check_sizes, total_size
from .report import Section, Table, Target, profile_summary

SA1B_PART_BYTES = 11.2e9  # an average SA-1B part
NOISE_CPU = 0.05  # seconds: below this, a difference of CPU measurements means nothing

# A user's single-stream Python downloader.
HTTPX_LOOP = r"""
import sys, httpx
links, dest = sys.argv[1], sys.argv[2]
with httpx.Client(timeout=120, trust_env=False) as client:
    for line in open(links).read().splitlines()[1:]:
        name, url = line.split("\t")
        with client.stream("GET", url) as response:
            response.raise_for_status()
            with open(f"{dest}/{name}", "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
"""

# The naive sequential downloader: one wget (or curl) per row of the links file.
WGET_LOOP = 'tail -n +2 "$1" | while IFS=$(printf "\\t") read -r name url; do wget -q -O "$2/$name" "$url" || exit 1; done'
CURL_LOOP = 'tail -n +2 "$1" | while IFS=$(printf "\\t") read -r name url; do curl -sSf -o "$2/$name" "$url" || exit 1; done'


class ByteClock:
    """Watches the CDN's byte counter while a download runs: when did the first and the last byte go out?"""

    def __init__(self, cdn: CDNProcess, total: int, interval: float = 0.01) -> None:
        self.cdn, self.total, self.interval = cdn, total, interval
        self.first = self.last = float("nan")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ByteClock:
        self.cdn.reset_log()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if self.last != self.last and self.cdn.bytes_sent() >= self.total:
            self.last = time.perf_counter()  # finished between two polls: an upper bound

    def _watch(self) -> None:
        while not self.stop.is_set():
            sent = self.cdn.bytes_sent()
            now = time.perf_counter()
            if sent > 0 and self.first != self.first:
                self.first = now
            if sent >= self.total:
                self.last = now
                return
            self.stop.wait(self.interval)

    def since(self, start: float) -> tuple[float, float]:
        return self.first - start, self.last - start


class DownloadBench(BenchBase):
    """Download and resume benchmarks."""

    def naive_loop_cmd(self, links: Path, dest: Path) -> list[str]:
        return ["bash", "-c", WGET_LOOP if self.naive_tool == "wget" else CURL_LOOP, "loop", str(links), str(dest)]

    def _download_scenario(self, links: Path, parts: list[Part], contenders: list[str],
                           repeats: int | None = None) -> dict[str, list[Timed]]:
        """Alternate the contenders over fresh directories; each run also gets its first/last byte times."""
        assert self.cdn is not None
        total = total_size(parts)
        results: dict[str, list[Timed]] = {c: [] for c in contenders}
        for order in self.rounds(contenders, repeats):
            for who in order:
                dest = fresh_dir(self.runs / "download" / who.split()[0])
                if who == "sa1b download":
                    cmd, where = self.download_args(links, dest), dest / "tars"
                elif who == "aria2c -i":
                    cmd, where = self.aria2c_cmd(links, dest), dest
                elif who == "httpx loop":
                    cmd, where = [sys.executable, str(self.httpx_script), str(links), str(dest)], dest
                else:
                    cmd, where = self.naive_loop_cmd(links, dest), dest
                with ByteClock(self.cdn, total) as clock:
                    timed = self.runner.run(cmd)
                timed.first_byte, timed.last_byte = clock.since(timed.started)
                check_sizes(where, parts, who)
                results[who].append(timed)
                self.say(f"  download {who}: {fmt_s(timed.wall)}")
        return results

    def _split_scenarios(self, repeats: int) -> dict[str, dict[str, list[Timed]]]:
        """The same parts split: the large ones alone show the per-byte cost, the small ones the per-part cost."""
        split = {}
        for group, subset in (("large", self.large), ("small", self.small)):
            self.say(f"  ... now only the {group} parts")
            split[group] = self._download_scenario(self.links_for(subset, group), subset, ["sa1b download", "aria2c -i"],
                                                   repeats)
        return split

    def _limited_scenario(self, name: str | None, rate: float, links: Path, parts: list[Part],
                          contenders: list[str]) -> dict[str, list[Timed]]:
        """:meth:`_download_scenario` with the CDN limiting each connection to ``rate`` bytes/s for ``name``
        (None: every file) meanwhile."""
        assert self.cdn is not None
        self.cdn.set_faults(name, Faults(rate_limit_bytes_per_s=rate))
        try:
            return self._download_scenario(links, parts, contenders)
        finally:
            self.cdn.set_faults(name, None)

    def _download_table(self, title: str, results: dict[str, list[Timed]], total: int) -> Table:
        baselines = [c for c in ("aria2c -i", f"{self.naive_tool} loop") if c in results]
        wall = median_walls(results)
        rows = []
        for c, ts in results.items():
            rows.append([c, fmt_s(wall[c]), fmt_rate(total, wall[c]), fmt_s(median([t.first_byte for t in ts])),
                         fmt_s(median([t.last_byte for t in ts])), fmt_s(median([t.wall - t.last_byte for t in ts])),
                         fmt_rate(total, median([t.last_byte - t.first_byte for t in ts])),
                         f"{median([t.cpu for t in ts]):.2f} s"]
                        + [f"{ratio(wall[c], wall[b]):.2f}x" for b in baselines])
        return Table(title, ["contender", "wall", "throughput", "first byte at", "last byte at", "after the last byte",
                             "rate first to last byte", "CPU (all processes)"] + [f"wall vs {b}" for b in baselines], rows)

    def bench_download(self) -> Section:
        assert self.cdn is not None
        p = self.profile
        parts = self.small + self.large
        total = total_size(parts)
        links = self.links_for(parts, "download")
        naive = f"{self.naive_tool} loop"
        free = self._download_scenario(links, parts, ["sa1b download", "aria2c -i", naive, "httpx loop"])
        self.say(f"  ... now with the CDN limited to {p.throttle / 1e6:.0f} MB/s per connection")
        throttled = self._limited_scenario(None, p.throttle, links, parts, ["sa1b download", "aria2c -i", naive])
        # Short runs, so more repeats: their transfer windows are fractions of a second.
        split_repeats = p.repeats + 2 if p.judge else p.repeats
        split = self._split_scenarios(split_repeats)
        # One-off cost of every sa1b invocation (interpreter, imports, links parsing, HEAD probes): a dry run.
        # Steady state: one large part, slowed down so that the poll loop runs for a while, as in a long run.
        steady_part = max(self.large, key=lambda x: x.size)
        steady_links = self.links_for([steady_part], "steady")
        self.say(f"  ... now one part over ~{p.steady_seconds:.0f} s (steady state)")
        used = max(1, min(p.connections, steady_part.size // _size_bytes(p.min_split)))  # aria2c's split
        per_connection = steady_part.size / used / p.steady_seconds
        steady = self._limited_scenario(steady_part.name, per_connection, steady_links, [steady_part],
                                        ["sa1b download", "aria2c -i"])
        # The naive loop on that part would take `used` times as long (one connection at the same limit):
        # its rate is measured on the smallest part instead, at the same per-connection limit.
        sample = min(self.small, key=lambda x: x.size)
        sample_links = self.links_for([sample], "naive-sample")
        self.say(f"  ... now the {naive} at the same per-connection limit, on one small part")
        naive_sample = self._limited_scenario(sample.name, per_connection, sample_links, [sample], [naive])[naive]
        naive_rate = sample.size / median([t.wall for t in naive_sample])  # bytes/s, start-up included
        cpu_rows, shares, fixed = self._controller_cpu(
            [("unthrottled, all parts", free, links, parts), ("throttled, all parts", throttled, links, parts),
             (f"steady state: one part over {median([t.wall for t in steady['sa1b download']]):.0f} s", steady,
              steady_links, [steady_part])])
        total_check = fixed[links][1]

        section = Section(
            "Download",
            f"{len(parts)} parts ({len(self.small)} small of ~{fmt_mb(median([x.size for x in self.small]))}, "
            f"{len(self.large)} large of ~{fmt_mb(median([x.size for x in self.large]))}), {fmt_mb(total)} in all, "
            f"from the loopback CDN. sa1b and raw aria2c: `-j {p.jobs}`, {p.connections} connections per part "
            f"(`-x`/`-s`), min split size {p.min_split}, `--file-allocation=falloc --no-file-allocation-limit=0`. First and last byte: when "
            "the CDN's byte counter (polled every 10 ms) first moved and reached the total, from the command's start.",
        )
        section.tables.append(self._download_table(f"Unthrottled loopback (CPU and page cache bound), median of {p.repeats}",
                                                   free, total))
        section.tables.append(self._download_table(
            f"CDN limited to {p.throttle / 1e6:.0f} MB/s per connection (like a real CDN edge), median of {p.repeats}",
            throttled, total))
        for group, subset in (("large", self.large), ("small", self.small)):
            section.tables.append(self._download_table(
                f"Only the {len(subset)} {group} parts ({fmt_mb(total_size(subset))}), unthrottled, median of {split_repeats}",
                split[group], total_size(subset)))
        section.tables.append(self._download_table(
            f"One large part throttled to take ~{p.steady_seconds:.0f} s (a long transfer, as every real part is), "
            f"median of {p.repeats}", steady, steady_part.size))
        section.tables.append(Table(f"sa1b controller CPU (its own process, all threads), median of {p.repeats}",
                                    ["run", "wall", "what", "CPU", "share of one core over the wall time"], cpu_rows))
        wall_free = median_walls(free)
        wall_thr = median_walls(throttled)

        large_window = _gap(split["large"], lambda t: t.last_byte - t.first_byte)[1]
        section.notes.append(_where_the_time_goes(free, split, total_check / total))
        section.notes.append(
            "Controller CPU is measured, not estimated, for the whole process (`RUSAGE_SELF` at exit, all threads); "
            "its parts are: start-up = the CPU of `--dry-run` with the same links; integrity pass = `check_part` "
            "timed in this process on the same files; orchestration = the rest. In runs of a few seconds start-up "
            "dominates; the steady-state run (one part slowed down so that it takes several seconds, as every part "
            "of a real run does) shows what the loop costs per second.")
        section.notes.append(
            f"The integrity pass costs {total_check / (total / 1e9):.1f} CPU-seconds per GB "
            f"({fmt_rate(total, total_check)} on one core). It is verification that raw aria2c, wget and the httpx loop "
            f"do not do; at a download rate of 100 MB/s it keeps {100 * total_check / (total / 1e8):.0f}% of one core busy.")
        section.notes.append(
            f"The naive sequential baseline is `{self.naive_tool}` in a shell loop, one file after the other; "
            "`httpx loop` is one streaming Python client, one file after the other. On unthrottled loopback a single "
            "stream is as fast as many (the limit is CPU and memory copies, not the network); with a per-connection "
            "limit, as on a real CDN, parallel connections are what makes aria2c and sa1b faster.")
        within_thr = wall_thr["sa1b download"] / wall_thr["aria2c -i"]
        within_free = wall_free["sa1b download"] / wall_free["aria2c -i"]
        section.targets.append(Target(f"download wall time vs raw `aria2c -i`, same settings ({p.throttle / 1e6:.0f} MB/s per connection)",
                                      "<= 1.05x", f"{within_thr:.2f}x ({fmt_s(wall_thr['sa1b download'])} vs "
                                      f"{fmt_s(wall_thr['aria2c -i'])}); unthrottled {within_free:.2f}x; per byte "
                                      f"(large parts, first to last byte) {large_window:.2f}x", within_thr <= 1.05))
        steady_gap, steady_ratio = _gap(steady, lambda t: t.wall)
        section.targets.append(Target(f"download wall time vs raw `aria2c -i` on a long transfer (one part over "
                                      f"~{p.steady_seconds:.0f} s)", "<= 1.05x",
                                      f"{steady_ratio:.3f}x (+{steady_gap:.1f} s: start-up and the rest of the check)",
                                      steady_ratio <= 1.05))
        naive_projected = steady_part.size / naive_rate
        steady_wall = median_walls(steady)
        versus_naive = naive_projected / steady_wall["sa1b download"]
        section.notes.append(
            f"Against the {naive} on the long transfer: at the same per-connection limit "
            f"({per_connection / MiB:.2f} MiB/s per connection) `{self.naive_tool}` fetched a "
            f"{fmt_mb(sample.size)} part at {naive_rate / MiB:.2f} MiB/s (median of "
            f"{len(naive_sample)}, start-up included), so the loop would take {fmt_s(naive_projected)} for this "
            f"{fmt_mb(steady_part.size)} part: sa1b on {used} connection{'s' if used != 1 else ''} is {versus_naive:.2f}x faster, raw aria2c "
            f"{naive_projected / steady_wall['aria2c -i']:.2f}x. Perfect scaling would be {used}x: raw aria2c falls short "
            "because its connections do not all stay busy to the end (a range too small to split again is left to "
            "one connection) and it exits a moment after the last byte, and sa1b by that plus its fixed time per run "
            f"(+{steady_gap:.1f} s: start-up and the rest of the check, as in the row against raw aria2c).")
        section.targets.append(Target(
            f"download faster than the {naive} by at least the connections it uses (one part on {used} connections, "
            "limited per connection)", f">= {used}x",
            f"{versus_naive:.2f}x (raw aria2c {naive_projected / steady_wall['aria2c -i']:.2f}x); all parts at "
            f"{p.throttle / 1e6:.0f} MB/s per connection {wall_thr[naive] / wall_thr['sa1b download']:.2f}x, "
            f"unthrottled {wall_free[naive] / wall_free['sa1b download']:.2f}x", versus_naive >= used))
        loop_share, with_start, whole = shares[-1]
        section.targets.append(Target("controller CPU, steady state, without the integrity pass", "< 5% of one core",
                                      f"{loop_share:.1f}% ({with_start:.1f}% with start-up, {whole:.1f}% with start-up "
                                      "and the integrity pass)", loop_share < 5))
        if p.judge and (within_thr > 1.05 or loop_share >= 5):
            section.profiles.append(self._download_profile(links))
        return section

    def _download_profile(self, links: Path) -> tuple[str, str]:
        """Where ``sa1b download`` spends its CPU, unthrottled (one extra, profiled run)."""
        prof = self.workdir / "download.prof"
        self.runner.run(self.download_args(links, fresh_dir(self.runs / "download" / "profiled")), profile=prof)
        return ("`sa1b download`, unthrottled (CPU time of every thread, cProfile, one extra run)", profile_summary(prof))

    def _check_cpu(self, parts: list[Part]) -> list[float]:
        """CPU seconds of sa1b's integrity pass over these parts, once per repeat, in this process
        (as `sa1b download` runs it without a checksum list: sha256, no md5)."""
        runs = []
        for _ in range(self.profile.repeats):
            started = time.process_time()
            for part in parts:
                self.checks[part.name] = asdict(check_part(self.parts_dir / part.name, md5=False))
            runs.append(time.process_time() - started)
        return runs

    def _controller_cpu(self, scenarios: list[tuple[str, dict[str, list[Timed]], Path, list[Part]]]
                        ) -> tuple[list[list[str]], list[tuple[float, float, float]], dict[Path, tuple[float, float]]]:
        """Rows of the controller-CPU table; per scenario (loop %, loop + start-up %, whole %) of one core;
        per links file the CPU seconds of start-up and of the integrity pass."""
        rows, shares = [], []
        fixed: dict[Path, tuple[float, float]] = {}  # per links file: start-up CPU, integrity-pass CPU
        for label, results, links, parts in scenarios:
            if links not in fixed:
                dry = [self.runner.run(self.download_args(links, fresh_dir(self.runs / "dry"), "--dry-run")).own_cpu or 0.0
                       for _ in range(self.profile.repeats)]
                fixed[links] = median(dry), median(self._check_cpu(parts))
            start_cpu, check = fixed[links]
            runs = results["sa1b download"]
            wall = median([t.wall for t in runs])
            own = median([t.own_cpu or 0.0 for t in runs])
            aria = median([t.child_cpu or 0.0 for t in runs])
            loop = max(0.0, own - start_cpu - check)
            shares.append((100 * loop / wall, 100 * (loop + start_cpu) / wall, 100 * own / wall))
            rows += [
                [label, f"{fmt_s(wall)}", "whole Python process", f"{own:.2f} s", f"{100 * own / wall:.1f}%"],
                ["", "", "  start-up and plan (imports, links file, HEAD probes; CPU of `--dry-run`)",
                 f"{start_cpu:.2f} s", f"{100 * start_cpu / wall:.1f}%"],
                ["", "", "  integrity pass (inflate, tar walk, sha256; `check_part` on the same files)",
                 f"{check:.2f} s", f"{100 * check / wall:.1f}%"],
                ["", "", "  orchestration (the rest: RPC polls, progress, locks, receipts)",
                 f"{loop:.2f} s" if loop >= NOISE_CPU else f"< {NOISE_CPU:.2f} s (within the noise)",
                 f"{100 * loop / wall:.1f}%"],
                ["", "", "aria2c (sa1b's child, apart)", f"{aria:.2f} s", f"{100 * aria / wall:.1f}%"],
            ]
        return rows, shares, fixed


def _where_the_time_goes(free: dict[str, list[Timed]], split: dict[str, dict[str, list[Timed]]],
                         check_per_byte: float) -> str:
    """The note on where sa1b's time goes against raw aria2c: start-up, the transfer, the tail
    (``check_per_byte``: CPU seconds of the integrity pass per byte)."""
    first_gap = _gap(free, lambda t: t.first_byte)[0]
    tail_gap = _gap(free, lambda t: t.wall - t.last_byte)[0]
    large_window = _gap(split["large"], lambda t: t.last_byte - t.first_byte)[1]
    small_window = _gap(split["small"], lambda t: t.last_byte - t.first_byte)[1]
    return (
        f"Where sa1b's time goes (unthrottled, all parts): its first byte comes {first_gap:.1f} s after raw "
        "aria2c's (interpreter, click and httpx imports, links file, locks, HEAD probes for the free-space "
        "check; aria2c then starts with the first parts on its input file and fetches them while sa1b imports "
        "aria2p and connects to it, but the check of a part can only start once that is done); after the last "
        f"byte it needs {tail_gap:.1f} s more (the rest of the integrity pass of the parts that finished last, "
        "receipts, then stopping aria2c). The pass reads each part while it downloads, but only as far as its "
        "pieces are complete from the start: a part split over several connections completes its first range "
        "early and the others only at the end, so most of a large part is read after its last byte. Between "
        f"first and last byte, on the large parts alone sa1b takes {large_window:.2f}x raw aria2c's time: "
        + ("per byte it is aria2c. " if large_window <= 1.1 else
           "slower per byte, because on these 2 cores the integrity pass competes with aria2c and the loopback "
           "CDN for CPU while they transfer (the CPU column). ")
        + f"On the small parts alone it takes {small_window:.1f}x: each part is locked, fed to aria2c and checked "
        "when done, which costs time per part. Start-up and hand-over are per run and per part: against a real "
        "part's minutes of transfer they are below 1%. The tail is not: for the last part of a run it is the "
        f"check of about 7/8 of the part, up to {0.875 * SA1B_PART_BYTES * check_per_byte:.0f} s for an "
        "11.2 GB part at this machine's check rate (small against a run of many parts, not against a run of "
        "one or two).")


def _gap(results: dict[str, list[Timed]], measure: Callable[[Timed], float]) -> tuple[float, float]:
    """(sa1b minus aria2c, sa1b over aria2c) of a per-run measure's medians."""
    ours, theirs = (median([measure(t) for t in results[c]]) for c in ("sa1b download", "aria2c -i"))
    return ours - theirs, ratio(ours, theirs)


def median_walls(results: dict[str, list[Timed]]) -> dict[str, float]:
    """Each contender's median wall time."""
    return {c: median([t.wall for t in ts]) for c, ts in results.items()}


def _size_bytes(size: str) -> int:
    """``8M`` (aria2c's notation) in bytes."""
    units = {"K": 1 << 10, "M": 1 << 20}
    return int(size[:-1]) * units[size[-1].upper()] if size[-1].upper() in units else int(size)
