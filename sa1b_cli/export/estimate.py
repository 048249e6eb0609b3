"""``sa1b export --dry-run``: the subset's sample count and size, without reading a byte of the parts.

Parts with member lists are counted exactly from the export's own plan (:func:`exact`). Otherwise:
An extracted part's manifest names every file with its size, so its count is exact (``--sample
FRACTION`` and ``--ids`` decide on the name alone). A part read from its tar is estimated from its
download receipt (images, tar size: SA-1B's JPEGs do not compress, so the tar's size is close to
the samples' bytes). ``--min-masks/--max-masks`` need the annotations, so they are not applied here.
"""

from __future__ import annotations

import math
from typing import Any

from sa1b_cli.export.placed import Placement
from sa1b_cli.export.plan import SAMPLE_NAME, TAR_BLOCK, Settings
from sa1b_cli.export.read import PartSource
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt, ReceiptStore


def estimate(paths: RootPaths, sources: list[PartSource], settings: Settings) -> dict[str, Any]:
    """{samples, bytes, shards, exact, ...} of the export ``settings`` over ``sources``."""
    subset = settings.subset
    receipts = ReceiptStore(paths)
    samples = data_bytes = 0
    exact = not subset.needs_masks
    for source in sources:
        if source.files is not None:
            found, size = _listed(source, settings)
        else:
            found, size = _from_receipt(receipts.read(DownloadReceipt, source.name), settings)
            exact = False
        samples += found
        data_bytes += size
    if subset.ids is not None and samples > len(subset.ids):
        data_bytes, samples = data_bytes * len(subset.ids) // samples, len(subset.ids)
    if subset.count is not None and samples > subset.count:
        data_bytes, samples = data_bytes * subset.count // samples, subset.count
        exact = False  # which N images is known, not their bytes
    tar_bytes = data_bytes + samples * 3 * TAR_BLOCK  # two headers and about a block of padding a sample
    per_shard = settings.chunk_samples
    shards = math.ceil(samples / per_shard) if per_shard else math.ceil(tar_bytes / settings.chunk_bytes)
    return {"samples": samples, "bytes": data_bytes, "shards": shards, "exact": exact,
            "mask_filter_applied": False if subset.needs_masks else None}


def exact(placement: Placement) -> dict[str, Any]:
    """The same figures, exact: the plan an export would follow."""
    samples = [sample for shard in placement.shards for sample in shard.samples]
    return {"samples": len(samples), "bytes": sum(s.jpg_size + s.json_size for s in samples),
            "shards": len(placement.shards), "exact": True, "mask_filter_applied": None}


def _listed(source: PartSource, settings: Settings) -> tuple[int, int]:
    assert source.files is not None
    halves: dict[int, list[int]] = {}
    for entry in source.files.entries() or []:
        match = SAMPLE_NAME.match(entry.name)
        if match and settings.subset.wants(int(match.group(1))):
            halves.setdefault(int(match.group(1)), []).append(entry.size)
    pairs = [sizes for sizes in halves.values() if len(sizes) == 2]
    return len(pairs), sum(map(sum, pairs))


def _from_receipt(receipt: DownloadReceipt | None, settings: Settings) -> tuple[int, int]:
    if receipt is None:
        return 0, 0
    fraction = settings.subset.fraction or 1.0
    return round((receipt.images or 0) * fraction), round((receipt.size or 0) * fraction)
