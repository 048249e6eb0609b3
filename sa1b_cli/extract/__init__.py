"""Unpacking downloaded parts into ROOT: fast, safe against hostile archives, atomic per part.

Why it is built this way
------------------------
- Speed. Inflating dominates. ISA-L inflates in a background thread
  (``isal.igzip_threaded``) while the calling thread walks the tar and writes each
  file with plain ``os.open``/``os.write`` from one reusable buffer; ISA-L releases the
  GIL, so parts run in threads (one per ``jobs``) rather than processes, and one part
  extracts faster than GNU ``tar -xzf`` (which pipes through ``gzip``).
- Safety. The tar is walked by :mod:`sa1b_cli.tarwalk`, the walker download's check uses too:
  only regular files (folder entries are skipped), no absolute names, ``..``, links, devices,
  FIFOs, sparse files, duplicates or case collisions, capped name lengths, extended-header
  sizes, member counts and inflate ratio (a gzip bomb). Files are written only into a fresh
  temporary directory the part owns. A truncated or corrupt archive fails that part alone.
- Atomicity. A part is unpacked into ``ROOT/.sa1b/tmp/extract-<part>-<host>-<pid>/files``,
  then a manifest (``manifest.tsv``) is written there to mark it complete, and only
  then is it published (:mod:`.publish`). The extract receipt is written last and is the
  proof of a part.
- One read. ``download --extract`` hands a freshly downloaded part over with a
  ``source_check``: the bytes read for unpacking are hashed on the way (sha256, and md5
  against a checksum list, in their own threads), and the download receipt is written
  from that read, before the part is published, instead of inflating the part once to
  check it and again to unpack it.

Modules: :mod:`.run` (many parts, the thread pool), :mod:`.part` (one part with its lock),
:mod:`.unpack` (the tar into a temporary directory), :mod:`.publish` (into place, then the
receipt), :mod:`.results`. The layout record and the manifests are state under ROOT:
:mod:`sa1b_cli.store.layout` (re-exported here).
"""

from sa1b_cli.extract.job import SourceCheck
from sa1b_cli.extract.part import extract_part
from sa1b_cli.extract.results import (
    ALREADY,
    EXTRACTED,
    FAILED,
    INTERRUPTED,
    LOCKED,
    NOT_DOWNLOADED,
    ExtractResult,
    PartExtractResult,
    PartStatus,
)
from sa1b_cli.extract.run import extract_parts, parts_on_disk, select_parts
from sa1b_cli.store.layout import (
    DEFAULT_LAYOUT,
    LAYOUTS,
    ManifestEntry,
    PartFiles,
    ensure_layout,
    extracted_dir,
    manifest_path,
    part_file_locations,
    read_layout,
    read_manifest,
    resolve_layout,
)

__all__ = [
    "ALREADY", "DEFAULT_LAYOUT", "EXTRACTED", "FAILED", "INTERRUPTED", "LAYOUTS", "LOCKED", "NOT_DOWNLOADED",
    "ExtractResult", "ManifestEntry", "PartExtractResult", "PartFiles", "PartStatus", "SourceCheck",
    "ensure_layout", "extract_part", "extract_parts", "extracted_dir", "manifest_path", "part_file_locations",
    "parts_on_disk", "read_layout", "read_manifest", "resolve_layout", "select_parts",
]
