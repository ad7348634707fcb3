"""Whisper + press-1 screening: each path through the machine, timers as returned deadlines."""

from __future__ import annotations

import itertools

import pytest

from pbx.rules.screening import (
    FINAL,
    GUARD_SLACK,
    TABLE,
    ArmTimer,
    Bridge,
    HuntOn,
    Input,
    PlayWhisper,
    Release,
    Screening,
    State,
    StopWhisper,
)


def _screen(whisper: float | None = 3.0, n: float = 10.0) -> Screening:
    machine, actions = Screening.start(0.0, whisper_seconds=whisper, screen=True, screen_seconds=n)
    if whisper is not None:
        assert actions == [PlayWhisper(), ArmTimer(whisper + GUARD_SLACK)]
    return machine


def test_press_1_after_the_whisper_bridges() -> None:
    machine = _screen()
    assert machine.state is State.WHISPERING
    assert machine.handle(Input.WHISPER_FINISHED, 3.0) == [ArmTimer(13.0)]
    assert machine.next_deadline() == 13.0
    assert machine.digit("1", 5.0) == [Bridge()]
    assert machine.state is State.ACCEPTED
    assert machine.finished
    assert machine.next_deadline() is None
    assert machine.handle_timer(13.0) == []


def test_no_digit_in_time_is_no_answer() -> None:
    machine = _screen()
    machine.handle(Input.WHISPER_FINISHED, 3.0)
    assert machine.handle_timer(12.999) == []
    assert machine.handle_timer(13.0) == [HuntOn("no accept digit in time")]
    assert machine.state is State.TIMED_OUT
    assert machine.digit("1", 13.5) == []  # too late: absorbed


def test_other_digits_are_ignored_and_keep_the_deadline() -> None:
    machine = _screen()
    machine.handle(Input.WHISPER_FINISHED, 3.0)
    assert machine.digit("2", 4.0) == []
    assert machine.digit("#", 4.5) == []
    assert machine.next_deadline() == 13.0
    assert machine.digit_seen == "#"
    assert machine.digit("1", 12.0) == [Bridge()]


def test_pressing_1_during_the_whisper_stops_it_and_bridges() -> None:
    machine = _screen()
    assert machine.digit("1", 1.0) == [StopWhisper(), Bridge()]
    assert machine.state is State.ACCEPTED


def test_whisper_guard_moves_on_when_the_end_is_never_reported() -> None:
    machine = _screen()
    assert machine.handle_timer(5.0) == [StopWhisper(), ArmTimer(15.0)]
    assert machine.state is State.AWAITING_DIGIT
    assert machine.handle(Input.WHISPER_FINISHED, 5.1) == []  # late report, absorbed


@pytest.mark.parametrize("during_whisper", [True, False])
def test_answerer_hang_up_hunts_on_and_caller_hang_up_releases(during_whisper: bool) -> None:
    stop = [StopWhisper()] if during_whisper else []
    first, second = _screen(), _screen()
    if not during_whisper:
        first.handle(Input.WHISPER_FINISHED, 3.0)
        second.handle(Input.WHISPER_FINISHED, 3.0)
    assert first.handle(Input.ANSWERER_HUNG_UP, 4.0) == [
        *stop,
        HuntOn("answerer hung up before being bridged"),
    ]
    assert first.state is State.REFUSED
    assert second.handle(Input.CALLER_HUNG_UP, 4.0) == [*stop, Release()]
    assert second.state is State.ABANDONED


def test_whisper_only_bridges_when_the_whisper_ends_and_ignores_digits() -> None:
    machine, actions = Screening.start(0.0, whisper_seconds=2.0, screen=False)
    assert actions == [PlayWhisper(), ArmTimer(4.0)]
    assert machine.digit("1", 1.0) == []
    assert machine.handle(Input.WHISPER_FINISHED, 2.0) == [Bridge()]
    guarded, _ = Screening.start(0.0, whisper_seconds=2.0, screen=False)
    assert guarded.handle_timer(4.0) == [StopWhisper(), Bridge()]


def test_screening_without_a_whisper_waits_for_the_digit_at_once() -> None:
    machine, actions = Screening.start(7.0, whisper_seconds=None, screen=True, screen_seconds=5)
    assert actions == [ArmTimer(12.0)]
    assert machine.state is State.AWAITING_DIGIT
    plain, actions = Screening.start(7.0, whisper_seconds=None, screen=False)
    assert actions == [Bridge()]
    assert plain.state is State.ACCEPTED


def test_final_states_absorb_every_input() -> None:
    for screen, state, event in itertools.product((True, False), FINAL, Input):
        assert TABLE[screen][(state, event)] == (state, ())


def test_tables_are_total() -> None:
    for screen in (True, False):
        assert set(TABLE[screen]) == set(itertools.product(State, Input))


def test_screening_time_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Screening.start(0.0, whisper_seconds=1.0, screen=True, screen_seconds=0)
