"""The PostgreSQL engine: one database shared by any number of hosts.

- The store's SQL is SQLite's spelling; `translate` rewrites its placeholders, quoting and
  `INSERT OR IGNORE` once per statement text (cached). What differs beyond words is named in
  bot/store/engine.py's `Dialect`.
- Connections come from psycopg's pool, in autocommit mode: a read is one statement, a write
  transaction is BEGIN … COMMIT on one connection (READ COMMITTED; every change is a
  conditional UPDATE, and a read that a write depends on locks its row).
- Every wait is bounded as on SQLite: for a connection, for a row lock (`lock_timeout`), for a
  statement. A session left idle inside a transaction (its process paused) is ended by the
  server, so its row locks do not hold other hosts up.
- Errors that are the database's trouble become `StoreUnavailable`, in one sentence that names
  the host and never the password.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from bot.database import BadUrl, PostgresUrl
from bot.errors import StoreUnavailable
from bot.store.engine import POSTGRES, Cursor, Duplicate
from bot.store.pool import WAIT_SECONDS
from bot.store.schema_postgres import migrate

CONNECT_SECONDS = 5.0
# A transaction left open this long by a paused or partitioned process is ended by the server.
IDLE_IN_TRANSACTION = "10s"
STATEMENT_TIMEOUT = "15s"
# One snapcopy schema per database: migrations of two hosts starting together take turns here.
MIGRATION_LOCK = 0x5C0C0B1E


class PostgresDb:
    """One PostgreSQL connection as the store uses it (bot/store/engine.py's `Db`)."""

    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(translate(sql), params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        cursor = self.conn.cursor(row_factory=dict_row)
        cursor.execute(translate(sql), params)
        return iter(cursor.fetchall())


_QUOTED = re.compile(r"('(?:[^']|'')*')")
_COLUMN = re.compile(r"\[(\w+)\]")


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's spelling to PostgreSQL's: `?` → `%s`, `[column]` → `"column"`, and
    `INSERT OR IGNORE` → `INSERT … ON CONFLICT DO NOTHING`. String literals are left alone."""
    parts = _QUOTED.split(sql)
    for index in range(0, len(parts), 2):  # the even parts are outside quotes
        text = parts[index].replace("%", "%%").replace("?", "%s")
        parts[index] = _COLUMN.sub(r'"\1"', text)
    out = "".join(parts)
    if "INSERT OR IGNORE" in out:
        out = out.replace("INSERT OR IGNORE", "INSERT", 1)
        head, returning, tail = out.partition(" RETURNING ")
        out = f"{head.rstrip()} ON CONFLICT DO NOTHING{returning and ' RETURNING '}{tail}"
    return out


class PostgresEngine:
    dialect = POSTGRES

    def __init__(
        self,
        database: PostgresUrl,
        *,
        pool_size: int,
        wait_seconds: float = WAIT_SECONDS,
        connect_seconds: float = CONNECT_SECONDS,
    ) -> None:
        _check_url(database)
        self.database = database
        self.wait_seconds = wait_seconds
        self._connect_seconds = connect_seconds
        self._pool = psycopg_pool.ConnectionPool(
            database.url,
            min_size=1,
            max_size=pool_size,
            kwargs=self._options(),
            configure=_configure,
            open=False,
            name="snapcopy",
        )
        self._opened = False
        self._purging = threading.Lock()

    def _options(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self._connect_seconds)),
            "application_name": "snapcopy",
            # A host that vanished (a partition) is noticed within about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own (start-up, migrations, copies), errors in one sentence."""
        with self.translated():
            conn = psycopg.connect(self.database.url, **self._options())
            _configure(conn)
            return conn

    def _open(self) -> None:
        if not self._opened:
            self._pool.open(wait=False)
            self._opened = True

    @contextmanager
    def connection(self, wait: float | None = None) -> Iterator[PostgresDb]:
        self._open()
        budget = self.wait_seconds if wait is None else wait
        with self.translated():
            with self._pool.connection(timeout=budget) as conn:
                yield PostgresDb(conn)

    @contextmanager
    def transaction(self, wait: float | None = None) -> Iterator[PostgresDb]:
        with self.connection(wait) as db, self.translated(), db.conn.transaction():
            if wait is not None and wait > self.wait_seconds:
                db.conn.execute(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'")
            yield db

    def statement(self, wait: float | None = None) -> AbstractContextManager[PostgresDb]:
        return self.connection(wait)  # autocommit: each statement is a transaction

    def write_once(self, sql: str, params: Sequence[Any], wait: float | None = None) -> int:
        with self.connection(wait) as db:
            return int(db.execute(sql, params).rowcount)

    def migrate(self, wait: float) -> None:
        with self.connect() as conn, self.translated():
            migrate(PostgresDb(conn), MIGRATION_LOCK, wait)

    def health(self) -> StoreUnavailable | None:
        try:
            with self.connection(wait=1.0) as db:
                db.execute("SELECT max(id) FROM requests").fetchone()
                if db.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return StoreUnavailable("read-only", f"{self.database.where} is a standby")
                with db.conn.transaction(force_rollback=True):
                    db.execute(
                        "INSERT INTO deliveries (event_id, at) VALUES ('healthz-probe', '')"
                        " ON CONFLICT (event_id) DO NOTHING"
                    )
        except StoreUnavailable as trouble:
            return trouble
        return None

    def check(self, seconds: float) -> None:
        trouble = self.health()
        if trouble is not None:
            raise trouble

    def close(self) -> None:
        if self._opened:
            self._pool.close(timeout=1.0)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """PostgreSQL's and the pool's errors, as the store's."""
        try:
            yield
        except errors.UniqueViolation as error:
            raise Duplicate(str(error)) from error
        except psycopg_pool.PoolTimeout as error:
            raise StoreUnavailable(
                "unreachable", f"no connection to {self.database.where} within the wait"
            ) from error
        except psycopg.Error as error:
            trouble = unavailable(error, self.database)
            if trouble is None:
                raise
            if isinstance(error, psycopg.OperationalError) and self._opened:
                self._purge()
            raise trouble from error

    def _purge(self) -> None:
        """After a connection broke (the server restarted, failed over, or ended it), check
        the idle ones too, on a thread of their own: the next operations get live connections
        rather than failing one by one on the other dead ones."""
        if self._purging.acquire(blocking=False):
            threading.Thread(target=self._check_idle, name="pg-pool-check", daemon=True).start()

    def _check_idle(self) -> None:
        try:
            self._pool.check()
        except Exception:  # noqa: BLE001 - the pool is closing; nothing to purge any more
            pass
        finally:
            self._purging.release()


def _check_url(database: PostgresUrl) -> None:
    """Refuse, in one sentence, a URL whose words libpq would refuse (an unknown parameter, a
    bad escape): found now, rather than as a driver's error at the first connection."""
    try:
        conninfo_to_dict(database.url)
    except psycopg.ProgrammingError as error:
        said = database.redact(str(error).strip().splitlines()[0] or type(error).__name__)
        raise BadUrl(f"the PostgreSQL URL {database.shown} cannot be used ({said}).") from None


# SQLSTATEs that are the database's trouble, not a statement's, by StoreUnavailable reason.
_REASONS = {
    "53100": "full",  # disk_full
    "53200": "full",  # out_of_memory
    "55P03": "locked",  # lock_not_available (lock_timeout)
    "57014": "locked",  # query_canceled (statement_timeout)
    "40001": "locked",  # serialization_failure
    "40P01": "locked",  # deadlock_detected
    "25006": "read-only",  # read_only_sql_transaction
    "42501": "denied",  # insufficient_privilege
    "28P01": "refused",  # invalid_password
    "28000": "refused",  # invalid_authorization_specification
    "3D000": "unavailable",  # invalid_catalog_name: no such database
}


def unavailable(error: psycopg.Error, database: PostgresUrl) -> StoreUnavailable | None:
    """The StoreUnavailable a PostgreSQL error stands for; None for errors of our own making."""
    reason = _REASONS.get(error.sqlstate or "")
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if reason is None and isinstance(error, psycopg.OperationalError):
        reason = _turned_away(text)
    if reason is None:
        return None
    return StoreUnavailable(reason, f"{database.where}: {text}")


def _turned_away(text: str) -> str:
    """Why a connection failed: the server's refusals carry no SQLSTATE, only their words."""
    if "password authentication failed" in text or re.search(r'role "[^"]*" does not exist', text):
        return "refused"
    if re.search(r'database "[^"]*" does not exist', text):
        return "unavailable"  # reached, but there is no such database to open
    return "unreachable"


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each connection's bounds, set once when it is opened."""
    conn.execute(
        f"SET lock_timeout = '{int(WAIT_SECONDS * 1000)}ms';"
        f" SET statement_timeout = '{STATEMENT_TIMEOUT}';"
        f" SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"
    )
