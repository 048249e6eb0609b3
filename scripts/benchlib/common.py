"""Shared by every benchmark: the profiles (sizes, repeats), constants, formatting helpers,
the environment of the commands and the Runner that times them (sa1b inside ``SA1B_RUNNER``)."""

from __future__ import annotations

import compileall
import ctypes
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
MiB = 1 << 20
FULL_DATASET_PAIRS = 11_185_362

# Runs sa1b exactly as ``python -m sa1b_cli`` does, and at exit writes the process's own CPU
# seconds and those of the children it waited for (aria2c). With BENCH_PROFILE_FILE it also
# profiles every thread with cProfile (on each thread's CPU clock) and dumps the merged stats there.
SA1B_RUNNER = r"""
import atexit, json, os, resource, runpy, sys
usage_file = os.environ.pop("BENCH_USAGE_FILE", "")
profile_file = os.environ.pop("BENCH_PROFILE_FILE", "")
profiles = []
if profile_file:
    import cProfile, threading, time
    def _profile_thread(*_):
        p = cProfile.Profile(time.thread_time); profiles.append(p); p.enable()
    threading.setprofile(_profile_thread)
    profiles.append(cProfile.Profile(time.thread_time)); profiles[0].enable()
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
    e2e_pairs: int  # one more part at the real size for the end-to-end run (the naive check is slow)
    masks: int
    jobs: int  # sa1b download defaults: 4 parts at once, 8 connections each
    connections: int
    min_split: str
    naive_sample: int  # pairs the naive verify loop is timed on (about one a second at the real image size)
    resume_rate: float | None  # per-connection throttle during the resume test (quick only)
    throttle: float  # per-connection CDN limit of the second download scenario (bytes/s)
    steady_seconds: float  # how long the one-part steady-state download is made to take
    crash_resume: bool  # also kill aria2c itself (power-cut case)
    count_parts: int = 45  # verify at scale: extracted part folders of tiny files ...
    count_pairs: int = 11_112  # ... each (45 x 11,112 pairs = 1,000,080 files)
    judge: bool = True  # compare with the targets (and profile misses); not at quick's toy sizes
    generate_workers: int = os.cpu_count() or 1

    def data_key(self) -> str:
        keep = {k: v for k, v in asdict(self).items() if k in DATA_FIELDS}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


DATA_FIELDS = ("small_parts", "small_pairs", "large_parts", "large_pairs", "size", "noise", "quality",
               "verify_parts", "verify_pairs", "verify_size", "e2e_pairs", "masks")

PROFILES = {
    "quick": Profile("quick", repeats=1, small_parts=3, small_pairs=3, large_parts=1, large_pairs=40,
                     size=(256, 192), noise=60, quality=95, verify_parts=1, verify_pairs=8,
                     verify_size=(320, 240), e2e_pairs=4, masks=20, jobs=4, connections=8, min_split="1M",
                     naive_sample=4, resume_rate=2e6, throttle=5e6, steady_seconds=1.0, crash_resume=False,
                     count_parts=3, count_pairs=200, judge=False),
    "default": Profile("default", repeats=3, small_parts=12, small_pairs=12, large_parts=2, large_pairs=200,
                       size=(750, 1125), noise=60, quality=95, verify_parts=2, verify_pairs=250,
                       verify_size=(1500, 2250), e2e_pairs=12, masks=100, jobs=4, connections=8,
                       min_split="8M", naive_sample=10, resume_rate=None, throttle=25e6, steady_seconds=20.0,
                       crash_resume=True),
    "large": Profile("large", repeats=3, small_parts=16, small_pairs=24, large_parts=2, large_pairs=2400,
                     size=(750, 1125), noise=60, quality=95, verify_parts=2, verify_pairs=300,
                     verify_size=(1500, 2250), e2e_pairs=40, masks=100, jobs=4, connections=8,
                     min_split="64M", naive_sample=20, resume_rate=None, throttle=25e6, steady_seconds=30.0,
                     crash_resume=True),
}


class BenchError(RuntimeError):
    pass


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / MiB:,.1f} MiB"


def fmt_rate(nbytes: float, seconds: float) -> str:
    return f"{nbytes / seconds / MiB:,.0f} MiB/s" if seconds > 0 else "-"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
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


@dataclass
class Timed:
    """One timed command: wall seconds, CPU of it and everything it waited for, sa1b's own split."""

    wall: float
    cpu: float
    started: float = 0.0  # perf_counter at the start
    own_cpu: float | None = None  # sa1b's python process alone
    child_cpu: float | None = None  # what sa1b waited for (aria2c)
    first_byte: float = float("nan")  # seconds from the start until the CDN sent the first body byte ...
    last_byte: float = float("nan")  # ... and the last one (downloads only)


def compile_sa1b() -> None:
    """Give sa1b's modules their bytecode, as ``pip install`` does. From a source checkout
    (an editable install) under PYTHONDONTWRITEBYTECODE=1 every run would otherwise compile
    every module again: ~30-80 ms of start-up a user's installed sa1b never pays."""
    import sa1b_cli

    compileall.compile_dir(Path(sa1b_cli.__file__).parent, quiet=1)


class Runner:
    """Starts commands with the benchmark environment and logs their output to one file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "bench.log"
        self.env = child_env()
        self.usage_file = workdir / "usage.json"
        compile_sa1b()

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
            log.write(f"\n$ {_shown(cmd)}\n")
            log.flush()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise BenchError(f"{_shown(cmd)[:80]} exited with {proc.returncode}; see {self.log}")
        timed = Timed(wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), started=start)
        if cmd[:3] == self.sa1b() and self.usage_file.exists():
            usage = json.loads(self.usage_file.read_text())
            timed.own_cpu, timed.child_cpu = usage["self"], usage["children"]
        return timed

    def start(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log, "a") as log:  # the child keeps its own copy of the descriptor
            log.write(f"\n$ (background) {_shown(cmd)}\n")
            log.flush()
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)


def _shown(cmd: list[str]) -> str:
    """A command as the log shows it: sa1b's runner as `sa1b ...`."""
    return " ".join(["sa1b", *cmd[3:]] if cmd[1:3] == ["-c", SA1B_RUNNER] else cmd)
