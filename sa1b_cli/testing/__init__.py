"""Test doubles for SA-1B: synthetic parts in the real format and a fake Meta CDN.

Shared by the test suite, ``sa1b demo`` and the benchmarks. Nothing here touches
the network beyond 127.0.0.1. See :mod:`.generator` (needs numpy + Pillow) and
:mod:`.cdn` (stdlib only). Names are imported lazily so that using the CDN, e.g.
``python -m sa1b_cli.testing.cdn``, does not pay for numpy/Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sa1b_cli.testing.cdn import CDNProcess, FakeCDN, Faults, RequestRecord
    from sa1b_cli.testing.generator import (
        HOSTILE_KINDS, MaskRLE, PartInfo, column_mask, decode_counts, encode_counts, make_annotation,
        make_jpeg, make_pair, make_parts, part_name, random_part, truncate_file, write_hostile_tar, write_image_ids,
        write_md5sums, write_part,
    )

# a literal list, so that linters see every name above as exported
__all__ = [
    "CDNProcess", "FakeCDN", "Faults", "RequestRecord",
    "HOSTILE_KINDS", "MaskRLE", "PartInfo", "column_mask", "decode_counts", "encode_counts",
    "make_annotation", "make_jpeg", "make_pair", "make_parts", "part_name", "random_part", "truncate_file",
    "write_hostile_tar", "write_image_ids", "write_md5sums", "write_part",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'sa1b_cli.testing' has no attribute {name!r}")
    cdn = importlib.import_module("sa1b_cli.testing.cdn")  # stdlib only: cheap
    if name in cdn.__all__:
        return getattr(cdn, name)
    return getattr(importlib.import_module("sa1b_cli.testing.generator"), name)
