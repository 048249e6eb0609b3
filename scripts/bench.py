#!/usr/bin/env python3
"""Benchmarks (issue #6): is sa1b faster than what a user would do instead?

Everything runs on this machine: SA-1B-format parts from the project's generator
(gzip level 6, ~100 masks per image), served over loopback by the fake CDN in a
separate process. Within one run the contenders of each benchmark alternate
(the order rotates every repeat) and every figure is the median of the repeats,
so slow phases of a shared machine hit all contenders alike.

    python scripts/bench.py                         # default: ~8 min on 2 cores (+2 the first time, to generate data) -> docs/benchmarks.md
    python scripts/bench.py --quick --output x.md   # tiny sizes, seconds (smoke test)
    python scripts/bench.py --large                 # GB-scale parts

sa1b runs as a user runs it (``python -m sa1b_cli ...``), inside a small
wrapper (``SA1B_RUNNER``) that records the process's own CPU time (``RUSAGE_SELF``, all threads)
and its children's (``RUSAGE_CHILDREN``: the aria2c it waited for) at exit, so
the controller's CPU is measured apart from aria2c's.

Generated parts are kept in ``--workdir`` (keyed by their settings) and reused;
the per-run directories are removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

# benchlib first: importing it puts this checkout's sa1b_cli on sys.path
from benchlib import REPO
from benchlib.common import PROFILES, BenchError, Profile, become_subreaper
from benchlib.download import HTTPX_LOOP, DownloadBench
from benchlib.e2e import EndToEndBench
from benchlib.extract import ExtractBench
from benchlib.report import NOT_JUDGED, Section, machine_info, markdown, targets_table, text_table
from benchlib.resume import ResumeBench
from benchlib.verify import NAIVE_CHECK, VerifyBench
from sa1b_cli.testing.cdn import CDNProcess


class Bench(DownloadBench, ResumeBench, ExtractBench, VerifyBench, EndToEndBench):
    """Every benchmark area over one set of generated parts, with the CDN running inside the ``with``."""

    def __init__(self, profile: Profile, workdir: Path, say: Callable[[str], None]) -> None:
        super().__init__(profile, workdir, say)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: seconds (smoke test)")
    size.add_argument("--large", action="store_true", help="GB-scale parts (tens of minutes, ~6 GB of disk)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md", help="markdown report")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sa1b-bench"),
                        help="generated data and runs (keep it on the same disk for every contender)")
    parser.add_argument("--repeats", type=int, default=None, help="override the profile's repeats")
    parser.add_argument("--only", default="download,resume,extract,verify,scale,e2e",
                        help="comma-separated subset of: download,resume,extract,verify,scale,e2e")
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "large" if args.large else "default"]
    if args.repeats:
        profile = replace(profile, repeats=args.repeats)
    command = " ".join(["python scripts/bench.py", *(sys.argv[1:] if argv is None else argv)])
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - {"download", "resume", "extract", "verify", "scale", "e2e"}
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
    failed: list[str] = []
    with Bench(profile, args.workdir, say) as bench:
        data = bench.describe_data()
        steps = {"download": bench.bench_download, "resume": bench.bench_resume, "extract": bench.bench_extract,
                 "verify": bench.bench_verify, "scale": bench.bench_scale, "e2e": bench.bench_end_to_end}
        for name in wanted:
            say(f"{name} ...")
            try:
                sections.append(steps[name]())
            except BenchError as exc:  # one broken benchmark must not cost the others' figures
                say(f"  FAILED: {exc}")
                failed.append(f"{name} ({exc})")
    seconds = time.perf_counter() - t0
    for s in sections:
        print(f"\n== {s.title} ==")
        for t in s.tables:
            print(text_table(t) + "\n")
    print(text_table(targets_table(sections)) if profile.judge else NOT_JUDGED)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(sections, profile, command, info, started, seconds, failed, data))
    print(f"\nwrote {args.output} ({seconds:.0f} s)")
    if failed:
        print(f"failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
