"""``sa1b status``: where a long job stands, from the state files alone (see :mod:`.collect`).

:mod:`.model` is the report, :mod:`.collect` reads it from the store, :mod:`.rows` and
:mod:`.partmap` turn it into what the console prints.
"""

from sa1b_cli.status.collect import collect_status
from sa1b_cli.status.model import EXPECTED_PAIRS, PART_STATES, PartStatus, StatusReport
from sa1b_cli.status.partmap import map_rows, shows_map
from sa1b_cli.status.rows import ATTENTION_STATES, part_rows, summary_rows

__all__ = ["ATTENTION_STATES", "EXPECTED_PAIRS", "PART_STATES", "PartStatus", "StatusReport", "collect_status",
           "map_rows", "part_rows", "shows_map", "summary_rows"]
