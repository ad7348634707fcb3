"""Whisper and call screening for one answered branch, as a transition table (pure).

Theory of operation
===================

When a destination answers a call that has a whisper and/or screening, the
answerer hears the whisper (the caller keeps hearing ringback) and, with
screening, must press the accept digit ("1") within N seconds, or the
branch counts as no-answer and hunting goes on (issue 13). One `Screening`
per answered branch holds the state; `TABLE[screen][(State, Input)]` gives
the next state and the effects, which `Screening` turns into actions the
caller must execute, in order. Nothing here reads a clock: `now` is passed
in, and the one pending deadline is returned (`ArmTimer`) and exposed as
`next_deadline()`; `handle_timer(now)` fires it.

States: WHISPERING -> AWAITING_DIGIT -> ACCEPTED | TIMED_OUT | REFUSED
(answerer hung up) | ABANDONED (caller hung up). The last four are final:
every input there is absorbed. Both tables are total: every (state,
input) pair has a row (a test checks it), so no input can raise.

Timers: one deadline at a time. It stays while the state stays; a change
of state clears it unless the row arms a new one (as in
pbx.sip.transaction_machines).

Decisions:
- N counts from the end of the whisper: the answerer must hear who is
  calling before being asked to decide.
- Pressing 1 during the whisper accepts at once (the whisper stops): staff
  who take these calls all day know the drill.
- Other digits are ignored, not a refusal: a fat finger must not lose the
  call; refusing is hanging up.
- The whisper has a guard deadline (its length + `GUARD_SLACK`): if the
  media engine never reports the end, the machine moves on as if it had.
- Whisper only (no screening): the end of the whisper bridges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

ACCEPT_DIGIT = "1"
DEFAULT_SCREEN_SECONDS = 10.0
GUARD_SLACK = 2.0  # seconds past the whisper's length before the guard fires


class State(enum.Enum):
    WHISPERING = "whispering"
    AWAITING_DIGIT = "awaiting digit"
    ACCEPTED = "accepted"
    TIMED_OUT = "timed out"
    REFUSED = "refused"
    ABANDONED = "abandoned"


FINAL = frozenset({State.ACCEPTED, State.TIMED_OUT, State.REFUSED, State.ABANDONED})


class Input(enum.Enum):
    WHISPER_FINISHED = "whisper finished"
    DIGIT_ACCEPT = "accept digit pressed"
    DIGIT_OTHER = "other digit pressed"
    TIMER_EXPIRED = "timer expired"
    ANSWERER_HUNG_UP = "answerer hung up"
    CALLER_HUNG_UP = "caller hung up"


class Effect(enum.Enum):
    STOP_WHISPER = "stop whisper"
    ARM_DIGIT_TIMER = "arm digit timer"
    BRIDGE = "bridge"
    HUNT_ON = "hunt on"  # the branch is a no-answer: end it if still up, try the next
    RELEASE = "release"  # the caller is gone: end the branch, nothing more


Row = tuple[State, tuple[Effect, ...]]
_S, _I, _E = State, Input, Effect

_SCREEN_ROWS: dict[tuple[State, Input], Row] = {
    (_S.WHISPERING, _I.WHISPER_FINISHED): (_S.AWAITING_DIGIT, (_E.ARM_DIGIT_TIMER,)),
    (_S.WHISPERING, _I.DIGIT_ACCEPT): (_S.ACCEPTED, (_E.STOP_WHISPER, _E.BRIDGE)),
    (_S.WHISPERING, _I.DIGIT_OTHER): (_S.WHISPERING, ()),
    (_S.WHISPERING, _I.TIMER_EXPIRED): (_S.AWAITING_DIGIT, (_E.STOP_WHISPER, _E.ARM_DIGIT_TIMER)),
    (_S.WHISPERING, _I.ANSWERER_HUNG_UP): (_S.REFUSED, (_E.STOP_WHISPER, _E.HUNT_ON)),
    (_S.WHISPERING, _I.CALLER_HUNG_UP): (_S.ABANDONED, (_E.STOP_WHISPER, _E.RELEASE)),
    (_S.AWAITING_DIGIT, _I.WHISPER_FINISHED): (_S.AWAITING_DIGIT, ()),
    (_S.AWAITING_DIGIT, _I.DIGIT_ACCEPT): (_S.ACCEPTED, (_E.BRIDGE,)),
    (_S.AWAITING_DIGIT, _I.DIGIT_OTHER): (_S.AWAITING_DIGIT, ()),
    (_S.AWAITING_DIGIT, _I.TIMER_EXPIRED): (_S.TIMED_OUT, (_E.HUNT_ON,)),
    (_S.AWAITING_DIGIT, _I.ANSWERER_HUNG_UP): (_S.REFUSED, (_E.HUNT_ON,)),
    (_S.AWAITING_DIGIT, _I.CALLER_HUNG_UP): (_S.ABANDONED, (_E.RELEASE,)),
}
# Whisper only: the end of the whisper (or its guard) bridges; digits mean nothing.
_WHISPER_ONLY_ROWS: dict[tuple[State, Input], Row] = {
    **_SCREEN_ROWS,
    (_S.WHISPERING, _I.WHISPER_FINISHED): (_S.ACCEPTED, (_E.BRIDGE,)),
    (_S.WHISPERING, _I.DIGIT_ACCEPT): (_S.WHISPERING, ()),
    (_S.WHISPERING, _I.TIMER_EXPIRED): (_S.ACCEPTED, (_E.STOP_WHISPER, _E.BRIDGE)),
}
_FINAL_ROWS: dict[tuple[State, Input], Row] = {(s, i): (s, ()) for s in FINAL for i in Input}

# TABLE[screen] -> the machine for a branch with (True) or without (False) screening.
TABLE: dict[bool, dict[tuple[State, Input], Row]] = {
    True: {**_SCREEN_ROWS, **_FINAL_ROWS},
    False: {**_WHISPER_ONLY_ROWS, **_FINAL_ROWS},
}


@dataclass(frozen=True, slots=True)
class PlayWhisper:
    """Play the whisper prompt to the answerer only (the caller keeps hearing ringback)."""


@dataclass(frozen=True, slots=True)
class StopWhisper:
    """Stop playing the whisper."""


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Call `handle_timer` at `at` (monotonic seconds); replaces any earlier deadline."""

    at: float


@dataclass(frozen=True, slots=True)
class Bridge:
    """Connect caller and answerer: the branch won."""


@dataclass(frozen=True, slots=True)
class HuntOn:
    """The branch counts as no-answer: end it if still up and try the next destination."""

    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """The caller hung up during the whisper/screening: end the branch."""


Action = PlayWhisper | StopWhisper | ArmTimer | Bridge | HuntOn | Release

_HUNT_REASONS = {
    State.TIMED_OUT: "no accept digit in time",
    State.REFUSED: "answerer hung up before being bridged",
}


@dataclass(slots=True)
class Screening:
    """One answered branch's whisper/screening; methods return actions the caller must execute."""

    screen: bool
    screen_seconds: float = DEFAULT_SCREEN_SECONDS
    state: State = State.WHISPERING
    deadline: float | None = None
    digit_seen: str | None = field(default=None)

    @classmethod
    def start(
        cls,
        now: float,
        *,
        whisper_seconds: float | None,
        screen: bool,
        screen_seconds: float = DEFAULT_SCREEN_SECONDS,
    ) -> tuple[Screening, list[Action]]:
        """Begin at answer time; `whisper_seconds` None means there is no whisper prompt."""
        if screen_seconds <= 0:
            raise ValueError(f"screening time {screen_seconds} must be positive")
        machine = cls(screen=screen, screen_seconds=screen_seconds)
        if whisper_seconds is not None:
            machine.deadline = now + whisper_seconds + GUARD_SLACK
            return machine, [PlayWhisper(), ArmTimer(machine.deadline)]
        # No whisper: as if it had just finished.
        return machine, machine.handle(Input.WHISPER_FINISHED, now)

    def handle(self, event: Input, now: float) -> list[Action]:
        """Feed one input; returns the actions the caller must execute, in order."""
        state, effects = TABLE[self.screen][(self.state, event)]
        if state is not self.state:
            self.deadline = None
        self.state = state
        return [self._action(effect, now) for effect in effects]

    def digit(self, digit: str, now: float) -> list[Action]:
        """A DTMF digit from the answerer (RFC 4733 or SIP INFO)."""
        self.digit_seen = digit
        accept = Input.DIGIT_ACCEPT if digit == ACCEPT_DIGIT else Input.DIGIT_OTHER
        return self.handle(accept, now)

    def next_deadline(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> list[Action]:
        """Fire the deadline if it has passed; a stale or early call does nothing."""
        if self.deadline is None or now < self.deadline:
            return []
        self.deadline = None
        return self.handle(Input.TIMER_EXPIRED, now)

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def _action(self, effect: Effect, now: float) -> Action:
        if effect is Effect.ARM_DIGIT_TIMER:
            self.deadline = now + self.screen_seconds
            return ArmTimer(self.deadline)
        if effect is Effect.HUNT_ON:
            return HuntOn(_HUNT_REASONS.get(self.state, "screening failed"))
        return _SIMPLE[effect]


_SIMPLE: dict[Effect, Action] = {
    Effect.STOP_WHISPER: StopWhisper(),
    Effect.BRIDGE: Bridge(),
    Effect.RELEASE: Release(),
}
