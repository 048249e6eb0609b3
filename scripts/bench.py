#!/usr/bin/env python3
"""Benchmarks (issue #6): is sa1b faster than what a user would do instead?

Everything runs on this machine: SA-1B-format parts from the project's generator
(gzip level 6, ~100 masks per image), served over loopback by the fake CDN in a
separate process. Within one run the contenders of each benchmark alternate
(the order rotates every repeat) and every figure is the median of the repeats,
so slow phases of a shared machine hit all contenders alike.

    python scripts/bench.py                         # default, ~5 min on 2 cores -> docs/benchmarks.md
    python scripts/bench.py --quick --output x.md   # tiny sizes, seconds (smoke test)
    python scripts/bench.py --large                 # GB-scale parts

sa1b runs as a user runs it (``python -m sa1b_cli ...``), inside a two-line
wrapper that records the process's own CPU time (``RUSAGE_SELF``, all threads)
and its children's (``RUSAGE_CHILDREN``: the aria2c it waited for) at exit, so
the controller's CPU is measured apart from aria2c's.

Generated parts are kept in ``--workdir`` (keyed by their settings) and reused;
the per-run directories are removed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sa1b_cli import state  # noqa: E402
from sa1b_cli.integrity import check_part  # noqa: E402
from sa1b_cli.paths import RootPaths  # noqa: E402
from sa1b_cli.testing.cdn import CDNProcess, Faults  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
MiB = 1 << 20

# Runs sa1b exactly as ``python -m sa1b_cli`` does, and at exit writes the process's own CPU
# seconds and those of the children it waited for (aria2c). With BENCH_PROFILE_FILE it also
# profiles every thread with cProfile and dumps the merged stats there.
SA1B_RUNNER = r"""
import atexit, json, os, resource, runpy, sys
usage_file = os.environ.pop("BENCH_USAGE_FILE", "")
profile_file = os.environ.pop("BENCH_PROFILE_FILE", "")
profiles = []
if profile_file:
    import cProfile, threading
    def _profile_thread(*_):
        p = cProfile.Profile(); profiles.append(p); p.enable()
    threading.setprofile(_profile_thread)
    profiles.append(cProfile.Profile()); profiles[0].enable()
def _at_exit():
    if profiles:
        import pstats
        for p in profiles:
            p.disable()
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(profile_file)
    if usage_file:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(usage_file, "w") as f:
            json.dump({"self": own.ru_utime + own.ru_stime, "children": kids.ru_utime + kids.ru_stime}, f)
atexit.register(_at_exit)
sys.argv = ["sa1b", *sys.argv[1:]]
runpy.run_module("sa1b_cli", run_name="__main__", alter_sys=True)
"""

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

# The check a user writes: load every annotation file, decode every mask with pycocotools.
NAIVE_CHECK = r"""
import glob, json, os, sys
from pycocotools import mask as mask_utils
root, limit = sys.argv[1], int(sys.argv[2])
files = sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True))
files = files[:limit] if limit > 0 else files
bad = 0
for path in files:
    with open(path) as f:
        doc = json.load(f)
    shape = (doc["image"]["height"], doc["image"]["width"])
    for ann in doc["annotations"]:
        if mask_utils.decode(ann["segmentation"]).shape != shape:
            bad += 1
    if not os.path.exists(path[:-5] + ".jpg"):
        bad += 1
print(json.dumps({"pairs": len(files), "bad": bad}))
"""

# The extraction loop a user writes (one folder per part, like sa1b's default layout).
TAR_LOOP = 'for f in "$1"/*.tar; do n=$(basename "$f" .tar); mkdir -p "$2/$n" && tar -xzf "$f" -C "$2/$n" || exit 1; done'

# The naive sequential downloader: one wget (or curl) per row of the links file.
WGET_LOOP = 'tail -n +2 "$1" | while IFS=$(printf "\\t") read -r name url; do wget -q -O "$2/$name" "$url" || exit 1; done'
CURL_LOOP = 'tail -n +2 "$1" | while IFS=$(printf "\\t") read -r name url; do curl -sSf -o "$2/$name" "$url" || exit 1; done'


# -- profiles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Sizes and repeats of one benchmark run."""

    name: str
    repeats: int
    small_parts: int  # many small parts ...
    small_pairs: int
    large_parts: int  # ... and a few larger ones (download, resume, extract)
    large_pairs: int
    size: tuple[int, int]  # image width, height of the download/extract parts
    noise: float  # generator grain: higher gives larger, less compressible JPEGs
    quality: int
    verify_parts: int  # parts at SA-1B's real image size, for verify and end to end
    verify_pairs: int
    verify_size: tuple[int, int]
    masks: int
    jobs: int  # sa1b download defaults: 4 parts at once, 8 connections each
    connections: int
    min_split: str
    naive_sample: int  # pairs the naive verify loop is timed on (it runs ~10 pairs/s)
    resume_rate: float | None  # per-connection throttle during the resume test (quick only)
    crash_resume: bool  # also kill aria2c itself (power-cut case)
    generate_workers: int = os.cpu_count() or 1

    def data_key(self) -> str:
        keep = {k: v for k, v in asdict(self).items() if k in DATA_FIELDS}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


DATA_FIELDS = ("small_parts", "small_pairs", "large_parts", "large_pairs", "size", "noise", "quality",
               "verify_parts", "verify_pairs", "verify_size", "masks")

PROFILES = {
    "quick": Profile("quick", repeats=1, small_parts=3, small_pairs=3, large_parts=1, large_pairs=40,
                     size=(256, 192), noise=60, quality=95, verify_parts=1, verify_pairs=8,
                     verify_size=(320, 240), masks=20, jobs=4, connections=8, min_split="1M",
                     naive_sample=4, resume_rate=2e6, crash_resume=False),
    "default": Profile("default", repeats=3, small_parts=12, small_pairs=12, large_parts=2, large_pairs=200,
                       size=(750, 1125), noise=60, quality=95, verify_parts=2, verify_pairs=100,
                       verify_size=(1500, 2250), masks=100, jobs=4, connections=8, min_split="8M",
                       naive_sample=30, resume_rate=None, crash_resume=True),
    "large": Profile("large", repeats=3, small_parts=16, small_pairs=24, large_parts=2, large_pairs=2400,
                     size=(750, 1125), noise=60, quality=95, verify_parts=2, verify_pairs=300,
                     verify_size=(1500, 2250), masks=100, jobs=4, connections=8, min_split="64M",
                     naive_sample=40, resume_rate=None, crash_resume=True),
}


# -- small helpers ------------------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / MiB:,.1f} MiB"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    for key in [k for k in env if k.startswith("SA1B_")]:
        del env[key]  # options come from the command line only
    return env


def become_subreaper() -> None:
    """Orphans (aria2c after its sa1b was SIGKILLed) then become our children and can be awaited."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return out.splitlines()[0].strip() if out else "unknown"


@dataclass
class Timed:
    """One timed command: wall seconds, CPU of it and everything it waited for, sa1b's own split."""

    wall: float
    cpu: float
    own_cpu: float | None = None  # sa1b's python process alone
    child_cpu: float | None = None  # what sa1b waited for (aria2c)


class Runner:
    """Starts commands with the benchmark environment and logs their output to one file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "bench.log"
        self.env = child_env()
        self.usage_file = workdir / "usage.json"

    def sa1b(self, *args: str) -> list[str]:
        return [sys.executable, "-c", SA1B_RUNNER, *args]

    def run(self, cmd: list[str], *, profile: Path | None = None, sync: bool = True) -> Timed:
        """Run to completion; fail loudly (with the log's name) on a non-zero exit."""
        if sync:
            os.sync()  # earlier runs' dirty pages must not be flushed on this one's clock
        env = dict(self.env)
        self.usage_file.unlink(missing_ok=True)
        env["BENCH_USAGE_FILE"] = str(self.usage_file)
        if profile is not None:
            env["BENCH_PROFILE_FILE"] = str(profile)
        with open(self.log, "a") as log:
            log.write(f"\n$ {' '.join(cmd[3:] if cmd[1:2] == ['-c'] else cmd)}\n")
            log.flush()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd[3:5] if cmd[1:2] == ['-c'] else cmd[:3])} exited with {proc.returncode}; see {self.log}")
        timed = Timed(wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
        if cmd[1:2] == ["-c"] and self.usage_file.exists():
            usage = json.loads(self.usage_file.read_text())
            timed.own_cpu, timed.child_cpu = usage["self"], usage["children"]
        return timed

    def start(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log, "a")
        log.write(f"\n$ (background) {' '.join(cmd[3:])}\n")
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)


# -- data ---------------------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    index: int
    group: str  # small | large | verify
    size: int
    pairs: int
    md5: str


def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    from sa1b_cli.testing.generator import write_part

    info = write_part(Path(spec["dir"]), spec["index"], spec["pairs"], first_image_id=spec["first_id"],
                      width=spec["size"][0], height=spec["size"][1], masks_per_image=spec["masks"],
                      noise=spec["noise"], jpeg_quality=spec["quality"], compresslevel=6, seed=spec["index"])
    return {"name": info.name, "index": spec["index"], "group": spec["group"], "size": info.size,
            "pairs": info.n_pairs, "md5": info.md5}


def prepare_data(profile: Profile, workdir: Path, say: Callable[[str], None]) -> tuple[Path, list[Part]]:
    """Generate the parts once per profile settings; later runs reuse them."""
    data_dir = workdir / f"data-{profile.name}-{profile.data_key()}"
    stamp = data_dir / "parts.json"
    if stamp.exists():
        parts = [Part(**p) for p in json.loads(stamp.read_text())]
        if all((data_dir / "parts" / p.name).stat().st_size == p.size for p in parts
               if (data_dir / "parts" / p.name).exists()) and all((data_dir / "parts" / p.name).exists() for p in parts):
            return data_dir / "parts", parts
    parts_dir = fresh_dir(data_dir / "parts")
    groups = ([("small", profile.small_pairs, profile.size, profile.noise, 95)] * profile.small_parts
              + [("large", profile.large_pairs, profile.size, profile.noise, 95)] * profile.large_parts
              + [("verify", profile.verify_pairs, profile.verify_size, 30, 90)] * profile.verify_parts)
    specs, first_id = [], 1
    for index, (group, pairs, size, noise, quality) in enumerate(groups):
        specs.append({"dir": str(parts_dir), "index": index, "pairs": pairs, "first_id": first_id, "size": size,
                      "masks": profile.masks, "noise": noise, "quality": quality if group == "verify" else profile.quality,
                      "group": group})
        first_id += pairs
    started = time.perf_counter()
    say(f"generating {len(specs)} parts ({sum(s['pairs'] for s in specs)} pairs) in {parts_dir} ...")
    with ProcessPoolExecutor(profile.generate_workers) as pool:
        made = list(pool.map(_generate, specs))
    parts = [Part(**m) for m in made]
    stamp.write_text(json.dumps([asdict(p) for p in parts], indent=1))
    say(f"generated {fmt_mb(sum(p.size for p in parts))} in {time.perf_counter() - started:.0f} s")
    return parts_dir, parts


def parts_spec(parts: list[Part]) -> str:
    return ",".join(str(p.index) for p in parts)


def write_links_subset(full_links: Path, names: list[str], out: Path) -> Path:
    lines = full_links.read_text().splitlines()
    wanted = set(names)
    out.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split("\t", 1)[0] in wanted]) + "\n")
    return out


def check_sizes(directory: Path, parts: list[Part], who: str) -> None:
    for p in parts:
        path = directory / p.name
        got = path.stat().st_size if path.exists() else None
        if got != p.size:
            raise BenchError(f"{who}: {path} is {got} bytes, expected {p.size}")


# -- report structures --------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Target:
    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class Section:
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (caption, top functions)


def profile_summary(stats_file: Path, top: int = 12) -> str:
    """The functions with the most own time, as `python -m cProfile -s tottime` would list them."""
    stats = pstats.Stats(str(stats_file))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    lines = [f"total profiled CPU {total:.2f} s (all threads)", f"{'tottime':>8} {'cumtime':>8} {'calls':>9}  function"]
    for (filename, line, func), (cc, nc, tt, ct, _callers) in rows:
        short = filename.replace(str(REPO) + "/", "").replace(sys.prefix, "<venv>")
        lines.append(f"{tt:8.3f} {ct:8.3f} {nc:9d}  {func} ({short}:{line})")
    return "\n".join(lines)


# -- the benchmarks -----------------------------------------------------------------------------


class Bench:
    def __init__(self, profile: Profile, workdir: Path, say: Callable[[str], None]) -> None:
        self.profile = profile
        self.workdir = workdir
        self.say = say
        self.runner = Runner(workdir)
        self.runs = fresh_dir(workdir / "runs")
        self.parts_dir, self.parts = prepare_data(profile, workdir, say)
        self.small = [p for p in self.parts if p.group == "small"]
        self.large = [p for p in self.parts if p.group == "large"]
        self.verify_set = [p for p in self.parts if p.group == "verify"]
        self.cdn: CDNProcess | None = None
        self.links = workdir / "links-all.txt"
        self.checks: dict[str, dict[str, Any]] = {}
        self.naive_tool = "wget" if shutil.which("wget") else "curl"
        scripts = workdir / "scripts"
        scripts.mkdir(exist_ok=True)
        self.httpx_script = scripts / "httpx_loop.py"
        self.httpx_script.write_text(HTTPX_LOOP)
        self.naive_script = scripts / "naive_check.py"
        self.naive_script.write_text(NAIVE_CHECK)

    def __enter__(self) -> Bench:
        self.cdn = CDNProcess(self.parts_dir, self.links)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cdn is not None:
            self.cdn.close()
        shutil.rmtree(self.runs, ignore_errors=True)

    def rounds(self, contenders: list[str]) -> list[list[str]]:
        """Per repeat, the contenders in rotated order (each goes first in turn)."""
        n = len(contenders)
        return [[contenders[(r + i) % n] for i in range(n)] for r in range(self.profile.repeats)]

    def download_args(self, links: Path, root: Path, *extra: str) -> list[str]:
        p = self.profile
        return self.runner.sa1b("download", str(links), "-d", str(root), "-j", str(p.jobs), "-x", str(p.connections),
                                "--min-split-size", p.min_split, "--quiet", *extra)

    def aria2c_cmd(self, links: Path, dest: Path) -> list[str]:
        """Raw aria2c at the same concurrency settings sa1b gives its daemon."""
        from aria2c import ARIA2C

        rows = [ln.split("\t") for ln in links.read_text().splitlines()[1:] if ln.strip()]
        input_file = dest.parent / f"{dest.name}.aria2-input.txt"
        input_file.write_text("".join(f"{url}\n  out={name}\n" for name, url in rows))
        p = self.profile
        return [str(ARIA2C), "--no-conf", "-i", str(input_file), "-d", str(dest), "-j", str(p.jobs),
                "-x", str(min(16, p.connections)), "-s", str(p.connections), f"--min-split-size={p.min_split}",
                "--file-allocation=falloc", "--console-log-level=error", "--summary-interval=0", "-q"]

    def naive_loop_cmd(self, links: Path, dest: Path) -> list[str]:
        return ["bash", "-c", WGET_LOOP if self.naive_tool == "wget" else CURL_LOOP, "loop", str(links), str(dest)]

    # Download ----------------------------------------------------------------------------------
    def bench_download(self) -> Section:
        p = self.profile
        parts = self.small + self.large
        total = sum(x.size for x in parts)
        links = write_links_subset(self.links, [x.name for x in parts], self.workdir / "links-download.txt")
        naive = f"{self.naive_tool} loop"
        contenders = ["sa1b download", "aria2c -i", naive, "httpx loop"]
        results: dict[str, list[Timed]] = {c: [] for c in contenders}
        for order in self.rounds(contenders):
            for who in order:
                dest = fresh_dir(self.runs / "download" / who.split()[0])
                if who == "sa1b download":
                    timed = self.runner.run(self.download_args(links, dest))
                    check_sizes(dest / "tars", parts, who)
                else:
                    cmd = {"aria2c -i": self.aria2c_cmd(links, dest), naive: self.naive_loop_cmd(links, dest),
                           "httpx loop": [sys.executable, str(self.httpx_script), str(links), str(dest)]}[who]
                    timed = self.runner.run(cmd)
                    check_sizes(dest, parts, who)
                results[who].append(timed)
                self.say(f"  download {who}: {fmt_s(timed.wall)}")
        # One-off cost of every sa1b invocation (interpreter, imports, links parsing, HEAD probes): a dry run.
        startup = []
        for _ in range(p.repeats):
            dest = fresh_dir(self.runs / "download" / "dry")
            startup.append(self.runner.run(self.download_args(links, dest, "--dry-run")).own_cpu or 0.0)
        # The integrity pass sa1b makes on every finished part, timed in this process on the same files.
        check_cpu = []
        for _ in range(p.repeats):
            started = time.process_time()
            for part in parts:
                self.checks[part.name] = asdict(check_part(self.parts_dir / part.name))
            check_cpu.append(time.process_time() - started)

        wall = {c: median([t.wall for t in results[c]]) for c in contenders}
        cpu = {c: median([t.cpu for t in results[c]]) for c in contenders}
        s1 = results["sa1b download"]
        own = median([t.own_cpu or 0.0 for t in s1])
        aria = median([t.child_cpu or 0.0 for t in s1])
        start_cpu, check = median(startup), median(check_cpu)
        loop = max(0.0, own - start_cpu - check)
        sa_wall = wall["sa1b download"]
        section = Section(
            "Download",
            f"{len(parts)} parts ({len(self.small)} small of ~{fmt_mb(median([x.size for x in self.small]))}, "
            f"{len(self.large)} large of ~{fmt_mb(median([x.size for x in self.large]))}), {fmt_mb(total)} in all, "
            f"from the loopback CDN. sa1b and aria2c: `-j {p.jobs}`, {p.connections} connections per part, "
            f"min split size {p.min_split}, falloc.",
        )
        rows = []
        for c in contenders:
            rows.append([c, fmt_s(wall[c]), f"{total / wall[c] / MiB:,.0f} MiB/s", f"{cpu[c]:.2f} s",
                         f"{ratio(wall[c], wall['aria2c -i']):.2f}x", f"{ratio(wall[c], wall[naive]):.2f}x"])
        section.tables.append(Table("Wall time (median of %d)" % p.repeats,
                                    ["contender", "wall", "throughput", "CPU (all processes)", "vs aria2c -i", f"vs {naive}"], rows))
        section.tables.append(Table("sa1b controller CPU (the Python process, without aria2c)", ["what", "CPU", "share of one core over the wall time"], [
            ["whole process", f"{own:.2f} s", f"{100 * own / sa_wall:.1f}%"],
            ["  start-up and plan (imports, links, HEAD probes; from `--dry-run`)", f"{start_cpu:.2f} s", f"{100 * start_cpu / sa_wall:.1f}%"],
            ["  integrity pass (gzip, tar walk, md5+sha256 of every part; `check_part` on the same files)", f"{check:.2f} s", f"{100 * check / sa_wall:.1f}%"],
            ["  orchestration (the rest: RPC polling, progress, locks, receipts)", f"{loop:.2f} s", f"{100 * loop / sa_wall:.1f}%"],
            ["aria2c (child of sa1b)", f"{aria:.2f} s", f"{100 * aria / sa_wall:.1f}%"],
        ]))
        check_rate = total / check / MiB if check else float("nan")
        section.notes.append(
            f"The integrity pass costs {check / (total / 1e9):.1f} CPU-seconds per GB ({check_rate:,.0f} MiB/s on one core). "
            "It is verification work a raw aria2c run does not do (the baselines check nothing); at a real download "
            f"rate of 100 MB/s it would take {100 * check / (total / 1e8):.0f}% of one core.")
        section.notes.append(
            f"The naive sequential baseline is `{self.naive_tool}` in a shell loop (one file after the other); "
            "`httpx loop` is one streaming Python client, one file after the other.")
        within = wall["sa1b download"] / wall["aria2c -i"]
        section.targets.append(Target("download wall time vs raw `aria2c -i`, same settings", "<= 1.05x",
                                      f"{within:.2f}x ({fmt_s(sa_wall)} vs {fmt_s(wall['aria2c -i'])})", within <= 1.05))
        versus_naive = wall[naive] / sa_wall
        section.targets.append(Target(f"download faster than the {naive}", "> 1x",
                                      f"{versus_naive:.2f}x faster", versus_naive > 1))
        share = 100 * (start_cpu + loop) / sa_wall
        section.targets.append(Target("controller CPU without the integrity pass", "< 5% of one core",
                                      f"{share:.1f}% ({100 * loop / sa_wall:.1f}% without start-up; "
                                      f"{100 * own / sa_wall:.1f}% with the integrity pass)", share < 5))
        if within > 1.05 or share >= 5:
            prof = self.workdir / "download.prof"
            self.runner.run(self.download_args(links, fresh_dir(self.runs / "download" / "profiled")), profile=prof)
            section.profiles.append(("`sa1b download` (all threads, cProfile, one extra run)", profile_summary(prof)))
        return section

    # Resume ------------------------------------------------------------------------------------
    def bench_resume(self) -> Section:
        assert self.cdn is not None
        p = self.profile
        part = max(self.large, key=lambda x: x.size)
        links = write_links_subset(self.links, [part.name], self.workdir / "links-resume.txt")
        modes = ["kill -9 sa1b"] + (["kill -9 sa1b and aria2c"] if p.crash_resume else [])
        if p.resume_rate:
            self.cdn.set_faults(part.name, Faults(rate_limit_bytes_per_s=p.resume_rate))
        rows_by_mode: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        try:
            for order in self.rounds(modes):
                for mode in order:
                    rows_by_mode[mode].append(self._one_resume(part, links, mode))
                    r = rows_by_mode[mode][-1]
                    self.say(f"  resume {mode}: re-fetched {100 * r['refetch'] / part.size:.2f}% (killed at {100 * r['at_kill'] / part.size:.0f}%)")
        finally:
            if p.resume_rate:
                self.cdn.set_faults(part.name, None)
        section = Section(
            "Resume after kill -9",
            f"`sa1b download` of one {fmt_mb(part.size)} part, killed with SIGKILL at about half way, then run again "
            "to the end. Re-fetched = bytes the CDN sent over both runs minus the part's size (from the CDN's "
            "request log).",
        )
        rows = []
        for mode in modes:
            data = rows_by_mode[mode]
            pick = {k: median([d[k] for d in data]) for k in data[0]}
            rows.append([mode, f"{100 * pick['at_kill'] / part.size:.0f}%", fmt_mb(pick["refetch"]),
                         f"{100 * pick['refetch'] / part.size:.2f}%", fmt_mb(pick["no_range"]),
                         fmt_mb(max(0.0, pick["refetch"] - pick["no_range"])), f"{pick['resumed_from'] / part.size * 100:.0f}%"])
        section.tables.append(Table(f"Median of {p.repeats}", ["kill", "killed at", "re-fetched", "share of the part",
                                                               "of which: first request without Range (run 2)",
                                                               "of which: sent in run 1 but not kept", "run 2 resumed from"], rows))
        main = rows_by_mode[modes[0]]
        share = median([d["refetch"] for d in main]) / part.size * 100
        absolute = median([d["refetch"] for d in main])
        section.targets.append(Target("resume re-fetch after kill -9 of sa1b", "< 2% of the bytes",
                                      f"{share:.2f}% of a {fmt_mb(part.size)} part ({fmt_mb(absolute)})", share < 2))
        section.notes.append(
            "Why the re-fetch does not grow with the part: on a resumed download aria2c's first GET carries no "
            "Range header (it learns the size from it), sees the control file and closes that connection; "
            "whatever the server already pushed into the socket buffers (up to the kernel's send and receive "
            "buffers, a few MiB on loopback) is counted as sent. In run 1, the bytes in flight on each of the "
            f"{p.connections} connections when aria2c stops (it gets SIGTERM from the kernel when sa1b dies and "
            "saves its control file) are lost too. Both are bounded by socket buffers per connection, not by the "
            f"part's size: {fmt_mb(absolute)} here, so the share of an 11 GB SA-1B part is "
            f"{100 * absolute / 11.2e9:.3f}%.")
        if p.crash_resume:
            section.notes.append(
                "`kill -9 sa1b and aria2c` (a power cut, an OOM kill of both) is harsher: aria2c cannot save its "
                "control file, so run 2 resumes from the last auto-save (sa1b sets `--auto-save-interval=1`, so at "
                "most about one second of transfer is lost). On parts that download in under a second here that can "
                "mean no control file at all, and sa1b then re-checks and re-fetches the whole file.")
        return section

    def _one_resume(self, part: Part, links: Path, mode: str) -> dict[str, float]:
        assert self.cdn is not None
        root = fresh_dir(self.runs / "resume")
        os.sync()
        self.cdn.reset_log()
        proc = self.runner.start(self.download_args(links, root))
        deadline = time.monotonic() + 120
        sent = 0
        while time.monotonic() < deadline and proc.poll() is None:
            sent = self.cdn.bytes_sent(part.name)
            if sent >= part.size // 2:
                break
            time.sleep(0.003)
        if proc.poll() is not None:
            raise BenchError(f"resume: sa1b finished before it could be killed (sent {sent} bytes); use a larger part")
        aria2 = _children(proc.pid)
        if mode == "kill -9 sa1b and aria2c":
            for pid in aria2:
                os.kill(pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for pid in aria2:
            _await_orphan(pid)
        sent_run1 = self.cdn.bytes_sent(part.name)
        self.cdn.reset_log()
        self.runner.run(self.download_args(links, root))
        check_sizes(root / "tars", [part], "resume")
        gets = sorted((r for r in self.cdn.log() if r["name"] == part.name and r["method"] == "GET"), key=lambda r: r["time"])
        sent_run2 = sum(r["bytes_sent"] for r in gets)
        no_range = gets[0]["bytes_sent"] if gets and not gets[0]["range_header"] else 0
        ranged = [r for r in gets if r["range_header"]]
        resumed_from = part.size - sum(r["bytes_sent"] for r in ranged) if ranged else 0
        return {"at_kill": float(sent), "refetch": float(sent_run1 + sent_run2 - part.size),
                "no_range": float(no_range), "resumed_from": float(max(0, resumed_from))}

    # Extract -----------------------------------------------------------------------------------
    def _root_with_tars(self, root: Path, parts: list[Part]) -> RootPaths:
        """A dataset ROOT holding these parts as downloaded (hard links + download receipts)."""
        paths = RootPaths(fresh_dir(root))
        paths.tars.mkdir(parents=True)
        for part in parts:
            os.link(self.parts_dir / part.name, paths.tar(part.name))
            check = self.checks.get(part.name) or asdict(check_part(self.parts_dir / part.name))
            self.checks[part.name] = check
            state.write_receipt(paths, "download", part.name, {
                "complete": True, "size": check["size"], "md5": check["md5"], "sha256": check["sha256"],
                "compressed": check["compressed"], "members": check["members"], "images": check["images"],
                "annotations": check["annotations"], "url": "(benchmark)"})
        return paths

    def bench_extract(self) -> Section:
        p = self.profile
        cores = os.cpu_count() or 1
        one = [max(self.large, key=lambda x: x.size)]
        several = self.small + self.large
        section = Section("Extract", f"`sa1b extract -j {cores}` (cores) vs GNU `tar -xzf` into one folder per part; "
                                     "parts are gzip level 6 tars from the generator, already in the page cache.")
        rows = []
        figures: dict[str, dict[str, float]] = {}
        for label, parts in ((f"one part ({fmt_mb(one[0].size)})", one),
                             (f"{len(several)} parts ({fmt_mb(sum(x.size for x in several))})", several)):
            contenders = ["sa1b extract", "tar -xzf loop"]
            times: dict[str, list[float]] = {c: [] for c in contenders}
            for order in self.rounds(contenders):
                for who in order:
                    paths = self._root_with_tars(self.runs / "extract" / who.split()[0], parts)
                    if who == "sa1b extract":
                        cmd = self.runner.sa1b("extract", "-d", str(paths.root), "--parts", parts_spec(parts),
                                               "-j", str(cores), "--quiet")
                    else:
                        cmd = ["bash", "-c", TAR_LOOP, "loop", str(paths.tars), str(paths.root / "extracted")]
                    times[who].append(self.runner.run(cmd).wall)
                    pairs = sum(1 for _ in (paths.root / "extracted").rglob("*.json"))
                    if pairs != sum(x.pairs for x in parts):
                        raise BenchError(f"{who}: {pairs} annotation files extracted, expected {sum(x.pairs for x in parts)}")
            sa, tar = median(times["sa1b extract"]), median(times["tar -xzf loop"])
            nbytes = sum(x.size for x in parts)
            figures[label] = {"sa1b": sa, "tar": tar}
            rows.append([label, fmt_s(sa), fmt_s(tar), f"{nbytes / sa / MiB:,.0f} MiB/s", f"{nbytes / tar / MiB:,.0f} MiB/s",
                         f"{tar / sa:.2f}x"])
            self.say(f"  extract {label}: sa1b {fmt_s(sa)}, tar {fmt_s(tar)}")
        section.tables.append(Table(f"Wall time (median of {p.repeats})", ["data", "sa1b extract", "tar -xzf loop", "sa1b rate",
                                                                          "tar rate", "sa1b speed-up"], rows))
        (one_label, one_fig), (many_label, many_fig) = figures.items()
        one_ratio = one_fig["tar"] / one_fig["sa1b"]
        many_ratio = many_fig["tar"] / many_fig["sa1b"]
        section.targets.append(Target("extract one part vs `tar -xzf`", ">= 1x (at least as fast)",
                                      f"{one_ratio:.2f}x", one_ratio >= 1))
        section.targets.append(Target(f"extract {many_label} vs a sequential `tar -xzf` loop", "> 1x (faster)",
                                      f"{many_ratio:.2f}x", many_ratio > 1))
        section.notes.append("sa1b also writes a manifest and a receipt per part, refuses unsafe members, and makes "
                             "each part appear atomically; `tar` does none of that.")
        if one_ratio < 1 or many_ratio <= 1:
            prof = self.workdir / "extract.prof"
            paths = self._root_with_tars(self.runs / "extract" / "profiled", one)
            self.runner.run(self.runner.sa1b("extract", "-d", str(paths.root), "--parts", parts_spec(one), "--quiet"),
                            profile=prof)
            section.profiles.append(("`sa1b extract` of one part (all threads, cProfile, one extra run)", profile_summary(prof)))
        return section

    # Verify ------------------------------------------------------------------------------------
    def _extracted_verify_root(self) -> RootPaths:
        paths = self._root_with_tars(self.runs / "verify", self.verify_set)
        self.runner.run(self.runner.sa1b("extract", "-d", str(paths.root), "--parts", parts_spec(self.verify_set), "--quiet"))
        return paths

    def verify_cmd(self, root: Path, parts: list[Part], *extra: str) -> list[str]:
        return self.runner.sa1b("verify", "-d", str(root), "--parts", parts_spec(parts), "--force", "--quiet", *extra)

    def bench_verify(self) -> Section:
        from sa1b_cli import verify as verify_core

        p = self.profile
        cores = os.cpu_count() or 1
        paths = self._extracted_verify_root()
        pairs = sum(x.pairs for x in self.verify_set)
        sample = min(p.naive_sample, pairs)
        contenders = ["verify (quick)", "verify --deep", "deep check, one core", "naive loop"]
        times: dict[str, list[float]] = {c: [] for c in contenders}
        folders = [(str(paths.root / "extracted" / x.name[:-4]), x) for x in self.verify_set]
        for order in self.rounds(contenders):
            for who in order:
                if who == "verify (quick)":
                    times[who].append(self.runner.run(self.verify_cmd(paths.root, self.verify_set)).wall)
                elif who == "verify --deep":
                    times[who].append(self.runner.run(self.verify_cmd(paths.root, self.verify_set, "--deep")).wall)
                elif who == "deep check, one core":
                    started = time.perf_counter()
                    for folder, part in folders:
                        ids = [int(f[3:-5]) for f in os.listdir(folder) if f.endswith(".json")]
                        chunk = verify_core.check_pairs(folder, folder, ids)
                        if chunk.problems.total or chunk.pairs != part.pairs:
                            raise BenchError(f"deep check found problems in generated data ({folder})")
                    times[who].append(time.perf_counter() - started)
                else:
                    cmd = [sys.executable, str(self.naive_script), str(paths.root / "extracted"), str(sample)]
                    times[who].append(self.runner.run(cmd, sync=False).wall)
        t = {c: median(times[c]) for c in contenders}
        rate = {
            "verify (quick)": pairs / t["verify (quick)"],
            "verify --deep": pairs / t["verify --deep"],
            "deep check, one core": pairs / t["deep check, one core"],
            "naive loop": sample / t["naive loop"],
        }
        per_core = {"verify (quick)": rate["verify (quick)"] / cores, "verify --deep": rate["verify --deep"] / cores,
                    "deep check, one core": rate["deep check, one core"], "naive loop": rate["naive loop"]}
        checked = {"verify (quick)": pairs, "verify --deep": pairs, "deep check, one core": pairs, "naive loop": sample}
        section = Section(
            "Verify",
            f"{pairs} extracted pairs of SA-1B's real image size ({p.verify_size[0]}x{p.verify_size[1]}), "
            f"{p.masks} masks per image. `sa1b verify` runs with `--force` (no reuse of earlier receipts) and "
            f"{cores} worker processes; `deep check, one core` is the deep check's core (`verify.check_pairs`) "
            "in this process, without start-up; the naive loop (json.load + pycocotools `mask.decode` of every "
            f"mask, one process) is timed on {sample} pairs.")
        rows = []
        for c in contenders:
            rows.append([c, str(checked[c]), fmt_s(t[c]), f"{rate[c]:,.0f}", f"{per_core[c]:,.0f}",
                         f"{per_core[c] / per_core['naive loop']:,.0f}x"])
        section.tables.append(Table(f"Median of {p.repeats}", ["check", "pairs", "wall", "pairs/s", "pairs/s per core", "vs naive (per core)"], rows))
        deep_core = per_core["deep check, one core"]
        cli_core = per_core["verify --deep"]
        section.targets.append(Target("verify --deep per core", ">= 1,000 pairs/s",
                                      f"{deep_core:,.0f} pairs/s (check itself); {cli_core:,.0f} pairs/s per core for the "
                                      f"whole command on {pairs} pairs, start-up included", deep_core >= 1000))
        versus = deep_core / per_core["naive loop"]
        section.targets.append(Target("verify --deep vs the naive loop, per core", ">= 100x", f"{versus:,.0f}x", versus >= 100))
        section.notes.append(
            f"The whole `verify --deep` command includes start-up (interpreter, imports, {cores} worker processes), "
            f"which weighs heavily on {pairs} pairs; over the full dataset (11.2 M pairs) the check's own rate governs.")
        if deep_core < 1000 or versus < 100:
            prof = self.workdir / "verify.prof"
            self.runner.run(self.verify_cmd(paths.root, self.verify_set, "--deep", "-j", "1"), profile=prof)
            section.profiles.append(("`sa1b verify --deep -j 1` (cProfile, one extra run)", profile_summary(prof)))
        return section

    # End to end --------------------------------------------------------------------------------
    def bench_end_to_end(self) -> Section:
        p = self.profile
        parts = self.verify_set[:1]
        pairs = sum(x.pairs for x in parts)
        links = write_links_subset(self.links, [x.name for x in parts], self.workdir / "links-e2e.txt")
        contenders = ["sa1b", "aria2c + tar + naive check"]
        stages: dict[str, list[list[float]]] = {c: [] for c in contenders}
        for order in self.rounds(contenders):
            for who in order:
                dest = fresh_dir(self.runs / "e2e" / who.split()[0])
                if who == "sa1b":
                    a = self.runner.run(self.download_args(links, dest, "--extract")).wall
                    b = self.runner.run(self.verify_cmd(dest, parts, "--deep")).wall
                    stages[who].append([a, b])
                else:
                    a = self.runner.run(self.aria2c_cmd(links, dest / "tars")).wall
                    b = self.runner.run(["bash", "-c", TAR_LOOP, "loop", str(dest / "tars"), str(dest / "extracted")]).wall
                    c = self.runner.run([sys.executable, str(self.naive_script), str(dest / "extracted"), "0"], sync=False).wall
                    stages[who].append([a, b, c])
                self.say(f"  end to end {who}: {fmt_s(sum(stages[who][-1]))}")
        sa_total = median([sum(s) for s in stages["sa1b"]])
        base_total = median([sum(s) for s in stages["aria2c + tar + naive check"]])
        sa_stages = [median([s[i] for s in stages["sa1b"]]) for i in range(2)]
        base_stages = [median([s[i] for s in stages["aria2c + tar + naive check"]]) for i in range(3)]
        section = Section(
            "End to end: links file to verified dataset",
            f"{len(parts)} part, {fmt_mb(sum(x.size for x in parts))}, {pairs} pairs at {p.verify_size[0]}x{p.verify_size[1]} "
            f"with {p.masks} masks each. sa1b: `sa1b download --extract` then `sa1b verify --deep`. Baseline: "
            "`aria2c -i` (same settings), a `tar -xzf` loop, the naive pycocotools check of every pair.")
        section.tables.append(Table(f"Median of {p.repeats}", ["pipeline", "stages", "total", "vs baseline"], [
            ["sa1b", f"download+extract {fmt_s(sa_stages[0])}, verify --deep {fmt_s(sa_stages[1])}", fmt_s(sa_total),
             f"{base_total / sa_total:.1f}x faster"],
            ["aria2c + tar + naive check", f"aria2c {fmt_s(base_stages[0])}, tar {fmt_s(base_stages[1])}, "
             f"naive check {fmt_s(base_stages[2])}", fmt_s(base_total), "1.0x"],
        ]))
        return section


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return found


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


# -- report -------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    from aria2c import ARIA2C

    return {
        "CPU": f"{model}, {os.cpu_count()} cores",
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "aria2c": tool_version([str(ARIA2C), "--version"]),
        "wget": tool_version(["wget", "--version"]),
        "curl": tool_version(["curl", "--version"]),
        "tar": tool_version(["tar", "--version"]),
    }


def text_table(table: Table) -> str:
    widths = [max(len(str(r[i])) for r in [table.header, *table.rows]) for i in range(len(table.header))]
    lines = [table.title, "  ".join(h.ljust(w) for h, w in zip(table.header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in table.rows]
    return "\n".join(lines)


def md_table(table: Table) -> str:
    esc = [[str(c).replace("|", "\\|") for c in row] for row in [table.header, *table.rows]]
    lines = [f"**{table.title}**", "", "| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def targets_table(sections: list[Section]) -> Table:
    rows = [[t.what, t.goal, t.measured, "met" if t.met else "**missed**"] for s in sections for t in s.targets]
    return Table("Targets", ["target", "goal", "measured", ""], rows)


def markdown(sections: list[Section], profile: Profile, command: str, info: dict[str, str], started: datetime,
             seconds: float, skipped: list[str]) -> str:
    out = [
        "# Benchmarks",
        "",
        "Is `sa1b` faster than what a user would do instead? Measured by `scripts/bench.py` on loopback against the "
        "project's fake CDN, with generated parts in SA-1B's format (gzip-compressed tars of real JPEGs and COCO RLE "
        "annotation JSON). Contenders alternate within one run (the order rotates every repeat); figures are medians.",
        "",
        f"- command: `{command}` (profile `{profile.name}`, {profile.repeats} repeats, took {seconds / 60:.1f} min)",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
    ]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += ["", "The machine is shared with other work (see the load average), and loopback writes go to the page "
            "cache of one virtual disk: absolute figures move by ±10-20% between runs, ratios much less.", ""]
    out += [md_table(targets_table(sections)), ""]
    if skipped:
        out += [f"Not run: {', '.join(skipped)}.", ""]
    for s in sections:
        out += [f"## {s.title}", "", s.intro, ""]
        for t in s.tables:
            out += [md_table(t), ""]
        out += [f"- {n}" for n in s.notes]
        for caption, text in s.profiles:
            out += ["", f"Profile, {caption}:", "", "```", text, "```"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: seconds (smoke test)")
    size.add_argument("--large", action="store_true", help="GB-scale parts (tens of minutes, ~6 GB of disk)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md", help="markdown report")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sa1b-bench"),
                        help="generated data and runs (keep it on the same disk for every contender)")
    parser.add_argument("--repeats", type=int, default=None, help="override the profile's repeats")
    parser.add_argument("--only", default="download,resume,extract,verify,e2e",
                        help="comma-separated subset of: download,resume,extract,verify,e2e")
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "large" if args.large else "default"]
    if args.repeats:
        profile = replace(profile, repeats=args.repeats)
    command = " ".join(["python scripts/bench.py", *(sys.argv[1:] if argv is None else argv)])
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - {"download", "resume", "extract", "verify", "e2e"}
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")

    def say(message: str) -> None:
        print(message, flush=True)

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    info = machine_info()
    become_subreaper()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    skipped: list[str] = []
    with Bench(profile, args.workdir, say) as bench:
        steps = {"download": bench.bench_download, "resume": bench.bench_resume, "extract": bench.bench_extract,
                 "verify": bench.bench_verify, "e2e": bench.bench_end_to_end}
        for name in wanted:
            if name in ("verify", "e2e") and not _has_command("verify"):
                skipped.append(f"{name} (no `sa1b verify` command yet)")
                continue
            say(f"{name} ...")
            sections.append(steps[name]())
    seconds = time.perf_counter() - t0
    for s in sections:
        print(f"\n== {s.title} ==")
        for t in s.tables:
            print(text_table(t) + "\n")
    print(text_table(targets_table(sections)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(sections, profile, command, info, started, seconds, skipped))
    print(f"\nwrote {args.output} ({seconds:.0f} s)")
    return 0


def _has_command(name: str) -> bool:
    from sa1b_cli.cli import cli

    return name in cli.commands  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
