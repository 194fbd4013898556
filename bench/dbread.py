"""Reading the bot's database from the benchmark: an SQLite file read-only, or PostgreSQL.

Statements are written once, in SQLite's spelling; for PostgreSQL they are rewritten as the
store rewrites its own (bot/store/postgres.py). One connection per thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from bot.database import PostgresUrl, parse


class Reader:
    def __init__(self, database: str) -> None:
        self.database = database
        self._chosen = parse(database)
        self._local = threading.local()

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        conn = self._connection()
        if isinstance(self._chosen, PostgresUrl):
            from bot.store.postgres import translate

            sql = translate(sql)
        row = conn.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if isinstance(self._chosen, PostgresUrl):
                import psycopg

                conn = psycopg.connect(self._chosen.url, autocommit=True)
            else:
                # Read-only: the benchmark must not take the bot's write lock.
                conn = sqlite3.connect(f"file:{self._chosen.path}?mode=ro", uri=True)
            self._local.conn = conn
        return conn

    def close_thread(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
