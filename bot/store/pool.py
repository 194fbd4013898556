"""SQLite connections: a small pool per process, one writer at a time, and waits with a bound.

Connections come from the pool, one per operation, and are closed by `close()`: the number of
open files stays bounded however many threads use the store.

Every wait is bounded, so that an acknowledgement to Slack (due within 3 s) is never held up
longer than `wait_seconds` in all by the database: the turn to write among this process's
threads, a free connection, and SQLite's busy timeout for other processes' writers share one
deadline. When it passes, or SQLite says the disk is full, the file is read-only or damaged,
the operation raises `StoreUnavailable` (bot/errors.py) and nothing was changed: the caller can
say so in its answer.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.errors import StoreUnavailable
from bot.store.engine import SQLITE, Cursor, Duplicate

BUSY_TIMEOUT_MS = 1000
# The longest a store operation waits, in all, before it gives up with StoreUnavailable: with
# the modal's DWS precheck (1.5 s at most, bot/form.py), a submission is answered within 3 s.
WAIT_SECONDS = 1.25
# Below this much free space on its volume, the database counts as full.
MIN_FREE_BYTES = 512 * 1024

# SQLite's words for what is wrong with the database itself, not with a statement of ours.
_REASONS = (
    ("full", ("database or disk is full", "disk is full")),
    ("locked", ("database is locked", "database table is locked", "database is busy")),
    ("read-only", ("readonly database", "read-only")),
    ("corrupt", ("malformed", "file is not a database", "corrupt")),
    ("io", ("disk i/o error",)),
    ("unavailable", ("unable to open database file",)),
)


def unavailable(error: sqlite3.Error) -> StoreUnavailable | None:
    """The StoreUnavailable an SQLite error stands for; None for errors of our own making
    (a constraint, a bad statement), which are not the database's trouble."""
    if not isinstance(error, sqlite3.OperationalError) and type(error) is not sqlite3.DatabaseError:
        return None
    text = str(error).lower()
    for reason, words in _REASONS:
        if any(word in text for word in words):
            return StoreUnavailable(reason, str(error))
    return None


class SqliteDb:
    """One SQLite connection as the store uses it (bot/store/engine.py's `Db`), with
    sqlite-utils' view of it (`utils`) for what reads the schema."""

    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.utils = sqlite_utils.Database(conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        # Straight on sqlite3: sqlite-utils' query() wraps each one in a savepoint (two more
        # statements), which a click's reads cannot afford. Our statements all return rows.
        cursor = self.conn.execute(sql, params)
        keys = [column[0] for column in cursor.description]
        return (dict(zip(keys, row, strict=True)) for row in cursor)

    def close(self) -> None:
        self.conn.close()


class Pool:
    """SQLite connections for the threads of one process, and its writers' turns."""

    def __init__(self, path: Path, pool_size: int, *, wait_seconds: float = WAIT_SECONDS) -> None:
        self.path = path
        self.wait_seconds = wait_seconds
        self._idle: queue.LifoQueue[SqliteDb] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._opened: list[SqliteDb] = []
        self._lock = threading.Lock()
        # Writers of this process take turns here rather than in SQLite's busy handler, which
        # sleeps in steps of up to 100 ms; other processes still meet the busy timeout.
        self._write_lock = threading.Lock()
        self._closed = False
        # Set when SQLite found the file damaged; /healthz checks it again until it is not.
        self.damaged = False
        _create_private(self.path)

    @contextmanager
    def connection(self, wait: float | None = None) -> Iterator[SqliteDb]:
        """A connection of the pool for one operation; waits at most `wait` seconds for one."""
        if not self._slots.acquire(timeout=self.wait_seconds if wait is None else wait):
            raise StoreUnavailable("locked", "every connection of the pool stayed in use")
        try:
            with self._translated():
                db = self._take()
            try:
                with self._translated():
                    yield db
            finally:
                # A connection that met a damaged file may hold damaged pages in its cache.
                if self._closed or self.damaged:
                    db.close()
                else:
                    self._idle.put(db)
        finally:
            self._slots.release()

    def _take(self) -> SqliteDb:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._open()

    def _open(self) -> SqliteDb:
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error:
            conn.close()
            raise
        db = SqliteDb(conn)
        with self._lock:
            self._opened.append(db)
        return db

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as error:
            if "UNIQUE" in str(error):
                raise Duplicate(str(error)) from error
            raise
        except sqlite3.Error as error:
            trouble = unavailable(error)
            if trouble is None:
                raise
            if trouble.reason == "io" and free_bytes(self.path) < MIN_FREE_BYTES:
                trouble = StoreUnavailable("full", str(error))  # e.g. no room for its -shm file
            if trouble.reason == "corrupt":
                self.damaged = True
            raise trouble from error

    @contextmanager
    def transaction(self, wait: float | None = None) -> Iterator[SqliteDb]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write cannot interleave.
        Waits at most `wait` seconds in all (default: the pool's) for its turn."""
        with self._turn(wait) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                _roll_back(db)
                raise

    def write_once(self, sql: str, params: list[Any], wait: float | None = None) -> int:
        """One statement that writes, as a transaction of its own (fewer round trips than
        BEGIN … COMMIT); returns how many rows it changed."""
        with self._turn(wait) as db:
            return int(db.execute(sql, params).rowcount)

    def alone(self, wait: float | None = None) -> AbstractContextManager[SqliteDb]:
        """This process's turn to write, for statements that each commit on their own."""
        return self._turn(wait)

    @contextmanager
    def _turn(self, wait: float | None) -> Iterator[SqliteDb]:
        """This process's turn to write and a connection, within `wait` seconds in all."""
        budget = self.wait_seconds if wait is None else wait
        deadline = time.monotonic() + budget
        # The lock first: a writer waiting for its turn holds no connection readers could use.
        if not self._write_lock.acquire(timeout=budget):
            raise StoreUnavailable("locked", "this process's other writers held it too long")
        try:
            with self.connection(_left(deadline)) as db:
                _busy_timeout(db, deadline)
                yield db
        finally:
            self._write_lock.release()

    def close(self) -> None:
        """Close every connection; connections in use close when they are given back."""
        self._closed = True
        with self._lock:
            opened, self._opened = self._opened, []
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
        del opened  # the ones in use are closed by connection() on their way back


def free_bytes(path: Path) -> int:
    """Free space on the volume of `path` (as much as needed when it cannot be told)."""
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return MIN_FREE_BYTES
    return stat.f_bavail * stat.f_frsize


# Each connection's busy timeout, where it is not BUSY_TIMEOUT_MS (as when it was opened).
_BUSY: weakref.WeakKeyDictionary[SqliteDb, int] = weakref.WeakKeyDictionary()


def _busy_timeout(db: SqliteDb, deadline: float) -> None:
    """SQLite's wait for other processes' writers: what is left of the deadline, at most
    BUSY_TIMEOUT_MS. Set only when it changes (in steps of 50 ms): each statement costs a round
    trip through the interpreter's lock."""
    wanted = min(BUSY_TIMEOUT_MS, int(_left(deadline) * 1000) // 50 * 50 or 10)
    if _BUSY.get(db, BUSY_TIMEOUT_MS) != wanted:
        db.execute(f"PRAGMA busy_timeout = {wanted}")
        _BUSY[db] = wanted


def _left(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())


def _roll_back(db: SqliteDb) -> None:
    """Undo what is left of a transaction (a failed COMMIT may already have ended it)."""
    if db.conn.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is in trouble already; the error that got us here says why


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it. Its
    directory must exist: a missing one is a volume not mounted, not something to create."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
