"""`snapcopy audit` on PostgreSQL: one read-only transaction, the same statements as on SQLite.

Imported only when the audit log is a PostgreSQL URL, so the SQLite path stays standard
library only. The transaction is READ ONLY: the server itself refuses any write in it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bot.database import PostgresUrl
from bot.store.postgres import CONNECT_SECONDS, translate, unavailable


class PostgresReader:
    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.conn = conn

    def tables(self) -> set[str]:
        listed = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {row["table_name"] for row in listed}

    def columns(self, table: str) -> list[str]:
        listed = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = %s ORDER BY ordinal_position",
            [table],
        )
        return [row["column_name"] for row in listed]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        return iter(self.conn.execute(translate(sql), params).fetchall())


@contextmanager
def open_read_only(database: PostgresUrl, error: type[Exception]) -> Iterator[PostgresReader]:
    """A read-only transaction on `database`; `error` (one sentence, never the password) when
    it cannot be read."""
    try:
        conn = psycopg.connect(
            database.url, row_factory=dict_row, connect_timeout=round(CONNECT_SECONDS)
        )
    except psycopg.Error as failed:
        trouble = unavailable(failed, database)
        what = trouble.what if trouble else "cannot be read"
        detail = trouble.detail if trouble else database.where
        raise error(f"the audit log {database.shown} {what} ({detail}).") from None
    try:
        conn.read_only = True
        reader = PostgresReader(conn)
        if "requests" not in reader.tables():
            raise error(f"{database.shown} holds no snapcopy audit log (no requests table).")
        yield reader
    finally:
        conn.rollback()
        conn.close()
