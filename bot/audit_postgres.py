"""`snapcopy audit` on PostgreSQL: one read-only transaction, the same statements as on SQLite.

Imported only when the audit log is a PostgreSQL URL, so the SQLite path stays standard
library only. The transaction is READ ONLY (the server itself refuses any write in it) and
REPEATABLE READ (every statement sees the log as it was at the first: one snapshot). Tables
and columns are found in the catalog as the statements find them (the search path), whatever
the auditor's privileges; a table the auditor may not read is then said so plainly.
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
        """The tables a statement names without a schema (sqlite_master's, on SQLite)."""
        listed = self.conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND pg_table_is_visible(oid)"
        )
        return {row["relname"] for row in listed}

    def columns(self, table: str) -> list[str]:
        listed = self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            [table],
        )
        return [row["attname"] for row in listed]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        return iter(self.conn.execute(translate(sql), params).fetchall())


@contextmanager
def open_read_only(database: PostgresUrl, error: type[Exception]) -> Iterator[PostgresReader]:
    """A read-only transaction on `database`; `error` (one sentence that names the host, never
    the password) when it cannot be reached or read."""
    try:
        conn = psycopg.connect(
            database.url, row_factory=dict_row, connect_timeout=round(CONNECT_SECONDS)
        )
    except psycopg.Error as failed:
        raise error(_sentence(database, failed)) from None
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        reader = PostgresReader(conn)
        if "requests" not in reader.tables():
            raise error(f"{database.shown} holds no snapcopy audit log (no requests table).")
        yield reader
    except psycopg.Error as failed:
        raise error(_sentence(database, failed)) from None
    finally:
        conn.close()  # the transaction ends with the session, having written nothing


def _sentence(database: PostgresUrl, failed: psycopg.Error) -> str:
    trouble = unavailable(failed, database)
    if trouble is None:
        first = str(failed).strip().splitlines()[0] if str(failed).strip() else ""
        what, detail = "could not be read", f"{database.where}: {first or type(failed).__name__}"
    else:
        what, detail = trouble.what, trouble.detail
    for secret in database.secrets:
        detail = detail.replace(secret, "***")
    return f"the audit log {database.shown} {what} ({detail})."
