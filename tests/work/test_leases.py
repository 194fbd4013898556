"""Leases that hold (bot/work/leases.py, bot/work/fence.py): renewed while their holder works,
ended only after their beats stood still for a whole lease by the watcher's own monotonic clock,
and a holder that lost one writes nothing.

Regressions: a fixed lease was never renewed, so a DWS call longer than it let another worker
run the same copy; a holder paused past its lease still finished or failed the request; a
clock step of +180 s let another thread take a live row.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import bot.clock
from bot.domain import State
from bot.store import Store
from bot.work.fence import LeaseLost, holding
from bot.work.leases import Keeper
from bot.work.queue import Claimed, Lease, Queue, Work
from bot.work.workers import Done, Result, Workers
from tests.work.owed import request_with


class Monotonic:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


pytestmark = pytest.mark.engines


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> object:
    """`step_clock(seconds)`: the wall clock jumps by `seconds` from here on."""
    real = bot.clock.utcnow
    offset = [timedelta(0)]
    monkeypatch.setattr(bot.clock, "utcnow", lambda: real() + offset[0])

    def step(seconds: float) -> None:
        offset[0] += timedelta(seconds=seconds)

    return step


def claimed(store: Store, holder: str = "holder-a") -> Claimed:
    row = store.claim(Queue.DWS, holder, 30)
    assert row is not None
    return row


def watcher(store: Store, clock: Monotonic, holder: str = "holder-b") -> Keeper:
    return Keeper(store, Queue.DWS, holder, lease_seconds=30, monotonic=clock)


def test_a_lease_runs_out_only_after_its_beats_stood_still_for_a_whole_lease(store: Store) -> None:
    request_with(store, Work(Queue.DWS, "copy"))
    row = claimed(store)
    clock = Monotonic()
    watching = watcher(store, clock)

    assert watching.expire_stale() == []  # first seen
    clock.now += 29
    assert watching.expire_stale() == []
    store.renew([row.token], 30)  # the holder renews: watched from now again
    clock.now += 29
    assert watching.expire_stale() == []
    clock.now += 2
    assert watching.expire_stale() == []  # 31 s since first seen, but only 2 s since a beat
    clock.now += 28
    [ended] = watching.expire_stale()
    assert ended.id == row.id
    assert store.events(row.request_id)[-1]["kind"] == "lease_expired"
    assert store.claim(Queue.DWS, "holder-b", 30) is not None


def test_a_watcher_paused_while_it_reads_the_leases_does_not_count_the_pause(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_with(store, Work(Queue.DWS, "copy"))
    claimed(store)
    clock = Monotonic()
    watching = watcher(store, clock)
    read = store.leases

    def stalled(queue: Queue) -> list[Lease]:
        clock.now += 29  # the watcher stalls (GC, SIGSTOP, a pool wait) before the read returns
        return read(queue)

    monkeypatch.setattr(store, "leases", stalled)
    assert watching.expire_stale() == []  # first seen
    monkeypatch.setattr(store, "leases", read)
    clock.now += 2  # the holder's renewal is a moment late
    assert watching.expire_stale() == [], "seen standing still for 2 s, not 31"
    assert store.claim(Queue.DWS, "holder-b", 30) is None


@pytest.mark.parametrize("seconds", [600, -600, 180])
def test_a_clock_step_neither_ends_a_live_lease_nor_keeps_a_dead_one(
    store: Store, step_clock: object, seconds: float
) -> None:
    request_with(store, Work(Queue.DWS, "copy"), name="live")
    request_with(store, Work(Queue.DWS, "copy"), name="dead")
    live, dead = claimed(store, "alive"), claimed(store, "gone")
    clock = Monotonic()
    watching = watcher(store, clock)
    watching.expire_stale()

    step_clock(seconds)  # type: ignore[operator]
    assert store.claim(Queue.DWS, "thief", 30) is None, "a stepped clock ends no lease"
    for _ in range(4):
        clock.now += 10
        store.renew([live.token], 30)  # every third of the lease
        ended = watching.expire_stale()
        assert live.id not in [lease.id for lease in ended]
    assert [row["id"] for row in store.open_work() if row["lease_token"] is None] == [dead.id]


def test_a_holder_that_lost_its_lease_writes_nothing(store: Store) -> None:
    request_id = request_with(store, Work(Queue.DWS, "copy"))
    stale = claimed(store, "paused")
    clock = Monotonic()
    watching = watcher(store, clock)
    watching.expire_stale()
    clock.now += 31
    watching.expire_stale()
    taken = claimed(store, "holder-b")
    events = len(store.events(request_id))

    with holding(stale), pytest.raises(LeaseLost):
        store.transition(
            request_id,
            allowed_from=[State.APPROVED],
            to=State.FAILED,
            event="copy_failed",
            actor=None,
            work=[Work(Queue.SLACK, "news")],
        )
    with holding(stale), pytest.raises(LeaseLost):
        store.record_event(request_id, "copied", None)
    assert not store.finish(stale, "failed")
    assert not store.retry(stale, after=0, error="late")
    assert store.renew([stale.token], 30) == set()

    assert store.require(request_id).state == State.APPROVED
    assert len(store.events(request_id)) == events
    assert [row["kind"] for row in store.open_work(request_id)] == ["copy"]
    with holding(taken):
        store.record_event(request_id, "copied", None)  # the holder's own writes go through
    assert store.finish(taken, "copied")


def test_a_handler_slower_than_its_lease_keeps_it(store: Store) -> None:
    request_id = request_with(store, Work(Queue.DWS, "copy"))
    ran: list[str] = []
    release = threading.Event()

    def slow(row: Claimed) -> Result:
        ran.append("slow")
        release.wait(5)
        store.record_event(row.request_id, "copied", None)
        return Done("copied")

    def other(row: Claimed) -> Result:
        ran.append("other")
        return Done("copied twice")

    first = Workers(store, Queue.DWS, slow, "first", threads=1, lease_seconds=1.0)
    second = Workers(store, Queue.DWS, other, "second", threads=1, lease_seconds=1.0)
    first.start()
    _wait(lambda: ran == ["slow"])
    second.start()
    try:
        time.sleep(3.5)  # three and a half leases, renewed all along
        release.set()
        _wait(lambda: not store.open_work(request_id))
    finally:
        first.stop(2)
        second.stop(2)
    assert ran == ["slow"]
    assert [r["outcome"] for r in store.work_rows(request_id)] == ["copied"]


def test_a_paused_holder_is_taken_over_and_its_late_answer_is_dropped(store: Store) -> None:
    request_id = request_with(store, Work(Queue.DWS, "copy"))
    paused = threading.Event()
    resume = threading.Event()

    def stalls(row: Claimed) -> Result:
        paused.set()
        resume.wait(10)  # as if SIGSTOPped: its keeper stops renewing too (below)
        store.transition(
            row.request_id,
            allowed_from=[State.APPROVED],
            to=State.FAILED,
            event="copy_failed",
            actor=None,
        )
        return Done("failed")

    def succeeds(row: Claimed) -> Result:
        store.transition(
            row.request_id,
            allowed_from=[State.APPROVED],
            to=State.SUCCEEDED,
            event="available",
            actor=None,
        )
        return Done("available")

    first = Workers(store, Queue.DWS, stalls, "first", threads=1, lease_seconds=0.6)
    first.keeper.renew = lambda: []  # type: ignore[method-assign]
    second = Workers(store, Queue.DWS, succeeds, "second", threads=1, lease_seconds=0.6)
    first.start()
    _wait(paused.is_set)
    second.start()
    try:
        _wait(lambda: store.require(request_id).state == State.SUCCEEDED)
        resume.set()
        time.sleep(0.5)
    finally:
        first.stop(2)
        second.stop(2)
    assert store.require(request_id).state == State.SUCCEEDED
    kinds = [e["kind"] for e in store.events(request_id)]
    assert "copy_failed" not in kinds and kinds.count("lease_expired") == 1
    assert [r["outcome"] for r in store.work_rows(request_id)] == ["available"]


def test_a_due_time_set_before_the_clock_went_back_is_not_held_up(
    store: Store, step_clock: object
) -> None:
    request_id = request_with(store, Work(Queue.DWS, "follow", delay=15))
    step_clock(-600)  # type: ignore[operator]
    assert store.rebase_due(Queue.DWS) == 1
    [row] = store.open_work(request_id)
    wait = -bot.clock.age_seconds(row["due_at"])
    assert 14 < wait <= 15, "due its 15 s from now, not 615 s"
    assert store.rebase_due(Queue.DWS) == 0
    step_clock(+600)  # forward: simply due early
    assert store.claim(Queue.DWS, "w", 30) is not None


def _wait(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
