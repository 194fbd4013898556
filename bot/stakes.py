"""What is at stake for a new request, read from DWS in the background, each read bounded.

An approver in an incident should not decide blind. Right after a request is recorded (and
its acknowledgement sent), three reads run at once on a small pool:

- when the source automated snapshot expires: its `started` plus its own `bak_keep_day`, or
  else the cluster's snapshot policy `keep_day` (a fourth read, only then);
- the cluster's snapshot storage: used, free and paid, in GB;
- the cluster's state and the operation it is running (`task_status`).

Whatever has not answered within `budget` is left unknown and nothing waits on it: the request
message is brought up to date with what came back, saying "unknown" for the rest. A source
expiring within the rule's `urgent_within_hours` makes the reminder go out at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bot.clock import iso, now_iso
from bot.domain import CopyRequest, State
from bot.dws import DwsError, RegionalDws, Snapshot
from bot.notifier import update_root
from bot.store import Store

log = logging.getLogger(__name__)

BUDGET_SECONDS = 3.0
_T = TypeVar("_T")


def source_expiry(source: Snapshot, keep_day: int | None) -> datetime | None:
    """When an automated snapshot is deleted by its retention, if that can be known."""
    days = source.bak_keep_day or keep_day
    if not source.started or not days:
        return None
    try:
        started = datetime.fromisoformat(source.started.replace("Z", "+00:00"))
    except ValueError:
        return None
    started = started.replace(tzinfo=UTC) if started.tzinfo is None else started
    return started + timedelta(days=days)


class StakesReader:
    def __init__(self, store: Store, dws: RegionalDws, *, budget: float = BUDGET_SECONDS) -> None:
        self.store = store
        self.dws = dws
        self.budget = budget
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="stakes")

    def look(self, request: CopyRequest, source: Snapshot | None, urgent_hours: float) -> None:
        """Read, in the background, what is at stake for `request`."""
        if request.cluster_id is None or request.state != State.PENDING_APPROVAL:
            return  # nothing to ask about, or nobody left to decide
        self._pool.submit(self._look, request, source, urgent_hours)

    def _look(self, request: CopyRequest, source: Snapshot | None, urgent_hours: float) -> None:
        try:
            fields = self.read(request, source)
        except Exception:
            log.exception("reading what is at stake failed", extra={"request_id": request.id})
            fields = {}
        urgent = _urgent(fields.get("source_expires_at"), urgent_hours)
        if urgent and request.remind_at is not None:
            fields["remind_at"] = now_iso()  # the sweeper pings the approvers now
        self.store.update(
            request.id,
            stakes_at=now_iso(),
            event="stakes",
            details={**fields, "urgent": urgent},
            work=[update_root()],
            **fields,
        )

    def read(self, request: CopyRequest, source: Snapshot | None) -> dict[str, Any]:
        """The request's stakes fields from DWS; those DWS did not give in time are left out."""
        client = self.dws.client(request.region)
        cluster_id = request.cluster_id or ""
        storage = self._pool.submit(client.snapshot_statistics, cluster_id)
        cluster = self._pool.submit(client.get_cluster, cluster_id)
        policy = (
            self._pool.submit(client.snapshot_policy, cluster_id)
            if source is None or not source.bak_keep_day
            else None
        )
        deadline = _Deadline(self.budget)
        fields: dict[str, Any] = {}
        found_storage = deadline.result(storage)
        if found_storage is not None:
            fields |= {
                "storage_used": found_storage.used,
                "storage_free": found_storage.free,
                "storage_paid": found_storage.paid,
            }
        found_cluster = deadline.result(cluster)
        if found_cluster is not None:
            fields |= {
                "cluster_status": found_cluster.status or None,
                "cluster_task": found_cluster.task_status or None,
            }
        found_policy = deadline.result(policy)
        keep_day = found_policy.keep_day if found_policy is not None else None
        expiry = source_expiry(source, keep_day) if source is not None else None
        if expiry is not None:
            fields["source_expires_at"] = iso(expiry)
        return fields

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Deadline:
    """One budget shared by several reads: each waits only for what is left of it."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = self._clock() + seconds

    def result(self, future: Future[_T] | None) -> _T | None:
        if future is None:
            return None
        try:
            return future.result(timeout=max(0.0, self._until - self._clock()))
        except FutureTimeout:
            return None
        except DwsError as error:
            log.info("a read of what is at stake failed: %s", error)
            return None


def _urgent(expires_at: str | None, hours: float) -> bool:
    if expires_at is None:
        return False
    return expires_at <= iso(datetime.now(UTC) + timedelta(hours=hours))
