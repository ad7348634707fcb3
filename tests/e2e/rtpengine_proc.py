"""Run a private userspace rtpengine on 127.0.0.1 for e2e tests and bench/ng.py.

The daemon is Debian's rtpengine-daemon (10.5). Flags, from `rtpengine --help`
and rtpengine(1):

    rtpengine
      --config-file=none          skip /etc/rtpengine/rtpengine.conf (the packaged one)
      --foreground                -f: do not daemonize, so it stays our child (ended by PID)
      --log-stderr                -E: log to stderr (redirected to a file) instead of syslog
      --no-log-timestamps         stderr lines without the [epoch] prefix
      --log-level=6               0-7 syslog levels; 6 = info, 7 = debug (every ng message)
      --table=-1                  -t -1: no in-kernel forwarding; userspace only, no xt_RTPENGINE
      --interface=127.0.0.1       -i: the address media ports bind to and SDP advertises
      --listen-ng=127.0.0.1:PORT  -n: the ng control socket (UDP)
      --port-min=LOW --port-max=HIGH   -m/-M: a small private RTP/RTCP port range
      --delete-delay=0            -d: forget a deleted call at once (default 30 s)
      --num-threads=1 --media-num-threads=1   small on a shared 2-core box (bench/load.py
                                  passes more with --rtpengine-threads)
      --pidfile=PATH              -p: where it writes its PID (we still end it by Popen's PID)

No root, kernel module or iptables chain is needed in this mode.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pbx.rtp.ng import Address, Command, NgError, Ping, Pong, encode_request, parse_reply

READY_TIMEOUT = 10.0  # seconds for the first pong; startup takes ~50 ms here


def rtpengine_binary() -> str | None:
    return shutil.which("rtpengine") or (
        "/usr/bin/rtpengine" if os.access("/usr/bin/rtpengine", os.X_OK) else None
    )


def command_line(
    binary: str, ng: Address, ports: tuple[int, int], pidfile: Path, threads: int = 1
) -> list[str]:
    return [
        binary,
        "--config-file=none",
        "--foreground",
        "--log-stderr",
        "--no-log-timestamps",
        "--log-level=6",
        "--table=-1",
        f"--interface={ng[0]}",
        f"--listen-ng={ng[0]}:{ng[1]}",
        f"--port-min={ports[0]}",
        f"--port-max={ports[1]}",
        "--delete-delay=0",
        f"--num-threads={threads}",
        f"--media-num-threads={threads}",
        f"--pidfile={pidfile}",
    ]


@dataclass
class RtpengineProcess:
    proc: subprocess.Popen[bytes]
    ng: Address
    ports: tuple[int, int]
    log_path: Path
    argv: list[str]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> int:
        """End the daemon by its PID (SIGTERM, then SIGKILL after 10 s); its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def start_rtpengine(
    workdir: Path, ng_port: int, ports: tuple[int, int], *, host: str = "127.0.0.1",
    threads: int = 1,
) -> RtpengineProcess:
    """Start rtpengine and wait for an ng pong; RuntimeError (with its log) if it never comes."""
    binary = rtpengine_binary()
    if binary is None:
        raise RuntimeError("rtpengine is not installed (apt-get install rtpengine-daemon)")
    log_path = workdir / "rtpengine.log"
    argv = command_line(binary, (host, ng_port), ports, workdir / "rtpengine.pid", threads)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    engine = RtpengineProcess(proc, (host, ng_port), ports, log_path, argv)
    try:
        wait_ready(engine)
    except BaseException:
        engine.stop()
        raise
    return engine


def wait_ready(engine: RtpengineProcess, timeout: float = READY_TIMEOUT) -> None:
    """ng `ping` every 0.1 s until a pong, the process exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((engine.ng[0], 0))
        sock.settimeout(0.1)
        attempt = 0
        while time.monotonic() < deadline:
            if engine.proc.poll() is not None:
                raise RuntimeError(
                    f"rtpengine exited with {engine.proc.returncode}:\n{engine.log_tail()}"
                )
            attempt += 1
            cookie = f"ready-{os.getpid()}-{attempt}"
            sock.sendto(encode_request(Ping(), cookie), engine.ng)
            if _pong(sock, cookie):
                return
    raise RuntimeError(f"rtpengine gave no pong within {timeout} s:\n{engine.log_tail()}")


def _pong(sock: socket.socket, cookie: str) -> bool:
    try:
        data = sock.recv(65535)
    except (TimeoutError, ConnectionRefusedError):
        return False
    prefix = cookie.encode() + b" "
    if not data.startswith(prefix):
        return False
    try:
        return isinstance(parse_reply(Command.PING, data[len(prefix) :]), Pong)
    except NgError:
        return False
