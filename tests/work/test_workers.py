"""How worker threads find work without polling for it: woken by the commit that added it, by
the thread before them, or by going on from their own run.

Every worker here polls only every 30 s, so a row run within a few seconds was found by a
wake-up or by a thread going on from its own run, never by a poll.
"""

from __future__ import annotations

import threading
import time

import pytest

from bot.store import Store
from bot.work.queue import Claimed, Queue, Work
from bot.work.workers import Done, Handler, Result, Workers
from tests.work.owed import request_with

pytestmark = pytest.mark.engines

NO_POLL = 30.0
SOON = 5.0


def started(store: Store, queue: Queue, handler: Handler, threads: int = 3) -> Workers:
    workers = Workers(
        store, queue, handler, f"{queue}-holder", threads=threads, idle_seconds=NO_POLL
    )
    store.on_new_work(workers.wake)
    workers.start()
    time.sleep(0.3)  # every thread has looked once, found nothing and sleeps
    return workers


def test_rows_added_while_every_thread_sleeps_run_in_parallel(store: Store) -> None:
    together = threading.Barrier(3, timeout=SOON)
    ran: list[int] = []

    def handler(row: Claimed) -> Result:
        together.wait()  # breaks unless three rows run at the same time
        ran.append(row.request_id)
        return Done("copied")

    workers = started(store, Queue.DWS, handler)
    try:
        ids = [request_with(store, Work(Queue.DWS, "copy"), name=f"parallel-{n}") for n in range(3)]
        _wait(lambda: len(ran) == 3)
    finally:
        workers.stop(2)
    assert sorted(ran) == sorted(ids)
    assert not together.broken


def test_a_thread_goes_on_to_the_row_its_own_run_added(store: Store) -> None:
    """The follow-up of a row is added by the thread running it, which wakes nobody: that
    thread claims it as soon as its row is done."""
    ran: list[str] = []

    def handler(row: Claimed) -> Result:
        ran.append(row.kind)
        if row.kind == "copy":
            return Done("copied", then=(Work(Queue.DWS, "follow"),))
        return Done("available")

    workers = started(store, Queue.DWS, handler, threads=1)
    try:
        request_id = request_with(store, Work(Queue.DWS, "copy"), name="goes-on")
        _wait(lambda: ran == ["copy", "follow"])
    finally:
        workers.stop(2)
    assert [r["outcome"] for r in store.work_rows(request_id)] == ["copied", "available"]


def test_work_for_the_other_queue_wakes_that_queues_workers(store: Store) -> None:
    posted = threading.Event()

    def copy(row: Claimed) -> Result:
        return Done("copied", then=(Work(Queue.SLACK, "post"),))

    def post(row: Claimed) -> Result:
        posted.set()
        return Done("posted")

    dws = started(store, Queue.DWS, copy)
    slack = started(store, Queue.SLACK, post)
    try:
        request_with(store, Work(Queue.DWS, "copy"), name="tells-slack")
        assert posted.wait(SOON), "the Slack queue's workers were not woken"
    finally:
        dws.stop(2)
        slack.stop(2)


def _wait(condition: object, timeout: float = SOON) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
