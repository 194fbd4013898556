"""The audit store on both engines (a real SQLite file, a real PostgreSQL database): atomic
transitions, one live name; and the SQLite file private and in WAL mode."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import NewRequest, State
from bot.store import NameInUse, Store


def new(name: str = "copy-one", user: str = "U0REQUEST") -> NewRequest:
    return NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name=name,
        requested_by=user,
        channel_id="C0INCIDENT",
    )


pytestmark = pytest.mark.engines


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    store = Store(database)
    yield store
    store.close()


def test_the_database_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    store = Store(tmp_path / "audit" / "snapcopy.db")
    assert store.path is not None
    mode = stat.S_IMODE(store.path.stat().st_mode)
    assert mode == 0o600
    with store.connection() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_opening_twice_migrates_once(database: str) -> None:
    first = Store(database)
    first.create(new(), state=State.PENDING_APPROVAL, expires_at=None, actor="U0REQUEST")
    second = Store(database)
    assert [r.backup_name for r in second.find()] == ["copy-one"]
    first.close()
    second.close()


def test_only_one_of_many_concurrent_transitions_wins(store: Store) -> None:
    request = store.create(new(), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    barrier = threading.Barrier(16)
    winners: list[str] = []

    def decide(index: int) -> None:
        to = State.APPROVED if index % 2 else State.DENIED
        barrier.wait()
        if store.transition(
            request.id,
            allowed_from=[State.PENDING_APPROVAL],
            to=to,
            event=to.value,
            actor=f"U{index}",
        ):
            winners.append(to.value)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    kinds = [e["kind"] for e in store.events(request.id)]
    assert kinds == ["requested", winners[0]], "exactly one decision is in the trail"


def test_a_live_name_is_unique_without_case_but_free_again_once_final(store: Store) -> None:
    first = store.create(new("Keep-Me"), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    with pytest.raises(NameInUse) as raised:
        store.create(new("keep-me"), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    assert raised.value.request_id == first.id
    store.transition(
        first.id, allowed_from=[State.PENDING_APPROVAL], to=State.DENIED, event="denied", actor="U2"
    )
    again = store.create(new("keep-me"), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    assert again.id != first.id


def test_a_transition_from_the_wrong_state_changes_nothing(store: Store) -> None:
    request = store.create(new(), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    assert (
        store.transition(
            request.id,
            allowed_from=[State.COPYING],
            to=State.SUCCEEDED,
            event="available",
            actor=None,
        )
        is None
    )
    assert store.require(request.id).state == State.PENDING_APPROVAL
    assert [e["kind"] for e in store.events(request.id)] == ["requested"]


def test_unknown_columns_are_refused(store: Store) -> None:
    request = store.create(new(), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    with pytest.raises(ValueError, match="not request columns"):
        store.update(request.id, **{"state = 'succeeded' --": "x"})


def test_dws_request_ids_accumulate_in_order(store: Store) -> None:
    request = store.create(new(), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    for request_id in ("a1", None, "b2"):
        store.add_dws_request_id(request.id, request_id)
    assert store.require(request.id).dws_request_ids == ["a1", "b2"]


def test_each_event_delivery_is_handled_once(store: Store) -> None:
    assert store.first_delivery("Ev1") is True
    assert store.first_delivery("Ev1") is False
    assert store.first_delivery("Ev2") is True


def test_due_expiries_list_only_pending_requests_past_their_deadline(store: Store) -> None:
    old = store.create(
        new("old-one"),
        state=State.PENDING_APPROVAL,
        expires_at="2020-01-01T00:00:00.000Z",
        actor="U1",
    )
    store.create(
        new("fresh-one"),
        state=State.PENDING_APPROVAL,
        expires_at="2999-01-01T00:00:00.000Z",
        actor="U1",
    )
    done = store.create(
        new("done-one"), state=State.APPROVED, expires_at="2020-01-01T00:00:00.000Z", actor="U1"
    )
    due = store.due("expires_at", "2026-11-28T00:00:00.000Z", State.PENDING_APPROVAL)
    assert [r.id for r in due] == [old.id]
    assert done.id not in [r.id for r in due]


def test_find_filters_by_state_and_requester_newest_first(store: Store) -> None:
    a = store.create(new("alpha", "U1"), state=State.PENDING_APPROVAL, expires_at=None, actor="U1")
    b = store.create(new("bravo", "U2"), state=State.PENDING_APPROVAL, expires_at=None, actor="U2")
    c = store.create(new("charlie", "U1"), state=State.APPROVED, expires_at=None, actor="U1")
    assert [r.id for r in store.find(requested_by="U1")] == [c.id, a.id]
    assert [r.id for r in store.find(states=[State.PENDING_APPROVAL])] == [b.id, a.id]
    assert [r.id for r in store.find(limit=1)] == [c.id]
