"""`snapcopy db copy SOURCE TARGET`: every request, event, approval and piece of owed work from
one database to another (SQLite to PostgreSQL, the way to move an install, or back).

With the bot stopped:

- SOURCE is read as it is; one at the schema of an older release is first brought to this
  release's (and the copy says so), one of a newer release is refused: its rows may mean what
  this snapcopy does not know.
- TARGET is opened as the store opens it (created or migrated to this release's schema) and
  must hold nothing yet: a copy never mixes two audit logs.
- Every table is copied with its ids (buttons in Slack carry them), in batches, in one
  transaction on TARGET (all or nothing), from one consistent view of SOURCE. PostgreSQL takes
  the rows by COPY; its id sequences are then moved past the copied ids, so that new requests
  do not collide with them.
- Then the rows are counted on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from bot.database import Database, PostgresUrl, SqliteFile
from bot.errors import StoreUnavailable
from bot.store.engine import Db, Engine, SchemaTooNew
from bot.store.status import Status, status
from bot.store.store import open_engine

if TYPE_CHECKING:
    from bot.store.pool import SqliteDb
    from bot.store.postgres import PostgresDb

# In the order their references need them.
TABLES = ("requests", "events", "approvals", "delete_approvals", "work", "deliveries", "replays")
# A target holding a row in any of these already holds an audit log.
HOLDING = TABLES[:5]
# Tables with an identity id (PostgreSQL's sequences follow the copied ids).
WITH_IDS = ("requests", "events", "work")
BATCH = 5000
WAIT_SECONDS = 30.0


class CopyRefused(Exception):
    """The copy cannot start; the message says why, in one sentence."""


class Unusable(Exception):
    """SOURCE or TARGET cannot be opened or read: which one, and the store's reason."""

    def __init__(self, side: str, database: Database, trouble: StoreUnavailable) -> None:
        self.side = side
        self.database = database
        self.trouble = trouble
        super().__init__(f"{side} {database.shown} {trouble.what} ({trouble.detail})")


@dataclass(frozen=True)
class Copied:
    counts: dict[str, tuple[int, int]]  # table -> (rows in the source, rows in the target)
    seconds: float
    migrated_from: int | None = None  # SOURCE's schema version, when it was migrated first
    known: int = 0  # this snapcopy's schema version

    @property
    def matches(self) -> bool:
        return all(source == target for source, target in self.counts.values())

    def lines(self) -> list[str]:
        """What `snapcopy db copy` prints: the migration of SOURCE, if any, and the counts."""
        out = []
        if self.migrated_from is not None:
            out.append(
                f"SOURCE was at schema version {self.migrated_from}: migrated it to version "
                f"{self.known} first."
            )
        width = max(len(table) for table in self.counts)
        out.append(f"{'table':<{width}}  {'source':>9}  {'target':>9}")
        for table, (source, target) in self.counts.items():
            mark = "" if source == target else "  MISMATCH"
            out.append(f"{table:<{width}}  {source:>9,}  {target:>9,}{mark}")
        verdict = "every count matches" if self.matches else "the counts differ"
        out.append(f"copied in {self.seconds:.1f} s; {verdict}.")
        return out


def copy_database(source: Database, target: Database) -> Copied:
    """Copy `source` into the empty `target`. Raises CopyRefused (one sentence) when the copy
    must not start, Unusable when either database cannot be used, and StoreUnavailable when
    the copy broke off (then TARGET keeps nothing of it)."""
    _refuse_same(source, target)
    found = _source_status(source)
    started = time.monotonic()
    writing = _opened(target, "TARGET", migrate=True)
    try:
        _refuse_unless_empty(writing, target)
        # Only now, with a target known to be usable: SOURCE is migrated (if older) once the
        # copy can go on.
        reading = _opened(source, "SOURCE", migrate=found.pending > 0)
        try:
            _copy_all(reading, writing)
            counts = {table: (_count(reading, table), _count(writing, table)) for table in TABLES}
        finally:
            reading.close()
    finally:
        writing.close()
    migrated = found.version if found.pending else None
    return Copied(counts, time.monotonic() - started, migrated, found.known)


def _refuse_same(source: Database, target: Database) -> None:
    """Copying a database into itself would refuse (not empty) or copy nothing: say why."""
    if isinstance(source, SqliteFile) and isinstance(target, SqliteFile):
        same = source.path.resolve() == target.path.resolve()
    elif isinstance(source, PostgresUrl) and isinstance(target, PostgresUrl):
        same = source.where == target.where
    else:
        same = False
    if same:
        raise CopyRefused("SOURCE and TARGET are the same database.")


def _source_status(source: Database) -> Status:
    """SOURCE's schema version, read without changing anything, so that a source that is no
    snapcopy database or one of a newer release is refused before anything is written."""
    if isinstance(source, SqliteFile) and not source.path.is_file():
        raise CopyRefused(f"there is no database at {source.shown}.")
    with _side("SOURCE", source):
        found = status(source)
    if found.version == 0:
        raise CopyRefused(f"SOURCE {source.shown} holds no snapcopy database.")
    if found.too_new:
        raise CopyRefused(
            f"SOURCE {source.shown} is newer than this snapcopy (schema version "
            f"{found.version}; this snapcopy knows up to {found.known}): copy it with the "
            "release that migrated it, or a newer one."
        )
    return found


@contextmanager
def _side(side: str, database: Database) -> Iterator[None]:
    """The store's trouble with SOURCE or TARGET, as an Unusable that says which."""
    try:
        yield
    except StoreUnavailable as trouble:
        raise Unusable(side, database, trouble) from trouble
    except SchemaTooNew as error:
        raise CopyRefused(f"{side} {database.shown}: {error}") from error


def _opened(database: Database, side: str, *, migrate: bool) -> Engine:
    """The store's engine for `database`, connected once (so that a database out of reach is
    named now), and migrated to this release's schema if `migrate`."""
    try:
        engine = open_engine(database, pool_size=2, wait_seconds=WAIT_SECONDS)
    except OSError as error:  # an SQLite file that cannot be made: its directory, say
        raise CopyRefused(f"{side} {database.shown} cannot be opened: {error.strerror}.") from None
    try:
        with _side(side, database):
            if migrate:
                engine.migrate(WAIT_SECONDS)
            with engine.connection(wait=WAIT_SECONDS) as db:
                db.execute("SELECT 1").fetchone()
    except BaseException:
        engine.close()
        raise
    return engine


def _refuse_unless_empty(engine: Engine, database: Database) -> None:
    with _side("TARGET", database), engine.connection(wait=WAIT_SECONDS) as db:
        holding = [t for t in HOLDING if db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if holding:
        raise CopyRefused(
            f"TARGET {database.shown} is not empty (it holds {', '.join(holding)}); "
            "copy into a new, empty database."
        )


def _copy_all(reading: Engine, writing: Engine) -> None:
    """Every table, from one view of SOURCE, in one transaction on TARGET."""
    with _snapshot(reading) as source, writing.transaction(wait=WAIT_SECONDS) as target:
        if target.dialect.name == "postgresql":
            _unbounded(target)
        for table in TABLES:
            _copy_table(source, target, table)
        if target.dialect.name == "postgresql":
            _follow_sequences(target)


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Db]:
    """A read-only transaction on SOURCE: every table as of one moment. On PostgreSQL without
    the store's time limits, since one large table can take longer than a click's bound."""
    with engine.connection(wait=WAIT_SECONDS) as db:
        if db.dialect.name == "postgresql":
            with _postgres(db).conn.transaction(force_rollback=True):
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                _unbounded(db)
                yield db
            return
        conn = _sqlite(db).conn
        conn.execute("BEGIN")
        try:
            yield db
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _unbounded(db: Db) -> None:
    """Lift the store's per-statement and idle bounds for this transaction only: a COPY of a
    million rows is one statement, and either side waits while the other works."""
    db.execute("SET LOCAL statement_timeout = 0")
    db.execute("SET LOCAL idle_in_transaction_session_timeout = 0")


def _columns(db: Db, table: str) -> list[str]:
    """`table`'s columns as this database has them (read, not assumed, so that the two sides
    may differ in columns the other lacks)."""
    description = db.execute(f"SELECT * FROM {table} LIMIT 0").description
    return [column[0] for column in description]


def _copy_table(source: Db, target: Db, table: str) -> None:
    """The columns both sides have, in batches, by COPY into PostgreSQL or executemany into
    SQLite."""
    wanted = set(_columns(target, table))
    columns = [column for column in _columns(source, table) if column in wanted]
    rows = _batches(source, f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")
    if target.dialect.name == "postgresql":
        _copy_in(_postgres(target), table, columns, rows)
        return
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    for batch in rows:
        _sqlite(target).conn.executemany(insert, batch)


def _batches(db: Db, sql: str) -> Iterator[list[Any]]:
    """The query's rows, BATCH at a time: a table is never held in memory whole (PostgreSQL's
    by a cursor on the server, which needs the snapshot's transaction)."""
    if db.dialect.name == "postgresql":
        cursor: Any = _postgres(db).conn.cursor(name="snapcopy_copy")
        cursor.execute(sql)
    else:
        cursor = db.execute(sql)
    try:
        while batch := cursor.fetchmany(BATCH):
            yield batch
    finally:
        cursor.close()


def _copy_in(target: PostgresDb, table: str, columns: list[str], rows: Iterator[list[Any]]) -> None:
    """PostgreSQL's COPY: the rows streamed in, without a statement per row."""
    with target.conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for batch in rows:
            for row in batch:
                copy.write_row(row)


def _follow_sequences(db: Db) -> None:
    """Rows copied with their ids leave the identity sequences at 1: move each past the
    largest copied id, so the next request does not collide with a copied one."""
    for table in WITH_IDS:
        db.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" coalesce(max(id), 0) + 1, false) FROM {table}"
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connection(wait=WAIT_SECONDS) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _postgres(db: Db) -> PostgresDb:
    """The PostgreSQL connection under `db`, for what only it has (COPY, server cursors)."""
    return cast("PostgresDb", db)


def _sqlite(db: Db) -> SqliteDb:
    """The sqlite3 connection under `db`, for executemany and the read transaction."""
    return cast("SqliteDb", db)
