"""The store's side of the leased queue (bot/work/queue.py): rows of work claimed, renewed,
finished, retried and given back, each in a transaction of its own.

Every statement is the queue's; this only opens the transactions, audits what a lease's end
means for a request, and wakes the workers after work was added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.clock import now_iso
from bot.store.mixin import StoreParts
from bot.store.rows import add_event, encode, update_request
from bot.work import queue as work_queue
from bot.work.queue import Claimed, Lease, Queue, Work


class WorkRows(StoreParts):
    """Mixed into the Store, which provides the transactions and the wake-up."""

    def add_work(self, request_id: int, work: Sequence[Work]) -> None:
        with self._transaction() as db:
            work_queue.add(db, request_id, work, now_iso())
        self._added(work)

    def claim(self, queue_name: Queue, worker: str, lease_seconds: float) -> Claimed | None:
        """Take the lease on one due row of `queue_name` (bot/work/queue.py), or None."""
        with self._statement() as db:  # one UPDATE … RETURNING: a transaction of its own
            return work_queue.claim(db, queue_name, worker, lease_seconds)

    def finish(
        self, claimed: Claimed, outcome: str, *, work: Sequence[Work] = (), **fields: Any
    ) -> bool:
        """Mark a claimed row done, adding the work that follows it; False (and nothing
        written) when its lease is no longer `claimed`'s."""
        stamp = now_iso()
        if not work and not fields:
            # The most common finish (a message sent) is one UPDATE: on PostgreSQL, one round
            # trip instead of BEGIN, UPDATE and COMMIT.
            with self._statement() as db:
                return work_queue.finish(db, claimed, outcome, stamp)
        with self._transaction() as db:
            if not work_queue.finish(db, claimed, outcome, stamp):
                return False
            if fields:
                update_request(db, claimed.request_id, {**encode(fields), "updated_at": stamp})
            work_queue.add(db, claimed.request_id, work, stamp)
        self._added(work)
        return True

    def retry(
        self,
        claimed: Claimed,
        *,
        after: float,
        error: str,
        problem: str | None = None,
        fresh: bool = False,
    ) -> bool:
        """Give the row back, due again `after` seconds from now; `fresh` restarts its count.
        False (and nothing written) when its lease is no longer `claimed`'s."""
        with self._statement() as db:  # one conditional UPDATE
            return work_queue.retry(
                db, claimed, after=after, error=error, problem=problem, fresh=fresh
            )

    def release(self, worker: str, *, event: str | None = None) -> list[int]:
        """Give back every lease `worker` holds (shutdown, or a holder known to be dead).
        Returns the requests concerned, each of which gets `event` in its trail when given."""
        stamp = now_iso()
        with self._transaction() as db:
            released = work_queue.release(db, worker)
            if event is not None:
                for request_id, queue_name, kind in released:
                    details = {"holder": worker, "queue": queue_name, "kind": kind}
                    add_event(db, request_id, event, None, details, stamp)
        return sorted({request_id for request_id, _, _ in released})

    def renew(self, tokens: Sequence[str], lease_seconds: float) -> set[str]:
        """Renew the leases of `tokens`; returns the tokens still held."""
        if not tokens:
            return set()
        with self._statement() as db:  # one UPDATE
            return work_queue.renew(db, tokens, lease_seconds)

    def leases(self, queue_name: Queue) -> list[Lease]:
        with self.connection() as db:
            return work_queue.leases(db, queue_name)

    def expire(self, lease: Lease, watched_seconds: float) -> bool:
        """End a lease whose beats stood still while watched; audited on its request."""
        with self._transaction() as db:
            if not work_queue.expire(db, lease):
                return False
            details = {
                "holder": lease.holder,
                "kind": lease.kind,
                "watched_seconds": round(watched_seconds, 1),
            }
            add_event(db, lease.request_id, "lease_expired", None, details, now_iso())
        return True

    def rebase_due(self, queue_name: Queue) -> int:
        """Due times set before the clock was set back, moved to their intended delay."""
        with self._transaction() as db:
            return work_queue.rebase(db, queue_name)

    def lease_holders(self) -> list[str]:
        with self.connection() as db:
            return work_queue.holders(db)

    def owed(self, wait: float | None = None) -> dict[Queue, tuple[int, str | None]]:
        """Per queue: how many rows are unfinished, and since when the oldest."""
        with self.connection(wait) as db:
            return work_queue.owed(db)

    def open_work(self, request_id: int | None = None) -> list[dict[str, Any]]:
        """Unfinished rows, oldest first (for one request if given)."""
        with self.connection() as db:
            return work_queue.rows(db, request_id, open_only=True)

    def work_rows(self, request_id: int) -> list[dict[str, Any]]:
        """Every row of work a request caused, done or not, oldest first."""
        with self.connection() as db:
            return work_queue.rows(db, request_id, open_only=False)

    def next_due(self, queue_name: Queue) -> str | None:
        """When the earliest unfinished row nobody holds is due (a read: no write lock)."""
        with self.connection() as db:
            return work_queue.next_due(db, queue_name, now_iso())
