#!/usr/bin/env python3
"""Benchmark of ``sa1b export`` (issue 14): is it faster than what users do today?

Three comparisons, each a ratio of two contenders measured in the same run, taking turns (the
order rotates every repeat) so slow phases of a shared machine hit both alike; figures are medians.

Shards are cut as for SA-1B itself unless told otherwise: its ~11 GB parts make about 11 shards
of the default 1 GiB each, so ``--shard-size`` is a part's tar bytes / ``--shards-per-part`` (11);
throughput is also timed at the default 1 GiB, which makes about one shard of these ~1 GB parts.

1. Export of one part vs the repack users do today: ``tar -xzf`` into a folder, then
   ``tar --sort=name -cf`` of it (``+ sync`` too: ``sync`` of the repacked tar, as sa1b syncs every shard
   before publishing it). The export as a download leaves parts (with their member lists: each member written
   straight to its place) and "read first" (parts checked by an sa1b that kept no member lists: a part's
   kept members held in memory within a 256 MiB budget, spilled beyond it, as 1 GB parts are) are both timed.
2. Export throughput vs ``sa1b extract`` of the same parts (both ``-j 2``), both ways again.
3. Mask decode through ``sa1b_cli.dataset`` vs ``pycocotools.mask.decode``, per mask, at SA-1B's
   image size (1500x2250) with 100 masks an image; once as returned, once with every mask read
   (its pixel sum), so lazily zeroed pages are paid for too.

sa1b's modules are compiled to bytecode first, as ``pip install`` does (a checkout run under
PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every start). Parts come from the
project's generator (real JPEGs at 750x1125, 100 RLE masks an image, gzip level 6) and are kept
in ``--workdir`` for the next run; they sit in the page cache while timed.

    python scripts/bench_export.py                       # ~3 min on 2 cores -> a markdown table on stdout
    python scripts/bench_export.py --pairs 1800 --parts 4 --repeats 3  # ~20 min: 1 GB parts, which spill
    python scripts/bench_export.py --pairs 20 --repeats 2  # seconds (smoke)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

import orjson  # noqa: E402
from benchlib.common import compile_sa1b  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402

from sa1b_cli.export.masks import decode_mask, decode_masks  # noqa: E402
from sa1b_cli.export.plan import TAR_BLOCK  # noqa: E402
from sa1b_cli.integrity import check_part  # noqa: E402
from sa1b_cli.store import DownloadReceipt, ReceiptStore  # noqa: E402
from sa1b_cli.store.members import write_member_list  # noqa: E402
from sa1b_cli.store.paths import RootPaths  # noqa: E402
from sa1b_cli.testing.generator import make_annotation, make_parts, tar_member_sizes  # noqa: E402

SA1B = [sys.executable, "-m", "sa1b_cli"]


def prepare(workdir: Path, parts: int, pairs: int) -> Path:
    """A directory of generated parts (kept for the next run: keyed by their number and pairs per part)."""
    parts_dir = workdir / f"parts-{parts}x{pairs}"
    if not (parts_dir / "done").exists():
        shutil.rmtree(parts_dir, ignore_errors=True)
        make_parts(parts_dir, parts, pairs, width=750, height=1125, masks_per_image=100, noise=60.0,
                   jpeg_quality=95, compresslevel=6, seed=14)
        (parts_dir / "done").write_text("")
    for tar in parts_dir.glob("*.tar"):
        tar.read_bytes()  # into the page cache
    return parts_dir


def downloaded_root(parts_dir: Path, root: Path, names: list[str], member_lists: bool = True) -> RootPaths:
    """A ROOT holding ``names`` (hard links, no copy) with their download receipts and, as ``sa1b download``
    writes them, their member lists."""
    shutil.rmtree(root, ignore_errors=True)
    paths = RootPaths(root)
    paths.tars.mkdir(parents=True)
    for name in names:
        os.link(parts_dir / name, paths.tar(name))
        check = check_part(paths.tar(name), md5=False)
        if member_lists:
            write_member_list(paths, name, check.size, check.sha256, check.member_sizes)
        ReceiptStore(paths).write(DownloadReceipt(name, size=check.size, sha256=check.sha256, members=check.members,
                                                  images=check.images, annotations=check.annotations))
    return paths


CPU: dict[str, list[float]] = {}  # CPU seconds (user + system) of each command's runs, by its first words


def wall(command: list[str], label: str) -> float:
    """Wall seconds of ``command``; its CPU seconds are kept in ``CPU[label]``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(label, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return seconds


def cpu(label: str) -> float:
    return statistics.median(CPU[label])


def race(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each contender; the order rotates every repeat. Each starts with nothing left to
    write back from the one before (an untimed ``sync``): the repack leaves its files dirty, sa1b does not."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            os.sync()
            times[name].append(contenders[name]())
    return {name: statistics.median(values) for name, values in times.items()}


def timed_export(root: RootPaths, work: Path, jobs: int, label: str, shard_size: int | None) -> Callable[[], float]:
    """A contender: ``sa1b export`` of ``root`` into a fresh ``work/out`` (``--shard-size`` when given)."""
    cut = ["--shard-size", str(shard_size)] if shard_size else []

    def run() -> float:
        shutil.rmtree(work / "out", ignore_errors=True)
        return wall([*SA1B, "export", "-d", str(root.root), "-o", str(work / "out"), "-j", str(jobs), "--quiet", *cut],
                    label)
    return run


def sa1b_shard_size(parts_dir: Path, shards_per_part: int) -> int | None:
    """The ``--shard-size`` that cuts a part into ``shards_per_part`` shards (None: sa1b's default)."""
    if not shards_per_part:
        return None
    tar_bytes = sum(TAR_BLOCK + size + (-size % TAR_BLOCK) for _, size in tar_member_sizes(parts_dir / "sa_000000.tar"))
    return tar_bytes // shards_per_part + 1


def one_part(parts_dir: Path, work: Path, repeats: int, shard_size: int | None) -> tuple[dict[str, float], int]:
    name = "sa_000000.tar"
    roots = {"placed": downloaded_root(parts_dir, work / "root-one", [name]),
             "read first": downloaded_root(parts_dir, work / "root-one-read", [name], member_lists=False)}

    def repack(sync: bool) -> Callable[[], float]:
        script = ('mkdir -p "$2" && tar -xzf "$1" -C "$2" && tar --sort=name -cf "$3" -C "$2" .'
                  + (' && sync "$3"' if sync else ""))

        def run() -> float:
            shutil.rmtree(work / "x", ignore_errors=True)  # the last run's files go before the clock starts
            (work / "r.tar").unlink(missing_ok=True)
            return wall(["bash", "-c", script, "repack", str(parts_dir / name), str(work / "x"), str(work / "r.tar")],
                        "repack + sync" if sync else "repack")
        return run

    times = race({"sa1b export": timed_export(roots["placed"], work, 1, "export one, placed", shard_size),
                  "sa1b export, read first": timed_export(roots["read first"], work, 1, "export one, read first",
                                                          shard_size),
                  "tar -xzf + tar --sort=name -cf": repack(False), "tar -xzf + tar --sort=name -cf + sync": repack(True)},
                 repeats)
    return times, (parts_dir / name).stat().st_size


def throughput(parts_dir: Path, work: Path, repeats: int, shard_size: int | None) -> tuple[dict[str, float], int]:
    names = sorted(p.name for p in parts_dir.glob("*.tar"))
    roots = {"placed": downloaded_root(parts_dir, work / "root-export", names),
             "read first": downloaded_root(parts_dir, work / "root-export-read", names, member_lists=False)}

    def extract() -> float:
        paths = downloaded_root(parts_dir, work / "root-extract", names)  # anew: nothing extracted yet
        return wall([*SA1B, "extract", "-d", str(paths.root), "-j", "2", "--quiet"], "extract all")

    contenders = {"sa1b export": timed_export(roots["placed"], work, 2, "export all, placed", shard_size),
                  "sa1b export, read first": timed_export(roots["read first"], work, 2, "export all, read first",
                                                          shard_size),
                  "sa1b extract": extract}
    if shard_size:
        contenders["sa1b export, 1 GiB shards"] = timed_export(roots["placed"], work, 2, "export all, placed, 1 GiB",
                                                               None)
    times = race(contenders, repeats)
    return times, sum((parts_dir / n).stat().st_size for n in names)


def mask_decode(repeats: int) -> dict[str, float]:
    """Seconds per mask of each decoder, at 1500x2250 with 100 masks an image."""
    images = [orjson.loads(make_annotation(i, width=1500, height=2250, masks_per_image=100))["annotations"]
              for i in range(1, 4)]
    count = sum(map(len, images))

    def timed(action: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            action()
            return (time.perf_counter() - started) / count
        return run

    def per_mask(decode: Callable[[dict], object]) -> Callable[[], None]:
        def run() -> None:
            for image in images:  # one image's masks held at a time, as a loader does
                masks = [decode(a["segmentation"]) for a in image]
                del masks
        return run

    def per_image(decode: Callable[[list], object]) -> Callable[[], None]:
        def run() -> None:
            for image in images:
                masks = decode(image)
                del masks
        return run

    contenders = {
        "pycocotools.mask.decode, per mask": timed(per_mask(coco_mask.decode)),
        "pycocotools.mask.decode, per image":
            timed(per_image(lambda image: coco_mask.decode([a["segmentation"] for a in image]))),
        "sa1b decode_mask, per mask": timed(per_mask(decode_mask)),
        "sa1b decode_masks, per image": timed(per_image(decode_masks)),
        "pycocotools.mask.decode + read every pixel": timed(per_mask(lambda s: coco_mask.decode(s).sum())),
        "sa1b decode_mask + read every pixel": timed(per_mask(lambda s: decode_mask(s).sum())),
    }
    return race(contenders, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150, help="image/annotation pairs per generated part "
                        "(150: 79 MB; 1800: 0.98 GB, where a part outgrows the memory budget and spills as real ones do)")
    parser.add_argument("--parts", type=int, default=3, help="generated parts (the throughput comparison reads them all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shards-per-part", type=int, default=11,
                        help="cut shards as SA-1B's parts are by the default 1 GiB (11); 0: sa1b's default --shard-size")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sa1b-bench-export")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    compile_sa1b()  # sa1b starts as an installed one does, from bytecode
    parts_dir = prepare(args.workdir, args.parts, args.pairs)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    try:
        shard_size = sa1b_shard_size(parts_dir, args.shards_per_part)
        one, one_size = one_part(parts_dir, work, args.repeats, shard_size)
        many, many_size = throughput(parts_dir, work, args.repeats, shard_size)
        masks = mask_decode(args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mb = 1 << 20
    cut = (f"--shard-size {shard_size / mb:.1f}M: {args.shards_per_part} shards a part, as SA-1B's parts in 1 GiB shards"
           if shard_size else "sa1b's default --shard-size 1G")
    print(f"{os.cpu_count()} cores, median of {args.repeats}; parts of {args.pairs} pairs (750x1125, 100 masks, gzip -6); "
          f"{cut}\n")
    print("| comparison | sa1b | other | ratio (other / sa1b) | target |")
    print("|---|---|---|---|---|")
    repack, synced = one["tar -xzf + tar --sort=name -cf"], one["tar -xzf + tar --sort=name -cf + sync"]
    for reads, label in (("placed", "sa1b export"), ("read first", "sa1b export, read first")):
        print(f"| export one part ({one_size / mb:.0f} MB), {reads}, vs `tar -xzf` + `tar --sort=name -cf` "
              f"| {one[label]:.2f} s | {repack:.2f} s ({synced:.2f} s + sync) | {repack / one[label]:.2f}x "
              f"({synced / one[label]:.2f}x vs + sync) | >= 1.5x |")
        print(f"| CPU seconds (user + system) of the same runs | {cpu(f'export one, {reads}'):.2f} s "
              f"| {cpu('repack'):.2f} s | {cpu('repack') / cpu(f'export one, {reads}'):.2f}x | - |")
    for reads, label in (("placed", "sa1b export"), ("read first", "sa1b export, read first")):
        rate = many_size / mb / many[label]
        print(f"| export {args.parts} parts ({many_size / mb:.0f} MB), {reads}, vs `sa1b extract`, -j 2 "
              f"| {many[label]:.2f} s ({rate:.0f} MB/s) | {many['sa1b extract']:.2f} s "
              f"| {many['sa1b extract'] / many[label]:.2f}x | >= 0.9x |")
        print(f"| CPU seconds (user + system) of the same runs | {cpu(f'export all, {reads}'):.2f} s "
              f"| {cpu('extract all'):.2f} s | {cpu('extract all') / cpu(f'export all, {reads}'):.2f}x | - |")
    if shard_size:
        label = "sa1b export, 1 GiB shards"
        print(f"| export {args.parts} parts, placed, sa1b's default 1 GiB shards (~1 a part: no SIMD lanes), vs "
              f"`sa1b extract`, -j 2 | {many[label]:.2f} s | {many['sa1b extract']:.2f} s "
              f"| {many['sa1b extract'] / many[label]:.2f}x | >= 0.9x |")
        print(f"| CPU seconds (user + system) of the same runs | {cpu('export all, placed, 1 GiB'):.2f} s "
              f"| {cpu('extract all'):.2f} s | {cpu('extract all') / cpu('export all, placed, 1 GiB'):.2f}x | - |")
    for label, other in (("sa1b decode_mask, per mask", "pycocotools.mask.decode, per mask"),
                         ("sa1b decode_masks, per image", "pycocotools.mask.decode, per image")):
        print(f"| mask decode 1500x2250: {label} vs {other} | {masks[label] * 1e3:.2f} ms/mask "
              f"| {masks[other] * 1e3:.2f} ms/mask | {masks[other] / masks[label]:.2f}x | >= 2x |")
    read_coco, read_sa1b = masks["pycocotools.mask.decode + read every pixel"], masks["sa1b decode_mask + read every pixel"]
    print(f"| mask decode + every pixel read (`.sum()`) | {read_sa1b * 1e3:.2f} ms/mask | {read_coco * 1e3:.2f} ms/mask "
          f"| {read_coco / read_sa1b:.2f}x | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
