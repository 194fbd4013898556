"""The leased queue (bot/work/queue.py) through the store, on a real SQLite file: each row is
claimed once however many claim it, rows of a request go in order, a request has one open DWS
job, and a release gives the attempt back."""

from __future__ import annotations

import threading

import pytest

from bot.clock import now_iso
from bot.store import Store
from bot.work import queue as work_queue
from bot.work.queue import Claimed, Queue, Work
from tests.work.owed import request_with

pytestmark = pytest.mark.engines


def test_sixteen_threads_claim_each_row_once(store: Store) -> None:
    for number in range(20):
        request_with(store, Work(Queue.SLACK, "news"), name=f"copy-{number:02}")
    claimed: list[int] = []
    barrier = threading.Barrier(16)

    def worker(name: str) -> None:
        barrier.wait()
        while (row := store.claim(Queue.SLACK, name, 60)) is not None:
            claimed.append(row.id)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 20


def test_rows_of_one_request_go_in_order(store: Store) -> None:
    request_with(store, Work(Queue.SLACK, "announce"), Work(Queue.SLACK, "news"))
    first = store.claim(Queue.SLACK, "w1", 60)
    assert first is not None and first.kind == "announce"
    assert store.claim(Queue.SLACK, "w2", 60) is None  # the news waits for the announcement
    store.finish(first, "posted")
    second = store.claim(Queue.SLACK, "w2", 60)
    assert second is not None and second.kind == "news"


def test_a_request_has_one_open_dws_job(store: Store) -> None:
    request_id = request_with(store, Work(Queue.DWS, "copy"))
    store.add_work(request_id, [Work(Queue.DWS, "copy"), Work(Queue.DWS, "follow")])
    assert [row["kind"] for row in store.open_work(request_id)] == ["copy"]


def test_queues_are_apart(store: Store) -> None:
    request_with(store, Work(Queue.DWS, "copy"))
    assert store.claim(Queue.SLACK, "w", 60) is None
    assert store.claim(Queue.DWS, "w", 60) is not None


def test_a_retry_is_due_later_and_a_fresh_one_restarts_the_count(store: Store) -> None:
    request_with(store, Work(Queue.DWS, "follow"))
    row = store.claim(Queue.DWS, "w", 60)
    assert row is not None and row.attempts == 1
    store.retry(row, after=3600, error="busy", problem="DWS.0011")
    assert store.claim(Queue.DWS, "w", 60) is None
    [open_row] = store.open_work(row.request_id)
    assert (open_row["problem"], open_row["attempts"]) == ("DWS.0011", 1)
    with store.connection() as db:  # due now again
        db.execute("UPDATE work SET due_at = '2000-01-01T00:00:00.000Z'")
    again = store.claim(Queue.DWS, "w", 60)
    assert again is not None and again.attempts == 2
    store.retry(again, after=0, error="", fresh=True)
    assert store.open_work(row.request_id)[0]["attempts"] == 0


def test_a_release_gives_the_lease_and_the_attempt_back(store: Store) -> None:
    request_id = request_with(store, Work(Queue.DWS, "copy"))
    row = store.claim(Queue.DWS, "gone-holder", 60)
    assert row is not None
    assert store.lease_holders() == ["gone-holder"]
    assert store.release("gone-holder", event="reconciled") == [request_id]
    assert store.lease_holders() == []
    assert store.open_work(request_id)[0]["attempts"] == 0
    assert store.events(request_id)[-1]["kind"] == "reconciled"


def test_coalesced_rows_are_added_once_while_one_waits(store: Store) -> None:
    request_id = request_with(store)
    root = Work(Queue.SLACK, "root", coalesce=True)
    store.add_work(request_id, [root])
    store.add_work(request_id, [root])
    assert len(store.open_work(request_id)) == 1
    assert store.owed()[Queue.SLACK][0] == 1 and store.owed()[Queue.DWS] == (0, None)


def test_a_coalesced_row_is_not_lost_to_a_claim_while_its_change_commits(
    store: Store, database: str
) -> None:
    """A change that leaves its root update to the one already waiting relies on that row
    being claimed after the change commits; a claim made meanwhile would read the request as it
    was, and the change would never be shown. Such a claim waits for it, or passes the row."""
    request_id = request_with(store)
    root = Work(Queue.SLACK, "root", coalesce=True)
    store.add_work(request_id, [root])
    claimed: list[Claimed | None] = []
    # Another process's store, patient enough to outwait the change on SQLite's one writer.
    other = Store(database, wait_seconds=30)
    claimer = threading.Thread(target=lambda: claimed.append(other.claim(Queue.SLACK, "w", 60)))

    with store._transaction() as db:  # a state change that owes a root update
        work_queue.add(db, request_id, [root], now_iso())
        claimer.start()
        claimer.join(timeout=0.5)
        claimed_meanwhile = list(claimed)
    claimer.join()
    other.close()

    assert claimed_meanwhile in ([], [None])
    after = claimed[0] or store.claim(Queue.SLACK, "w", 60)
    assert after is not None and after.kind == "root"
