"""Download (sa1b against raw aria2c, a wget/curl loop and an httpx loop, unthrottled and
throttled, with the controller's CPU) and resume after a kill."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from sa1b_cli.integrity import check_part
from sa1b_cli.testing.cdn import CDNProcess, Faults

from .base import BenchBase
from .common import MiB, BenchError, Timed, fmt_mb, fmt_rate, fmt_s, fresh_dir, median, ratio
from .data import Part, check_sizes, write_links_subset
from .report import Section, Table, Target, profile_summary

SA1B_PART_BYTES = 11.2e9  # an average SA-1B part
NOISE_CPU = 0.05  # seconds: below this, a difference of CPU measurements means nothing
KILL_SA1B = "sa1b, kill -9 sa1b"
CTRL_C_ARIA2C = "raw aria2c, Ctrl-C (SIGTERM), then -c"
CRASH = "sa1b, kill -9 sa1b and aria2c"

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
        total = sum(x.size for x in parts)
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
        total = sum(x.size for x in parts)
        links = write_links_subset(self.links, [x.name for x in parts], self.workdir / "links-download.txt")
        naive = f"{self.naive_tool} loop"
        free = self._download_scenario(links, parts, ["sa1b download", "aria2c -i", naive, "httpx loop"])
        self.say(f"  ... now with the CDN limited to {p.throttle / 1e6:.0f} MB/s per connection")
        self.cdn.set_faults(None, Faults(rate_limit_bytes_per_s=p.throttle))
        try:
            throttled = self._download_scenario(links, parts, ["sa1b download", "aria2c -i", naive])
        finally:
            self.cdn.set_faults(None, None)
        # The same parts split: the large ones alone show the per-byte cost, the small ones the per-part cost.
        # Short runs, so more repeats: their transfer windows are fractions of a second.
        split_repeats = p.repeats + 2 if p.judge else p.repeats
        split = {}
        for group, subset in (("large", self.large), ("small", self.small)):
            self.say(f"  ... now only the {group} parts")
            group_links = write_links_subset(self.links, [x.name for x in subset], self.workdir / f"links-{group}.txt")
            split[group] = self._download_scenario(group_links, subset, ["sa1b download", "aria2c -i"], split_repeats)
        # One-off cost of every sa1b invocation (interpreter, imports, links parsing, HEAD probes): a dry run.
        # Steady state: one large part, slowed down so that the poll loop runs for a while, as in a long run.
        steady_part = max(self.large, key=lambda x: x.size)
        steady_links = write_links_subset(self.links, [steady_part.name], self.workdir / "links-steady.txt")
        self.say(f"  ... now one part over ~{p.steady_seconds:.0f} s (steady state)")
        used = max(1, min(p.connections, steady_part.size // _size_bytes(p.min_split)))  # aria2c's split
        self.cdn.set_faults(steady_part.name, Faults(rate_limit_bytes_per_s=steady_part.size / used / p.steady_seconds))
        try:
            steady = self._download_scenario(steady_links, [steady_part], ["sa1b download", "aria2c -i"])
        finally:
            self.cdn.set_faults(steady_part.name, None)
        # The naive loop on that part would take `used` times as long (one connection at the same limit):
        # its rate is measured on the smallest part instead, at the same per-connection limit.
        sample = min(self.small, key=lambda x: x.size)
        sample_links = write_links_subset(self.links, [sample.name], self.workdir / "links-naive-sample.txt")
        self.say(f"  ... now the {naive} at the same per-connection limit, on one small part")
        self.cdn.set_faults(sample.name, Faults(rate_limit_bytes_per_s=steady_part.size / used / p.steady_seconds))
        try:
            naive_sample = self._download_scenario(sample_links, [sample], [naive])[naive]
        finally:
            self.cdn.set_faults(sample.name, None)
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
                f"Only the {len(subset)} {group} parts ({fmt_mb(sum(x.size for x in subset))}), unthrottled, median of {split_repeats}",
                split[group], sum(x.size for x in subset)))
        section.tables.append(self._download_table(
            f"One large part throttled to take ~{p.steady_seconds:.0f} s (a long transfer, as every real part is), "
            f"median of {p.repeats}", steady, steady_part.size))
        section.tables.append(Table(f"sa1b controller CPU (its own process, all threads), median of {p.repeats}",
                                    ["run", "wall", "what", "CPU", "share of one core over the wall time"], cpu_rows))
        wall_free = median_walls(free)
        wall_thr = median_walls(throttled)

        def gap(results: dict[str, list[Timed]], measure: Callable[[Timed], float]) -> tuple[float, float]:
            """(sa1b minus aria2c, sa1b over aria2c) of a per-run measure's medians."""
            ours, theirs = (median([measure(t) for t in results[c]]) for c in ("sa1b download", "aria2c -i"))
            return ours - theirs, ratio(ours, theirs)

        first_gap = gap(free, lambda t: t.first_byte)[0]
        tail_gap = gap(free, lambda t: t.wall - t.last_byte)[0]
        large_window = gap(split["large"], lambda t: t.last_byte - t.first_byte)[1]
        small_window = gap(split["small"], lambda t: t.last_byte - t.first_byte)[1]
        section.notes.append(
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
            f"check of about 7/8 of the part, up to {0.875 * SA1B_PART_BYTES * total_check / total:.0f} s for an "
            "11.2 GB part at this machine's check rate (small against a run of many parts, not against a run of "
            "one or two).")
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
        steady_gap, steady_ratio = gap(steady, lambda t: t.wall)
        section.targets.append(Target(f"download wall time vs raw `aria2c -i` on a long transfer (one part over "
                                      f"~{p.steady_seconds:.0f} s)", "<= 1.05x",
                                      f"{steady_ratio:.3f}x (+{steady_gap:.1f} s: start-up and the rest of the check)",
                                      steady_ratio <= 1.05))
        naive_projected = steady_part.size / naive_rate
        steady_wall = median_walls(steady)
        versus_naive = naive_projected / steady_wall["sa1b download"]
        section.notes.append(
            f"Against the {naive} on the long transfer: at the same per-connection limit "
            f"({steady_part.size / used / p.steady_seconds / MiB:.2f} MiB/s per connection) `{self.naive_tool}` fetched a "
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
            prof = self.workdir / "download.prof"
            self.runner.run(self.download_args(links, fresh_dir(self.runs / "download" / "profiled")), profile=prof)
            section.profiles.append(("`sa1b download`, unthrottled (CPU time of every thread, cProfile, one extra run)",
                                     profile_summary(prof)))
        return section

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

    # Resume ------------------------------------------------------------------------------------
    def bench_resume(self) -> Section:
        assert self.cdn is not None
        p = self.profile
        part = max(self.large, key=lambda x: x.size)
        links = write_links_subset(self.links, [part.name], self.workdir / "links-resume.txt")
        modes = [KILL_SA1B, CTRL_C_ARIA2C] + ([CRASH] if p.crash_resume else [])
        if p.resume_rate:
            self.cdn.set_faults(part.name, Faults(rate_limit_bytes_per_s=p.resume_rate))
        found: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        try:
            for order in self.rounds(modes):
                for mode in order:
                    found[mode].append(self._one_resume(part, links, mode))
                    r = found[mode][-1]
                    self.say(f"  resume, {mode}: re-fetched {100 * r['refetch'] / part.size:.1f}% "
                             f"(killed at {100 * r['at_kill'] / part.size:.0f}%)")
        finally:
            if p.resume_rate:
                self.cdn.set_faults(part.name, None)
        section = Section(
            "Resume after a kill",
            f"One {fmt_mb(part.size)} part on {p.connections} connections, stopped at about half way, then the same "
            "command again to the end. Re-fetched = what the CDN sent over both runs minus the part's size (from "
            "its request log). `killed at` is what the CDN had sent when the signal went out; `kept` is where run 2 "
            "resumed (the part minus the bytes of its ranged requests).",
        )
        rows, picks = [], {}
        for mode in modes:
            data = found[mode]
            pick = {k: median([d[k] for d in data]) for k in data[0]}
            picks[mode] = pick
            rows.append([mode, f"{100 * pick['at_kill'] / part.size:.0f}%", f"{100 * pick['sent_run1'] / part.size:.0f}%",
                         f"{100 * pick['resumed_from'] / part.size:.0f}%", fmt_mb(pick["refetch"]),
                         f"{100 * pick['refetch'] / part.size:.1f}%", fmt_mb(pick["no_range"]),
                         f"{100 * pick['refetch'] / SA1B_PART_BYTES:.2f}%"])
        section.tables.append(Table(f"Median of {p.repeats}", [
            "how", "killed at", "sent in run 1", "kept", "re-fetched", "share of this part",
            "of which: run 2's first GET (no Range)", "the same bytes as a share of an 11.2 GB SA-1B part"], rows))
        sa1b, raw = picks[KILL_SA1B], picks[CTRL_C_ARIA2C]
        per_connection = (sa1b["sent_run1"] - sa1b["resumed_from"]) / p.connections
        section.notes.append(
            "Why the re-fetch is a fixed amount, not a share: it is what sat in TCP buffers when aria2c stopped. "
            "When sa1b is killed, the kernel sends aria2c SIGTERM (sa1b sets PR_SET_PDEATHSIG) and aria2c saves its "
            "control file with every byte it had read; but the bytes already sent and still in the socket buffers are "
            f"lost, and the CDN keeps filling them until aria2c closes: {fmt_mb(per_connection)} per connection here "
            f"(loopback autotunes receive buffers up to {_tcp_rmem_max() / MiB:.0f} MiB). Then run 2's first GET has no "
            "Range header (aria2c learns the size from it before it reads its control file), and what the CDN pushes "
            "into that connection before aria2c closes it is counted again. Both depend on the connections, not on "
            f"the part: {fmt_mb(sa1b['refetch'])} is {100 * sa1b['refetch'] / part.size:.0f}% of this test part but "
            f"{100 * sa1b['refetch'] / SA1B_PART_BYTES:.2f}% of a real 11.2 GB part. Raw aria2c stopped with Ctrl-C "
            f"and resumed with `-c` loses the same ({fmt_mb(raw['refetch'])}): this is aria2c and TCP, not sa1b.")
        if p.crash_resume:
            crash = picks[CRASH]
            section.notes.append(
                f"`{CRASH}` (a power cut, or an OOM kill of both) is harsher: aria2c cannot save at the end, so run 2 "
                "resumes from the last periodic save (sa1b runs aria2c with `--auto-save-interval=1`): up to one second "
                f"of transfer is lost, here {fmt_mb(crash['refetch'])}, because this loopback moves the whole test part "
                "in about a second. At a real CDN's rate (say 8 connections x 25 MB/s) one second is 200 MB, under 2% "
                "of an 11.2 GB part.")
        share_real = 100 * sa1b["refetch"] / SA1B_PART_BYTES
        section.targets.append(Target(
            "resume re-fetch after kill -9 of sa1b", "< 2% of the bytes",
            f"{fmt_mb(sa1b['refetch'])}: {share_real:.2f}% of an 11.2 GB SA-1B part; "
            f"{100 * sa1b['refetch'] / part.size:.0f}% of the {fmt_mb(part.size)} test part (a fixed amount, see the notes)",
            share_real < 2))
        return section

    def _one_resume(self, part: Part, links: Path, mode: str) -> dict[str, float]:
        assert self.cdn is not None
        root = fresh_dir(self.runs / "resume")
        if mode == CTRL_C_ARIA2C:
            first_cmd = self.aria2c_cmd(links, root / "tars")
            again_cmd = first_cmd + ["-c"]
        else:
            first_cmd = again_cmd = self.download_args(links, root)
        os.sync()
        self.cdn.reset_log()
        proc = self.runner.start(first_cmd)
        deadline = time.monotonic() + 120
        sent = 0
        while time.monotonic() < deadline and proc.poll() is None:
            sent = self.cdn.bytes_sent(part.name)
            if sent >= part.size // 2:
                break
            time.sleep(0.003)
        if proc.poll() is not None:
            raise BenchError(f"resume: the download finished before it could be stopped (sent {sent} bytes); use a larger part")
        if mode == CTRL_C_ARIA2C:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        else:
            aria2 = _children(proc.pid)
            if mode == CRASH:
                for pid in aria2:
                    os.kill(pid, signal.SIGKILL)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            for pid in aria2:
                _await_orphan(pid)
        sent_run1 = self.cdn.bytes_sent(part.name)
        self.cdn.reset_log()
        self.runner.run(again_cmd)
        check_sizes(root / "tars", [part], f"resume ({mode})")
        gets = sorted((r for r in self.cdn.log() if r["name"] == part.name and r["method"] == "GET"), key=lambda r: r["time"])
        sent_run2 = sum(r["bytes_sent"] for r in gets)
        no_range = gets[0]["bytes_sent"] if gets and not gets[0]["range_header"] else 0
        ranged = sum(r["bytes_sent"] for r in gets if r["range_header"])
        return {"at_kill": float(sent), "sent_run1": float(sent_run1), "refetch": float(sent_run1 + sent_run2 - part.size),
                "no_range": float(no_range), "resumed_from": float(max(0, part.size - ranged)) if ranged else 0.0}


def median_walls(results: dict[str, list[Timed]]) -> dict[str, float]:
    """Each contender's median wall time."""
    return {c: median([t.wall for t in ts]) for c, ts in results.items()}


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return found


def _size_bytes(size: str) -> int:
    """``8M`` (aria2c's notation) in bytes."""
    units = {"K": 1 << 10, "M": 1 << 20}
    return int(size[:-1]) * units[size[-1].upper()] if size[-1].upper() in units else int(size)


def _tcp_rmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 0


def _await_orphan(pid: int, timeout: float = 20.0) -> None:
    """Wait until aria2c has exited (it saves its control file on the SIGTERM its parent's death sends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)  # we are its subreaper now
            if done:
                return
        except ChildProcessError:  # not ours: watch /proc instead
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except OSError:
                return
        time.sleep(0.01)
    raise BenchError(f"aria2c (pid {pid}) did not exit within {timeout:.0f} s after sa1b was killed")
