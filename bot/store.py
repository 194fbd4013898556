"""The audit log and the work still owed: SQLite through sqlite-utils.

- `requests`: one row per copy request; `events`: the append-only trail of every step.
- `work`: what is still owed for a request, as rows with a due time and a lease: DWS jobs (queue
  `dws`: copy, follow) and Slack messages (queue `slack`: the outbox). See bot/work/.

The database is the truth. Every state change is a single conditional UPDATE (`... WHERE id = ?
AND state IN (...)`) inside an immediate transaction together with its event and the work it
causes, so of two racing clicks exactly one changes anything, and a crash never leaves a state
change without its event or its work, or the other way round.

Connections come from a small pool, one per operation, and are closed by `close()`: the number
of open files stays bounded however many threads use the store.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.domain import CopyRequest, NewRequest, State

BUSY_TIMEOUT_MS = 5000
POOL_SIZE = 8

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
    """
    CREATE TABLE work (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        request_id INTEGER NOT NULL REFERENCES requests (id),
        kind TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        due_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        problem TEXT,
        last_error TEXT,
        claimed_by TEXT,
        lease_until TEXT,
        created_at TEXT NOT NULL,
        done_at TEXT,
        outcome TEXT
    );
    CREATE INDEX work_open ON work (queue, request_id, id) WHERE done_at IS NULL;
    CREATE INDEX work_due ON work (queue, due_at) WHERE done_at IS NULL;
    CREATE UNIQUE INDEX work_one_dws_job ON work (request_id)
        WHERE queue = 'dws' AND done_at IS NULL;
    """,
    """
    ALTER TABLE requests ADD COLUMN reason TEXT;
    ALTER TABLE requests ADD COLUMN cluster_id TEXT;
    ALTER TABLE requests ADD COLUMN cluster_name TEXT;
    ALTER TABLE requests ADD COLUMN source_name TEXT;
    ALTER TABLE requests ADD COLUMN source_started TEXT;
    ALTER TABLE requests ADD COLUMN source_size REAL;
    ALTER TABLE requests ADD COLUMN approvals_needed INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE requests ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE requests ADD COLUMN notify TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE requests ADD COLUMN allow_self_approval INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN rule INTEGER;
    ALTER TABLE requests ADD COLUMN remind_at TEXT;
    CREATE INDEX requests_remind_at ON requests (remind_at) WHERE remind_at IS NOT NULL;
    CREATE TABLE approvals (
        request_id INTEGER NOT NULL REFERENCES requests (id),
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, user_id)
    );
    """,
    """
    ALTER TABLE requests ADD COLUMN region TEXT;
    """,
)

REQUEST_COLUMNS = tuple(CopyRequest.model_fields)
# Columns that hold a JSON list.
LIST_COLUMNS = frozenset({"dws_request_ids", "approvers", "notify"})


def iso(moment: datetime) -> str:
    """UTC timestamps that sort as text: 2026-11-28T15:04:05.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso() -> str:
    return iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    """The inverse of iso()."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def age_seconds(stamp: str) -> float:
    """How long ago an iso() timestamp was."""
    return (datetime.now(UTC) - parse_iso(stamp)).total_seconds()


@dataclass(frozen=True)
class Work:
    """A row of work to add with a state change: a DWS job or a Slack message.

    `coalesce`: add it only if no row of the same kind for the request is still waiting
    unclaimed (a root update shows the latest state whenever it is sent, so one is enough).
    """

    queue: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    coalesce: bool = False


@dataclass(frozen=True)
class Claimed:
    """A row of work that this worker holds the lease on."""

    id: int
    queue: str
    request_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    problem: str | None
    created_at: str


class NameInUse(Exception):
    """Another live request already uses this backup name."""

    def __init__(self, name: str, request_id: int | None) -> None:
        self.name = name
        self.request_id = request_id
        super().__init__(f"request #{request_id} already uses the name {name}")


class Store:
    """Requests, events and work. Safe to share between threads and processes."""

    def __init__(self, path: Path | str, *, pool_size: int = POOL_SIZE) -> None:
        self.path = Path(path)
        self._idle: queue.LifoQueue[sqlite_utils.Database] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._opened: list[sqlite_utils.Database] = []
        self._lock = threading.Lock()
        # Writers of this process take turns here rather than in SQLite's busy handler, which
        # sleeps in steps of up to 100 ms; other processes still meet the busy timeout.
        self._write_lock = threading.Lock()
        self._work_listeners: list[Callable[[], None]] = []
        self._closed = False
        _create_private(self.path)
        with self._transaction() as db:
            _migrate(db)

    # --- connections ---------------------------------------------------------------------

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

    def on_new_work(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that added work (the workers wake up)."""
        self._work_listeners.append(listener)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
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

    def _added(self, work: Sequence[Work]) -> None:
        """After a commit that added `work`: tell whoever waits for it."""
        if work:
            for listener in self._work_listeners:
                listener()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.connection() as db:
            return list(db.query(sql, params))

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

    def healthy(self) -> bool:
        try:
            self._query("SELECT 1 FROM requests LIMIT 1")
        except sqlite3.Error:
            return False
        return True

    # --- writes --------------------------------------------------------------------------

    def create(
        self,
        new: NewRequest,
        *,
        state: State,
        expires_at: str | None,
        actor: str,
        work: Sequence[Work] = (),
        approved_event: dict[str, Any] | None = None,
    ) -> CopyRequest:
        """Record a request, its `requested` event (and `approved` when no approval is needed)
        and the work it causes, in one transaction."""
        stamp = now_iso()
        row = _encode(new.model_dump()) | {
            "state": state.value,
            "created_at": stamp,
            "updated_at": stamp,
            "expires_at": expires_at,
        }
        with self._transaction() as db:
            try:
                request_id = int(str(db.table("requests").insert(row).last_pk))
            except sqlite3.IntegrityError:
                raise NameInUse(new.backup_name, self._live_id_for(db, new.backup_name)) from None
            _add_event(db, request_id, "requested", actor, new.model_dump(), stamp)
            if approved_event is not None:
                _add_event(db, request_id, "approved", None, approved_event, stamp)
            _add_work(db, request_id, work, stamp)
        self._added(work)
        return self.require(request_id)

    def transition(
        self,
        request_id: int,
        *,
        allowed_from: Iterable[State],
        to: State,
        event: str,
        actor: str | None,
        details: dict[str, Any] | None = None,
        work: Sequence[Work] = (),
        **fields: Any,
    ) -> CopyRequest | None:
        """Move a request to `to` if, and only if, it is in one of `allowed_from`, and add the
        work it causes in the same transaction.

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
            _add_work(db, request_id, work, stamp)
        self._added(work)
        return self.require(request_id)

    def update(
        self,
        request_id: int,
        *,
        event: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
        work: Sequence[Work] = (),
        **fields: Any,
    ) -> CopyRequest:
        """Change fields that are not the state (message ts, snapshot status, …)."""
        stamp = now_iso()
        with self._transaction() as db:
            if fields:
                db.table("requests").update(request_id, {**_encode(fields), "updated_at": stamp})
            if event:
                _add_event(db, request_id, event, actor, details or {}, stamp)
            _add_work(db, request_id, work, stamp)
        self._added(work)
        return self.require(request_id)

    def approve(
        self,
        request_id: int,
        user_id: str,
        *,
        complete: Sequence[Work],
        partial: Sequence[Work],
    ) -> tuple[str, CopyRequest]:
        """Count `user_id`'s approval of a waiting request, in one transaction.

        Returns what happened, and the request after it:
        - "approved": this was the last approval needed; the request is `approved` and the
          `complete` work is added (the copy job, the news);
        - "counted": more approvals are needed; the `partial` work is added;
        - "again": this person had approved it already; nothing changed;
        - "handled": it is not waiting for approval any more; nothing changed.
        The approvals table's key makes a person count once, however often and wherever
        (thread, App Home, another process) they click.
        """
        stamp = now_iso()
        with self._transaction() as db:
            row = db.execute(
                "SELECT state, approvals_needed FROM requests WHERE id = ?", [request_id]
            ).fetchone()
            work: list[Work] = []
            if row is None or row[0] != State.PENDING_APPROVAL.value:
                outcome = "handled"
            elif not db.execute(
                "INSERT OR IGNORE INTO approvals (request_id, user_id, at) VALUES (?, ?, ?)",
                [request_id, user_id, stamp],
            ).rowcount:
                outcome = "again"
            else:
                users = [
                    user
                    for (user,) in db.execute(
                        "SELECT user_id FROM approvals WHERE request_id = ? ORDER BY at, rowid",
                        [request_id],
                    ).fetchall()
                ]
                done = len(users) >= row[1]
                chosen = complete if done else partial
                outcome = "approved" if done else "counted"
                # Messages about this approval say whose it was and how many there are now,
                # whenever they are delivered.
                details = {"by": user_id, "count": len(users)}
                work = [replace(item, payload={**item.payload, **details}) for item in chosen]
                db.execute(
                    "UPDATE requests SET approved_by = ?, updated_at = ?"
                    + (", state = 'approved'" if done else "")
                    + " WHERE id = ?",
                    [",".join(users), stamp, request_id],
                )
                details = {"approvals": users, "needed": row[1]}
                event = "approved" if done else "approval"
                _add_event(db, request_id, event, user_id, details, stamp)
                _add_work(db, request_id, work, stamp)
        self._added(work)
        return outcome, self.require(request_id)

    def due_reminders(self, now: str) -> list[CopyRequest]:
        rows = self._query(
            "SELECT * FROM requests WHERE remind_at IS NOT NULL AND remind_at <= ? AND state = ?",
            [now, State.PENDING_APPROVAL.value],
        )
        return [_decode(row) for row in rows]

    def take_reminder(self, request_id: int, work: Sequence[Work]) -> bool:
        """Clear a due reminder and add its work, once, whoever else tries at the same time."""
        stamp = now_iso()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE requests SET remind_at = NULL WHERE id = ? AND remind_at IS NOT NULL"
                " AND state = ?",
                [request_id, State.PENDING_APPROVAL.value],
            )
            if cursor.rowcount != 1:
                return False
            _add_event(db, request_id, "reminded", None, {}, stamp)
            _add_work(db, request_id, work, stamp)
        self._added(work)
        return True

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
        *,
        work: Sequence[Work] = (),
    ) -> None:
        """An event that changes no state: a refusal, a failed Slack call, a status seen."""
        stamp = now_iso()
        with self._transaction() as db:
            _add_event(db, request_id, kind, actor, details or {}, stamp)
            if request_id is not None:
                _add_work(db, request_id, work, stamp)
        self._added(work)

    def first_delivery(self, event_id: str) -> bool:
        """True the first time Slack delivers this event id; its retries get False."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (event_id, at) VALUES (?, ?)",
                [event_id, now_iso()],
            )
            return cursor.rowcount == 1

    # --- work ----------------------------------------------------------------------------

    def add_work(self, request_id: int, work: Sequence[Work]) -> None:
        with self._transaction() as db:
            _add_work(db, request_id, work, now_iso())
        self._added(work)

    def claim(self, queue_name: str, worker: str, lease_seconds: float) -> Claimed | None:
        """Take the lease on one due row of `queue_name`, or None when nothing is due.

        One statement, so any number of threads and processes claim each row once. Rows of a
        request go in order: only its oldest unfinished row can be claimed.
        """
        now = datetime.now(UTC)
        with self._transaction() as db:
            row = db.execute(
                """
                UPDATE work SET claimed_by = ?, lease_until = ?, attempts = attempts + 1
                WHERE id = (
                    SELECT w.id FROM work w
                    WHERE w.queue = ? AND w.done_at IS NULL AND w.due_at <= ?
                      AND (w.lease_until IS NULL OR w.lease_until < ?)
                      AND NOT EXISTS (
                          SELECT 1 FROM work e
                          WHERE e.queue = w.queue AND e.request_id = w.request_id
                            AND e.done_at IS NULL AND e.id < w.id)
                    ORDER BY w.due_at, w.id LIMIT 1)
                RETURNING id, queue, request_id, kind, payload, attempts, problem, created_at
                """,
                [
                    worker,
                    iso(now + timedelta(seconds=lease_seconds)),
                    queue_name,
                    iso(now),
                    iso(now),
                ],
            ).fetchone()
        if row is None:
            return None
        return Claimed(
            id=row[0],
            queue=row[1],
            request_id=row[2],
            kind=row[3],
            payload=json.loads(row[4]),
            attempts=row[5],
            problem=row[6],
            created_at=row[7],
        )

    def finish(
        self, claimed: Claimed, outcome: str, *, work: Sequence[Work] = (), **fields: Any
    ) -> None:
        """Mark a claimed row done, optionally adding the work that follows it."""
        stamp = now_iso()
        with self._transaction() as db:
            db.execute(
                "UPDATE work SET done_at = ?, outcome = ?, claimed_by = NULL, lease_until = NULL"
                " WHERE id = ?",
                [stamp, outcome, claimed.id],
            )
            if fields:
                db.table("requests").update(
                    claimed.request_id, {**_encode(fields), "updated_at": stamp}
                )
            _add_work(db, claimed.request_id, work, stamp)
        self._added(work)

    def retry(
        self,
        claimed: Claimed,
        *,
        after: float,
        error: str,
        problem: str | None = None,
        fresh: bool = False,
    ) -> None:
        """Give the row back, due again `after` seconds from now; `fresh` restarts its count."""
        due = iso(datetime.now(UTC) + timedelta(seconds=max(0.0, after)))
        with self._transaction() as db:
            db.execute(
                "UPDATE work SET due_at = ?, last_error = ?, problem = ?, claimed_by = NULL,"
                " lease_until = NULL, attempts = CASE WHEN ? THEN 0 ELSE attempts END"
                " WHERE id = ?",
                [due, error[:500] or None, problem, fresh, claimed.id],
            )

    def release(self, worker: str, *, event: str | None = None) -> list[int]:
        """Give back every lease `worker` holds (shutdown, or a holder known to be dead); the
        attempt it was counted as did not happen. Returns the requests concerned, each of which
        gets `event` in its trail when given."""
        stamp = now_iso()
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE work SET claimed_by = NULL, lease_until = NULL,"
                " attempts = max(0, attempts - 1) WHERE claimed_by = ? AND done_at IS NULL"
                " RETURNING request_id, queue, kind",
                [worker],
            ).fetchall()
            if event is not None:
                for request_id, queue_name, kind in rows:
                    details = {"holder": worker, "queue": queue_name, "kind": kind}
                    _add_event(db, request_id, event, None, details, stamp)
        return sorted({row[0] for row in rows})

    def lease_holders(self) -> list[str]:
        rows = self._query(
            "SELECT DISTINCT claimed_by FROM work WHERE done_at IS NULL AND claimed_by IS NOT NULL"
        )
        return [str(row["claimed_by"]) for row in rows]

    def owed(self) -> dict[str, tuple[int, str | None]]:
        """Per queue ("dws", "slack"): how many rows are unfinished, and since when the oldest."""
        found: dict[str, tuple[int, str | None]] = {queue: (0, None) for queue in ("dws", "slack")}
        for row in self._query(
            "SELECT queue, count(*) AS pending, min(created_at) AS since FROM work"
            " WHERE done_at IS NULL GROUP BY queue"
        ):
            found[row["queue"]] = (int(row["pending"]), row["since"])
        return found

    def count_by_state(self) -> dict[str, int]:
        rows = self._query("SELECT state, count(*) AS n FROM requests GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    def open_work(self, request_id: int | None = None) -> list[dict[str, Any]]:
        """Unfinished rows, oldest first (for one request if given)."""
        sql, params = "SELECT * FROM work WHERE done_at IS NULL", list[Any]()
        if request_id is not None:
            sql += " AND request_id = ?"
            params.append(request_id)
        return self._query(sql + " ORDER BY id", params)

    def work_rows(self, request_id: int) -> list[dict[str, Any]]:
        """Every row of work a request caused, done or not, oldest first."""
        return self._query("SELECT * FROM work WHERE request_id = ? ORDER BY id", [request_id])

    def next_due(self, queue_name: str) -> str | None:
        """When the earliest unfinished row nobody holds is due (a read: no write lock)."""
        rows = self._query(
            "SELECT min(due_at) AS due FROM work WHERE queue = ? AND done_at IS NULL"
            " AND (lease_until IS NULL OR lease_until < ?)",
            [queue_name, now_iso()],
        )
        return rows[0]["due"] if rows else None

    # --- reads ---------------------------------------------------------------------------

    def get(self, request_id: int) -> CopyRequest | None:
        rows = self._query("SELECT * FROM requests WHERE id = ?", [request_id])
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
        return [_decode(row) for row in self._query(sql, params)]

    def due_to_expire(self, now: str) -> list[CopyRequest]:
        rows = self._query(
            "SELECT * FROM requests WHERE state = ? AND expires_at IS NOT NULL AND expires_at <= ?",
            [State.PENDING_APPROVAL.value, now],
        )
        return [_decode(row) for row in rows]

    def unposted(self, *, since: str) -> list[CopyRequest]:
        """Requests made since `since` whose message was never posted."""
        rows = self._query(
            "SELECT * FROM requests WHERE message_ts IS NULL AND created_at >= ? ORDER BY id",
            [since],
        )
        return [_decode(row) for row in rows]

    def without_dws_job(self, states: Iterable[State]) -> list[CopyRequest]:
        """Requests in `states` that no unfinished DWS job is working on."""
        values = [state.value for state in states]
        rows = self._query(
            f"SELECT * FROM requests r WHERE state IN ({', '.join('?' for _ in values)})"
            " AND NOT EXISTS (SELECT 1 FROM work w WHERE w.request_id = r.id"
            " AND w.queue = 'dws' AND w.done_at IS NULL) ORDER BY id",
            values,
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
        return [row | {"details": json.loads(row["details"])} for row in self._query(sql, params)]

    @staticmethod
    def _live_id_for(db: sqlite_utils.Database, name: str) -> int | None:
        rows = list(
            db.query(
                "SELECT id FROM requests WHERE lower(backup_name) = lower(?)"
                " AND state IN ('pending_approval', 'approved', 'copying')",
                [name],
            )
        )
        return int(rows[0]["id"]) if rows else None


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it. Its
    directory must exist: a missing one is a volume not mounted, not something to create."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _migrate(db: sqlite_utils.Database) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")


def _add_work(
    db: sqlite_utils.Database, request_id: int, work: Sequence[Work], at: str
) -> None:
    now = datetime.now(UTC)
    for item in work:
        due = iso(now + timedelta(seconds=item.delay))
        values = [item.queue, request_id, item.kind, json.dumps(item.payload, default=str), due, at]
        # A request has at most one unfinished DWS job (the unique index): adding another is
        # a no-op, so "make sure it is being worked on" is safe to say twice.
        verb = "INSERT OR IGNORE" if item.queue == "dws" else "INSERT"
        insert = (
            f"{verb} INTO work (queue, request_id, kind, payload, due_at, created_at)"
            " SELECT ?, ?, ?, ?, ?, ?"
        )
        if item.coalesce:
            insert += (
                " WHERE NOT EXISTS (SELECT 1 FROM work WHERE request_id = ? AND kind = ?"
                " AND queue = ? AND done_at IS NULL AND claimed_by IS NULL)"
            )
            values += [request_id, item.kind, item.queue]
        db.execute(insert, values)


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
    lists = {column: json.loads(row.get(column) or "[]") for column in LIST_COLUMNS}
    return CopyRequest.model_validate(row | lists)
