"""Download: plan, then drive a private aria2c until every selected part is downloaded and checked.

- :mod:`.model`: options, the plan, each part's outcome (statuses are ``str`` enums);
- :mod:`.plan`: which parts to fetch from which source, and whether the disk holds them;
- :mod:`.run`: the part queue fed to aria2c, with retries and failover between sources
  (:mod:`.failover` decides, the run carries out);
- :mod:`.session`: the aria2c daemon and its RPC;
- :mod:`.checker`: each finished part read to its end (size, archive structure, md5/sha256, the
  checksum list) before its receipt is written; only a receipt marks a part downloaded. A part is
  read while it downloads, as far as aria2 reports its pieces complete from the start, so that
  little is left to read when its last byte lands; on any doubt it is read again in full;
- :mod:`.progress`: the live view's snapshots (the rate from network bytes) and the run file ``status`` reads;
- :mod:`.reports`: how parts ended, one line per distinct reason;
- :mod:`.waits`: parts another run holds, waited for while that download run works on them.

Whether a part is downloaded is decided by :func:`sa1b_cli.store.parts.part_state` alone.
"""

from sa1b_cli.download.active import completed_prefix
from sa1b_cli.download.model import (
    DownloadOptions,
    DownloadPlan,
    DownloadResult,
    Outcome,
    PartOutcome,
    PartPlan,
    PlanAction,
)
from sa1b_cli.download.plan import check_disk_space, expiry_message, plan_download, plan_findings
from sa1b_cli.download.run import DownloadRun
from sa1b_cli.download.session import make_daemon

__all__ = [
    "DownloadOptions", "DownloadPlan", "DownloadResult", "DownloadRun", "Outcome", "PartOutcome", "PartPlan",
    "PlanAction", "check_disk_space", "completed_prefix", "expiry_message", "make_daemon",
    "plan_download", "plan_findings",
]
