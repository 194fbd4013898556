"""The leased queue: rows of work with a due time, claimed by one worker at a time.

A row belongs to a request and to one `Queue`. Claiming is one conditional UPDATE, so any
number of threads and processes on one database run each row once; rows of one request go in
order (only its oldest unfinished row of a queue can be claimed), and a request has at most one
unfinished DWS job (a unique index), so "make sure it is being worked on" is safe to say twice.

These functions run inside the store's transactions (`db` is the connection of one); the store
decides when to commit. Nothing here knows what a row means: that is each queue's handler's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlite_utils

from bot.clock import iso


class Queue(StrEnum):
    DWS = "dws"  # DWS jobs: copy, follow
    SLACK = "slack"  # the Slack outbox: what people are owed


@dataclass(frozen=True)
class Work:
    """A row of work to add with a state change: a DWS job or a Slack message.

    `coalesce`: add it only if no row of the same kind for the request is still waiting
    unclaimed (a root update shows the latest state whenever it is sent, so one is enough).
    """

    queue: Queue
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


def add(db: sqlite_utils.Database, request_id: int, work: Sequence[Work], at: str) -> None:
    now = datetime.now(UTC)
    for item in work:
        due = iso(now + timedelta(seconds=item.delay))
        values = [item.queue, request_id, item.kind, json.dumps(item.payload, default=str), due, at]
        # One unfinished DWS job per request (the unique index): adding another is a no-op.
        verb = "INSERT OR IGNORE" if item.queue == Queue.DWS else "INSERT"
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


def claim(
    db: sqlite_utils.Database, queue: Queue, worker: str, lease_seconds: float
) -> Claimed | None:
    """Take the lease on one due row of `queue`, or None when nothing is due."""
    now = datetime.now(UTC)
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
        [worker, iso(now + timedelta(seconds=lease_seconds)), queue, iso(now), iso(now)],
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


def finish(db: sqlite_utils.Database, claimed: Claimed, outcome: str, at: str) -> None:
    db.execute(
        "UPDATE work SET done_at = ?, outcome = ?, claimed_by = NULL, lease_until = NULL"
        " WHERE id = ?",
        [at, outcome, claimed.id],
    )


def retry(
    db: sqlite_utils.Database,
    claimed: Claimed,
    *,
    after: float,
    error: str,
    problem: str | None,
    fresh: bool,
) -> None:
    """Give the row back, due again `after` seconds from now; `fresh` restarts its count."""
    due = iso(datetime.now(UTC) + timedelta(seconds=max(0.0, after)))
    db.execute(
        "UPDATE work SET due_at = ?, last_error = ?, problem = ?, claimed_by = NULL,"
        " lease_until = NULL, attempts = CASE WHEN ? THEN 0 ELSE attempts END"
        " WHERE id = ?",
        [due, error[:500] or None, problem, fresh, claimed.id],
    )


def release(db: sqlite_utils.Database, worker: str) -> list[tuple[int, str, str]]:
    """Give back every lease `worker` holds; the attempt it was counted as did not happen.
    Returns (request id, queue, kind) of each row given back."""
    rows = db.execute(
        "UPDATE work SET claimed_by = NULL, lease_until = NULL,"
        " attempts = max(0, attempts - 1) WHERE claimed_by = ? AND done_at IS NULL"
        " RETURNING request_id, queue, kind",
        [worker],
    ).fetchall()
    return [(int(row[0]), str(row[1]), str(row[2])) for row in rows]


def holders(db: sqlite_utils.Database) -> list[str]:
    rows = db.execute(
        "SELECT DISTINCT claimed_by FROM work WHERE done_at IS NULL AND claimed_by IS NOT NULL"
    ).fetchall()
    return [str(row[0]) for row in rows]


def owed(db: sqlite_utils.Database) -> dict[Queue, tuple[int, str | None]]:
    """Per queue: how many rows are unfinished, and since when the oldest."""
    found: dict[Queue, tuple[int, str | None]] = {queue: (0, None) for queue in Queue}
    for name, pending, since in db.execute(
        "SELECT queue, count(*), min(created_at) FROM work WHERE done_at IS NULL GROUP BY queue"
    ).fetchall():
        found[Queue(name)] = (int(pending), since)
    return found


def next_due(db: sqlite_utils.Database, queue: Queue, now: str) -> str | None:
    """When the earliest unfinished row nobody holds is due."""
    row = db.execute(
        "SELECT min(due_at) FROM work WHERE queue = ? AND done_at IS NULL"
        " AND (lease_until IS NULL OR lease_until < ?)",
        [queue, now],
    ).fetchone()
    return row[0] if row else None


def rows(
    db: sqlite_utils.Database, request_id: int | None = None, *, open_only: bool
) -> list[dict[str, Any]]:
    """Rows of work, oldest first: unfinished ones only, or every one (of a request if given)."""
    where = ["done_at IS NULL"] if open_only else []
    params: list[Any] = []
    if request_id is not None:
        where.append("request_id = ?")
        params.append(request_id)
    sql = "SELECT * FROM work" + (" WHERE " + " AND ".join(where) if where else "")
    return list(db.query(sql + " ORDER BY id", params))


# Requests that no unfinished DWS job works on; a condition on `requests r`.
WITHOUT_DWS_JOB = (
    "NOT EXISTS (SELECT 1 FROM work w WHERE w.request_id = r.id"
    f" AND w.queue = '{Queue.DWS.value}' AND w.done_at IS NULL)"
)
