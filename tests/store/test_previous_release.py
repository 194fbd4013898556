"""A database from the previous release opens with this one and keeps every request, event,
approval and owed piece of work (tests/store/data/previous_release.sql)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import State
from bot.store import Store
from bot.work.queue import Queue

DUMP = Path(__file__).parent / "data" / "previous_release.sql"


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        tables = ("requests", "events", "approvals", "work", "deliveries", "replays")
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables
        }


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    path = tmp_path / "snapcopy.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(DUMP.read_text(encoding="utf-8"))
    return path


@pytest.fixture
def store(old_database: Path) -> Iterator[Store]:
    store = Store(old_database)
    yield store
    store.close()


def test_every_row_is_kept(old_database: Path) -> None:
    before = _counts(old_database)
    Store(old_database).close()
    assert _counts(old_database) == before
    assert before["requests"] == 3 and before["events"] > 3


def test_requests_read_back_as_they_were(store: Store) -> None:
    requests = {request.backup_name: request for request in store.find()}
    assert requests["waiting-for-two"].state == State.PENDING_APPROVAL
    assert requests["waiting-for-two"].approvals_needed == 2
    assert requests["being-copied"].state == State.COPYING
    assert requests["being-copied"].dws_request_ids == ["dws-req-1"]
    assert requests["done"].new_snapshot_id == "9d8c7b6a-1111-2222-3333-444455556666"
    assert all(request.token for request in requests.values()), "buttons carry their token"


def test_owed_work_is_still_owed_and_done_once(store: Store) -> None:
    announce = store.claim(Queue.SLACK, "worker-a", 30)
    copy = store.claim(Queue.DWS, "worker-a", 30)
    assert announce is not None and announce.kind == "announce"
    assert copy is not None and copy.kind == "copy"
    assert store.claim(Queue.DWS, "worker-b", 30) is None, "claimed once"
    assert store.finish(copy, "copied")


def test_approvals_replays_and_deliveries_still_count(store: Store) -> None:
    waiting = next(r for r in store.find() if r.backup_name == "waiting-for-two")
    with store.connection() as db:
        users = [row[0] for row in db.execute("SELECT user_id FROM approvals").fetchall()]
    assert users == ["U0APPROVE"]
    assert waiting.state == State.PENDING_APPROVAL
    assert store.answer_for("v0=abc") == (200, "application/json", b'{"ok":true}')
    assert store.first_delivery("Ev0123") is False, "a redelivery is still known"
