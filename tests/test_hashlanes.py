"""md5 and sha256 of several files side by side (``sa1b_cli._hashlanes``, one SIMD lane a file, each read once),
and ``integrity.hash_files`` over it: equal to hashlib on every length around the block, padding and read-chunk
edges, with more files than lanes (a lane that ends takes the next file), and without the extension."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sysconfig
from pathlib import Path

import pytest

from sa1b_cli import integrity

needs_lanes = pytest.mark.skipif(integrity._hashlanes is None, reason="the C extension sa1b_cli._hashlanes is not built")
CHUNK = 1 << 20  # what _hashlanes.c reads into a lane at a time
EDGES = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 121, 127, 128, 129, 1000,
         *(CHUNK + k for k in (-65, -64, -57, -56, -55, -1, 0, 1, 55, 56, 63, 64, 65)), 2 * CHUNK + 7]


def write_files(folder: Path, lengths: list[int], seed: int = 5) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for number, length in enumerate(lengths):
        path = folder / f"file-{number}"
        path.write_bytes(rng.randbytes(length))
        paths.append(path)
    return paths


def expected(path: Path) -> tuple[int, bytes, bytes]:
    data = path.read_bytes()
    return len(data), hashlib.md5(data).digest(), hashlib.sha256(data).digest()


@needs_lanes
def test_every_length_around_the_edges_equals_hashlib(tmp_path: Path) -> None:
    paths = write_files(tmp_path, EDGES)  # 29 files: more than the 16 lanes, of lengths that end at every point
    assert integrity._hashlanes.hash_files(paths) == [expected(path) for path in paths]


@needs_lanes
@pytest.mark.parametrize("count", [1, 2, 15, 16, 17, 40])
def test_any_number_of_files_of_mixed_lengths(tmp_path: Path, count: int) -> None:
    rng = random.Random(count)
    paths = write_files(tmp_path, [rng.randrange(0, 3 * CHUNK) for _ in range(count)], seed=count)
    assert integrity._hashlanes.hash_files(paths) == [expected(path) for path in paths]


@needs_lanes
def test_no_files_and_str_or_bytes_paths(tmp_path: Path) -> None:
    assert integrity._hashlanes.hash_files([]) == []
    path = write_files(tmp_path, [100])[0]
    assert integrity._hashlanes.hash_files([str(path), os.fsencode(path), path]) == [expected(path)] * 3


@needs_lanes
def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    paths = write_files(tmp_path, [10, 20])
    with pytest.raises(FileNotFoundError) as missing:
        integrity._hashlanes.hash_files([*paths, tmp_path / "gone"])
    assert missing.value.filename == tmp_path / "gone"
    with pytest.raises(IsADirectoryError) as folder:
        integrity._hashlanes.hash_files([paths[0], tmp_path])
    assert folder.value.filename == tmp_path
    with pytest.raises(TypeError):
        integrity._hashlanes.hash_files([paths[0], 7])


@pytest.mark.parametrize("lanes", ["built", "without the extension"])
@pytest.mark.parametrize("count", [1, integrity.LANES_FROM, 20])
def test_hash_files_gives_what_hash_file_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lanes: str,
                                               count: int) -> None:
    if lanes == "built" and integrity._hashlanes is None:
        pytest.skip("the C extension sa1b_cli._hashlanes is not built")
    if lanes != "built":
        monkeypatch.setattr(integrity, "_hashlanes", None)
    paths = write_files(tmp_path, [(number * 70_001) % (2 * CHUNK + 100) for number in range(count)])
    assert integrity.hash_files(paths, workers=2) == [integrity.hash_file(path) for path in paths]


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")) or not sysconfig.get_config_var("CC"),
                    reason="no C compiler: the extension is optional and not built")
def test_lanes_extension_is_built_where_a_compiler_is_present() -> None:
    """An optional build fails quietly; where a compiler exists, a failure here means it broke."""
    assert integrity._hashlanes is not None, "sa1b_cli._hashlanes did not build"
