"""Which timer engines a deadline notification wakes (`shared.timers`), and how long an engine sleeps after a round:
plain values, no database."""

from __future__ import annotations

import math

import sqlalchemy as sa

from shared.timers import LOCKED_RETRY_S, Fired, Notified, TimerEngine, Waker, deadlines_table

TABLE = deadlines_table(sa.MetaData(), "wake_test")


async def _never(*_: object) -> None:
    raise AssertionError("no handler runs here")


def _engine(waker: Waker | None = None, **kwargs: object) -> TimerEngine:
    engine = TimerEngine(
        factory=None,  # type: ignore[arg-type]
        database_url="postgresql://unused/",
        table=TABLE,
        handler=_never,
        waker=waker,
        **kwargs,  # type: ignore[arg-type]
    )
    return engine


def _idle(engine: TimerEngine, wake_at: float) -> None:
    """As the engine is between rounds: asleep until `wake_at`."""
    engine._busy, engine._wake_at = False, wake_at
    engine._wake.clear()


def test_a_notification_is_read_onto_the_monotonic_clock() -> None:
    notified = Notified.parse("task.ack 1000.5 3", wall=1000.0, monotonic=50.0)
    assert notified == Notified("task.ack", 50.5, 3)
    # the old trigger's empty notification, or anything unreadable: every engine, now
    assert Notified.parse("", wall=1000.0, monotonic=50.0) == Notified(None, 50.0, 1)
    assert Notified.parse("sms.send soon 1", wall=1000.0, monotonic=50.0) == Notified(None, 50.0, 1)


def test_a_kind_with_spaces_keeps_them() -> None:
    assert Notified.parse("odd kind 1000 1", wall=1000.0, monotonic=0.0).kind == "odd kind"


def test_only_the_engines_of_the_kind_wake_and_only_as_many_as_there_are_deadlines() -> None:
    waker = Waker("postgresql://unused/", TABLE)
    escalations = _engine(waker, exclude_kinds=("sms.send",))
    senders = [_engine(waker, kinds=("sms.send",), batch_size=1) for _ in range(3)]
    for engine in (escalations, *senders):
        _idle(engine, math.inf)

    waker.notify("sms.send 0 2")  # two SMS due (long ago): two senders, not the third, not the escalation engine
    assert [s._wake.is_set() for s in senders] == [True, True, False]
    assert not escalations._wake.is_set()

    for engine in (escalations, *senders):
        _idle(engine, math.inf)
    waker.notify("")  # no details (the old trigger): every engine looks
    assert all(e._wake.is_set() for e in (escalations, *senders))


def test_an_engine_is_not_woken_for_a_deadline_after_its_own_wake_up() -> None:
    engine = _engine()
    _idle(engine, 60.0)  # asleep until 60 s on the monotonic clock

    assert not engine.offer(300.0)  # a task due minutes later than it wakes anyway
    assert not engine._wake.is_set()
    assert engine.offer(10.0)
    assert engine._wake.is_set() and engine._wake_at == 10.0
    assert not engine.offer(20.0)  # already woken for earlier than that


def test_a_busy_engine_remembers_the_earliest_deadline_it_was_told_of() -> None:
    engine = _engine()
    engine._busy = True
    assert not engine.offer(30.0)
    assert not engine.offer(20.0)
    assert engine._notified == 20.0 and not engine._wake.is_set()


def test_after_a_round_the_engine_sleeps_until_the_next_deadline_and_no_longer_than_its_limit() -> None:
    engine = _engine(max_sleep_s=30.0)
    assert engine._delay(Fired(claimed=200, next_in_s=0.0, full=True)) == 0  # a backlog: straight on
    assert engine._delay(Fired(claimed=3, next_in_s=4.5, full=False)) == 4.5
    assert engine._delay(Fired(claimed=0, next_in_s=None, full=False)) == 30.0  # nothing pending
    assert engine._delay(Fired(claimed=0, next_in_s=600.0, full=False)) == 30.0


def test_deadlines_due_but_held_by_another_engine_are_looked_at_again_later_not_at_once() -> None:
    engine = _engine()
    assert engine._delay(Fired(claimed=0, next_in_s=-0.2, full=False)) == LOCKED_RETRY_S
    assert engine._delay(Fired(claimed=2, next_in_s=-0.2, full=False)) == 0  # it was claiming: go on
