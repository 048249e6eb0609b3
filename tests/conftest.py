"""Shared pytest fixtures: tiny SA-1B parts, a loopback FakeCDN, a links file.

Loopback traffic must never go through a proxy (httpx, urllib, aria2p/requests
and aria2c all honour ``*_proxy``), so NO_PROXY is forced at import time.

A suite started in the background by a shell (``pytest &``, nohup, some CI runners) inherits
SIGINT ignored, and an ignored signal stays ignored across exec: every sa1b the tests start
would then shrug off the Ctrl-C the interrupt tests send. Catching SIGINT here gives child
processes the default disposition again (caught signals are reset on exec).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo, make_parts

for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = "127.0.0.1,localhost"

# The generated parts carry real part names (sa_000000.tar) but not Meta's bytes: against the shipped
# community reference every one of them would differ. Tests that exercise the reference remove this.
os.environ["SA1B_NO_REFERENCE"] = "1"

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Shape of the ``small_parts`` fixture: 3 gzip parts of 4 pairs (ids 1..12), 3 masks each.
SMALL_N_PARTS = 3
SMALL_PAIRS_PER_PART = 4
SMALL_MASKS = 3


@pytest.fixture(scope="session")
def _small_parts_master(tmp_path_factory: pytest.TempPathFactory) -> list[PartInfo]:
    """Built once per session; never handed out directly (tests get copies)."""
    d = tmp_path_factory.mktemp("small_parts_master")
    return make_parts(d, SMALL_N_PARTS, SMALL_PAIRS_PER_PART, masks_per_image=SMALL_MASKS, seed=1)


@pytest.fixture
def small_parts(_small_parts_master: list[PartInfo], tmp_path: Path) -> list[PartInfo]:
    """A private copy (``tmp_path/parts``) of 3 tiny gzip parts; safe to modify."""
    d = tmp_path / "parts"
    d.mkdir()
    out = []
    for p in _small_parts_master:
        dst = d / p.name
        shutil.copyfile(p.path, dst)
        out.append(replace(p, path=dst))
    return out


@pytest.fixture
def small_parts_dir(small_parts: list[PartInfo]) -> Path:
    return small_parts[0].path.parent


@pytest.fixture
def cdn(small_parts_dir: Path) -> Iterator[FakeCDN]:
    """A FakeCDN serving ``small_parts``; closed after the test."""
    with FakeCDN(small_parts_dir) as server:
        yield server


@pytest.fixture
def links_file(cdn: FakeCDN, tmp_path: Path) -> Path:
    """``tmp_path/segment_anything_links.txt`` with fresh links (20 days) to every part."""
    return cdn.write_links(tmp_path / "segment_anything_links.txt")
