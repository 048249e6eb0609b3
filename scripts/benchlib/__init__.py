"""The parts of the benchmark that ``scripts/bench.py`` runs, one module per concern.

``common`` profiles, constants, formatting and the command runner; ``data`` the generated parts;
``report`` sections, tables and the markdown report; ``base`` the state and commands the areas share;
``download``, ``resume``, ``extract``, ``verify`` (verify and verify at scale) and ``e2e``:
one mixin of ``bench.Bench`` each.

Importing the package puts this checkout first on ``sys.path``, so that it and the children it starts
use this checkout's ``sa1b_cli``, whatever the working directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# children (the CDN process, sa1b) import sa1b_cli from this checkout, whatever the working directory
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
