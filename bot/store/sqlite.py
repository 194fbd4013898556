"""The SQLite engine: one file on one host, shared safely by that host's processes.

Connections, writers' turns and bounded waits are the pool's (bot/store/pool.py); whether the
file can take a write, the health probe's (bot/store/health.py). Migrations run under SQLite's
write lock, so two processes starting together apply each one once.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from bot.database import SqliteFile
from bot.errors import StoreUnavailable
from bot.store.engine import SQLITE
from bot.store.health import check_at_start, probe
from bot.store.pool import WAIT_SECONDS, Pool, SqliteDb
from bot.store.schema import migrate


class SqliteEngine:
    dialect = SQLITE

    def __init__(
        self, database: SqliteFile, *, pool_size: int, wait_seconds: float = WAIT_SECONDS
    ) -> None:
        self.database = database
        self.path = database.path
        self._pool = Pool(self.path, pool_size, wait_seconds=wait_seconds)

    def transaction(self, wait: float | None = None) -> AbstractContextManager[SqliteDb]:
        return self._pool.transaction(wait)

    def connection(self, wait: float | None = None) -> AbstractContextManager[SqliteDb]:
        return self._pool.connection(wait)

    def statement(self, wait: float | None = None) -> AbstractContextManager[SqliteDb]:
        return self._pool.alone(wait)

    def write_once(self, sql: str, params: Sequence[Any], wait: float | None = None) -> int:
        return self._pool.write_once(sql, list(params), wait)

    def migrate(self, wait: float) -> None:
        with self._pool.transaction(wait=wait) as db:
            migrate(db)

    def health(self) -> StoreUnavailable | None:
        trouble = probe(self.path, check_damage=self._pool.damaged)
        if trouble is None:
            self._pool.damaged = False
        return trouble

    def check(self, seconds: float) -> None:
        check_at_start(self.path, seconds)

    def close(self) -> None:
        self._pool.close()
