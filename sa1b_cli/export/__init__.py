"""``sa1b export``: from downloaded parts to training data in one read of each part.

Modules: :mod:`.plan` (settings, subsets, where shards are cut), :mod:`.read` (one part into its
index and spill), :mod:`.shards` (tar shards, folder chunks, the wids index, the sha256 manifest),
:mod:`.run` (the parallel, resumable run and its receipt), :mod:`.estimate` (``--dry-run``),
:mod:`.masks` (COCO RLE to numpy masks, for :mod:`sa1b_cli.dataset`). The command is
:mod:`sa1b_cli.cli.export`.
"""
