"""A store on the test's engine, for every test of the queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.store import Store


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    store = Store(database)
    yield store
    store.close()
