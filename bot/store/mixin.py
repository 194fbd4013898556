"""What the Store gives the parts mixed into it (bot/store/work.py, bot/store/replays.py):
its connections, its transactions, one-statement writes and the wake-up after new work."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from bot.store.engine import Db
from bot.work.queue import Work


class StoreParts:
    """Declared here, defined by the Store (bot/store/store.py)."""

    def _transaction(self, wait: float | None = None) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def connection(self, wait: float | None = None) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _statement(self, wait: float | None = None) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _write_once(self, sql: str, params: list[Any], wait: float) -> int:
        raise NotImplementedError

    def _added(self, work: Sequence[Work]) -> None:
        raise NotImplementedError
