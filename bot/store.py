"""The audit log: SQLite through sqlite-utils, one `requests` row per copy request and an
append-only `events` trail.

The database is the truth about a request. Every state change is a single conditional UPDATE
(`... WHERE id = ? AND state IN (...)`) inside an immediate transaction together with its event,
so of two racing clicks exactly one changes anything, and a crash never leaves a state change
without its event or the other way round.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.domain import CopyRequest, NewRequest, State

BUSY_TIMEOUT_MS = 5000

# Each entry upgrades the schema by one version (PRAGMA user_version); append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        state TEXT NOT NULL,
        source_snapshot_id TEXT NOT NULL,
        backup_name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        requested_by TEXT NOT NULL,
        approved_by TEXT,
        denied_by TEXT,
        deny_reason TEXT,
        channel_id TEXT,
        thread_ts TEXT,
        message_ts TEXT,
        new_snapshot_id TEXT,
        snapshot_status TEXT,
        error TEXT,
        error_code TEXT,
        dws_request_ids TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        expires_at TEXT
    );
    CREATE INDEX requests_state ON requests (state);
    CREATE INDEX requests_requested_by ON requests (requested_by, id);
    CREATE UNIQUE INDEX requests_live_name ON requests (lower(backup_name))
        WHERE state IN ('pending_approval', 'approved', 'copying');
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id INTEGER REFERENCES requests (id),
        kind TEXT NOT NULL,
        actor TEXT,
        at TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_request_id ON events (request_id, id);
    """,
    """
    CREATE TABLE deliveries (
        event_id TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );
    """,
)

REQUEST_COLUMNS = tuple(CopyRequest.model_fields)


def iso(moment: datetime) -> str:
    """UTC timestamps that sort as text: 2026-11-28T15:04:05.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso() -> str:
    return iso(datetime.now(UTC))


class NameInUse(Exception):
    """Another live request already uses this backup name."""

    def __init__(self, name: str, request_id: int | None) -> None:
        self.name = name
        self.request_id = request_id
        super().__init__(f"request #{request_id} already uses the name {name}")


class Store:
    """Requests and events. Safe to share between threads: each thread gets its own connection."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        _create_private(self.path)
        with self._transaction() as db:
            _migrate(db)

    # --- connections ---------------------------------------------------------------------

    @property
    def db(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            db = sqlite_utils.Database(conn)
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write cannot interleave."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection; another call from this thread opens a new one."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def healthy(self) -> bool:
        try:
            self.db.execute("SELECT 1 FROM requests LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    # --- writes --------------------------------------------------------------------------

    def create(
        self, new: NewRequest, *, state: State, expires_at: str | None, actor: str
    ) -> CopyRequest:
        stamp = now_iso()
        row = new.model_dump() | {
            "state": state.value,
            "created_at": stamp,
            "updated_at": stamp,
            "expires_at": expires_at,
        }
        with self._transaction() as db:
            try:
                request_id = db.table("requests").insert(row).last_pk
            except sqlite3.IntegrityError:
                raise NameInUse(new.backup_name, self._live_id_for(new.backup_name)) from None
            _add_event(db, request_id, "requested", actor, new.model_dump(), stamp)
        return self.require(int(str(request_id)))

    def transition(
        self,
        request_id: int,
        *,
        allowed_from: Iterable[State],
        to: State,
        event: str,
        actor: str | None,
        details: dict[str, Any] | None = None,
        **fields: Any,
    ) -> CopyRequest | None:
        """Move a request to `to` if, and only if, it is in one of `allowed_from`.

        Returns the updated request, or None when somebody else got there first.
        """
        sources = [state.value for state in allowed_from]
        stamp = now_iso()
        assignments = {"state": to.value, "updated_at": stamp, **_encode(fields)}
        sets = ", ".join(f"[{column}] = ?" for column in assignments)
        marks = ", ".join("?" for _ in sources)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE requests SET {sets} WHERE id = ? AND state IN ({marks})",
                [*assignments.values(), request_id, *sources],
            )
            if cursor.rowcount != 1:
                return None
            _add_event(db, request_id, event, actor, details or {}, stamp)
        return self.require(request_id)

    def update(
        self,
        request_id: int,
        *,
        event: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
        **fields: Any,
    ) -> CopyRequest:
        """Change fields that are not the state (message ts, snapshot status, …)."""
        stamp = now_iso()
        with self._transaction() as db:
            if fields:
                db.table("requests").update(request_id, {**_encode(fields), "updated_at": stamp})
            if event:
                _add_event(db, request_id, event, actor, details or {}, stamp)
        return self.require(request_id)

    def add_dws_request_id(self, request_id: int, dws_request_id: str | None) -> None:
        if not dws_request_id:
            return
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET dws_request_ids = json_insert(dws_request_ids, '$[#]', ?)"
                " WHERE id = ?",
                [dws_request_id, request_id],
            )

    def record_event(
        self,
        request_id: int | None,
        kind: str,
        actor: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """An event that changes no state: a refusal, a failed Slack call, a status seen."""
        with self._transaction() as db:
            _add_event(db, request_id, kind, actor, details or {}, now_iso())

    def first_delivery(self, event_id: str) -> bool:
        """True the first time Slack delivers this event id; its retries get False."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (event_id, at) VALUES (?, ?)",
                [event_id, now_iso()],
            )
            return cursor.rowcount == 1

    # --- reads ---------------------------------------------------------------------------

    def get(self, request_id: int) -> CopyRequest | None:
        rows = list(self.db.query("SELECT * FROM requests WHERE id = ?", [request_id]))
        return _decode(rows[0]) if rows else None

    def require(self, request_id: int) -> CopyRequest:
        request = self.get(request_id)
        if request is None:
            raise LookupError(f"no request #{request_id}")
        return request

    def find(
        self,
        *,
        states: Iterable[State] | None = None,
        requested_by: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[CopyRequest]:
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            values = [state.value for state in states]
            where.append(f"state IN ({', '.join('?' for _ in values)})")
            params += values
        if requested_by is not None:
            where.append("requested_by = ?")
            params.append(requested_by)
        sql = "SELECT * FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_decode(row) for row in self.db.query(sql, params)]

    def due_to_expire(self, now: str) -> list[CopyRequest]:
        rows = self.db.query(
            "SELECT * FROM requests WHERE state = ? AND expires_at IS NOT NULL AND expires_at <= ?",
            [State.PENDING_APPROVAL.value, now],
        )
        return [_decode(row) for row in rows]

    def events(
        self, request_id: int | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM events", list[Any]()
        if request_id is not None:
            sql += " WHERE request_id = ?"
            params.append(request_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY id"
            params.append(limit)
        return [row | {"details": json.loads(row["details"])} for row in self.db.query(sql, params)]

    def _live_id_for(self, name: str) -> int | None:
        rows = list(
            self.db.query(
                "SELECT id FROM requests WHERE lower(backup_name) = lower(?)"
                " AND state IN ('pending_approval', 'approved', 'copying')",
                [name],
            )
        )
        return int(rows[0]["id"]) if rows else None


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it."""
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _migrate(db: sqlite_utils.Database) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")


def _add_event(
    db: sqlite_utils.Database,
    request_id: int | None,
    kind: str,
    actor: str | None,
    details: dict[str, Any],
    at: str,
) -> None:
    db.execute(
        "INSERT INTO events (request_id, kind, actor, at, details) VALUES (?, ?, ?, ?, ?)",
        [request_id, kind, actor, at, json.dumps(details, sort_keys=True, default=str)],
    )


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(REQUEST_COLUMNS)
    if unknown:
        raise ValueError(f"not request columns: {sorted(unknown)}")
    return {
        key: json.dumps(value) if isinstance(value, list) else value
        for key, value in fields.items()
    }


def _decode(row: dict[str, Any]) -> CopyRequest:
    return CopyRequest.model_validate(
        row | {"dws_request_ids": json.loads(row.get("dws_request_ids") or "[]")}
    )
