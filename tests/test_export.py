"""``sa1b export``: WebDataset shards read by the real ``webdataset`` and ``wids`` packages, subsets,
``--format folders``, ``--dry-run``, refusals, and a real SIGKILL mid-export then a rerun.

Everything runs on real gzip parts written by ``sa1b_cli.testing.generator`` (real JPEGs, real RLE
JSON) with download receipts made from reading them, as ``sa1b download`` leaves them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from sa1b_cli.cli.export import export_command
from sa1b_cli.errors import ExitStatus
from sa1b_cli.export.plan import Subset, sample_key
from sa1b_cli.export.run import ExportRequest, export
from sa1b_cli.extract import extract_parts
from sa1b_cli.integrity import check_part
from sa1b_cli.store import DownloadReceipt, PartLock, ReceiptStore
from sa1b_cli.store.members import write_member_list
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.generator import make_parts, write_part
from sa1b_cli.testing.processes import sa1b_command, sa1b_env

PARTS = 3
PAIRS = 12


def add_receipt(paths: RootPaths, name: str, member_list: bool = True) -> None:
    """The download receipt and member list ``sa1b download`` writes after checking the part's bytes
    (``member_list=False``: a part checked by an sa1b before member lists, which export reads first)."""
    check = check_part(paths.tar(name))
    if member_list:
        write_member_list(paths, name, check.size, check.sha256, check.member_sizes)
    ReceiptStore(paths).write(DownloadReceipt(name, size=check.size, md5=check.md5, sha256=check.sha256,
                                              members=check.members, images=check.images,
                                              annotations=check.annotations))


def downloaded_root(root: Path, parts: int = PARTS, pairs: int = PAIRS, member_lists: bool = True) -> RootPaths:
    paths = RootPaths(root)
    paths.tars.mkdir(parents=True)
    for info in make_parts(paths.tars, parts, pairs, masks_per_image=3, seed=3):
        add_receipt(paths, info.name, member_lists)
    return paths


READS = ["placed", "read first"]  # planned from member lists, members written in place / parts read first


@pytest.fixture(scope="module", params=READS)
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RootPaths:
    """A ROOT of 3 downloaded parts (ids 1..36), with member lists or without; tests only read it."""
    return downloaded_root(tmp_path_factory.mktemp("export") / "root", member_lists=request.param == "placed")


def all_members(paths: RootPaths) -> dict[str, bytes]:
    """Every sa_<id>.jpg/.json of the parts, read independently with tarfile."""
    members: dict[str, bytes] = {}
    for tar in sorted(paths.tars.glob("*.tar")):
        with tarfile.open(tar) as archive:
            for m in archive:
                if m.isreg():
                    members[m.name.removeprefix("./")] = archive.extractfile(m).read()  # type: ignore[union-attr]
    return members


def run_export(paths: RootPaths, out: Path, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(export_command, ["-d", str(paths.root), "-o", str(out), "--json", *args])
    summaries = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    summary = next((s for s in summaries if s.get("type") in ("summary", "error")), {})
    return result.exit_code, summary


def shard_paths(out: Path) -> list[str]:
    return [str(out / s["url"]) for s in json.loads((out / "shardindex.json").read_text())["shardlist"]]


def exported_ids(out: Path) -> list[int]:
    ids = []
    for shard in sorted(out.glob("sa1b-*.tar")):
        with tarfile.open(shard) as archive:
            ids.extend(int(m.name[3:-4]) for m in archive if m.name.endswith(".jpg"))
    return ids


def test_webdataset_reads_every_sample_whole_and_in_order(root: RootPaths, tmp_path: Path) -> None:
    import webdataset as wds

    code, summary = run_export(root, tmp_path / "out", "--samples-per-shard", "5")
    assert code == 0, summary
    assert summary["samples"] == PARTS * PAIRS and summary["shards"] == 8
    members = all_members(root)
    samples = list(wds.WebDataset(shard_paths(tmp_path / "out"), shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == [f"sa_{i}" for i in range(1, PARTS * PAIRS + 1)]
    for sample in samples:
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"jpg", "json"}, sample["__key__"]
        assert sample["jpg"] == members[sample["__key__"] + ".jpg"]
        assert sample["json"] == members[sample["__key__"] + ".json"]
    sums = (tmp_path / "out" / "sha256sums.txt").read_text().splitlines()
    assert subprocess.run(["sha256sum", "-c", "--quiet", "sha256sums.txt"], cwd=tmp_path / "out").returncode == 0
    assert len(sums) == 8
    index = json.loads((tmp_path / "out" / "shardindex.json").read_text())
    assert [(entry["url"], entry["md5sum"], entry["filesize"]) for entry in index["shardlist"]] == [
        (shard.name, hashlib.md5(shard.read_bytes()).hexdigest(), shard.stat().st_size)
        for shard in sorted((tmp_path / "out").glob("sa1b-*.tar"))]
    receipt = json.loads((tmp_path / "out" / "sa1b-export.json").read_text())
    assert receipt["schema"] == 1 and receipt["samples"] == PARTS * PAIRS
    assert not (tmp_path / "out" / ".sa1b-export").exists()


WIDS_SCRIPT = textwrap.dedent("""
    import json, sys
    import wids
    dataset = wids.ShardListDataset(sys.argv[1])
    keys = [dataset[i]["__key__"] for i in range(len(dataset))]
    print(json.dumps({"len": len(dataset), "keys": keys, "has": sorted(k for k in dataset[0] if not k.startswith("__"))}))
""")


def test_wids_opens_the_index(root: RootPaths, tmp_path: Path) -> None:
    """``wids`` 0.1.11 imports ``torch.distributed`` and subclasses ``torch.utils.data.Dataset[T]`` at import
    time. Without torch installed (it is no dependency of sa1b) it gets a stand-in of just those two names:
    ``Dataset``/``Sampler`` as plain generic classes (what torch's are) and ``is_initialized``, which a local
    index never reaches. Everything wids does with the index and the shards is wids' own code."""
    out = tmp_path / "out"
    assert run_export(root, out, "--shard-size", "20K")[0] == 0
    env = sa1b_env({"WIDS_CACHE": str(tmp_path / "cache")})
    if importlib.util.find_spec("torch") is None:
        stand_in = tmp_path / "torch_stand_in" / "torch"
        stand_in.mkdir(parents=True)
        (stand_in / "__init__.py").write_text("")
        (stand_in / "distributed.py").write_text("def is_initialized():\n    return False\n")
        (stand_in / "utils").mkdir()
        (stand_in / "utils" / "__init__.py").write_text("")
        (stand_in / "utils" / "data.py").write_text(
            "from typing import Generic, TypeVar\nT = TypeVar('T')\n"
            "class Dataset(Generic[T]):\n    pass\n\nclass Sampler(Generic[T]):\n    pass\n")
        env["PYTHONPATH"] = f"{stand_in.parent}{os.pathsep}{env['PYTHONPATH']}"
    done = subprocess.run([sys.executable, "-c", WIDS_SCRIPT, str(out / "shardindex.json")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["len"] == PARTS * PAIRS
    assert report["keys"] == [f"sa_{i}" for i in range(1, PARTS * PAIRS + 1)]
    assert report["has"] == [".jpg", ".json"]


def test_shard_size_bounds_every_shard(root: RootPaths, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, summary = run_export(root, out, "--shard-size", "12K")
    assert code == 0
    sizes = [p.stat().st_size for p in sorted(out.glob("sa1b-*.tar"))]
    assert len(sizes) == summary["shards"] > 3
    assert all(size <= 12 * 1024 for size in sizes)
    assert exported_ids(out) == list(range(1, PARTS * PAIRS + 1))


def test_sample_fraction_is_reproducible_for_a_seed(root: RootPaths, tmp_path: Path) -> None:
    runs = {}
    for label, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert run_export(root, tmp_path / label, "--sample", "50%", "--seed", seed)[0] == 0
        runs[label] = exported_ids(tmp_path / label)
    assert runs["a"] == runs["b"] != runs["c"]
    assert runs["a"] == [i for i in range(1, PARTS * PAIRS + 1) if sample_key(7, i) < 0.5]
    receipt = json.loads((tmp_path / "a" / "sa1b-export.json").read_text())
    assert receipt["settings"]["subset"]["fraction"] == 0.5 and receipt["settings"]["subset"]["seed"] == 7


def test_sample_count_is_exact(root: RootPaths, tmp_path: Path) -> None:
    code, summary = run_export(root, tmp_path / "out", "--sample", "10", "--seed", "3")
    assert code == 0 and summary["samples"] == 10
    expected = sorted(sorted(range(1, PARTS * PAIRS + 1), key=lambda i: (sample_key(3, i), i))[:10])
    assert exported_ids(tmp_path / "out") == expected


def test_sample_count_is_exact_when_parts_are_read_through_a_draw(tmp_path: Path) -> None:
    """300 images: --sample N reads only images below a draw that about 1.25 N + 200 pass; with --min-masks
    leaving fewer than N of those, the parts are read again in full. Both give the N lowest draws exactly."""
    paths = RootPaths(tmp_path / "root")
    paths.tars.mkdir(parents=True)
    write_part(paths.tars, 0, 250, first_image_id=1, masks_per_image=2)
    write_part(paths.tars, 1, 50, first_image_id=251, masks_per_image=6)
    for name in ("sa_000000.tar", "sa_000001.tar"):
        add_receipt(paths, name)

    def lowest(count: int, ids: range) -> list[int]:
        return sorted(sorted(ids, key=lambda i: (sample_key(9, i), i))[:count])

    assert run_export(paths, tmp_path / "any", "--sample", "20", "--seed", "9")[1]["samples"] == 20
    assert exported_ids(tmp_path / "any") == lowest(20, range(1, 301))
    assert run_export(paths, tmp_path / "dense", "--sample", "48", "--seed", "9", "--min-masks", "5")[0] == 0
    assert exported_ids(tmp_path / "dense") == lowest(48, range(251, 301))


def test_ids_file_matches_exactly_and_names_ids_not_found(root: RootPaths, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# validation images\n3\nsa_17\n\nsa_30.jpg\n900001\nsa_900002\n")
    code, summary = run_export(root, tmp_path / "out", "--ids", str(ids))
    assert code == ExitStatus.INCOMPLETE
    assert exported_ids(tmp_path / "out") == [3, 17, 30]
    assert summary["ids_missing"] == [900001, 900002]
    human = CliRunner().invoke(export_command, ["-d", str(root.root), "-o", str(tmp_path / "out"), "--ids", str(ids)])
    assert human.exit_code == ExitStatus.INCOMPLETE and "900001, 900002" in human.output


def test_bad_ids_line_is_a_usage_error_naming_the_line(root: RootPaths, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("3\nnot-an-id\n")
    code, summary = run_export(root, tmp_path / "out", "--ids", str(ids))
    assert code == ExitStatus.USAGE and "ids.txt:2" in summary["message"]


def test_mask_count_filters(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path / "root")
    paths.tars.mkdir(parents=True)
    write_part(paths.tars, 0, 6, first_image_id=1, masks_per_image=2)
    write_part(paths.tars, 1, 6, first_image_id=7, masks_per_image=6)
    for name in ("sa_000000.tar", "sa_000001.tar"):
        add_receipt(paths, name)
    assert run_export(paths, tmp_path / "many", "--min-masks", "3")[0] == 0
    assert exported_ids(tmp_path / "many") == list(range(7, 13))
    assert run_export(paths, tmp_path / "few", "--max-masks", "2", "--parts", "0-1")[0] == 0
    assert exported_ids(tmp_path / "few") == list(range(1, 7))


def test_parts_option_and_parts_without_receipt(tmp_path: Path) -> None:
    paths = downloaded_root(tmp_path / "root", parts=2, pairs=4)
    write_part(paths.tars, 2, 4, first_image_id=9)  # bytes never checked: no receipt
    code, summary = run_export(paths, tmp_path / "out")
    assert code == 0 and summary["parts"] == 2
    assert summary["skipped_parts"] == [{"part": "sa_000002.tar", "reason": "no download receipt"}]
    assert run_export(paths, tmp_path / "one", "--parts", "1")[1]["samples"] == 4
    assert exported_ids(tmp_path / "one") == [5, 6, 7, 8]


def test_folders_format_writes_the_split_layout(root: RootPaths, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, summary = run_export(root, out, "--format", "folders", "--sample", "50%", "--seed", "1")
    assert code == 0
    kept = [i for i in range(1, PARTS * PAIRS + 1) if sample_key(1, i) < 0.5]
    members = all_members(root)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"sa_{i}.jpg" for i in kept)
    assert sorted(p.name for p in (out / "annotations").iterdir()) == sorted(f"sa_{i}.json" for i in kept)
    for i in kept:
        assert (out / "images" / f"sa_{i}.jpg").read_bytes() == members[f"sa_{i}.jpg"]
    assert summary["samples"] == len(kept)
    assert subprocess.run(["sha256sum", "-c", "--quiet", "sha256sums.txt"], cwd=out).returncode == 0
    assert not (out / "shardindex.json").exists()


def test_dry_run_reports_size_and_count_and_writes_nothing(root: RootPaths, tmp_path: Path) -> None:
    """Exact from the member lists (the export's own plan); estimated from the receipts without them."""
    out = tmp_path / "out"
    code, summary = run_export(root, out, "--sample", "0.5", "--samples-per-shard", "4", "--dry-run")
    assert code == 0 and summary["dry_run"] is True
    assert not out.exists()
    listed = root.member_list("sa_000000.tar").exists()
    human = CliRunner().invoke(export_command, ["-d", str(root.root), "-o", str(out), "--dry-run"])
    assert human.exit_code == 0 and f"{'exactly' if listed else 'about'} {PARTS * PAIRS} samples" in human.output
    if listed:
        done = run_export(root, tmp_path / "real", "--sample", "0.5", "--samples-per-shard", "4")[1]
        data = sum(len(member) for name, member in all_members(root).items()
                   if sample_key(0, int(name[3:].split(".")[0])) < 0.5)
        assert summary["exact"] is True and data == summary["bytes"]
        assert (summary["samples"], summary["shards"]) == (done["samples"], done["shards"])
        return
    assert summary["samples"] == PARTS * round(PAIRS * 0.5) and summary["exact"] is False
    tars = sum(p.stat().st_size for p in root.tars.glob("*.tar"))
    assert summary["bytes"] == sum(round(p.stat().st_size * 0.5) for p in root.tars.glob("*.tar")) <= tars


def test_extracted_parts_give_the_same_shards_and_an_exact_dry_run(tmp_path: Path) -> None:
    paths = downloaded_root(tmp_path / "root")
    assert run_export(paths, tmp_path / "from_tars", "--samples-per-shard", "4")[0] == 0
    names = [f"sa_00000{i}.tar" for i in range(PARTS)]
    assert all(r.ok for r in extract_parts(paths, names, "split", remove_tars=True).parts)
    assert not any(paths.tar(name).exists() for name in names)
    assert run_export(paths, tmp_path / "from_files", "--samples-per-shard", "4")[0] == 0  # auto: the tars are gone
    assert json.loads((tmp_path / "from_files" / "sa1b-export.json").read_text())["sources"] == dict.fromkeys(
        names, "extracted")
    from_files, from_tars = (tmp_path / name / "sha256sums.txt" for name in ("from_files", "from_tars"))
    assert from_files.read_text() == from_tars.read_text()
    ids = tmp_path / "ids.txt"
    ids.write_text("2\n5\n31\n")
    planned = run_export(paths, tmp_path / "plan", "--ids", str(ids), "--from", "extracted", "--dry-run")[1]
    assert planned["samples"] == 3 and planned["exact"] is True


@pytest.mark.parametrize("output_format", ["webdataset", "folders"])
@pytest.mark.parametrize("budget", ["none", "half a part"])
def test_spilled_parts_give_the_same_output_as_parts_held_in_memory(root: RootPaths, tmp_path: Path,
                                                                    output_format: str, budget: str) -> None:
    """Parts over the memory budget go through their spill file (with no budget, every part; with half a part's,
    each part moves to its spill midway): the same files, byte for byte, as parts held in memory."""
    limit = 0 if budget == "none" else root.tar("sa_000000.tar").stat().st_size // 2
    outputs = {}
    for name, memory_budget in (("held", ExportRequest.memory_budget), ("spilled", limit)):
        out = tmp_path / name
        export(root, ExportRequest(out, format=output_format, samples_per_shard=5, memory_budget=memory_budget))
        outputs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                         if p.is_file() and p.name != "sa1b-export.json"}
    assert outputs["held"] == outputs["spilled"] and len(outputs["held"]) > 3


def test_other_settings_in_the_same_out_are_refused_and_a_rerun_is_a_no_op(root: RootPaths, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_export(root, out, "--samples-per-shard", "6")[0] == 0
    code, summary = run_export(root, out, "--samples-per-shard", "7")
    assert code == ExitStatus.USAGE and "other settings" in summary["message"]
    again = run_export(root, out, "--samples-per-shard", "6")[1]
    assert again["already"] is True and again["shards_written"] == 0 and again["samples"] == PARTS * PAIRS


def test_a_second_export_into_the_same_out_while_one_runs_is_refused(root: RootPaths, tmp_path: Path) -> None:
    lock = PartLock(tmp_path / "out" / ".sa1b-export" / "lock")
    lock.acquire()
    try:
        code, summary = run_export(root, tmp_path / "out")
    finally:
        lock.release()
    assert code == ExitStatus.LOCKED and "locked by" in summary["message"]
    assert run_export(root, tmp_path / "out")[0] == 0


def test_a_part_damaged_since_its_download_fails_the_export(tmp_path: Path) -> None:
    paths = downloaded_root(tmp_path / "root", parts=2, pairs=6)
    tar = paths.tar("sa_000001.tar")
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: the receipt still holds, the bytes do not
    tar.write_bytes(bytes(data))
    code, summary = run_export(paths, tmp_path / "out", "--samples-per-shard", "2")
    assert code == ExitStatus.PARTS_FAILED and "sa_000001.tar" in summary["message"]


def start_export(paths: RootPaths, out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*sa1b_command("export"), "-d", str(paths.root), "-o", str(out),
                             "--json", "--samples-per-shard", "2", "-j", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=sa1b_env())


KILLS = [(event, signum, reads, "webdataset") for reads in READS
         for event, signum in (("part", signal.SIGKILL), ("shard", signal.SIGKILL), ("shard", signal.SIGINT))]


@pytest.mark.parametrize(("event", "signum", "reads", "output_format"),
                         [*KILLS, ("shard", signal.SIGKILL, "placed", "folders")])
def test_killed_mid_export_then_rerun_gives_the_uninterrupted_output(event: str, signum: int, reads: str,
                                                                     output_format: str, tmp_path: Path) -> None:
    """kill -9 (or Ctrl-C: exit 130) as soon as the export reports its first part read (or first shard
    published), then the same command again: the same files, byte for byte, as an uninterrupted run."""
    paths = downloaded_root(tmp_path / "root", parts=3, pairs=16, member_lists=reads == "placed")
    fmt = ("--format", output_format)
    assert run_export(paths, tmp_path / "whole", "--samples-per-shard", "2", "-j", "1", *fmt)[0] == 0
    out = tmp_path / "killed"
    process = start_export(paths, out, *fmt)
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line).get("kind") == event:
            process.send_signal(signum)
            break
    process.communicate(timeout=30)
    assert process.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else ExitStatus.INTERRUPTED)
    assert not (out / "sa1b-export.json").exists(), "the export finished before the kill"
    code, summary = run_export(paths, out, "--samples-per-shard", "2", "-j", "1", *fmt)
    assert code == 0
    assert summary["shards_kept"] >= (1 if event == "shard" else 0)
    assert (out / "sha256sums.txt").read_bytes() == (tmp_path / "whole" / "sha256sums.txt").read_bytes()
    if output_format == "webdataset":
        assert (out / "shardindex.json").read_bytes() == (tmp_path / "whole" / "shardindex.json").read_bytes()
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(p.relative_to(tmp_path / "whole")
                                                                         for p in (tmp_path / "whole").rglob("*"))


def test_core_api_without_the_cli(root: RootPaths, tmp_path: Path) -> None:
    result = export(root, ExportRequest(tmp_path / "out", subset=Subset(ids=frozenset({4, 5, 99})), samples_per_shard=1))
    assert [r.first_id for r in result.records] == [4, 5]
    assert result.ids_missing == [99] and result.exit_status == ExitStatus.INCOMPLETE
    shutil.rmtree(tmp_path / "out")


@pytest.mark.parametrize("args", [["--samples-per-shard", "5"], ["--samples-per-shard", "2"], ["--shard-size", "40K", "--sample", "0.5", "--seed", "3"],
                                  ["--sample", "7", "--parts", "1-2"], ["--ids", "IDS"],
                                  ["--format", "folders", "--samples-per-shard", "5"]])
def test_placed_from_member_lists_and_read_first_give_the_same_bytes(args: list[str], tmp_path: Path) -> None:
    """The two ways to read the parts (planned from member lists with every member written in place; parts read
    in full first) give the same files, byte for byte, for every kind of subset and cut (index and manifest
    included: two samples a shard has each part complete six shards, whose md5s go through the SIMD lanes)."""
    ids = tmp_path / "ids.txt"
    ids.write_text("3\n4\n17\n18\n36\n")
    args = [str(ids) if a == "IDS" else a for a in args]
    outputs = {}
    for reads in READS:
        paths = downloaded_root(tmp_path / reads, member_lists=reads == "placed")
        code, summary = run_export(paths, tmp_path / f"out-{reads}", *args)
        assert code == 0 and summary["planned_from_member_lists"] is (reads == "placed")
        out = tmp_path / f"out-{reads}"
        outputs[reads] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                          if p.is_file() and p.name != "sa1b-export.json"}
        receipt = json.loads((out / "sa1b-export.json").read_text())
        outputs[reads]["receipt"] = json.dumps({k: receipt[k] for k in ("settings", "samples", "bytes", "shards")}).encode()
    assert outputs["placed"] == outputs["read first"] and len(outputs["placed"]) >= 4


def test_a_member_list_of_other_bytes_is_not_used(tmp_path: Path) -> None:
    """A member list whose sha256 is not the receipt's (the part was downloaded again since) is passed over: the
    parts are read first, and the export is still right."""
    paths = downloaded_root(tmp_path / "root", parts=2, pairs=4)
    listed = paths.member_list("sa_000001.tar")
    listed.write_text(listed.read_text().replace('"sha256":"', '"sha256":"0'))
    code, summary = run_export(paths, tmp_path / "out")
    assert code == 0 and summary["planned_from_member_lists"] is False and summary["samples"] == 8


def test_a_part_that_differs_from_its_member_list_fails_and_publishes_nothing(tmp_path: Path) -> None:
    """A member whose size is not the one its list gives (the tar changed behind its receipt): the part fails
    with exit 3 naming it and the member; no shard is published, no temporary file is left."""
    paths = downloaded_root(tmp_path / "root", parts=2, pairs=4)
    listed = paths.member_list("sa_000000.tar")
    data = json.loads(listed.read_text())
    data["members"][0][1] += 1
    listed.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, summary = run_export(paths, out)
    assert code == ExitStatus.PARTS_FAILED
    assert "sa_000000.tar" in summary["message"] and data["members"][0][0] in summary["message"]
    assert not list(out.glob("*.tar")) and not list(out.glob(".*.partial"))


def test_many_shards_a_part_do_not_run_out_of_file_descriptors(tmp_path: Path) -> None:
    """A part spreads its members over all its shards in random order: with one sample a shard, each part of 60
    pairs fills 60 shards at once (a real part would fill 11,186). Under a limit of 48 open files the export still
    goes through (a reader keeps a few shard files open, not one per shard), to the same bytes as without it."""
    paths = downloaded_root(tmp_path / "root", parts=2, pairs=60)
    assert run_export(paths, tmp_path / "whole", "--samples-per-shard", "1")[0] == 0

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    out = tmp_path / "limited"
    done = subprocess.run([*sa1b_command("export"), "-d", str(paths.root), "-o", str(out), "--json",
                           "--samples-per-shard", "1", "-j", "2"], capture_output=True, text=True, env=sa1b_env(),
                          preexec_fn=few_files, timeout=120)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 0 and summary["planned_from_member_lists"] and summary["shards"] == 120, done.stdout[-500:]
    assert (out / "sha256sums.txt").read_bytes() == (tmp_path / "whole" / "sha256sums.txt").read_bytes()
