"""The one console layer: rich on a TTY, plain timestamped lines in logs, JSON lines for machines.

Roles are fixed so two displays never compete: rich draws tables and the live
download view; tqdm draws the file-count bar of extract and verify; nothing else
writes to the terminal while one of them is active. When stderr is not a TTY
(cron), every display degrades to one timestamped line every ``interval``
seconds, with no carriage returns or escape codes. With ``--json`` stdout carries
only JSON lines (events, periodic progress, then a summary).

``--quiet`` is decided here, for every command: warnings, errors and the one-line
summary (``print_result``) are shown; info events, progress, tables and notes are not.
Errors go through ``error`` in every mode, so a machine reading ``--json`` gets a record.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import IO, Any

import orjson

from sa1b_cli.errors import ExitStatus
from sa1b_cli.events import FileProgress, NullReporter, TransferSnapshot


@dataclass
class Environment:
    """The streams and terminal facts a command runs with (passed in, never read globally)."""

    stdout: IO[str]
    stderr: IO[str]
    stderr_isatty: bool

    @classmethod
    def from_process(cls) -> "Environment":
        return cls(stdout=sys.stdout, stderr=sys.stderr, stderr_isatty=_isatty(sys.stderr))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError


class Console:
    """Implements ``events.Reporter`` for humans and machines."""

    def __init__(self, env: Environment, *, mode: str, interval: float = 10.0, quiet: bool = False) -> None:
        assert mode in ("rich", "plain", "json"), mode
        self.env = env
        self.mode = mode
        self.interval = interval
        self.quiet = quiet
        self._lock = threading.Lock()
        self._last_transfer = 0.0
        self._last_final = ""
        self._live: Any = None
        self._bar: _TqdmProgress | None = None  # the file-count bar on the terminal, while it is drawn
        self._view_ended = False  # the live view drew a final snapshot and stopped
        self._rich: Any = None
        if mode == "rich":
            from rich.console import Console as RichConsole

            self._rich = RichConsole(file=env.stderr, highlight=False)

    @classmethod
    def for_env(cls, env: Environment, *, json_output: bool, interval: float = 10.0, quiet: bool = False) -> "Console":
        mode = "json" if json_output else ("rich" if env.stderr_isatty else "plain")
        return cls(env, mode=mode, interval=interval, quiet=quiet)

    @property
    def json(self) -> bool:
        """Whether stdout carries JSON lines (the command prints records, not tables)."""
        return self.mode == "json"

    # -- Reporter -----------------------------------------------------------
    def event(self, kind: str, message: str, *, level: str = "info", **data: Any) -> None:
        with self._lock:
            if self.mode == "json":
                self.emit_json({"type": "event", "kind": kind, "level": level, "message": message, **data})
                return
            if level == "detail" or (self.quiet and level == "info"):
                return  # detail: one part's share of a line said for many (kept in --json only)
            if self.mode == "rich":
                self._rich_event(level, message)
            else:
                self._plain_line(f"{level.upper():7s} {message}")

    def transfer(self, snapshot: TransferSnapshot) -> None:
        with self._lock:
            if self.quiet and self.mode != "json":
                return
            final = snapshot.done + snapshot.failed + snapshot.locked >= snapshot.total_parts > 0
            if self.mode == "rich":
                self._rich_transfer(snapshot, final)
                return
            now = time.monotonic()
            if now - self._last_transfer < self.interval and not final:
                return
            self._last_transfer = now
            if self.mode == "json":
                self.emit_json({"type": "progress", "stage": "download", **_snapshot_dict(snapshot)})
            else:
                line = transfer_line(snapshot)
                if final and line == self._last_final:
                    return
                self._last_final = line if final else ""
                self._plain_line("INFO    " + line)

    def files(self, label: str, total_files: int | None, total_bytes: int | None = None) -> FileProgress:
        if self.quiet and self.mode != "json":
            return NullReporter().files(label, total_files, total_bytes)
        if self.mode == "rich":
            self._bar = _TqdmProgress(label, total_files, self.env.stderr, on_close=self._bar_closed)
            return self._bar
        return _LineProgress(self, label, total_files, total_bytes)

    # -- output helpers used by cli.py -----------------------------------------
    def emit_json(self, record: dict[str, Any]) -> None:
        record.setdefault("time", _timestamp())
        self.env.stdout.write(orjson.dumps(record, default=_json_default).decode() + "\n")
        self.env.stdout.flush()

    def print_result(self, text: str) -> None:
        """A final human result line on stdout (never used in JSON mode)."""
        if self.mode == "plain":
            self.env.stdout.write(f"{_timestamp()} {text}\n")
        else:
            self.env.stdout.write(text + "\n")
        self.env.stdout.flush()

    def print_note(self, text: str) -> None:
        """A human result line that is detail, not the summary: left out under --quiet."""
        if not self.quiet:
            self.print_result(text)

    def error(self, message: str, status: ExitStatus, kind: str, *, text: str | None = None) -> None:
        """An error that ends the command: a JSON record (with ``time``) under --json, and always ``text`` on
        stderr (default ``sa1b: error: MESSAGE``)."""
        self.close()  # end the live view's line (or a bar's) first, so the error starts its own line
        if self.mode == "json":
            self.emit_json({"type": "error", "error": kind, "message": message, "exit_code": int(status)})
        self.env.stderr.write(text if text is not None else f"sa1b: error: {message}\n")
        self.env.stderr.flush()

    def print_table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        """A table: rich on a TTY, aligned plain text otherwise; left out under --quiet."""
        if self.quiet:
            return
        if self.mode == "rich":
            from rich.console import Console as RichConsole
            from rich.table import Table

            table = Table(title=title)
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*row)
            RichConsole(file=self.env.stdout, highlight=False).print(table)
            return
        widths = [max(len(str(c)) for c in [col, *[r[i] for r in rows]]) for i, col in enumerate(columns)]
        lines = [title] if title else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
        for row in rows:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        self.env.stdout.write("\n".join(lines) + "\n")
        self.env.stdout.flush()

    def close(self) -> None:
        """End what is drawn on the terminal (the live view, a file-count bar), so the next line starts its own."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
        if self._bar is not None:
            self._bar.close()

    def _bar_closed(self, bar: "_TqdmProgress") -> None:
        if self._bar is bar:
            self._bar = None

    def _rich_event(self, level: str, message: str) -> None:
        """An event line on the terminal; over a file-count bar, the bar is lifted first and drawn again below
        it (otherwise the line is glued onto the bar's: ``…file/s]sa_000001.tar: extracted``)."""
        style = {"error": "bold red", "warning": "yellow", "info": ""}.get(level, "")
        prefix = {"error": "error: ", "warning": "warning: "}.get(level, "")
        bar = self._bar
        if bar is None:
            self._rich.print(f"{prefix}{message}", style=style or None, markup=False)
            return
        with bar.lifted():
            self._rich.print(f"{prefix}{message}", style=style or None, markup=False)

    def _plain_line(self, text: str) -> None:
        self.env.stderr.write(f"{_timestamp()} {text}\n")
        self.env.stderr.flush()

    def _rich_transfer(self, snapshot: TransferSnapshot, final: bool) -> None:
        """Draw the live view; the final snapshot ends it, so that a later stage's output (the demo's verify)
        is not followed by the download's view drawn once more when the console closes."""
        from rich.live import Live

        if final and self._live is None and self._view_ended:
            return  # this download's view was ended by its final snapshot already
        self._view_ended = final
        renderable = _transfer_table(snapshot, self._rich.width)
        if self._live is None:
            self._live = Live(renderable, console=self._rich, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(renderable, refresh=True)
        if final:
            self._live.stop()
            self._live = None


def _snapshot_dict(snapshot: TransferSnapshot) -> dict[str, Any]:
    data = asdict(snapshot)
    data["parts"] = [p for p in data["parts"] if p["status"] == "active"]
    return data


TOTAL_BAR_WIDTH, MIN_TOTAL_BAR_WIDTH = 30, 10
#: What the live view's total line gives up, in this order, once its bar has shrunk to MIN_TOTAL_BAR_WIDTH and
#: the line is still wider than the terminal (rich would fold it: ``… 0`` on one line, ``failed`` on the next).
TOTAL_LINE_DROPS = ("active", "speed", "bar", "bytes", "eta")
_RATE_FIELDS = ("bytes", "percent", "speed", "eta")
_PARTS_FIELDS = ("parts", "active", "failed", "locked")


def _transfer_fields(s: TransferSnapshot) -> dict[str, str]:
    """The fields of a download's summary line, by name, so that a narrow terminal can leave some out."""
    active = sum(1 for p in s.parts if p.status == "active")
    fields = {
        "bytes": f"{human_bytes(s.completed_bytes)} / {human_bytes(s.total_bytes)}",
        "percent": f"{100 * s.completed_bytes / s.total_bytes:.0f}%" if s.total_bytes else "?%",
        "speed": f"{human_bytes(s.speed)}/s",
        "eta": f"ETA {human_duration(s.eta_seconds)}",
        "parts": f"parts {s.done}/{s.total_parts} done",
        "active": f"{active} active",
        "failed": f"{s.failed} failed",
    }
    if s.locked:
        fields["locked"] = f"{s.locked} locked"
    return fields


def _join_fields(fields: dict[str, str]) -> str:
    groups = (", ".join(fields[name] for name in names if name in fields) for names in (_RATE_FIELDS, _PARTS_FIELDS))
    return "; ".join(group for group in groups if group)


def transfer_line(s: TransferSnapshot) -> str:
    """One ``--stats-one-line``-style summary of a download."""
    return _join_fields(_transfer_fields(s))


def _fit_total_line(s: TransferSnapshot, width: int) -> tuple[int, str]:
    """(the bar's width, 0 for no bar; the text) of the live view's total line in ``width`` columns: the bar
    shrinks first, then TOTAL_LINE_DROPS are given up in order; past the last, rich cuts the text short."""
    fields = _transfer_fields(s)
    for dropped in range(len(TOTAL_LINE_DROPS) + 1):
        gone = TOTAL_LINE_DROPS[:dropped]
        text = _join_fields({name: value for name, value in fields.items() if name not in gone})
        room = width - len("total ") - len(text)  # left for the bar and the space after it
        if "bar" in gone and room >= 0:
            return 0, text
        if "bar" not in gone and room - 1 >= MIN_TOTAL_BAR_WIDTH:
            return min(TOTAL_BAR_WIDTH, room - 1), text
    return 0, text  # narrower still: the fewest fields, cut short


def _transfer_table(s: TransferSnapshot, width: int) -> Any:
    """The live view: a row per active part (the first 20) over the total line; with no part active (the
    final view, a hand-over) only the total line, never a table header with nothing under it."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, expand=False, show_header=True, header_style="bold")
    for column in ("part", "progress", "done", "size", "speed", "conns", ""):
        table.add_column(column)
    shown = [p for p in s.parts if p.status == "active"][:20]
    for p in shown:
        total = p.total or 0
        bar = ProgressBar(total=total or 1, completed=p.completed if total else 0, width=30)
        pct = f"{100 * p.completed / total:5.1f}%" if total else "   ?"
        table.add_row(p.name, bar, pct, human_bytes(p.total), f"{human_bytes(p.speed)}/s", str(p.connections), p.message)
    bar_width, text = _fit_total_line(s, width)
    footer = Table.grid(padding=(0, 1))
    cells: list[Any] = [Text("total", style="bold")]
    if bar_width:
        cells.append(ProgressBar(total=s.total_bytes or 1, completed=s.completed_bytes if s.total_bytes else 0,
                                 width=bar_width))
    footer.add_row(*cells, Text(text, no_wrap=True, overflow="ellipsis"))
    return Group(table, footer) if shown else footer


class _TqdmProgress:
    """File-count bar on a TTY (tqdm's role in the console layer)."""

    def __init__(self, label: str, total: int | None, stream: IO[str],
                 on_close: Callable[["_TqdmProgress"], None] | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=label, unit="file", unit_scale=True, file=stream, dynamic_ncols=True)
        self._bytes = 0
        self._on_close = on_close

    @contextmanager
    def lifted(self) -> Iterator[None]:
        """Clear the bar for a line written above it, then draw it again; under tqdm's lock, so that a
        worker's update cannot draw the bar in between."""
        with self._bar.get_lock():
            self._bar.clear(nolock=True)
            try:
                yield
            finally:
                self._bar.refresh(nolock=True)

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        self._bytes += nbytes
        if files:
            self._bar.update(files)
        if nbytes:
            self._bar.set_postfix_str(human_bytes(self._bytes), refresh=False)

    def close(self) -> None:
        self._bar.close()
        if self._on_close is not None:
            self._on_close(self)


class _LineProgress:
    """File-count progress as a timestamped line (or JSON record) every ``interval`` seconds."""

    def __init__(self, console: Console, label: str, total: int | None, total_bytes: int | None) -> None:
        self.console = console
        self.label = label
        self.total = total
        self.total_bytes = total_bytes
        self.files = 0
        self.nbytes = 0
        self.started = time.monotonic()
        self._last = self.started
        self._reported: tuple[int, int] | None = None  # (files, bytes) of the last line written
        self._guard = threading.Lock()

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        with self._guard:
            self.files += files
            self.nbytes += nbytes
            now = time.monotonic()
            if now - self._last < self.console.interval:
                return
            self._last = now
        self._report()

    def _report(self, final: bool = False) -> None:
        """A progress line. The final one is left out when the last line said the same counts (extract hands
        its leftover counts over just before it closes, which can print that line), and claims no time left
        only for finished work."""
        with self._guard:
            files, nbytes = self.files, self.nbytes
            if final and self.console.mode != "json" and self._reported == (files, nbytes):
                return
            self._reported = (files, nbytes)
        rate = files / max(1e-9, time.monotonic() - self.started)
        eta = self._eta(files, rate, final)
        if self.console.mode == "json":
            self.console.emit_json(
                {"type": "progress", "stage": self.label, "files": files, "total_files": self.total,
                 "bytes": nbytes, "files_per_s": round(rate, 1), "eta_seconds": eta, "final": final}
            )
            return
        total = f"/{self.total}" if self.total is not None else ""
        percent = f" ({100 * files / self.total:.0f}%)" if self.total else ""
        self.console._plain_line(
            f"INFO    {self.label}: {files}{total} files{percent}, {human_bytes(nbytes)}, {rate:.0f} files/s"
            + self._ending(eta, final)
        )

    def _eta(self, files: int, rate: float, final: bool) -> float | None:
        """Seconds left; at the end 0 only if every file expected came (an interrupted run's work is unfinished)."""
        if final:
            return 0.0 if self.total is not None and files >= self.total else None
        return (self.total - files) / rate if self.total and rate > 0 else None

    def _ending(self, eta: float | None, final: bool) -> str:
        """The time left rounded up to whole seconds, so that work left never reads ``ETA 0s`` (as 0.8 s did)."""
        if not final or eta is not None:
            return f", ETA {human_duration(None if eta is None else math.ceil(eta))}"
        return "" if self.total is None else ", unfinished"  # with no count expected, no claim either way

    def close(self) -> None:
        self._report(final=True)
