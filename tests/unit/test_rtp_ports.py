"""PortPairAllocator: pairs, exhaustion, quarantine, bad releases."""

from __future__ import annotations

import pytest

from pbx.errors import ConfigError
from pbx.rtp.ports import PortError, PortPairAllocator


def test_hands_out_even_ports_in_range_until_exhausted() -> None:
    alloc = PortPairAllocator(10001, 10008, quarantine=5.0)
    got = [alloc.allocate(0.0) for _ in range(3)]
    assert got == [10002, 10004, 10006]
    assert alloc.allocate(0.0) is None
    assert alloc.in_use == 3
    assert alloc.capacity == 3


def test_released_pair_waits_out_quarantine() -> None:
    alloc = PortPairAllocator(20000, 20003, quarantine=5.0)
    a = alloc.allocate(0.0)
    b = alloc.allocate(0.0)
    assert (a, b) == (20000, 20002)
    alloc.release(20000, now=1.0)
    assert alloc.allocate(5.9) is None
    assert alloc.free_count(5.9) == 0
    assert alloc.free_count(6.0) == 1
    assert alloc.allocate(6.0) == 20000


def test_reuse_is_oldest_released_first() -> None:
    alloc = PortPairAllocator(30000, 30005, quarantine=0.0)
    ports = [alloc.allocate(0.0) for _ in range(3)]
    assert ports == [30000, 30002, 30004]
    alloc.release(30004, 1.0)
    alloc.release(30000, 1.0)
    assert alloc.allocate(1.0) == 30004
    assert alloc.allocate(1.0) == 30000


def test_double_release_is_rejected() -> None:
    alloc = PortPairAllocator(40000, 40001, quarantine=1.0)
    port = alloc.allocate(0.0)
    assert port == 40000
    alloc.release(port, 0.0)
    with pytest.raises(PortError, match="40000"):
        alloc.release(port, 0.5)
    with pytest.raises(PortError):
        alloc.release(40001, 0.5)


@pytest.mark.parametrize(
    ("low", "high", "quarantine"),
    [
        (40000, 40000, 1.0),
        (500, 600, 1.0),
        (40000, 70000, 1.0),
        (40010, 40000, 1.0),
        (40000, 40010, -1.0),
    ],
)
def test_bad_ranges_are_config_errors(low: int, high: int, quarantine: float) -> None:
    with pytest.raises(ConfigError, match="rtp ports"):
        PortPairAllocator(low, high, quarantine)
