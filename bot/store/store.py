"""The audit log and the work still owed, in SQLite (one host) or PostgreSQL (any number).

- `requests`: one row per copy request; `events`: the append-only trail of every step;
  `approvals`: who approved what, once each.
- `work`: what is still owed for a request: the leased queue of bot/work/queue.py (DWS jobs and
  the Slack outbox), whose statements run inside this store's transactions.

The store keeps no business rule: the lifecycle decides what a change means (how many approvals
make a request approved, what people are told) and hands the store the rows to write.

The database is the truth. Every state change is a single conditional UPDATE (`... WHERE id = ?
AND state IN (...)`) inside an immediate transaction together with its event and the work it
causes, so of two racing clicks exactly one changes anything, and a crash never leaves a state
change without its event or its work, or the other way round. The engines
(bot/store/sqlite.py, bot/store/postgres.py) run the same statements (bot/store/engine.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.clock import now_iso
from bot.database import Database, PostgresUrl, SqliteFile, parse
from bot.domain import CopyRequest, NewRequest, State
from bot.errors import StoreUnavailable
from bot.store.engine import Db, Duplicate, Engine
from bot.store.pool import WAIT_SECONDS
from bot.store.replays import SignedRequests
from bot.store.rows import (
    add_event,
    conditions,
    decode,
    encode,
    insert_row,
    returned,
    update_request,
)
from bot.store.sqlite import SqliteEngine
from bot.store.work import WorkRows
from bot.work import fence
from bot.work import queue as work_queue
from bot.work.queue import Queue, Work

POOL_SIZE = 8
# How long opening the store waits for another process's writer (a deploy's overlap).
START_SECONDS = 5.0


@dataclass(frozen=True)
class Counted:
    """What one more approval does, as the lifecycle decides it: the event it writes (with
    its details), the request's fields it changes (its state among them), and its work."""

    event: str
    details: dict[str, Any]
    fields: dict[str, Any]
    work: Sequence[Work]


ApprovalTable = Literal["approvals", "delete_approvals"]
# Times of a request that the sweeper acts on once they have come.
DueColumn = Literal[
    "expires_at", "remind_at", "warn_at", "keep_until", "escalate_at", "review_due_at"
]


class NameInUse(Exception):
    """Another live request already uses this backup name."""

    def __init__(self, name: str, request_id: int | None) -> None:
        self.name = name
        self.request_id = request_id
        super().__init__(f"request #{request_id} already uses the name {name}")


class Store(WorkRows, SignedRequests):
    """Requests, events and work. Safe to share between threads and processes."""

    def __init__(
        self,
        database: Database | Path | str,
        *,
        pool_size: int = POOL_SIZE,
        wait_seconds: float = WAIT_SECONDS,
        start_seconds: float = START_SECONDS,
    ) -> None:
        """Open (and create or upgrade) the database: an SQLite file's path, a PostgreSQL URL,
        or either as bot/database.py chose it. Waits up to `start_seconds` for another host's
        migrations or writer, and up to `wait_seconds` in each operation after."""
        if isinstance(database, Path):
            database = SqliteFile(database)
        elif isinstance(database, str):
            database = parse(database)
        self.database = database
        # The SQLite file (None on PostgreSQL): tests and tools look at it.
        self.path = database.path if isinstance(database, SqliteFile) else None
        self._engine = open_engine(database, pool_size, wait_seconds)
        self._work_listeners: list[Callable[[Queue], None]] = []
        try:
            self._engine.migrate(start_seconds)
        except BaseException:
            self._engine.close()
            raise

    @property
    def engine(self) -> str:
        return self._engine.dialect.name

    def _statement(self, wait: float | None = None) -> AbstractContextManager[Db]:
        """A connection for one unfenced statement that commits on its own (a claim, a
        renewal): on PostgreSQL, one round trip instead of three."""
        return self._engine.statement(wait)

    def _write_once(self, sql: str, params: list[Any], wait: float) -> int:
        """One statement that writes, in a transaction of its own (not fenced: for tables no
        work writes)."""
        return self._engine.write_once(sql, params, wait)

    def connection(self, wait: float | None = None) -> AbstractContextManager[Db]:
        """A connection of the pool for one operation (reads); waits at most `wait` seconds
        (default: the store's) while all are in use."""
        return self._engine.connection(wait)

    @contextmanager
    def _transaction(self, wait: float | None = None) -> Iterator[Db]:
        """One transaction; on a thread running a row of work (bot/work/fence.py), it first
        checks that the row's lease still holds, and writes nothing if it does not."""
        with self._engine.transaction(wait) as db:
            lease = fence.current()
            if lease is not None and not work_queue.held(db, lease):
                raise fence.LeaseLost(lease)
            yield db

    def close(self) -> None:
        self._engine.close()

    def on_new_work(self, listener: Callable[[Queue], None]) -> None:
        """Call `listener` with each queue that a commit added work to (its workers wake up)."""
        self._work_listeners.append(listener)

    def _added(self, work: Sequence[Work]) -> None:
        """After a commit that added `work`: tell whoever waits for it."""
        for queue_name in {item.queue for item in work}:
            for listener in self._work_listeners:
                listener(queue_name)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.connection() as db:
            return list(db.query(sql, params))

    def health(self) -> StoreUnavailable | None:
        """Why the database cannot take a write now (None: it can), found within about a
        second, never behind this process's other users."""
        return self._engine.health()

    def check(self, seconds: float = START_SECONDS) -> None:
        """At start-up: raise StoreUnavailable if the database is damaged, full, read-only,
        unreachable, or held by another writer for `seconds`."""
        self._engine.check(seconds)

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
        row = encode(new.model_dump()) | {
            "state": state.value,
            "created_at": stamp,
            "updated_at": stamp,
            "expires_at": expires_at,
        }
        try:
            with self._transaction() as db:
                request_id = insert_row(db, "requests", row)
                details = new.model_dump(exclude={"token"})  # never shown, so never in the trail
                add_event(db, request_id, "requested", actor, details, stamp)
                if approved_event is not None:
                    add_event(db, request_id, "approved", None, approved_event, stamp)
                work_queue.add(db, request_id, work, stamp)
        except Duplicate:
            raise NameInUse(new.backup_name, self._live_id_for(new.backup_name)) from None
        self._added(work)
        return self.require(request_id)

    def transition(
        self,
        request_id: int,
        *,
        allowed_from: Iterable[State],
        to: State | None,
        event: str,
        actor: str | None,
        details: dict[str, Any] | None = None,
        work: Sequence[Work] = (),
        where: Mapping[str, Sequence[str | None]] | None = None,
        **fields: Any,
    ) -> CopyRequest | None:
        """Move a request to `to` (None: leave its state) if, and only if, it is in one of
        `allowed_from` (and each
        column of `where` holds one of its values, None for NULL), and add the work it causes
        in the same transaction.

        Returns the updated request, or None when somebody else got there first.
        """
        sources = [state.value for state in allowed_from]
        stamp = now_iso()
        assignments = {"updated_at": stamp, **encode(fields)}
        if to is not None:
            assignments["state"] = to.value
        sets = ", ".join(f"[{column}] = ?" for column in assignments)
        marks = ", ".join("?" for _ in sources)
        guard, values = conditions(where or {})
        with self._transaction() as db:
            updated = returned(
                db.execute(
                    f"UPDATE requests SET {sets} WHERE id = ? AND state IN ({marks}){guard}"
                    " RETURNING *",
                    [*assignments.values(), request_id, *sources, *values],
                )
            )
            if updated is None:
                return None
            add_event(db, request_id, event, actor, details or {}, stamp)
            work_queue.add(db, request_id, work, stamp)
        self._added(work)
        return updated

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
        updated = None
        with self._transaction() as db:
            if fields:
                updated = update_request(db, request_id, {**encode(fields), "updated_at": stamp})
            if event:
                add_event(db, request_id, event, actor, details or {}, stamp)
            work_queue.add(db, request_id, work, stamp)
        self._added(work)
        return updated or self.require(request_id)

    def count_approval(
        self,
        request_id: int,
        user_id: str,
        decide: Callable[[list[str], int], Counted],
        *,
        waiting: Callable[[CopyRequest], bool],
        table: ApprovalTable = "approvals",
    ) -> tuple[str, CopyRequest]:
        """Count `user_id`'s approval in one transaction: of the copy (`approvals`) or of the
        deletion of its copy (`delete_approvals`). `waiting` says whether the request waits
        for such approvals; `decide` says, from everyone who approved so far and how many are
        needed, what this approval does.

        Returns "counted" (and the `Counted` was written), "again" (this person had approved
        already) or "handled" (it is not waiting any more), and the request. The table's key
        makes a person count once, however often and wherever they click.
        """
        stamp = now_iso()
        work: Sequence[Work] = ()
        request: CopyRequest | None = None
        with self._transaction() as db:
            rows = list(
                db.query(f"SELECT * FROM requests WHERE id = ?{db.dialect.lock_row}", [request_id])
            )
            request = decode(rows[0]) if rows else None  # as it is, under its row's lock
            if request is None or not waiting(request):
                outcome = "handled"
            elif not db.execute(
                f"INSERT OR IGNORE INTO {table} (request_id, user_id, at) VALUES (?, ?, ?)",
                [request_id, user_id, stamp],
            ).rowcount:
                outcome = "again"
            else:
                outcome = "counted"
                users = [
                    user
                    for (user,) in db.execute(
                        f"SELECT user_id FROM {table} WHERE request_id = ? ORDER BY at, user_id",
                        [request_id],
                    ).fetchall()
                ]
                counted = decide(users, int(rows[0]["approvals_needed"]))
                work = counted.work
                fields = {**encode(counted.fields), "updated_at": stamp}
                request = update_request(db, request_id, fields)
                add_event(db, request_id, counted.event, user_id, counted.details, stamp)
                work_queue.add(db, request_id, work, stamp)
        self._added(work)
        return outcome, request or self.require(request_id)

    def forget_delete_approvals(self, request_id: int) -> None:
        """A deletion that was called off: its approvals count for no later one."""
        with self._transaction() as db:
            db.execute("DELETE FROM delete_approvals WHERE request_id = ?", [request_id])

    def take_mark(
        self,
        request_id: int,
        column: DueColumn,
        state: State | Sequence[State],
        event: str,
        work: Sequence[Work],
        **fields: Any,
    ) -> bool:
        """Clear a due time (a reminder, a warning, an escalation) of a request in `state`, set
        `fields`, write `event` and add its work, once, whoever else tries at the same time."""
        stamp = now_iso()
        states = [state.value] if isinstance(state, State) else [each.value for each in state]
        sets = "".join(f", [{name}] = ?" for name in encode(fields))
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE requests SET [{column}] = NULL{sets} WHERE id = ?"
                f" AND [{column}] IS NOT NULL AND state IN ({', '.join('?' for _ in states)})",
                [*encode(fields).values(), request_id, *states],
            )
            if cursor.rowcount != 1:
                return False
            add_event(db, request_id, event, None, {}, stamp)
            work_queue.add(db, request_id, work, stamp)
        self._added(work)
        return True

    def add_dws_request_id(self, request_id: int, dws_request_id: str | None) -> None:
        if not dws_request_id:
            return
        with self._transaction() as db:
            appended = db.dialect.append_json.format(column="dws_request_ids")
            db.execute(
                f"UPDATE requests SET dws_request_ids = {appended} WHERE id = ?",
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
            add_event(db, request_id, kind, actor, details or {}, stamp)
            if request_id is not None:
                work_queue.add(db, request_id, work, stamp)
        self._added(work)

    def first_delivery(self, event_id: str) -> bool:
        """True the first time Slack delivers this event id; its retries get False."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (event_id, at) VALUES (?, ?)",
                [event_id, now_iso()],
            )
            return cursor.rowcount == 1

    def count_by_state(self) -> dict[str, int]:
        rows = self._query("SELECT state, count(*) AS n FROM requests GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    # --- reads ---------------------------------------------------------------------------

    def get(self, request_id: int) -> CopyRequest | None:
        rows = self._query("SELECT * FROM requests WHERE id = ?", [request_id])
        return decode(rows[0]) if rows else None

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
        return [decode(row) for row in self._query(sql, params)]

    def due(self, column: DueColumn, now: str, state: State | Sequence[State]) -> list[CopyRequest]:
        """Requests in `state` (or any of them) whose `column` time has come, oldest first."""
        states = [state.value] if isinstance(state, State) else [each.value for each in state]
        rows = self._query(
            f"SELECT * FROM requests WHERE state IN ({', '.join('?' for _ in states)})"
            f" AND [{column}] IS NOT NULL AND [{column}] <= ? ORDER BY id",
            [*states, now],
        )
        return [decode(row) for row in rows]

    def unposted(self, *, since: str) -> list[CopyRequest]:
        """Requests made since `since` whose message was never posted."""
        rows = self._query(
            "SELECT * FROM requests WHERE message_ts IS NULL AND created_at >= ? ORDER BY id",
            [since],
        )
        return [decode(row) for row in rows]

    def without_dws_job(self, states: Iterable[State]) -> list[CopyRequest]:
        """Requests in `states` that no unfinished DWS job is working on."""
        values = [state.value for state in states]
        rows = self._query(
            f"SELECT * FROM requests r WHERE state IN ({', '.join('?' for _ in values)})"
            f" AND {work_queue.WITHOUT_DWS_JOB} ORDER BY id",
            values,
        )
        return [decode(row) for row in rows]

    def events(
        self, request_id: int | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM events", list[Any]()
        if request_id is not None:
            sql += " WHERE request_id = ?"
            params.append(request_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) AS recent ORDER BY id"
            params.append(limit)
        return [row | {"details": json.loads(row["details"])} for row in self._query(sql, params)]

    def _live_id_for(self, name: str) -> int | None:
        rows = self._query(
            "SELECT id FROM requests WHERE lower(backup_name) = lower(?)"
            " AND state IN ('pending_approval', 'approved', 'copying')",
            [name],
        )
        return int(rows[0]["id"]) if rows else None


def open_engine(database: Database, pool_size: int, wait_seconds: float) -> Engine:
    """The engine for `database`; PostgreSQL's driver is imported only when it is used."""
    if isinstance(database, PostgresUrl):
        from bot.store.postgres import PostgresEngine

        return PostgresEngine(database, pool_size=pool_size, wait_seconds=wait_seconds)
    return SqliteEngine(database, pool_size=pool_size, wait_seconds=wait_seconds)
