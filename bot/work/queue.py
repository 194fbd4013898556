"""The leased queue: rows of work with a due time, claimed by one worker at a time.

A row belongs to a request and to one `Queue`. Claiming is one conditional UPDATE, so any
number of threads and processes on one database run each row once; rows of one request go in
order (only its oldest unfinished row of a queue can be claimed), and a request has at most one
unfinished DWS job (a unique index), so "make sure it is being worked on" is safe to say twice.

A claim gives the row a random lease token. Everything the holder writes afterwards (the row's
finish or retry, and, through the store's fence, the request's changes) is conditional on that
token: a holder whose lease was taken over writes nothing. Each renewal or fenced write counts
a beat (`beats`); a lease runs out when another process has watched its beats stand still for
the lease's length by its own monotonic clock (bot/work/leases.py), never by comparing wall
clocks, so a clock step either way neither ends a live lease nor keeps a dead one.

These functions run inside the store's transactions (`db` is the connection of one); the store
decides when to commit. Nothing here knows what a row means: that is each queue's handler's.
The SQL is plain, for both engines (bot/store/engine.py); times are computed here, in Python.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot import clock
from bot.clock import iso, parse_iso

if TYPE_CHECKING:
    from bot.store.engine import Db


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
    """A row of work that this worker holds the lease on; `token` is the lease's."""

    id: int
    queue: str
    request_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    problem: str | None
    created_at: str
    token: str = ""


@dataclass(frozen=True)
class Lease:
    """A lease as another process sees it: whose, and how many beats it has had."""

    id: int
    request_id: int
    kind: str
    holder: str
    token: str
    beats: int


# A row nobody holds: no token, and no lease of an older version still running.
_FREE = "{w}lease_token IS NULL AND ({w}lease_until IS NULL OR {w}lease_until < ?)"


def add(db: Db, request_id: int, work: Sequence[Work], at: str) -> None:
    now = clock.utcnow()
    for item in work:
        due = iso(now + timedelta(seconds=item.delay))
        values = [
            item.queue,
            request_id,
            item.kind,
            json.dumps(item.payload, default=str),
            due,
            iso(now),
            at,
        ]
        # One unfinished DWS job per request (the unique index): adding another is a no-op.
        verb = "INSERT OR IGNORE" if item.queue == Queue.DWS else "INSERT"
        insert = (
            f"{verb} INTO work (queue, request_id, kind, payload, due_at, scheduled_at,"
            " created_at) SELECT ?, ?, ?, ?, ?, ?, ?"
        )
        if item.coalesce:
            # The waiting row is locked until this commits: a claim made meanwhile would read
            # the request as it was before, and the change would never be shown.
            insert += (
                " WHERE NOT EXISTS (SELECT 1 FROM work WHERE request_id = ? AND kind = ?"
                f" AND queue = ? AND done_at IS NULL AND claimed_by IS NULL{db.dialect.lock_row})"
            )
            values += [request_id, item.kind, item.queue]
        db.execute(insert, values)


def claim(db: Db, queue: Queue, worker: str, lease_seconds: float) -> Claimed | None:
    """Take the lease on one due row of `queue`, or None when nothing is due."""
    now = clock.utcnow()
    token = secrets.token_hex(8)
    rows = db.execute(
        f"""
        UPDATE work SET claimed_by = ?, lease_token = ?, lease_until = ?, beats = 0,
            attempts = attempts + 1
        WHERE id = (
            SELECT w.id FROM work w
            WHERE w.queue = ? AND w.done_at IS NULL AND w.due_at <= ?
              AND {_FREE.format(w="w.")}
              AND NOT EXISTS (
                  SELECT 1 FROM work e
                  WHERE e.queue = w.queue AND e.request_id = w.request_id
                    AND e.done_at IS NULL AND e.id < w.id)
            ORDER BY w.due_at, w.id LIMIT 1{db.dialect.skip_locked})
        RETURNING id, queue, request_id, kind, payload, attempts, problem, created_at
        """,
        [worker, token, iso(now + timedelta(seconds=lease_seconds)), queue, iso(now), iso(now)],
    ).fetchall()  # to the end: the statement, and so its commit, is complete
    if not rows:
        return None
    row = rows[0]
    return Claimed(
        id=row[0],
        queue=row[1],
        request_id=row[2],
        kind=row[3],
        payload=json.loads(row[4]),
        attempts=row[5],
        problem=row[6],
        created_at=row[7],
        token=token,
    )


def held(db: Db, claimed: Claimed) -> bool:
    """Whether `claimed`'s lease is still its holder's; counts a beat if it is. Run first in a
    writing transaction, it fences the writes after it (the UPDATE also locks the row on
    engines with row locks, so no takeover commits in between)."""
    cursor = db.execute(
        "UPDATE work SET beats = beats + 1 WHERE id = ? AND lease_token = ? AND done_at IS NULL",
        [claimed.id, claimed.token],
    )
    return cursor.rowcount == 1


def finish(db: Db, claimed: Claimed, outcome: str, at: str) -> bool:
    """Mark the row done, if its lease is still `claimed`'s."""
    cursor = db.execute(
        "UPDATE work SET done_at = ?, outcome = ?, claimed_by = NULL, lease_token = NULL,"
        " lease_until = NULL WHERE id = ? AND lease_token = ? AND done_at IS NULL",
        [at, outcome, claimed.id, claimed.token],
    )
    return cursor.rowcount == 1


def retry(
    db: Db,
    claimed: Claimed,
    *,
    after: float,
    error: str,
    problem: str | None,
    fresh: bool,
) -> bool:
    """Give the row back, due again `after` seconds from now; `fresh` restarts its count.
    Nothing happens, and False is returned, when the lease is no longer `claimed`'s."""
    now = clock.utcnow()
    due = iso(now + timedelta(seconds=max(0.0, after)))
    cursor = db.execute(
        "UPDATE work SET due_at = ?, scheduled_at = ?, last_error = ?, problem = ?,"
        " claimed_by = NULL, lease_token = NULL, lease_until = NULL,"
        " attempts = CASE WHEN ? THEN 0 ELSE attempts END"
        " WHERE id = ? AND lease_token = ? AND done_at IS NULL",
        [due, iso(now), error[:500] or None, problem, fresh, claimed.id, claimed.token],
    )
    return cursor.rowcount == 1


def release(db: Db, worker: str) -> list[tuple[int, str, str]]:
    """Give back every lease `worker` holds; the attempt it was counted as did not happen.
    Returns (request id, queue, kind) of each row given back."""
    rows = db.execute(
        "UPDATE work SET claimed_by = NULL, lease_token = NULL, lease_until = NULL,"
        " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
        " WHERE claimed_by = ? AND done_at IS NULL RETURNING request_id, queue, kind",
        [worker],
    ).fetchall()
    return [(int(row[0]), str(row[1]), str(row[2])) for row in rows]


def renew(db: Db, tokens: Sequence[str], lease_seconds: float) -> set[str]:
    """Count a beat for each lease still held by one of `tokens`; returns those still held.
    `lease_until` is only what a reader (or an older version) takes for the lease's end."""
    until = iso(clock.utcnow() + timedelta(seconds=lease_seconds))
    marks = ", ".join("?" for _ in tokens)
    rows = db.execute(
        "UPDATE work SET beats = beats + 1, lease_until = ?"
        f" WHERE lease_token IN ({marks}) AND done_at IS NULL RETURNING lease_token",
        [until, *tokens],
    ).fetchall()
    return {str(row[0]) for row in rows}


def leases(db: Db, queue: Queue) -> list[Lease]:
    """Every lease held on an unfinished row of `queue`."""
    rows = db.execute(
        "SELECT id, request_id, kind, claimed_by, lease_token, beats FROM work"
        " WHERE queue = ? AND done_at IS NULL AND lease_token IS NOT NULL",
        [queue],
    ).fetchall()
    return [
        Lease(int(r[0]), int(r[1]), str(r[2]), str(r[3] or ""), str(r[4]), int(r[5])) for r in rows
    ]


def expire(db: Db, lease: Lease) -> bool:
    """End a lease that ran out, if it still stands exactly as watched (same token, no beat
    since); the row is free again and keeps its attempt count."""
    cursor = db.execute(
        "UPDATE work SET claimed_by = NULL, lease_token = NULL, lease_until = NULL"
        " WHERE id = ? AND lease_token = ? AND beats = ? AND done_at IS NULL",
        [lease.id, lease.token, lease.beats],
    )
    return cursor.rowcount == 1


def rebase(db: Db, queue: Queue) -> int:
    """Rows scheduled "in the future" were scheduled before the clock was set back: each is
    due its intended delay from now, not the clock's step later. Returns how many moved."""
    now = clock.utcnow()
    rows = db.execute(
        "SELECT id, due_at, scheduled_at FROM work WHERE queue = ? AND done_at IS NULL"
        " AND scheduled_at > ?",
        [queue, iso(now)],
    ).fetchall()
    for row_id, due_at, scheduled_at in rows:
        delay = max(timedelta(0), parse_iso(due_at) - parse_iso(scheduled_at))
        db.execute(
            "UPDATE work SET due_at = ?, scheduled_at = ? WHERE id = ? AND scheduled_at = ?",
            [iso(now + delay), iso(now), row_id, scheduled_at],
        )
    return len(rows)


def holders(db: Db) -> list[str]:
    rows = db.execute(
        "SELECT DISTINCT claimed_by FROM work WHERE done_at IS NULL AND claimed_by IS NOT NULL"
    ).fetchall()
    return [str(row[0]) for row in rows]


def owed(db: Db) -> dict[Queue, tuple[int, str | None]]:
    """Per queue: how many rows are unfinished, and since when the oldest."""
    found: dict[Queue, tuple[int, str | None]] = {queue: (0, None) for queue in Queue}
    for name, pending, since in db.execute(
        "SELECT queue, count(*), min(created_at) FROM work WHERE done_at IS NULL GROUP BY queue"
    ).fetchall():
        found[Queue(name)] = (int(pending), since)
    return found


def next_due(db: Db, queue: Queue, now: str) -> str | None:
    """When the earliest unfinished row nobody holds is due."""
    row = db.execute(
        "SELECT min(due_at) FROM work WHERE queue = ? AND done_at IS NULL"
        f" AND {_FREE.format(w='')}",
        [queue, now],
    ).fetchone()
    return row[0] if row else None


def rows(db: Db, request_id: int | None = None, *, open_only: bool) -> list[dict[str, Any]]:
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
