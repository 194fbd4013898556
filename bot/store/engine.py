"""What the store asks of a database engine, and the few ways the two engines differ.

The store's SQL is written once, for both engines, in SQLite's spelling: `?` placeholders,
`[column]` quoting and `INSERT OR IGNORE`. PostgreSQL's engine rewrites those three
(bot/store/postgres.py). What cannot be rewritten word for word is named in `Dialect`:

- `lock_row`: a read whose row a later write of the same transaction depends on. SQLite's
  transactions take the one write lock at BEGIN IMMEDIATE, so nothing is needed; PostgreSQL
  locks the row (`FOR UPDATE`), so two approvals of one request are counted one after the other.
- `skip_locked`: a claim passes over rows another claimer is taking (`FOR UPDATE SKIP LOCKED`),
  rather than waiting for it and then claiming the same row.
- `append_json`: adds a value to a JSON list held in a text column.

Locking at start-up (migrations once, under a lock) is each engine's own: SQLite's write lock,
PostgreSQL's advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from bot.database import Database
from bot.errors import StoreUnavailable


@dataclass(frozen=True)
class Dialect:
    name: str
    lock_row: str
    skip_locked: str
    append_json: str  # SQL that sets a JSON-list column (formatted with {column}) to it plus ?


SQLITE = Dialect(
    name="sqlite",
    lock_row="",
    skip_locked="",
    append_json="json_insert({column}, '$[#]', ?)",
)
POSTGRES = Dialect(
    name="postgresql",
    lock_row=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    append_json="(({column})::jsonb || to_jsonb(?::text))::text",
)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    @property
    def description(self) -> Any:
        """The columns of a query's rows: each a sequence whose first item is the name."""
        ...


class Db(Protocol):
    """One connection, for one operation or transaction."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run a statement; rows come back as tuples."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Run a query; rows come back as dicts by column name."""
        ...


class Engine(Protocol):
    @property
    def database(self) -> Database: ...

    @property
    def dialect(self) -> Dialect: ...

    def transaction(self, wait: float | None = None) -> AbstractContextManager[Db]:
        """One transaction that may write; waits at most `wait` seconds for its turn."""
        ...

    def connection(self, wait: float | None = None) -> AbstractContextManager[Db]:
        """A connection for reads, each statement on its own."""
        ...

    def statement(self, wait: float | None = None) -> AbstractContextManager[Db]:
        """A connection for one statement that writes and commits on its own (no BEGIN and
        COMMIT around it), in this process's turn to write."""
        ...

    def write_once(self, sql: str, params: Sequence[Any], wait: float | None = None) -> int:
        """One statement that writes, as a transaction of its own; how many rows it changed."""
        ...

    def migrate(self, wait: float) -> None:
        """Bring the schema up to date, once, whoever else starts at the same time."""
        ...

    def health(self) -> StoreUnavailable | None:
        """Why the database cannot take a write now (None: it can), within about a second."""
        ...

    def check(self, seconds: float) -> None:
        """At start-up: raise StoreUnavailable if the database cannot be used."""
        ...

    def close(self) -> None: ...


class Duplicate(Exception):
    """A row that a unique key refuses (e.g. a live request's backup name taken)."""


class SchemaTooNew(Exception):
    """The database was migrated by a newer snapcopy than this one."""

    def __init__(self, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"the database's schema is version {found}, newer than this snapcopy knows "
            f"(version {known}): run the snapcopy release that migrated it, or a newer one."
        )
