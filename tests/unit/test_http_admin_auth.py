"""Sessions and login throttling of the admin app, with an injected clock (no sockets)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.admin.users import Actor
from pbx.http.admin.auth import (
    IDLE_SECONDS,
    MAX_AGE_SECONDS,
    Sessions,
    Throttle,
    csrf_ok,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["fail", "wait"]), st.floats(0, 400)), max_size=30))
def test_throttle_locks_exactly_after_five_recent_failures(steps: list[tuple[str, float]]) -> None:
    clock = Clock()
    throttle = Throttle(clock=clock, max_failures=5, window=900.0, cooldown=300.0)
    failures: list[float] = []
    for action, amount in steps:
        if action == "wait":
            clock.now += amount
        else:
            throttle.fail("user:ann")
            failures.append(clock.now)
        recent = [t for t in failures if t > clock.now - 900.0][-5:]
        locked = len(recent) >= 5 and clock.now < recent[-1] + 300.0
        assert (throttle.locked_for("user:ann") > 0) == locked
        assert throttle.locked_for("ip:127.0.0.1") == 0  # keys are independent


def test_clear_unlocks_only_that_key() -> None:
    throttle = Throttle(clock=Clock())
    for _ in range(5):
        throttle.fail("user:ann", "ip:10.0.0.1")
    assert throttle.locked_for("user:ann") > 0
    throttle.clear("user:ann")
    assert throttle.locked_for("user:ann") == 0
    assert throttle.locked_for("user:ann", "ip:10.0.0.1") > 0


def test_sessions_expire_rotate_and_end() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock)
    anonymous = sessions.new()
    assert sessions.get(anonymous.sid) is anonymous
    assert sessions.get("forged") is None
    assert sessions.get(None) is None
    ann = sessions.login(anonymous, Actor("ann", "admin"))
    assert ann.sid != anonymous.sid
    assert ann.csrf != anonymous.csrf
    assert sessions.get(anonymous.sid) is None
    clock.now += IDLE_SECONDS - 1
    assert sessions.get(ann.sid) is ann  # a request keeps it alive
    clock.now += IDLE_SECONDS + 1
    assert sessions.get(ann.sid) is None
    other = sessions.new(Actor("vic", "viewer"))
    for _ in range(int(MAX_AGE_SECONDS // (IDLE_SECONDS / 2)) + 1):
        clock.now += IDLE_SECONDS / 2
        sessions.get(other.sid)
    assert sessions.get(other.sid) is None  # absolute limit
    bob = sessions.new(Actor("bob", "viewer"))
    sessions.end_user("bob")
    assert sessions.get(bob.sid) is None
    assert csrf_ok(ann, ann.csrf)
    assert not csrf_ok(ann, None)
    assert not csrf_ok(ann, ann.csrf + "x")


def test_anonymous_sessions_cannot_push_out_logged_in_ones() -> None:
    from pbx.http.admin.auth import MAX_ANONYMOUS

    sessions = Sessions(clock=Clock())
    ann = sessions.new(Actor("ann", "admin"))
    for _ in range(MAX_ANONYMOUS + 50):
        sessions.new()
    assert sessions.get(ann.sid) is ann
    assert len(sessions.anonymous) == MAX_ANONYMOUS
