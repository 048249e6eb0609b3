"""Is the dataset on disk whole and sound? The core of ``sa1b verify``.

Levels
------
- quick (default): list every extracted file (``os.scandir`` plus one ``stat``),
  pair ``sa_<id>.jpg`` with ``sa_<id>.json``, compare with what the part's extraction
  manifest lists (names and sizes) or, without one, with the counts its receipts
  record, and with 11,185,362 pairs for the whole dataset (``listing``).
- deep (``--deep``): also read every pair: the JSON parses and follows the SA-1B
  schema, every RLE mask is valid for its size, matches the image's size, its
  pixel count and bbox match ``area`` and ``bbox``; the JPEG is structurally whole
  and as large as the JSON says (``deep``, ``masks``, ``schema``). Masks are checked
  from their run lengths (``sa1b_cli.rle``), never as bitmaps.
- tars (``--tars``, ``--checksums``): downloaded tars still on disk are re-hashed
  and compared with their download receipts and with the community reference shipped
  with sa1b or, instead, a user's checksum list (``md5sum``/``sha256sum`` file or another
  site's ``sa1b manifest`` JSON): sha256 always, md5 only where there is one to compare with (``tars``).

What a run covers (``plan``): the parts selected with ``--parts``/``--shard``; with no
selection the job's parts (those of the links file a download read, else ``sa_000000`` ..
``sa_000999``, held to 11,185,362 pairs), or with ``--expected N`` the parts present under ROOT,
whose pairs must add up to N. What a part holds and whether it was extracted come from the store
(``sa1b_cli.store.parts``). While a download runs or is unfinished (``arrivals``), or with
``--arrived``, only the parts that have arrived are checked; the rest are awaited, not missing.

Work runs in a process pool (``pool``): one scan task per part (or per folder) and, for
deep checks, tasks of ``CHUNK_PAIRS`` pairs. Results are kept in verify receipts, which a
rerun reuses while the files are unchanged (``cache``); ``rescan`` lists every file again,
``force`` reads everything again.
"""

from sa1b_cli.verify.cache import CHECK_VERSION, STAMP_SETTLE_NS
from sa1b_cli.verify.dataset import verify_dataset, verify_directory
from sa1b_cli.verify.deep import CHUNK_PAIRS, ChunkResult, PairCheck, check_pairs, deep_check_pair
from sa1b_cli.verify.listing import Listing, list_folders, list_manifest
from sa1b_cli.verify.plan import detect_layout, known_part_names
from sa1b_cli.verify.present import problem_lines, summary_line, table_rows
from sa1b_cli.verify.results import (ALL_UNIT, DEEP, FULL_DATASET_PAIRS, QUICK, Level, PartResult, PartStatus,
                                     Problem, Problems, TarResult, VerifyReport)
from sa1b_cli.verify.tars import check_tar, listed_for

__all__ = [
    "ALL_UNIT", "CHECK_VERSION", "CHUNK_PAIRS", "DEEP", "FULL_DATASET_PAIRS", "QUICK", "STAMP_SETTLE_NS", "ChunkResult",
    "Level", "Listing", "PairCheck", "PartResult", "PartStatus", "Problem", "Problems", "TarResult", "VerifyReport",
    "check_pairs", "check_tar", "deep_check_pair", "detect_layout", "known_part_names", "list_folders", "list_manifest",
    "listed_for", "problem_lines", "summary_line", "table_rows", "verify_dataset", "verify_directory",
]
