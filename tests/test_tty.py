"""What ``sa1b`` leaves on a terminal: run under a real pseudo-terminal, its output read back as a screen.

rich (the live download view) and tqdm (the file-count bars) draw with carriage returns and cursor moves,
so a captured byte stream says little; ``Screen`` replays it the way a terminal does (the few controls
they use) and the tests look at the lines a user is left with. The last test is the other side: no terminal
at all (cron), where the same progress is a timestamped line now and then.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sa1b_cli.errors import ExitStatus
from sa1b_cli.testing.cdn import FakeCDN
from sa1b_cli.testing.generator import PartInfo, make_parts
from sa1b_cli.testing.processes import run_sa1b, sa1b_command, sa1b_env

COLUMNS, ROWS = 120, 40
TABLE_HEADER = re.compile(r"^\s*part\s+progress\s+done\s+size\s+speed\s+conns\s*$")
CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")


class Screen:
    """The text a terminal shows after a byte stream: lines, carriage return, erase line, cursor up/down/column."""

    def __init__(self, text: str) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0
        position = 0
        while position < len(text):
            control = CSI.match(text, position)
            if control:
                self._control(*control.groups())
                position = control.end()
                continue
            self._char(text[position])
            position += 1

    def _char(self, char: str) -> None:
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self.row, self.col = self.row + 1, 0
        elif char == "\x1b" or char < " ":
            return  # an escape this screen does not draw (colours are CSI ... m, handled as controls)
        else:
            line = self.lines[self.row]
            line.extend(" " * (self.col + 1 - len(line)))
            line[self.col] = char
            self.col += 1
        self.lines.extend([] for _ in range(self.row + 1 - len(self.lines)))

    def _control(self, arguments: str, command: str) -> None:
        count = int(arguments) if arguments.isdigit() else None
        if command == "A":
            self.row = max(0, self.row - (count or 1))
        elif command == "B":
            self.row += count or 1
            self.lines.extend([] for _ in range(self.row + 1 - len(self.lines)))
        elif command == "G":
            self.col = (count or 1) - 1
        elif command == "K":
            line = self.lines[self.row]
            line[:] = [] if count == 2 else line[: self.col]

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


@dataclass
class TerminalRun:
    returncode: int
    raw: str

    @property
    def screen(self) -> list[str]:
        return Screen(self.raw).text()


def _controlling_terminal() -> None:
    """In the child: the pseudo-terminal (its stdin) becomes the controlling terminal, so Ctrl-C typed on it
    reaches the foreground process group as a SIGINT, as in a shell."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_terminal(*args: str | Path, ctrl_c_after: str | None = None, timeout: float = 120,
                    columns: int = COLUMNS) -> TerminalRun:
    """``sa1b ARGS`` on a pseudo-terminal ``columns`` wide (40 rows); with ``ctrl_c_after``, Ctrl-C is typed once
    that text is drawn."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
    env = sa1b_env({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(ROWS)})
    proc = subprocess.Popen(sa1b_command(*args), stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, preexec_fn=_controlling_terminal)  # noqa: PLW1509
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has gone
                    break
                if not chunk:
                    break
                output += chunk
                if ctrl_c_after is not None and ctrl_c_after in output.decode(errors="replace"):
                    os.write(master, b"\x03")
                    ctrl_c_after = None
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"sa1b {args} did not end within {timeout}s on the terminal")
        returncode = proc.wait(timeout=30)
    finally:
        os.close(master)
    return TerminalRun(returncode, output.decode(errors="replace"))


def _header_lines(screen: list[str]) -> list[str]:
    return [line for line in screen if TABLE_HEADER.match(line)]


def test_the_live_download_view_ends_as_one_total_line_without_an_empty_table_header(links_file: Path,
                                                                                      tmp_path: Path) -> None:
    run = run_in_terminal("download", links_file, "-d", tmp_path / "root")
    screen = run.screen
    assert run.returncode == 0, "\n".join(screen)
    assert "\x1b[" in run.raw, "not drawn as on a terminal"
    assert _header_lines(screen) == [], "\n".join(screen)
    totals = [line for line in screen if line.startswith("total ")]
    assert len(totals) == 1 and "parts 3/3 done, 0 active, 0 failed" in totals[0], "\n".join(screen)
    assert any(line.startswith("download: 3/3 parts complete") for line in screen), "\n".join(screen)


def _drawn_lines(raw: str) -> list[str]:
    """Every line drawn in any frame of the output (colours and cursor moves left out), in order."""
    return [line.rstrip() for line in re.split(r"[\r\n]+", CSI.sub("", raw)) if line.strip()]


@pytest.mark.parametrize("columns", [120, 80])
def test_the_live_view_total_line_fits_the_terminal_and_never_wraps(cdn: FakeCDN, small_parts: list[PartInfo],
                                                                     tmp_path: Path, columns: int) -> None:
    """12 parts of 100 KiB and more in all: the full total line is 121 columns or wider, which rich folded at
    a word (``… 0`` on one line, ``failed`` on the next); each frame's line is shortened to fit instead,
    the failed count always kept."""
    for part in make_parts(tmp_path / "more", 9, 12, first_part=3, masks_per_image=3, seed=2):
        cdn.add_file(part.name, part.path)
    links = cdn.write_links(tmp_path / "segment_anything_links.txt")
    run = run_in_terminal("download", links, "-d", tmp_path / "root", columns=columns)
    shown = "\n".join(run.screen)
    assert run.returncode == 0, shown
    totals = [line for line in _drawn_lines(run.raw) if line.startswith("total ")]
    assert totals, shown
    for line in totals:
        assert len(line) <= columns and re.search(r"parts \d+/12 done, .*\d+ failed$", line), (line, shown)
    final = [line for line in run.screen if line.startswith("total ")]
    assert len(final) == 1 and "parts 12/12 done" in final[0] and final[0].endswith(" 0 failed"), shown
    assert not [line for line in run.screen if line.strip() == "failed"], shown


def test_the_demo_on_a_terminal_writes_each_event_on_its_own_line_over_the_file_bars(tmp_path: Path) -> None:
    """Events said while tqdm draws a bar (a part extracted) lift the bar, not glue onto it; each download's
    view ends as its one total line."""
    run = run_in_terminal("demo", "--dir", tmp_path / "demo", "--count", "2", "--pairs", "10")
    screen = run.screen
    shown = "\n".join(screen)
    assert run.returncode == 0, shown
    for part in ("sa_000000.tar", "sa_000001.tar"):
        assert any(line.startswith(f"{part}: extracted 20 files") for line in screen), shown
    glued = [line for line in screen if re.search(r"file/s[^\]]*\]\S", line)]
    assert glued == [], shown
    assert [line for line in screen if line.startswith("extract: 100%|")], shown
    assert _header_lines(screen) == [], shown
    assert len([line for line in screen if line.startswith("total ")]) == 1, shown
    assert any(line.startswith("demo: 2 parts x 10 pairs") for line in screen), shown


@pytest.mark.parametrize(("count", "pairs", "drawn"), [
    (4, 50, " active, 0 failed"),  # the live download view, parts in flight
    (2, 800, "file/s, "),  # the extract bar, files and bytes counted
], ids=["live-view", "extract-bar"])
def test_ctrl_c_in_the_demo_puts_each_warning_and_the_error_on_its_own_line(tmp_path: Path, count: int, pairs: int,
                                                                             drawn: str) -> None:
    """Typed while the live view or a bar is drawn: the parts' warnings and then the error each start a line
    of their own, never glued onto the view's total line or the bar (``0 failedsa1b: error: …``)."""
    run = run_in_terminal("demo", "--dir", tmp_path / "demo", "--count", str(count), "--pairs", str(pairs),
                          ctrl_c_after=drawn)
    screen = run.screen
    shown = "\n".join(screen)
    assert run.returncode == ExitStatus.INTERRUPTED, shown
    errors = [line for line in screen if "sa1b: error:" in line]
    assert len(errors) == 1 and errors[0].startswith("sa1b: error: interrupted; state saved"), shown
    assert all(line.startswith("warning: ") for line in screen if "warning:" in line), shown
    assert [line for line in screen if re.search(r"(failed|file/s[^\]]*\])(?!\^C)\S", line)] == [], shown


def test_an_interrupted_extract_under_cron_ends_its_progress_once_without_claiming_no_time_left(
        cdn: FakeCDN, tmp_path: Path) -> None:
    """stdout and stderr to pipes, a line every 0.1 s, SIGINT once the first is written: the line closing the
    display said the count of the last periodic line again, and both read ``ETA 0s`` (the time left cut
    to whole seconds, then claimed at the end whatever was left)."""
    big = make_parts(tmp_path / "big", 1, 3000, first_part=7, masks_per_image=1, seed=3)[0]
    cdn.add_file(big.name, big.path)
    links = cdn.write_links(tmp_path / "links.txt", names=[big.name])
    root = tmp_path / "root"
    assert run_sa1b("download", links, "-d", root).returncode == 0
    proc = subprocess.Popen(sa1b_command("extract", "-d", root, "--jobs", "1", "--log-interval", "0.1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sa1b_env())
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if " extract: " in line:
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=60)
    lines += rest.splitlines(keepends=True)
    shown = "".join(lines) + out
    assert proc.returncode == ExitStatus.INTERRUPTED, shown  # stopped with work left, not finished first
    progress = [re.search(r" extract: (\d+)/6000 files .*", line) for line in lines]
    counts = [int(found.group(1)) for found in progress if found]
    assert counts and len(set(counts)) == len(counts) and max(counts) < 6000, shown
    assert not [found for found in progress if found and found.group(0).endswith("ETA 0s")], shown
    assert lines[-1].startswith("sa1b: error: interrupted"), shown
