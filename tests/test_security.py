"""Security: aria2's RPC is loopback-only and secret, signed URLs never leak, nothing runs through a shell.

The aria2c checks look at the real daemon of a real, throttled `sa1b download` from the
outside (/proc), as another local user would.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from sa1b_cli.testing.cdn import FakeCDN, Faults
from sa1b_cli.testing.generator import PartInfo
from sa1b_cli.testing.processes import aria2c_pids, sa1b_command, sa1b_env, wait_for

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sa1b_cli"


def aria2c_pid_for(root: Path) -> int | None:
    """The pid of the aria2c working for ROOT, or None."""
    pids = aria2c_pids(root)
    return pids[0] if pids else None


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process ``pid`` holds (IPv4 and IPv6)."""
    inodes = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = (Path("/proc/net") / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            address_hex, port_hex = local.split(":")
            raw = bytes.fromhex(address_hex)
            # /proc/net prints the address as host-order 32-bit words
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def rpc(port: int, token: str | None) -> dict:
    params = [f"token:{token}"] if token is not None else []
    body = json.dumps({"jsonrpc": "2.0", "id": "t", "method": "aria2.getGlobalStat", "params": params}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/jsonrpc", data=body, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # aria2 answers a refused call with an HTTP error status
        return json.loads(exc.read() or b"{}") | {"http_status": exc.code}


def test_aria2_rpc_is_loopback_only_secret_and_the_secret_is_not_on_its_command_line(
        small_parts: list[PartInfo], cdn: FakeCDN, links_file: Path, tmp_path: Path) -> None:
    cdn.set_faults(None, Faults(rate_limit_bytes_per_s=300))  # keeps the run (and its aria2c) alive
    root = tmp_path / "root"
    run = subprocess.Popen(sa1b_command("download", links_file, "-d", root), env=sa1b_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        pid = wait_for(lambda: aria2c_pid_for(root))
        sockets = wait_for(lambda: listening_sockets(pid))
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        port = int(next(a for a in argv if a.startswith(b"--rpc-listen-port=")).split(b"=")[1])

        assert sockets and all(ipaddress.ip_address(a).is_loopback and p == port for a, p in sockets), sockets
        # Any local user can read a command line (ps, /proc): a secret there would let them drive aria2c,
        # which can write files anywhere this user can. It goes in a private file, gone once aria2c read it.
        assert not any(a.startswith(b"--rpc-secret") for a in argv), argv
        (conf,) = [Path(a.split(b"=", 1)[1].decode()) for a in argv if a.startswith(b"--conf-path=")]
        try:
            assert conf.stat().st_mode & 0o077 == 0  # private while aria2c starts
        except FileNotFoundError:
            pass  # already read and removed
        wait_for(lambda: not conf.exists(), what="the secret's file removed once aria2c answers")
        for token in (None, "not-the-secret"):
            answer = rpc(port, token)
            assert answer.get("error", {}).get("message") == "Unauthorized" and "result" not in answer, answer
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
    assert aria2c_pid_for(root) is None


def signatures_of(links: Path) -> list[str]:
    """The secret parts of every URL in a links file (oh= and _nc_sid= values)."""
    found = []
    for line in links.read_text().splitlines()[1:]:
        for key in ("oh=", "_nc_sid="):
            found.append(line.split(key)[1].split("&")[0])
    return found


def everything_written(root: Path, *outputs: str) -> str:
    """Outputs plus every state file, log, failure and receipt under ROOT (not the downloaded data)."""
    text = "".join(outputs)
    for path in root.rglob("*"):
        if path.is_file() and (path.parent.name != "tars" or path.suffix == ".aria2"):
            text += path.read_text(errors="replace")
    return text


def test_signed_urls_never_leak_under_errors_retries_and_json(small_parts: list[PartInfo], cdn: FakeCDN,
                                                              links_file: Path, tmp_path: Path) -> None:
    """403 (revoked), 404 (removed), 503 bursts and dropped connections, in plain and --json output."""
    cdn.revoke("sa_000000.tar")
    cdn.remove("sa_000001.tar")
    cdn.set_faults("sa_000002.tar", Faults(status_503_count=2, retry_after=0, drop_after_bytes=500, drop_count=2))
    root = tmp_path / "root"
    plain = subprocess.run(sa1b_command("download", links_file, "-d", root, "--retry-wait", "0.1", "--log-interval", "0.1"),
                           env=sa1b_env(), capture_output=True, text=True, timeout=90)
    assert plain.returncode == 3, plain.stderr  # the 404 is a failure, the 403 an expiry: failure wins
    assert "sa_000001.tar: not found on the server (HTTP 404)" in plain.stderr
    as_json = subprocess.run(sa1b_command("download", links_file, "-d", root, "--json", "--log-interval", "0.1"),
                             env=sa1b_env(), capture_output=True, text=True, timeout=90)
    assert as_json.returncode == 3, as_json.stderr
    summary = json.loads(as_json.stdout.splitlines()[-1])
    assert summary["parts"]["sa_000000.tar"]["status"] == "expired" and summary["parts"]["sa_000002.tar"]["status"] == "already"
    links_command = subprocess.run(sa1b_command("links", links_file, "--check", "--json"), env=sa1b_env(), capture_output=True,
                                   text=True, timeout=60)
    status = subprocess.run(sa1b_command("status", "-d", root, "--links", links_file, "--all", "--json"), env=sa1b_env(),
                            capture_output=True, text=True, timeout=60)
    written = everything_written(root, plain.stdout, plain.stderr, as_json.stdout, as_json.stderr,
                                 links_command.stdout, links_command.stderr, status.stdout, status.stderr)
    assert (root / ".sa1b" / "failures" / "download" / "sa_000000.json").exists()
    assert "REDACTED" in written
    for signature in signatures_of(links_file):
        assert signature not in written


def test_nothing_is_run_through_a_shell() -> None:
    """No shell=True, os.system, os.popen or subprocess.getoutput anywhere in the package."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("system", "popen", "getoutput", "getstatusoutput", "spawnl", "spawnlp", "execlp"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}()")
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: shell=")
    assert offenders == []
