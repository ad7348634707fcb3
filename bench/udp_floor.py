"""Benchmark: the kernel's own CPU per loopback UDP datagram on this box.

Every userspace relay pays, per relayed packet, one receive and one send
(which on loopback also runs the receiving socket's side); a generator on
the same box pays a send and a receive too. This measures those syscalls
alone, from a tight loop (one 172-byte datagram at a time, as a 20 ms G.711
packet), so the figures are a floor no relay in any language can go under
with one datagram per syscall. It then says what 1,000 calls both ways
(100,000 packets/s through the relay) cost in kernel time alone, relay and
generator together, against the cores the box has.

    python bench/udp_floor.py [--packets 200000]

Loopback only, bounded by --packets; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket

HOST = "127.0.0.1"
PACKET = b"\x80" + bytes(171)
SO_RCVBUFFORCE = 33


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def measure(packets: int) -> dict[str, tuple[float, float]]:
    """(user, kernel) us per call of: sendto, recv with data, recv on an empty socket."""
    rx, tx = _receiver(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target, chunk = rx.getsockname(), 2000  # a chunk fits the receive buffer
    figures = {"sendto": [0.0, 0.0], "recv": [0.0, 0.0], "recv_empty": [0.0, 0.0]}
    done = 0
    try:
        while done < packets:
            u0, s0 = _cpu()
            for _ in range(chunk):
                tx.sendto(PACKET, target)
            u1, s1 = _cpu()
            got = 0
            while True:
                try:
                    rx.recv(2048)
                except BlockingIOError:
                    break
                got += 1
            u2, s2 = _cpu()
            for _ in range(chunk):
                with contextlib.suppress(BlockingIOError):
                    rx.recv(2048)
            u3, s3 = _cpu()
            figures["sendto"][0] += u1 - u0
            figures["sendto"][1] += s1 - s0
            figures["recv"][0] += u2 - u1
            figures["recv"][1] += s2 - s1
            figures["recv_empty"][0] += u3 - u2
            figures["recv_empty"][1] += s3 - s2
            if got != chunk:
                raise RuntimeError(f"the receive buffer dropped {chunk - got} of {chunk}")
            done += chunk
    finally:
        rx.close()
        tx.close()
    return {name: (1e6 * u / done, 1e6 * s / done) for name, (u, s) in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    figures = measure(args.packets)
    print(f"machine: nproc={os.cpu_count()} kernel={os.uname().release}; "
          f"{args.packets} datagrams of {len(PACKET)} bytes on loopback")  # fmt: skip
    for name, (user, kernel) in figures.items():
        print(f"  {name:<11} user {user:5.2f} us  kernel {kernel:5.2f} us  per call")
    send, recv = figures["sendto"][1], figures["recv"][1]
    relay = send + recv
    rate = 100_000  # 1,000 calls, both ways, 20 ms packets
    print(f"kernel floor per relayed packet (recv + send): {relay:.2f} us -> one core relays "
          f"at most {1e6 / relay:,.0f} packets/s before any userspace work")  # fmt: skip
    print(f"1,000 calls both ways ({rate:,} packets/s): relay kernel {rate * relay / 1e6:.2f} "
          f"cores + a same-box generator's kernel {rate * relay / 1e6:.2f} cores "
          f"= {2 * rate * relay / 1e6:.2f} of {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
