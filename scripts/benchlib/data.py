"""The generated SA-1B-format parts: made once per profile's settings and kept in the work dir,
links files for subsets of them, and the size check of what a contender wrote."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .common import BenchError, Profile, fmt_mb, fresh_dir


@dataclass
class Part:
    name: str
    index: int
    group: str  # small | large | verify | e2e
    size: int
    pairs: int
    md5: str


def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    from sa1b_cli.testing.generator import write_part

    info = write_part(Path(spec["dir"]), spec["index"], spec["pairs"], first_image_id=spec["first_id"],
                      width=spec["size"][0], height=spec["size"][1], masks_per_image=spec["masks"],
                      noise=spec["noise"], jpeg_quality=spec["quality"], compresslevel=6, seed=spec["index"])
    return {"name": info.name, "index": spec["index"], "group": spec["group"], "size": info.size,
            "pairs": info.n_pairs, "md5": info.md5}


def prepare_data(profile: Profile, workdir: Path, say: Callable[[str], None]) -> tuple[Path, list[Part]]:
    """Generate the parts once per profile settings; later runs reuse them."""
    data_dir = workdir / f"data-{profile.name}-{profile.data_key()}"
    stamp = data_dir / "parts.json"
    if stamp.exists():
        parts = [Part(**p) for p in json.loads(stamp.read_text())]
        if all(_size_or_none(data_dir / "parts" / p.name) == p.size for p in parts):
            return data_dir / "parts", parts
    for stale in workdir.glob(f"data-{profile.name}-*"):
        shutil.rmtree(stale)  # an older generation of this profile's data (other settings)
    parts_dir = fresh_dir(data_dir / "parts")
    groups = ([("small", profile.small_pairs, profile.size, profile.noise, profile.quality)] * profile.small_parts
              + [("large", profile.large_pairs, profile.size, profile.noise, profile.quality)] * profile.large_parts
              + [("verify", profile.verify_pairs, profile.verify_size, 30, 90)] * profile.verify_parts
              + [("e2e", profile.e2e_pairs, profile.verify_size, 30, 90)])
    specs, first_id = [], 1
    for index, (group, pairs, size, noise, quality) in enumerate(groups):
        specs.append({"dir": str(parts_dir), "index": index, "pairs": pairs, "first_id": first_id, "size": size,
                      "masks": profile.masks, "noise": noise, "quality": quality,
                      "group": group})
        first_id += pairs
    started = time.perf_counter()
    say(f"generating {len(specs)} parts ({sum(pairs for _, pairs, *_ in groups)} pairs) in {parts_dir} ...")
    with ProcessPoolExecutor(profile.generate_workers) as pool:
        made = list(pool.map(_generate, specs))
    parts = [Part(**m) for m in made]
    stamp.write_text(json.dumps([asdict(p) for p in parts], indent=1))
    say(f"generated {fmt_mb(total_size(parts))} in {time.perf_counter() - started:.0f} s")
    return parts_dir, parts


def total_size(parts: list[Part]) -> int:
    """Bytes of these parts' tars."""
    return sum(p.size for p in parts)


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def parts_spec(parts: list[Part]) -> str:
    return ",".join(str(p.index) for p in parts)


def write_links_subset(full_links: Path, names: list[str], out: Path) -> Path:
    lines = full_links.read_text().splitlines()
    wanted = set(names)
    out.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split("\t", 1)[0] in wanted]) + "\n")
    return out


def check_sizes(directory: Path, parts: list[Part], who: str) -> None:
    for p in parts:
        path = directory / p.name
        got = _size_or_none(path)
        if got != p.size:
            raise BenchError(f"{who}: {path} is {got} bytes, expected {p.size}")
