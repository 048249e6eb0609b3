"""The report: sections with their tables, notes and targets; the machine's description;
cProfile summaries; tables as console text and the markdown of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import pstats
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import REPO
from .common import Profile


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Target:
    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class Section:
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (caption, top functions)


def profile_summary(stats_file: Path, top: int = 12) -> str:
    """The functions with the most own time, as `python -m cProfile -s tottime` would list them."""
    stats = pstats.Stats(str(stats_file))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    lines = [f"total profiled CPU {total:.2f} s (all threads)", f"{'tottime':>8} {'cumtime':>8} {'calls':>9}  function"]
    for (filename, line, func), (cc, nc, tt, ct, _callers) in rows:
        short = filename.replace(str(REPO) + "/", "").replace(sys.prefix, "<venv>")
        lines.append(f"{tt:8.3f} {ct:8.3f} {nc:9d}  {func} ({short}:{line})")
    return "\n".join(lines)


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    if not out:
        return "unknown"
    words = out.splitlines()[0].split()
    upto = next((i for i, w in enumerate(words) if re.match(r"v?\d+\.\d+", w)), len(words) - 1)
    return " ".join(words[:upto + 1])  # up to the version number


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    from aria2c import ARIA2C

    return {
        "CPU": f"{model}, {os.cpu_count()} cores",
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "aria2c": tool_version([str(ARIA2C), "--version"]),
        "wget": tool_version(["wget", "--version"]),
        "curl": tool_version(["curl", "--version"]),
        "tar": tool_version(["tar", "--version"]),
    }


NOT_JUDGED = ("Targets not judged: at the quick profile's toy sizes the fixed start-up costs are all there is "
              "(run the default profile for figures).")


def text_table(table: Table) -> str:
    widths = [max(len(str(r[i])) for r in [table.header, *table.rows]) for i in range(len(table.header))]
    lines = [table.title, "  ".join(h.ljust(w) for h, w in zip(table.header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in table.rows]
    return "\n".join(lines)


def md_table(table: Table) -> str:
    esc = [[str(c).replace("|", "\\|") for c in row] for row in [table.header, *table.rows]]
    lines = [f"**{table.title}**", "", "| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def targets_table(sections: list[Section]) -> Table:
    rows = [[t.what, t.goal, t.measured, "met" if t.met else "**missed**"] for s in sections for t in s.targets]
    return Table("Targets", ["target", "goal", "measured", ""], rows)


def markdown(sections: list[Section], profile: Profile, command: str, info: dict[str, str], started: datetime,
             seconds: float, not_run: list[str], data: str) -> str:
    out = [
        "# Benchmarks",
        "",
        "Is `sa1b` faster than what a user would do instead? Measured by `scripts/bench.py` on loopback against the "
        "project's fake CDN, with generated parts in SA-1B's format (gzip-compressed tars of real JPEGs and COCO RLE "
        "annotation JSON). Contenders alternate within one run (the order rotates every repeat); figures are medians.",
        "",
        f"- command: `{command}` (profile `{profile.name}`, {profile.repeats} repeats, took {seconds / 60:.1f} min)",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
    ]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out.append(f"- data: {data}")
    out += ["", "The machine is shared with other work (see the load average), and loopback writes go to the page "
            "cache of one virtual disk: absolute figures move by ±10-20% between runs, ratios much less.", ""]
    out += [md_table(targets_table(sections)) if profile.judge else NOT_JUDGED, ""]
    if not_run:
        out += [f"Failed: {'; '.join(not_run)}.", ""]
    for s in sections:
        out += [f"## {s.title}", "", s.intro, ""]
        for t in s.tables:
            out += [md_table(t), ""]
        out += [f"- {n}" for n in s.notes]
        for caption, text in s.profiles:
            out += ["", f"Profile, {caption}:", "", "```", text, "```"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
