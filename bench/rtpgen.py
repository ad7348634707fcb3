"""A batched RTP generator for bench/load.py: two sockets, sendmmsg/recvmmsg over libc.

The generator stands in for 1,000-2,000 phones that in real life sit on
other machines; on a 2-core box it shares the CPU with the relay it
measures, so every microsecond it spends per packet is taken from the relay
and shows up as "delay added by the relay". The plain generator
(`load.generate`) sends and reads each packet with its own syscall from its
own socket: ~18 us of CPU per packet on a Firecracker box, 92 % of a core
for 500 calls. This one sends each 2 ms slice of packets with one
`sendmmsg` from one socket per side (every message points at the same
buffer: the same stamp goes to every call of a slice) and reads them back
with `recvmmsg` into a preallocated numpy block, stamps decoded in bulk.
Python's `socket` module has neither call, so they go through ctypes.

How the calls stay apart: the SDP ports the sipps advertise are still one
bound placeholder socket per call side (sipp's injection file needs one
unique port per call to name it in its logs), but packets come from the two
shared sockets. The relay latches each leg on the first packet's source
(symmetric RTP, as with a phone behind NAT), so one priming packet per leg
is sent 0.2 s before the measured window; the relay's copies of the primes
(to the placeholders, or to the shared sockets once the other leg latched)
are neither counted nor measured. The daemon's records count them: 2 per
call more than the generator sent.

Linux only (x86_64 and aarch64 struct layouts: LP64).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import resource
import socket
import struct
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

HOST = "127.0.0.1"
SLOT = 2048  # bytes per receive buffer (an RTP packet fits 1500)
BATCH = 512  # datagrams per recvmmsg
RCVBUF = 32 * 1024 * 1024  # 50,000 packets/s per socket: a 100 ms stall must not drop
MSG_DONTWAIT = 0x40
SO_TIMESTAMPNS = 35  # SOL_SOCKET; its control message has the same type number
CONTROL = 64  # control bytes per datagram: one cmsghdr (16) + one struct timespec (16)
SLICES = 10  # each ptime is sent in 10 slices, as the plain generator does
PRIME_LEAD = 0.2  # seconds between the latching primes and the first measured packet

RTP_HEADER = struct.Struct("!BBHII")
STAMP = struct.Struct("!q")  # CLOCK_REALTIME ns of the send (the kernel's arrival clock)
PAYLOAD = b"\xff" * 160  # 20 ms of PCMU
PRIME_STAMP = -1  # a priming packet's "stamp": the payload's first 8 bytes, all 0xff


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]


LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
LEN_WORD = MMsgHdr.msg_len.offset // 4  # msg_len as a uint32 index inside one entry
ENTRY_WORDS = ctypes.sizeof(MMsgHdr) // 4
CONTROLLEN_LONG = MsgHdr.msg_controllen.offset // 8  # msg_controllen as a uint64 index


def rtp_packet(seq: int, stamp_ns: int) -> bytes:
    """One 20 ms PCMU packet: sequence `seq`, its send time in the payload's first bytes."""
    header = RTP_HEADER.pack(0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x5EED)
    return header + STAMP.pack(stamp_ns) + PAYLOAD[STAMP.size :]


def sockaddr_in(host: str, port: int) -> ctypes.Array[ctypes.c_char]:
    raw = socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big")
    return ctypes.create_string_buffer(raw + socket.inet_aton(host) + bytes(8), 16)


class Sender:
    """One socket; each slice's datagrams go out with one sendmmsg from one buffer."""

    def __init__(self, sock: socket.socket, ports: Sequence[int], slices: int) -> None:
        self.fd = sock.fileno()
        self.buffer = ctypes.create_string_buffer(RTP_HEADER.size + len(PAYLOAD))
        self.iov = IoVec(ctypes.cast(self.buffer, ctypes.c_void_p), len(self.buffer))
        self.names = [sockaddr_in(HOST, port) for port in ports]
        self.groups = []
        for first in range(slices):
            names = self.names[first::slices]
            msgs = (MMsgHdr * len(names))()
            for msg, name in zip(msgs, names, strict=True):
                hdr = msg.msg_hdr
                hdr.msg_name = ctypes.cast(name, ctypes.c_void_p)
                hdr.msg_namelen = 16
                hdr.msg_iov = ctypes.pointer(self.iov)
                hdr.msg_iovlen = 1
            self.groups.append(msgs)

    def send(self, group: int, packet: bytes) -> int:
        """Send `packet` to every call of `group`; datagrams the kernel took."""
        ctypes.memmove(self.buffer, packet, len(packet))
        msgs = self.groups[group]
        done = 0
        while done < len(msgs):
            n = LIBC.sendmmsg(self.fd, ctypes.byref(msgs, done * ctypes.sizeof(MMsgHdr)),
                              len(msgs) - done, MSG_DONTWAIT)  # fmt: skip
            if n <= 0:
                break  # EAGAIN (send buffer full) or a refused port: counted as not sent
            done += n
        return done


class Receiver:
    """One socket read with recvmmsg into a numpy block, decoded per batch.

    Each datagram's arrival time is the kernel's (SO_TIMESTAMPNS, CLOCK_REALTIME),
    not the time the generator got round to reading it: the generator sleeps
    between its 2 ms slices instead of waking for every packet, and the delay
    it reports is still the relay's alone.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.fd = sock.fileno()
        self.block = np.zeros((BATCH, SLOT), dtype=np.uint8)
        self.control = np.zeros((BATCH, CONTROL), dtype=np.uint8)
        self.msgs = (MMsgHdr * BATCH)()
        self.iovs = (IoVec * BATCH)()
        base, cbase = self.block.ctypes.data, self.control.ctypes.data
        for i in range(BATCH):
            self.iovs[i].iov_base = base + i * SLOT
            self.iovs[i].iov_len = SLOT
            hdr = self.msgs[i].msg_hdr
            hdr.msg_iov = ctypes.pointer(self.iovs[i])
            hdr.msg_iovlen = 1
            hdr.msg_control = cbase + i * CONTROL
        raw = memoryview(self.msgs).cast("B")
        self.words = np.frombuffer(raw, dtype=np.uint32).reshape(BATCH, ENTRY_WORDS)
        self.longs = np.frombuffer(raw, dtype=np.uint64).reshape(BATCH, ENTRY_WORDS // 2)
        self.count = 0

    def drain(self, delays: list[np.ndarray[Any, Any]]) -> None:
        """Read until the socket is empty."""
        while True:
            self.longs[:, CONTROLLEN_LONG] = CONTROL  # the kernel wrote back what it used
            n = LIBC.recvmmsg(self.fd, self.msgs, BATCH, MSG_DONTWAIT, None)
            if n <= 0:
                if n < 0 and ctypes.get_errno() not in (errno.EAGAIN, errno.ECONNREFUSED):
                    raise OSError(ctypes.get_errno(), "recvmmsg")
                return
            now = time.time_ns()
            keep = self.words[:n, LEN_WORD] >= RTP_HEADER.size + STAMP.size
            stamps = self.block[:n, RTP_HEADER.size : RTP_HEADER.size + STAMP.size].copy()
            stamps = stamps.view(">i8").ravel()
            arrived = self.control[:n, 16:32].copy().view(np.int64)  # struct timespec
            arrived = arrived[:, 0] * 1_000_000_000 + arrived[:, 1]
            stamped = self.control[:n, 12:16].copy().view(np.int32).ravel() == SO_TIMESTAMPNS
            arrived = np.where(stamped, arrived, now)
            keep &= stamps != PRIME_STAMP  # a prime's late copy is neither counted nor measured
            self.count += int(np.count_nonzero(keep))
            delays.append((arrived - stamps)[keep])
            if n < BATCH:
                return


def _socket(rcvbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # root may go past net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def generator_main(conn: Connection, calls: int, ptime: float, seconds: float) -> None:
    """Placeholder ports out (2 per call, caller side first), relay targets in, counts out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * calls + 64)), hard))
    placeholders = [_socket(64 * 1024) for _ in range(2 * calls)]
    conn.send([s.getsockname()[1] for s in placeholders])
    targets: list[int] | None = conn.recv()
    if targets is None:
        return
    sides = [_socket(RCVBUF), _socket(RCVBUF)]  # 0: every caller leg, 1: every callee leg
    try:
        conn.send({**generate(conn, sides, targets, ptime, seconds), "loop": "mmsg"})
    finally:
        for sock in (*sides, *placeholders):
            sock.close()


def _prime(senders: Sequence[Sender]) -> None:
    packet = RTP_HEADER.pack(0x80, 0, 0xFFFF, 0, 0x5EED) + PAYLOAD
    for sender in senders:
        for group in range(len(sender.groups)):
            sender.send(group, packet)


def generate(
    conn: Connection, sides: list[socket.socket], targets: list[int], ptime: float,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    senders = [Sender(sides[0], targets[0::2], SLICES), Sender(sides[1], targets[1::2], SLICES)]
    receivers = [Receiver(sides[0]), Receiver(sides[1])]
    _prime(senders)
    delays: list[np.ndarray[Any, Any]] = []
    ticks, sent, n = int(seconds / ptime) * SLICES, 0, 0
    send_time: float | None = None
    start = time.monotonic() + PRIME_LEAD
    cpu0, gen_cpu, usage = time.process_time(), 0.0, resource.getrusage(resource.RUSAGE_SELF)
    user = kernel = 0.0
    conn.send("start")
    while True:
        now = time.monotonic()
        while n < ticks and now >= start + n * ptime / SLICES:
            seq, group = divmod(n, SLICES)
            packet = rtp_packet(seq, time.time_ns())
            for sender in senders:
                sent += sender.send(group, packet)
            n += 1
        if n >= ticks and send_time is None:
            send_time = now - start
            gen_cpu = time.process_time() - cpu0
            done = resource.getrusage(resource.RUSAGE_SELF)
            user, kernel = done.ru_utime - usage.ru_utime, done.ru_stime - usage.ru_stime
            conn.send("stop")
        if n >= ticks and now > start + seconds + 1.0:
            break
        wake = start + n * ptime / SLICES if n < ticks else start + seconds + 1.0
        time.sleep(max(0.0, wake - time.monotonic()))
        for receiver in receivers:
            receiver.drain(delays)
    every = np.concatenate(delays) if delays else np.zeros(0, dtype=np.int64)
    return {
        "sent_each_side": sent // 2,
        "caller_received": receivers[0].count,
        "callee_received": receivers[1].count,
        "send_time": send_time,
        "generator_cpu_pct": round(100.0 * gen_cpu / (send_time or 1.0), 1),
        "generator_us_per_packet": {  # per packet sent and received back, user / kernel
            "user": round(1e6 * user / max(1, sent), 2),
            "kernel": round(1e6 * kernel / max(1, sent), 2),
        },
        "delay_ms": delay_figures(every),
    }


def delay_figures(delays: np.ndarray[Any, Any]) -> dict[str, float]:
    """Percentiles (ms) of the one-way time through the relay, and the share under 20 ms.

    Rank `int(q * n)` of the sorted delays, for both generators (`load.generate` too).
    """
    if delays.size == 0:
        return {}
    ordered = np.sort(delays)
    at = {q: float(ordered[min(ordered.size - 1, int(q * ordered.size))]) / 1e6
          for q in (0.5, 0.99, 0.999)}  # fmt: skip
    under = float(np.count_nonzero(ordered < 20_000_000)) / ordered.size
    return {"p50": round(at[0.5], 2), "p99": round(at[0.99], 2), "p99.9": round(at[0.999], 2),
            "under_20ms_pct": round(100.0 * under, 3)}  # fmt: skip
