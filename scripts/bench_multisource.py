#!/usr/bin/env python3
"""Benchmark: one part from Meta's link alone, from an HTTP mirror alone, and from both at once.

Each server limits every connection (``--per-connection`` bytes/s), as CDNs do; the mirror answers
302 to a signed storage URL like the Hugging Face resolve endpoint. A reference checksum lets sa1b
mix the two sources. Everything runs on loopback with the real aria2c; the median of ``--repeats``
runs is reported, and the ratio of "both" to the faster single source.

    python scripts/bench_multisource.py [--megabytes 48] [--per-connection 2000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import random_part
from sa1b_cli.testing.mirror import FakeMirror
from sa1b_cli.testing.processes import run_sa1b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=48)
    parser.add_argument("--per-connection", type=float, default=2_000_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sa1b-bench-multisource-"))
    part = random_part(work / "src", 0, args.megabytes)
    reference = work / "reference.txt"
    reference.write_text(f"{hashlib.md5(part.read_bytes()).hexdigest()}  {part.name}\n")
    common = ["-x", str(args.connections), "--min-split-size", "1M", "--checksums", str(reference), "--quiet"]
    limit = Faults(rate_limit_bytes_per_s=args.per_connection)
    times: dict[str, list[float]] = {"meta alone": [], "mirror alone": [], "both at once": []}
    with FakeCDN(part.parent) as cdn, FakeMirror(part.parent, host="localhost") as mirror:  # another host name, as in reality
        cdn.set_faults(None, limit)
        mirror.storage.set_faults(None, limit)
        live, expired = cdn.write_links(work / "live.txt"), cdn.write_links(work / "expired.txt", expires_at=time.time() - 60)
        cases = {"meta alone": [live], "mirror alone": [expired, "--mirror", mirror.template],
                 "both at once": [live, "--mirror", mirror.template]}
        for repeat in range(args.repeats):
            for name, case in cases.items():
                root = work / f"root-{repeat}-{name.replace(' ', '-')}"
                started = time.perf_counter()
                result = run_sa1b("download", case[0], "-d", root, *case[1:], *common, timeout=600)
                times[name].append(time.perf_counter() - started)
                if result.returncode != 0:
                    raise SystemExit(f"{name}: exit {result.returncode}\n{result.stderr}")
    size_mib = part.stat().st_size / 2**20
    print(f"one {size_mib:.0f} MiB part, {args.connections} connections, {args.per_connection / 1e6:.1f} MB/s per connection "
          f"on each server, median of {args.repeats}:")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.2f} s | {size_mib / seconds:.1f} MiB/s |")
    best_single = min(medians["meta alone"], medians["mirror alone"])
    print(f"both at once vs the faster single source: {best_single / medians['both at once']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
