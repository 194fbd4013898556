"""Whether the database can take a write now: for /healthz and for start-up.

A probe opens a connection of its own (never one the app's threads hold or wait for), with a
short busy timeout, and:

- checks the volume has room to grow the database and its journal (a full disk makes every
  write fail, sooner or later, even while SQLite still has room in its journal);
- reads, then begins a write transaction and writes a row that it rolls back, so a database
  held by another writer for too long, a read-only file and a damaged table all show;
- when SQLite was seen to find the file damaged, runs `PRAGMA quick_check` again, so health
  comes back once the file is repaired.

At start-up, `PRAGMA quick_check` runs on the whole file once, so a damaged index is found
before the first request needs it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.errors import StoreUnavailable
from bot.store.pool import MIN_FREE_BYTES, free_bytes, unavailable

PROBE_SECONDS = 1.0


def probe(
    path: Path, *, check_damage: bool, seconds: float = PROBE_SECONDS
) -> StoreUnavailable | None:
    """Why the database cannot take a write now, or None when it can."""
    if free_bytes(path) < MIN_FREE_BYTES:
        return StoreUnavailable("full", f"less than {MIN_FREE_BYTES // 1024} KiB free")
    try:
        conn = _connect(path, seconds)
    except sqlite3.Error as error:
        return _trouble(error)
    try:
        conn.execute("SELECT max(id) FROM requests").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO deliveries (event_id, at) VALUES ('healthz-probe', '')"
            )
        finally:
            conn.execute("ROLLBACK")
        if check_damage:
            return _quick_check(conn)
    except sqlite3.Error as error:
        return _trouble(error)
    finally:
        conn.close()
    return None


def check_at_start(path: Path, seconds: float) -> None:
    """Raise StoreUnavailable when the database cannot be used: damaged, full, read-only, or
    held by another writer for `seconds`."""
    trouble = probe(path, check_damage=True, seconds=seconds)
    if trouble is not None:
        raise trouble


def _connect(path: Path, seconds: float) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=seconds, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
    return conn


def _quick_check(conn: sqlite3.Connection) -> StoreUnavailable | None:
    first = conn.execute("PRAGMA quick_check(1)").fetchone()
    if first is None or first[0] == "ok":
        return None
    return StoreUnavailable("corrupt", str(first[0]))


def _trouble(error: sqlite3.Error) -> StoreUnavailable:
    return unavailable(error) or StoreUnavailable("unavailable", str(error))
