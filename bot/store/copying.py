"""`snapcopy db copy SOURCE TARGET`: every request, event, approval and piece of owed work from
one database to another (SQLite to PostgreSQL, the way to move an install, or back).

With the bot stopped: the source is brought to this snapcopy's schema if it is older, the
target is created (or migrated) and must hold nothing yet; every table is copied with its ids,
in one transaction on the target (all or nothing), in batches; then the rows are counted on
both sides. PostgreSQL takes the rows by COPY, and its id sequences are moved past the copied
ids so that new requests do not collide with them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bot.database import Database, SqliteFile
from bot.store.engine import Db, Engine
from bot.store.store import open_engine

# In the order their references need them.
TABLES = ("requests", "events", "approvals", "delete_approvals", "work", "deliveries", "replays")
# Tables with an identity id (PostgreSQL's sequences follow the copied ids).
WITH_IDS = ("requests", "events", "work")
BATCH = 5000
WAIT_SECONDS = 30.0


class CopyRefused(Exception):
    """The copy cannot start; the message says why, in one sentence."""


@dataclass(frozen=True)
class Copied:
    counts: dict[str, tuple[int, int]]  # table -> (rows in the source, rows in the target)
    seconds: float

    @property
    def matches(self) -> bool:
        return all(source == target for source, target in self.counts.values())

    def lines(self) -> list[str]:
        width = max(len(table) for table in self.counts)
        out = [f"{'table':<{width}}  {'source':>9}  {'target':>9}"]
        for table, (source, target) in self.counts.items():
            mark = "" if source == target else "  MISMATCH"
            out.append(f"{table:<{width}}  {source:>9,}  {target:>9,}{mark}")
        verdict = "every count matches" if self.matches else "the counts differ"
        out.append(f"copied in {self.seconds:.1f} s; {verdict}.")
        return out


def copy_database(source: Database, target: Database) -> Copied:
    """Copy `source` into the empty `target`; raises CopyRefused (one sentence) or
    StoreUnavailable / SchemaTooNew for a database that cannot be used."""
    if source == target:
        raise CopyRefused("SOURCE and TARGET are the same database.")
    if isinstance(source, SqliteFile) and not source.path.is_file():
        raise CopyRefused(f"there is no database at {source.shown}.")
    started = time.monotonic()
    reading, writing = _opened(source), _opened(target)
    try:
        with writing.transaction(wait=WAIT_SECONDS) as out:
            _refuse_unless_empty(out, target)
            with reading.connection(wait=WAIT_SECONDS) as into:
                for table in TABLES:
                    _copy_table(into, out, table)
            if out.dialect.name == "postgresql":
                _follow_sequences(out)
        counts = {table: (_count(reading, table), _count(writing, table)) for table in TABLES}
    finally:
        reading.close()
        writing.close()
    return Copied(counts, time.monotonic() - started)


def _opened(database: Database) -> Engine:
    engine = open_engine(database, pool_size=2, wait_seconds=WAIT_SECONDS)
    try:
        engine.migrate(WAIT_SECONDS)
    except BaseException:
        engine.close()
        raise
    return engine


def _refuse_unless_empty(db: Db, database: Database) -> None:
    holding = [t for t in TABLES[:5] if db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if holding:
        raise CopyRefused(
            f"the target {database.shown} is not empty (it holds {', '.join(holding)}); "
            "copy into a new, empty database."
        )


def _columns(db: Db, table: str) -> list[str]:
    cursor = db.execute(f"SELECT * FROM {table} LIMIT 0")
    description: Sequence[Any] = cursor.description
    return [column[0] for column in description]


def _copy_table(source: Db, target: Db, table: str) -> None:
    wanted = set(_columns(target, table))
    columns = [column for column in _columns(source, table) if column in wanted]
    rows = _batches(source, f"SELECT {', '.join(columns)} FROM {table}")
    if target.dialect.name == "postgresql":
        _copy_in(target, table, columns, rows)
        return
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    for batch in rows:
        target.conn.executemany(insert, batch)  # type: ignore[attr-defined]


def _batches(db: Db, sql: str) -> Iterator[list[Any]]:
    cursor = db.execute(sql)
    while batch := cursor.fetchmany(BATCH):  # type: ignore[attr-defined]
        yield batch


def _copy_in(target: Db, table: str, columns: list[str], rows: Iterator[list[Any]]) -> None:
    """PostgreSQL's COPY: the rows streamed in, without a statement per row."""
    conn = target.conn  # type: ignore[attr-defined]
    conn.execute("SET LOCAL statement_timeout = 0")
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for batch in rows:
            for row in batch:
                copy.write_row(row)


def _follow_sequences(db: Db) -> None:
    for table in WITH_IDS:
        db.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" coalesce(max(id), 0) + 1, false) FROM {table}"
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connection(wait=WAIT_SECONDS) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
