"""A 1,000-part job at a glance: one cell per part, in part order, marked by its state.

On a terminal each cell is a coloured letter (rich markup); in logs and under cron the same
letters, plain, 50 to a row, so the map reads the same without colour.
"""

from __future__ import annotations

from sa1b_cli.status.model import PartStatus, StatusReport
from sa1b_cli.store.parts import Phase

CELLS_PER_ROW = 50
MAP_AT = 50  # ``status`` shows the map without ``--map`` when the job has more parts than this

# (letter, rich style) per state: failures red, work in progress yellow/blue, done green.
CELL = {
    Phase.VERIFIED.value: ("V", "bold green"),
    Phase.VERIFY_PROBLEMS.value: ("!", "bold red"),
    Phase.EXTRACTED.value: ("E", "green"),
    Phase.EXTRACT_FAILED.value: ("X", "red"),
    Phase.DOWNLOADED.value: ("D", "cyan"),
    Phase.DOWNLOADING.value: (">", "bold blue"),
    Phase.DOWNLOAD_FAILED.value: ("F", "red"),
    Phase.PARTIAL.value: ("p", "yellow"),
    Phase.UNCONFIRMED.value: ("?", "magenta"),
    Phase.PENDING.value: (".", "dim"),
}


def shows_map(report: StatusReport, asked: bool) -> bool:
    """The map is shown when asked for (``--map``) or when the job is too large to read part by part."""
    return asked and bool(report.parts) or len(report.parts) > MAP_AT


def map_rows(report: StatusReport, styled: bool) -> list[list[str]]:
    """(first part of the row, its cells) rows, then one legend row of the states present with counts."""
    rows = []
    for start in range(0, len(report.parts), CELLS_PER_ROW):
        chunk = report.parts[start:start + CELLS_PER_ROW]
        rows.append([_label(chunk[0]), "".join(_cell(p.state, styled) for p in chunk)])
    legend = ", ".join(f"{_cell(state, styled)} {state} {count}" for state, count in report.counts.items() if count)
    rows.append(["legend", legend])
    return rows


def _label(part: PartStatus) -> str:
    """The row's first part without ``.tar`` (``sa_000050``), so a row reads as a range of parts."""
    return f"{part.name[:-4] if part.name.endswith('.tar') else part.name} +"


def _cell(state: str, styled: bool) -> str:
    letter, style = CELL[state]
    return f"[{style}]{letter}[/]" if styled else letter
