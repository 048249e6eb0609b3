"""``sa1b demo``: the whole pipeline, offline, in well under a minute, on generated data.

A first-time user has no links file yet (Meta hands one out only after the licence
is accepted), and should still see what the tool does before pointing it at 10 TiB.
So the demo generates a few parts in SA-1B's format (real JPEGs, real COCO RLE
annotation files, gzip-compressed tars) with :mod:`sa1b_cli.testing.generator`,
serves them from 127.0.0.1 with :class:`~sa1b_cli.testing.cdn.FakeCDN` behind signed,
expiring links like Meta's CDN, writes the links file, and then runs download,
extract and verify through the same core functions as the commands (the real
aria2c, the real console). Nothing leaves the machine.

The demo directory keeps everything for a look afterwards::

    DIR/sa1b-demo.json                 what was generated (parts x pairs)
    DIR/cdn/                           the "CDN side": generated parts and sa_images_ids.txt
    DIR/segment_anything_links.txt     the links file, as Meta's page hands it out
    DIR/dataset/                       the dataset ROOT (tars/, extracted/, .sa1b/)
    DIR/mirror/, DIR/reference-md5.txt with --mirror: a Hugging Face-like mirror holding one wrong
                                       part, and the checksums that stand in for the community reference

With ``--mirror`` the demo plays the weeks when Meta's links page was down: the links file
it hands out has expired, so every part comes from the mirror; the mirror's wrong copy of one
part is caught by the reference, never given a receipt and never extracted; then a fresh links
file arrives and that part comes from Meta.

Running the demo again on the same DIR finds everything done (nothing is fetched
twice), which shows how a rerun resumes.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sa1b_cli import download as download_core
from sa1b_cli import extract as extract_core
from sa1b_cli.console import human_bytes
from sa1b_cli.errors import ExitStatus, UsageError, worst
from sa1b_cli.events import Reporter
from sa1b_cli.links import parse_links
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.selection import select
from sa1b_cli.checksums import parse_checksums
from sa1b_cli.sources import parse_mirrors
from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import make_parts, part_name, write_image_ids, write_part
from sa1b_cli.testing.mirror import FakeMirror
from sa1b_cli.verify import verify_dataset

MARKER_NAME = "sa1b-demo.json"
LINKS_NAME = "segment_anything_links.txt"
IMAGE_IDS_NAME = "sa_images_ids.txt"
META_DOWNLOAD_PAGE = "https://ai.meta.com/datasets/segment-anything-downloads"
REAL_ROOT = "/data/sa1b"

# Small images, SA-1B's shape otherwise: a part of 50 pairs is about 1 MB.
IMAGE_WIDTH, IMAGE_HEIGHT, MASKS_PER_IMAGE, SEED = 320, 240, 20, 0
# Loopback is too fast to watch: the CDN is paced so the transfer lasts about this long.
DOWNLOAD_SECONDS = 3.0
MIN_PACE_BYTES_PER_S = 32 * 1024


@dataclass
class DemoDirectory:
    """Where the demo's pieces live (see the module docstring)."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER_NAME

    @property
    def cdn(self) -> Path:
        return self.root / "cdn"

    @property
    def links(self) -> Path:
        return self.root / LINKS_NAME

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def reference(self) -> Path:
        return self.root / "reference-md5.txt"


@dataclass
class DemoResult:
    """What each stage did; ``stages`` holds each stage's exit status."""

    directory: DemoDirectory
    parts: int
    pairs: int
    stages: dict[str, ExitStatus] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_status(self) -> ExitStatus:
        """The worst exit status of the stages, by the one severity order every command uses."""
        return worst(self.stages.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory.root),
            "links": str(self.directory.links),
            "dataset": str(self.directory.dataset),
            "parts": self.parts,
            "pairs_per_part": self.pairs,
            "stages": {name: int(status) for name, status in self.stages.items()},
            "stage_summaries": self.summaries,
            "seconds": round(self.seconds, 3),
            "exit_code": int(self.exit_status),
            "next_steps": next_steps(self.directory),
        }


def prepare_directory(directory: Path | None, parts: int, pairs: int) -> DemoDirectory:
    """A new temporary directory, or ``directory`` if it is new, empty, or an earlier demo of the same size.

    Anything else is refused untouched: the demo never writes among files that are not its own.
    A directory that cannot be written (read-only, under a file) is refused as bad usage.
    """
    try:
        return _prepare_directory(directory, parts, pairs)
    except OSError as exc:
        where = exc.filename or directory
        raise UsageError(f"{where}: cannot write the demo directory here ({exc.strerror or exc}); "
                         "give a writable directory with --dir") from None


def _prepare_directory(directory: Path | None, parts: int, pairs: int) -> DemoDirectory:
    if directory is None:
        demo = DemoDirectory(Path(tempfile.mkdtemp(prefix="sa1b-demo-")))
    else:
        demo = DemoDirectory(directory)
        if demo.root.exists() and not demo.root.is_dir():
            raise UsageError(f"{demo.root}: exists and is not a directory")
        if demo.root.is_dir() and any(demo.root.iterdir()):
            _check_earlier_demo(demo, parts, pairs)
            return demo
        demo.root.mkdir(parents=True, exist_ok=True)
    demo.marker.write_text(json.dumps({"parts": parts, "pairs_per_part": pairs}) + "\n", encoding="utf-8")
    return demo


def _check_earlier_demo(demo: DemoDirectory, parts: int, pairs: int) -> None:
    try:
        earlier = json.loads(demo.marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{demo.root}: not empty and not a demo directory (no {MARKER_NAME}); give a new or empty directory"
        ) from None
    except ValueError:
        earlier = None
    if not isinstance(earlier, dict):
        raise UsageError(f"{demo.marker}: not a demo record; give a new or empty directory")
    if earlier != {"parts": parts, "pairs_per_part": pairs}:
        raise UsageError(
            f"{demo.root} holds a demo of {earlier.get('parts')} parts x {earlier.get('pairs_per_part')} pairs; "
            f"run it with the same --count/--pairs or give another directory"
        )


def generate_parts(demo: DemoDirectory, parts: int, pairs: int, reporter: Reporter) -> list[int]:
    """Write the parts (deterministic: an earlier demo's files are reused) and the image id list; returns their sizes."""
    names = [part_name(i) for i in range(parts)]
    # The id list is written last: if it is there, an earlier run wrote every part completely.
    if all((demo.cdn / n).is_file() for n in names) and (demo.cdn / IMAGE_IDS_NAME).is_file():
        reporter.event("demo_generate", f"reusing the {parts} generated parts in {demo.cdn}")
        return [(demo.cdn / n).stat().st_size for n in names]
    reporter.event(
        "demo_generate",
        f"generating {parts} parts x {pairs} pairs in SA-1B's format ({IMAGE_WIDTH}x{IMAGE_HEIGHT} JPEGs, "
        f"{MASKS_PER_IMAGE} RLE masks each, gzip tars) in {demo.cdn}",
    )
    infos = make_parts(demo.cdn, parts, pairs, width=IMAGE_WIDTH, height=IMAGE_HEIGHT,
                       masks_per_image=MASKS_PER_IMAGE, seed=SEED)
    write_image_ids(infos, demo.cdn / IMAGE_IDS_NAME)
    return [info.size for info in infos]


def prepare_mirror(demo: DemoDirectory, parts: int, pairs: int) -> str:
    """The mirror's copies (hard links) and the reference; its last part regenerated with another seed:
    a valid gzip tar with the right name and other bytes, as the audited mirrors hold. Returns its name."""
    import hashlib
    import os

    demo.mirror.mkdir(exist_ok=True)
    wrong = part_name(parts - 1)
    lines = []
    for index in range(parts):
        name = part_name(index)
        lines.append(f"{hashlib.md5((demo.cdn / name).read_bytes()).hexdigest()}  {name}\n")
        if name != wrong and not (demo.mirror / name).exists():
            os.link(demo.cdn / name, demo.mirror / name)
    if not (demo.mirror / wrong).exists():
        write_part(demo.mirror, parts - 1, pairs, first_image_id=(parts - 1) * pairs + 1, width=IMAGE_WIDTH,
                   height=IMAGE_HEIGHT, masks_per_image=MASKS_PER_IMAGE, seed=SEED + 1)
    demo.reference.write_text("".join(lines), encoding="utf-8")
    return wrong


def run_demo(directory: Path | None, parts: int, pairs: int, reporter: Reporter, *, jobs: int = 4,
             mirror: bool = False) -> DemoResult:
    """Generate, serve on loopback, then download -> extract -> verify with the commands' core functions.

    Stage failures are recorded in the result (every stage runs); errors that stop
    a command (aria2c missing, disk full, interrupted) propagate as they would there.
    """
    started = time.monotonic()
    demo = prepare_directory(directory, parts, pairs)
    result = DemoResult(demo, parts, pairs)
    reporter.event("demo", f"demo directory: {demo.root} (kept; look around when it is done)", directory=str(demo.root))
    sizes = generate_parts(demo, parts, pairs, reporter)
    paths = RootPaths(demo.dataset)
    with FakeCDN(demo.cdn) as cdn:
        rounds = math.ceil(parts / jobs)  # aria2c fetches `jobs` parts at once, each on one connection
        pace = max(MIN_PACE_BYTES_PER_S, max(sizes) * rounds / DOWNLOAD_SECONDS)
        cdn.set_faults(None, Faults(rate_limit_bytes_per_s=pace))
        cdn.write_links(demo.links, shuffle_seed=SEED)
        reporter.event(
            "demo_serve",
            f"serving them on {cdn.base_url} like Meta's CDN (signed links that expire, HTTP ranges), paced to "
            f"{pace / 1024:.0f} KiB/s per connection so the transfer can be watched; links file: {demo.links}",
            links=str(demo.links),
        )
        if mirror:
            _download_via_mirror(demo, cdn, paths, jobs, reporter, result, prepare_mirror(demo, parts, pairs))
        else:
            result.stages["download"] = _download(demo, paths, jobs, reporter, result)
    result.stages["extract"] = _extract(paths, jobs, reporter, result)
    result.stages["verify"] = _verify(paths, parts * pairs, reporter, result)
    result.seconds = time.monotonic() - started
    return result


def _download_via_mirror(demo: DemoDirectory, cdn: FakeCDN, paths: RootPaths, jobs: int, reporter: Reporter,
                         result: DemoResult, wrong: str) -> None:
    """Links expired, a mirror with one wrong part: caught by the reference; then a fresh links file."""
    cdn.write_links(demo.links, shuffle_seed=SEED, expires_at=time.time() - 3600)
    with FakeMirror(demo.mirror, host="localhost") as fake:
        fake.storage.set_faults(None, cdn.faults_for(None))
        reporter.event("demo_mirror", f"the links file has expired (as when Meta's page was down); serving a mirror like "
                       f"the Hugging Face backup on {fake.template}, whose {wrong} is a wrong copy; {demo.reference} "
                       f"stands in for the community reference")
        status = _download(demo, paths, jobs, reporter, result, mirrors=[fake.template], stage="download (mirror)")
    caught = result.summaries["download (mirror)"]["parts"].get(wrong, {})
    others_ok = result.summaries["download (mirror)"]["complete"] == result.parts - 1
    # The demo is meant to show this catch: it counts as success when exactly the wrong part was caught.
    if caught.get("wrong_bytes") and others_ok:
        result.stages["download (mirror)"] = ExitStatus.OK
    else:  # the wrong copy got through, or something else failed
        result.stages["download (mirror)"] = status if status != ExitStatus.OK else ExitStatus.ERROR
    cdn.write_links(demo.links, shuffle_seed=SEED)
    reporter.event("demo_mirror", f"{wrong} was refused; a fresh links file arrives: {wrong} now comes from Meta's link")
    result.stages["download"] = _download(demo, paths, jobs, reporter, result)


def _download(demo: DemoDirectory, paths: RootPaths, jobs: int, reporter: Reporter, result: DemoResult,
              mirrors: list[str] | None = None, stage: str = "download") -> ExitStatus:
    """What ``sa1b download LINKS -d ROOT`` does: plan (HEAD every link), check the disk, run aria2c."""
    links_file = parse_links(demo.links)
    options = download_core.DownloadOptions(jobs=jobs, retries=2, retry_wait=1.0, mirrors=parse_mirrors(mirrors or []),
                                            checksums=parse_checksums(demo.reference) if demo.reference.exists() else None)
    plan = download_core.plan_download(select(links_file), links_file, paths, options, reporter)
    reporter.event("plan", f"download: {len(plan.to_fetch)} of {len(plan.parts)} parts to fetch with aria2c into "
                   f"{paths.tars}; {download_core.expiry_message(plan)}")
    download_core.check_disk_space(plan, options)
    outcome = download_core.DownloadRun(plan, links_file, paths, options, reporter).run()
    result.summaries[stage] = outcome.to_dict()
    return outcome.exit_status


def _extract(paths: RootPaths, jobs: int, reporter: Reporter, result: DemoResult) -> ExitStatus:
    """What ``sa1b extract -d ROOT`` does: every downloaded part, atomically, in the default layout."""
    names = extract_core.select_parts(paths, None, None)
    outcome = extract_core.extract_parts(paths, names, None, jobs, False, reporter)
    result.summaries["extract"] = outcome.summary()
    return outcome.exit_status


def _verify(paths: RootPaths, pairs: int, reporter: Reporter, result: DemoResult) -> ExitStatus:
    """What ``sa1b verify -d ROOT --deep --tars`` does: every file, every mask, every tar against its receipt."""
    report = verify_dataset(paths, expected=pairs, deep=True, tars=True, reporter=reporter)
    result.summaries["verify"] = report.summary()
    return report.exit_status


def stage_lines(result: DemoResult) -> list[str]:
    """One line per stage, for people."""
    lines = []
    via_mirror = result.summaries.get("download (mirror)")
    if via_mirror is not None:
        lines.append(f"download from the mirror (links expired): {via_mirror['complete']}/{via_mirror['selected']} parts "
                     f"complete, {via_mirror['wrong_bytes']} wrong copy caught by the reference and refused "
                     f"(exit {int(result.stages['download (mirror)'])})")
    download = result.summaries.get("download")
    if download is not None:
        lines.append(f"download: {download['complete']}/{download['selected']} parts complete, {download['failed']} failed, "
                     f"{download['expired']} expired; {human_bytes(download['bytes_fetched'])} fetched "
                     f"(exit {int(result.stages['download'])})")
    extract = result.summaries.get("extract")
    if extract is not None:
        lines.append(f"extract: {extract['extracted']} parts extracted, {extract['already']} already done, "
                     f"{extract['failed']} failed; {extract['files']} files, layout {extract['layout']} "
                     f"(exit {int(result.stages['extract'])})")
    verify = result.summaries.get("verify")
    if verify is not None:
        verdict = "all sound" if verify["ok"] else f"{verify['problems_total']} problem(s)"
        lines.append(f"verify: {verify['images']} images and {verify['annotations']} annotation files in "
                     f"{verify['parts']} parts, {verify['masks_checked']} masks checked (deep): {verdict} "
                     f"(exit {int(result.stages['verify'])})")
    verdict = "everything worked" if result.exit_status == ExitStatus.OK else "something went wrong (see above)"
    lines.append(f"demo: {result.parts} parts x {result.pairs} pairs in {result.seconds:.0f}s: {verdict} "
                 f"(exit {int(result.exit_status)})")
    return lines


def next_steps(demo: DemoDirectory) -> list[str]:
    """What to run on the real dataset; the commands are the same as the demo's stages."""
    links = LINKS_NAME
    return [
        "On the real dataset:",
        f"  1. Accept the licence on Meta's SA-1B download page, {META_DOWNLOAD_PAGE} ,",
        f"     and save the links file it hands out as {links}. Its links expire after 2-4 weeks;",
        "     with a fresh file, downloads resume where they stopped.",
        f"  2. sa1b links {links} --check --parts 0-9          # links live? sizes?",
        f"  3. sa1b download {links} -d {REAL_ROOT} --parts 0-1 --extract   # a first 2 parts, about 21 GiB",
        f"  4. sa1b download {links} -d {REAL_ROOT} --extract   # all 1,000 parts: ~10.3 TiB of tars + ~10.6 TiB extracted",
        "     (add --remove-tars to keep only the extracted files; run it again after any stop: it resumes)",
        f"  5. sa1b status -d {REAL_ROOT}                        # any time, from any host sharing the ROOT",
        f"  6. sa1b verify -d {REAL_ROOT} --deep                 # every mask; mid-download: what has arrived (exit 10)",
        "  Many hosts over one shared ROOT: add --shard auto in a Slurm array job (scripts/sa1b-slurm.sh).",
        f"This demo's files: {demo.root} (links file {demo.links.name}, dataset in {demo.dataset}); "
        f"try: sa1b status -d {demo.dataset} and sa1b verify -d {demo.dataset} --deep",
    ]
