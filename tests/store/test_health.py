"""A database in trouble (bot/store/pool.py, bot/store/health.py): every wait has a bound, every
failure of the database itself is a StoreUnavailable that says which, and the health probe sees
a full disk, a writer holding the database and a damaged file, and sees them go.

Regressions: a writer holding the database for 10 s held every acknowledgement for 10 s (the
busy timeout was 5 s, the turn among threads had no bound); a full disk, a locked database and
a damaged index left /healthz at 200.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain import NewRequest, State
from bot.errors import StoreUnavailable
from bot.store import Store
from bot.store.health import probe
from bot.store.pool import WAIT_SECONDS, unavailable
from tests.conftest import damage_an_index, fill_volume, hold_write_lock


def new_request(number: int = 0) -> NewRequest:
    return NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name=f"keep-{number}",
        requested_by="U0REQ",
        channel_id="C0INCIDENT",
    )


def create(store: Store, number: int = 0) -> int:
    return store.create(
        new_request(number), state=State.PENDING_APPROVAL, expires_at=None, actor="U0REQ"
    ).id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "snapcopy.db")
    yield store
    store.close()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("database or disk is full", "full"),
        ("database is locked", "locked"),
        ("attempt to write a readonly database", "read-only"),
        ("database disk image is malformed", "corrupt"),
        ("disk I/O error", "io"),
        ("unable to open database file", "unavailable"),
    ],
)
def test_the_database_s_own_trouble_is_named(message: str, reason: str) -> None:
    trouble = unavailable(sqlite3.OperationalError(message))
    assert trouble is not None and trouble.reason == reason
    assert "could not be saved" in trouble.message and "did not count" in trouble.message


def test_our_own_mistakes_stay_what_they_are() -> None:
    assert unavailable(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert unavailable(sqlite3.OperationalError("no such column: nope")) is None


def test_a_writer_holding_the_database_costs_a_bounded_wait(store: Store) -> None:
    hold_write_lock(store.path, seconds=5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        create(store)
    waited = time.monotonic() - started
    assert refused.value.reason == "locked"
    assert 0.5 < waited < WAIT_SECONDS + 0.5, "it waited, but not for long"
    assert store.find() == [], "nothing was written"
    assert store.get(1) is None  # reads go on meanwhile (WAL)
    trouble = probe(store.path, check_damage=False, seconds=0.3)
    assert trouble is not None and trouble.reason == "locked"


def test_threads_waiting_for_their_turn_give_up_in_time_too(store: Store) -> None:
    hold_write_lock(store.path, seconds=5)
    outcomes: list[float] = []

    def one(number: int) -> None:
        started = time.monotonic()
        try:
            create(store, number)
        except StoreUnavailable:
            outcomes.append(time.monotonic() - started)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 6 and max(outcomes) < WAIT_SECONDS + 0.5


def test_a_full_volume_is_unhealthy_until_space_is_freed(small_volume: Path) -> None:
    store = Store(small_volume / "snapcopy.db")
    try:
        create(store)
        assert store.health() is None
        filler = fill_volume(small_volume)
        trouble = store.health()
        assert trouble is not None and trouble.reason == "full"
        refused = 0
        for number in range(1, 60):  # SQLite may still have room in its journal for a while
            try:
                create(store, number)
            except StoreUnavailable as error:
                assert error.reason == "full"
                refused += 1
                if refused == 3:
                    break
        assert refused == 3, "a full disk never refused a write"
        filler.unlink()
        assert store.health() is None
        create(store, 100)
    finally:
        store.close()


def test_a_damaged_index_is_named_and_health_comes_back_after_repair(tmp_path: Path) -> None:
    path = tmp_path / "snapcopy.db"
    store = Store(path)
    create(store)
    store.close()
    repair = damage_an_index(path)

    store = Store(path)
    try:
        with pytest.raises(StoreUnavailable) as check:
            store.check()
        assert check.value.reason == "corrupt"
        with pytest.raises(StoreUnavailable) as write:
            create(store, 1)
        assert write.value.reason == "corrupt"
        trouble = store.health()
        assert trouble is not None and trouble.reason == "corrupt"

        repair()  # restored from a backup, say
        assert store.health() is None
        create(store, 2)
    finally:
        store.close()
