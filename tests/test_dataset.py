"""``sa1b_cli.dataset``: samples from an export, the extracted layout and the parts; masks equal to
``pycocotools.mask.decode`` on every mask of the test parts; the README's DataLoader example runs."""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from sa1b_cli.dataset import ExportDataset, ExtractedDataset, PartsDataset, Sample
from sa1b_cli.export.masks import decode_mask, decode_masks
from sa1b_cli.export.run import ExportRequest, export
from sa1b_cli.extract import extract_parts
from sa1b_cli.integrity import check_part
from sa1b_cli.store import DownloadReceipt, ReceiptStore
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.testing.generator import encode_counts, make_parts, write_part

README = Path(__file__).resolve().parents[1] / "README.md"
IMAGES = 24


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> RootPaths:
    """Two downloaded parts of 12 images, 160x120, 12 masks each (every template shape the generator has)."""
    paths = RootPaths(tmp_path_factory.mktemp("dataset") / "root")
    paths.tars.mkdir(parents=True)
    for info in make_parts(paths.tars, 2, IMAGES // 2, width=160, height=120, masks_per_image=12, seed=5):
        check = check_part(info.path)
        ReceiptStore(paths).write(DownloadReceipt(info.name, size=check.size, md5=check.md5, sha256=check.sha256,
                                                  images=check.images, annotations=check.annotations))
    return paths


@pytest.fixture(scope="module")
def exported(root: RootPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset") / "export"
    export(root, ExportRequest(out, samples_per_shard=5))
    return out


def test_masks_equal_pycocotools_on_every_mask_of_the_test_parts(root: RootPaths) -> None:
    checked = 0
    for sample in PartsDataset(root.root, masks=True):
        annotations = sample.annotation["annotations"]
        assert sample.masks is not None and sample.masks.shape == (len(annotations), 120, 160)
        for annotation, mask in zip(annotations, sample.masks):
            expected = coco_mask.decode(annotation["segmentation"]).astype(bool)
            assert mask.dtype == bool and np.array_equal(mask, expected), annotation["id"]
            assert np.array_equal(decode_mask(annotation["segmentation"]), expected)
            checked += 1
    assert checked == IMAGES * 12


def test_uncompressed_rle_and_damaged_runs() -> None:
    runs = [5, 3, 4, 0, 0]  # a zero-length run of ones, then zeros to the end
    segmentation = {"size": [4, 3], "counts": runs}
    expected = coco_mask.decode(coco_mask.frPyObjects(segmentation, 4, 3)).astype(bool)
    assert np.array_equal(decode_mask(segmentation), expected)
    assert np.array_equal(decode_mask({"size": [4, 3], "counts": encode_counts(runs)}), expected)
    with pytest.raises(ValueError, match="do not sum"):
        decode_mask({"size": [4, 3], "counts": encode_counts([5, 3])})
    assert decode_masks([]).shape == (0, 0, 0)


def test_export_dataset_is_map_style_and_pickles_without_open_files(root: RootPaths, exported: Path) -> None:
    dataset = ExportDataset(exported)
    assert len(dataset) == IMAGES
    assert [s.key for s in dataset] == [f"sa_{i}" for i in range(1, IMAGES + 1)]
    assert dataset[-1].image_id == IMAGES and dataset[7].key == "sa_8"
    with pytest.raises(IndexError):
        dataset[IMAGES]
    copy = pickle.loads(pickle.dumps(dataset))  # what a DataLoader worker gets
    assert copy[11].jpg == dataset[11].jpg and copy[11].annotation == dataset[11].annotation
    image = dataset[0].image()
    assert image.size == (160, 120)
    by_key = {s.key: s for s in PartsDataset(root.root)}
    assert all(s.jpg == by_key[s.key].jpg and s.annotation == by_key[s.key].annotation for s in dataset)


def _keys_and_digests(dataset: ExportDataset, indices: list[int]) -> list[tuple[str, str, int]]:
    """What a DataLoader worker does with its share of a map-style dataset: index it, decode the masks."""
    return [(s.key, hashlib.sha256(s.jpg).hexdigest(), int(s.decode_masks().sum())) for s in map(dataset.__getitem__, indices)]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_export_dataset_in_worker_processes_gives_what_one_process_does(exported: Path, start_method: str) -> None:
    """torch's DataLoader workers are forked (Linux) or spawned processes handed the dataset; torch is not a
    test dependency, so its workers are played by a process pool of the same start methods. The parent reads
    some shards' headers first, as a main process that peeks at ``dataset[0]`` does, so a forked worker
    inherits that cache."""
    dataset = ExportDataset(exported)
    assert dataset[0].key == "sa_1"
    shares = [list(range(worker, IMAGES, 3)) for worker in range(3)]
    with multiprocessing.get_context(start_method).Pool(3) as pool:
        in_workers = pool.starmap(_keys_and_digests, [(dataset, share) for share in shares])
    alone = _keys_and_digests(ExportDataset(exported), list(range(IMAGES)))
    assert sorted(sum(in_workers, [])) == sorted(alone) and len(alone) == IMAGES
    assert all(masks > 0 for _key, _digest, masks in alone)


def test_extracted_dataset_gives_the_parts_samples(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path / "root")
    paths.tars.mkdir(parents=True)
    for index in (0, 1):
        info = write_part(paths.tars, index, 3, first_image_id=10 * index + 1)
        check = check_part(info.path)
        ReceiptStore(paths).write(DownloadReceipt(info.name, size=check.size, images=check.images,
                                                  annotations=check.annotations))
    assert all(r.ok for r in extract_parts(paths, ["sa_000000.tar", "sa_000001.tar"], "flat").parts)
    extracted = ExtractedDataset(paths.root, masks=True)
    assert [s.key for s in extracted] == ["sa_1", "sa_2", "sa_3", "sa_11", "sa_12", "sa_13"]
    from_parts = {s.key: s for s in PartsDataset(paths.root)}
    for sample in extracted:
        assert sample.jpg == from_parts[sample.key].jpg
        assert sample.masks is not None and len(sample.masks) == len(sample.annotation["annotations"])


def test_parts_dataset_reads_only_parts_with_a_download_receipt(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path / "root")
    paths.tars.mkdir(parents=True)
    write_part(paths.tars, 0, 2)
    assert list(PartsDataset(paths.root)) == []


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Training on SA-1B", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_dataloader_example_runs(exported: Path) -> None:
    """The example as printed, on a real export; with torch installed its DataLoader runs with workers."""
    code = readme_example()
    assert "/data/sa1b-wds" in code
    namespace: dict[str, object] = {}
    exec(compile(code.replace("/data/sa1b-wds", str(exported)), "README.md", "exec"), namespace)
    last = namespace["sample"]
    assert isinstance(last, Sample)
    masks = namespace["masks"]
    assert isinstance(masks, np.ndarray) and masks.shape == (12, 120, 160)
    assert len(namespace["boxes"]) == 12  # type: ignore[arg-type]
