#!/usr/bin/env python3
"""Benchmark: how fast the test-data generator makes SA-1B pairs, and what its mask pools save.

Every image draws its masks from a pool rendered once per image size
(``sa1b_cli.testing.masks.annotation_templates``); the test suite checks that property by count
(``test_masks_are_rendered_once_per_image_size_not_per_image``), this measures what it buys: the
one-off cost of a pool, then pairs per second with it warm, at the tests' size and at the sizes
the benchmarks and SA-1B use. One core, median of ``--repeats``.

    python scripts/bench_generator.py [--pairs 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from sa1b_cli.testing.generator import make_pair, write_part
from sa1b_cli.testing.masks import annotation_templates

#: (label, width, height, JPEG noise, JPEG quality): the tests' default, the benchmark's parts, SA-1B's size.
CASES = [("tests (64x48)", 64, 48, 12.0, 85), ("benchmark parts (750x1125)", 750, 1125, 60.0, 95),
         ("SA-1B (1500x2250)", 1500, 2250, 30.0, 90)]
MASKS = 100


def _seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``action``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _pool_seconds(width: int, height: int, repeats: int) -> float:
    def cold_pool() -> None:
        annotation_templates.cache_clear()
        annotation_templates(width, height)

    return _seconds(cold_pool, repeats)


def _pairs_seconds(pairs: int, width: int, height: int, noise: float, quality: int, repeats: int) -> float:
    annotation_templates(width, height)  # warm: the pool is paid once per size

    def generate() -> None:
        for image_id in range(pairs):
            make_pair(image_id, width=width, height=height, masks_per_image=MASKS, noise=noise, jpeg_quality=quality)

    return _seconds(generate, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="pairs per timed run at the tests' size")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{MASKS} masks per image, one core, median of {args.repeats}:")
    print("| images | pool (once per size) | pairs/s, pool warm | 10,000 pairs | pairs/s rendering each image's masks |")
    print("|---|---|---|---|---|")
    for label, width, height, noise, quality in CASES:
        pairs = max(4, args.pairs * 64 * 48 // (width * height))  # fewer of the big ones, same order of time
        pool = _pool_seconds(width, height, args.repeats)
        seconds = _pairs_seconds(pairs, width, height, noise, quality, args.repeats)
        rate = pairs / seconds
        # without the pool each image would render its own masks: the pool's cost per mask, times MASKS
        per_image_masks = pool * MASKS / len(annotation_templates(width, height))
        print(f"| {label} | {pool:.2f} s | {rate:,.0f} | {10_000 / rate:.1f} s | {1 / (1 / rate + per_image_masks):,.0f} |")
    with tempfile.TemporaryDirectory(prefix="sa1b-bench-generator-") as work:
        part = _seconds(lambda: write_part(Path(work), 0, args.pairs, masks_per_image=MASKS), args.repeats)
    print(f"write_part of {args.pairs} pairs at the tests' size (gzip level 1, tar and hashes included): "
          f"{part:.2f} s ({args.pairs / part:,.0f} pairs/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
