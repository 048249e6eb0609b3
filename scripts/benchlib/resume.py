"""Resume after a kill: what a part re-fetches when sa1b (or raw aria2c, or both) is stopped half way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from sa1b_cli.testing.cdn import Faults

from .base import BenchBase
from .common import MiB, BenchError, fmt_mb, fresh_dir, median
from .data import Part, check_sizes
from .download import SA1B_PART_BYTES
from .report import Section, Table, Target

KILL_SA1B = "sa1b, kill -9 sa1b"
CTRL_C_ARIA2C = "raw aria2c, Ctrl-C (SIGTERM), then -c"
CRASH = "sa1b, kill -9 sa1b and aria2c"


class ResumeBench(BenchBase):
    """The resume benchmark."""

    def bench_resume(self) -> Section:
        assert self.cdn is not None
        p = self.profile
        part = max(self.large, key=lambda x: x.size)
        links = self.links_for([part], "resume")
        modes = [KILL_SA1B, CTRL_C_ARIA2C] + ([CRASH] if p.crash_resume else [])
        if p.resume_rate:
            self.cdn.set_faults(part.name, Faults(rate_limit_bytes_per_s=p.resume_rate))
        found: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        try:
            for order in self.rounds(modes):
                for mode in order:
                    found[mode].append(self._one_resume(part, links, mode))
                    r = found[mode][-1]
                    self.say(f"  resume, {mode}: re-fetched {100 * r['refetch'] / part.size:.1f}% "
                             f"(killed at {100 * r['at_kill'] / part.size:.0f}%)")
        finally:
            if p.resume_rate:
                self.cdn.set_faults(part.name, None)
        section = Section(
            "Resume after a kill",
            f"One {fmt_mb(part.size)} part on {p.connections} connections, stopped at about half way, then the same "
            "command again to the end. Re-fetched = what the CDN sent over both runs minus the part's size (from "
            "its request log). `killed at` is what the CDN had sent when the signal went out; `kept` is where run 2 "
            "resumed (the part minus the bytes of its ranged requests).",
        )
        rows, picks = [], {}
        for mode in modes:
            data = found[mode]
            pick = {k: median([d[k] for d in data]) for k in data[0]}
            picks[mode] = pick
            rows.append([mode, f"{100 * pick['at_kill'] / part.size:.0f}%", f"{100 * pick['sent_run1'] / part.size:.0f}%",
                         f"{100 * pick['resumed_from'] / part.size:.0f}%", fmt_mb(pick["refetch"]),
                         f"{100 * pick['refetch'] / part.size:.1f}%", fmt_mb(pick["no_range"]),
                         f"{100 * pick['refetch'] / SA1B_PART_BYTES:.2f}%"])
        section.tables.append(Table(f"Median of {p.repeats}", [
            "how", "killed at", "sent in run 1", "kept", "re-fetched", "share of this part",
            "of which: run 2's first GET (no Range)", "the same bytes as a share of an 11.2 GB SA-1B part"], rows))
        sa1b, raw = picks[KILL_SA1B], picks[CTRL_C_ARIA2C]
        per_connection = (sa1b["sent_run1"] - sa1b["resumed_from"]) / p.connections
        section.notes.append(
            "Why the re-fetch is a fixed amount, not a share: it is what sat in TCP buffers when aria2c stopped. "
            "When sa1b is killed, the kernel sends aria2c SIGTERM (sa1b sets PR_SET_PDEATHSIG) and aria2c saves its "
            "control file with every byte it had read; but the bytes already sent and still in the socket buffers are "
            f"lost, and the CDN keeps filling them until aria2c closes: {fmt_mb(per_connection)} per connection here "
            f"(loopback autotunes receive buffers up to {_tcp_rmem_max() / MiB:.0f} MiB). Then run 2's first GET has no "
            "Range header (aria2c learns the size from it before it reads its control file), and what the CDN pushes "
            "into that connection before aria2c closes it is counted again. Both depend on the connections, not on "
            f"the part: {fmt_mb(sa1b['refetch'])} is {100 * sa1b['refetch'] / part.size:.0f}% of this test part but "
            f"{100 * sa1b['refetch'] / SA1B_PART_BYTES:.2f}% of a real 11.2 GB part. Raw aria2c stopped with Ctrl-C "
            f"and resumed with `-c` loses the same ({fmt_mb(raw['refetch'])}): this is aria2c and TCP, not sa1b.")
        if p.crash_resume:
            crash = picks[CRASH]
            section.notes.append(
                f"`{CRASH}` (a power cut, or an OOM kill of both) is harsher: aria2c cannot save at the end, so run 2 "
                "resumes from the last periodic save (sa1b runs aria2c with `--auto-save-interval=1`): up to one second "
                f"of transfer is lost, here {fmt_mb(crash['refetch'])}, because this loopback moves the whole test part "
                "in about a second. At a real CDN's rate (say 8 connections x 25 MB/s) one second is 200 MB, under 2% "
                "of an 11.2 GB part.")
        share_real = 100 * sa1b["refetch"] / SA1B_PART_BYTES
        section.targets.append(Target(
            "resume re-fetch after kill -9 of sa1b", "< 2% of the bytes",
            f"{fmt_mb(sa1b['refetch'])}: {share_real:.2f}% of an 11.2 GB SA-1B part; "
            f"{100 * sa1b['refetch'] / part.size:.0f}% of the {fmt_mb(part.size)} test part (a fixed amount, see the notes)",
            share_real < 2))
        return section

    def _one_resume(self, part: Part, links: Path, mode: str) -> dict[str, float]:
        """One stop half way and run to the end: what the CDN sent in each run and where run 2 resumed."""
        assert self.cdn is not None
        root = fresh_dir(self.runs / "resume")
        if mode == CTRL_C_ARIA2C:
            first_cmd = self.aria2c_cmd(links, root / "tars")
            again_cmd = first_cmd + ["-c"]
        else:
            first_cmd = again_cmd = self.download_args(links, root)
        os.sync()
        self.cdn.reset_log()
        proc = self.runner.start(first_cmd)
        sent = self._wait_for_half(proc, part)
        _stop(proc, mode)
        sent_run1 = self.cdn.bytes_sent(part.name)
        self.cdn.reset_log()
        self.runner.run(again_cmd)
        check_sizes(root / "tars", [part], f"resume ({mode})")
        gets = sorted((r for r in self.cdn.log() if r["name"] == part.name and r["method"] == "GET"), key=lambda r: r["time"])
        sent_run2 = sum(r["bytes_sent"] for r in gets)
        no_range = gets[0]["bytes_sent"] if gets and not gets[0]["range_header"] else 0
        ranged = sum(r["bytes_sent"] for r in gets if r["range_header"])
        return {"at_kill": float(sent), "sent_run1": float(sent_run1), "refetch": float(sent_run1 + sent_run2 - part.size),
                "no_range": float(no_range), "resumed_from": float(max(0, part.size - ranged)) if ranged else 0.0}

    def _wait_for_half(self, proc: subprocess.Popen[bytes], part: Part) -> int:
        """Bytes the CDN had sent of ``part`` once it reached half (the moment to stop the download)."""
        assert self.cdn is not None
        deadline = time.monotonic() + 120
        sent = 0
        while time.monotonic() < deadline and proc.poll() is None:
            sent = self.cdn.bytes_sent(part.name)
            if sent >= part.size // 2:
                break
            time.sleep(0.003)
        if proc.poll() is not None:
            raise BenchError(f"resume: the download finished before it could be stopped (sent {sent} bytes); use a larger part")
        return sent


def _stop(proc: subprocess.Popen[bytes], mode: str) -> None:
    """Stop the first run as ``mode`` says; returns once aria2c is gone too."""
    if mode == CTRL_C_ARIA2C:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        return
    aria2 = _children(proc.pid)
    if mode == CRASH:
        for pid in aria2:
            os.kill(pid, signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in aria2:
        _await_orphan(pid)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return found


def _tcp_rmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 0


def _await_orphan(pid: int, timeout: float = 20.0) -> None:
    """Wait until aria2c has exited (it saves its control file on the SIGTERM its parent's death sends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)  # we are its subreaper now
            if done:
                return
        except ChildProcessError:  # not ours: watch /proc instead
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except OSError:
                return
        time.sleep(0.01)
    raise BenchError(f"aria2c (pid {pid}) did not exit within {timeout:.0f} s after sa1b was killed")
