"""SQLite connections: a small pool per process, and one writer at a time.

Connections come from the pool, one per operation, and are closed by `close()`: the number of
open files stays bounded however many threads use the store.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 5000


class Pool:
    """SQLite connections for the threads of one process, and its writers' turns."""

    def __init__(self, path: Path, pool_size: int) -> None:
        self.path = path
        self._idle: queue.LifoQueue[sqlite_utils.Database] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._opened: list[sqlite_utils.Database] = []
        self._lock = threading.Lock()
        # Writers of this process take turns here rather than in SQLite's busy handler, which
        # sleeps in steps of up to 100 ms; other processes still meet the busy timeout.
        self._write_lock = threading.Lock()
        self._closed = False
        _create_private(self.path)

    @contextmanager
    def connection(self) -> Iterator[sqlite_utils.Database]:
        """A connection of the pool for one operation; waits while all are in use."""
        self._slots.acquire()
        try:
            try:
                db = self._idle.get_nowait()
            except queue.Empty:
                db = self._open()
            try:
                yield db
            finally:
                if self._closed:
                    db.close()
                else:
                    self._idle.put(db)
        finally:
            self._slots.release()

    def _open(self) -> sqlite_utils.Database:
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        db = sqlite_utils.Database(conn)
        with self._lock:
            self._opened.append(db)
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write cannot interleave."""
        # The lock first: a writer waiting for its turn holds no connection readers could use.
        with self._write_lock, self.connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

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


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it. Its
    directory must exist: a missing one is a volume not mounted, not something to create."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
