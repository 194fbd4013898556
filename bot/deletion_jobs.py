"""The deletion jobs: deleting an approved deletion's copy, and following DWS's job to its end.

Rows of the DWS queue like the copy jobs (bot/dws_jobs.py), one DWS call a run, so a crash or
a SIGTERM only pauses them:

- `delete`: read the snapshot again and delete it only if it is this request's copy (same id
  and name) and MANUAL; otherwise nothing is deleted and the thread is told why. A snapshot
  DWS no longer has, or a DELETE answered DWS.0001, counts as deleted. A busy cluster
  (DWS.0011), throttling and other passing trouble are retried with backoff.
- `delete_follow`: one read of the job DWS runs for the deletion per run, until SUCCESS (the
  request becomes `deleted`) or FAIL/STOP (the thread hears why; the copy is kept).
"""

from __future__ import annotations

import logging
from typing import Any

from bot.domain import CopyRequest, Deletion, State
from bot.dws import DwsClient, DwsError, JobStatus, RegionalDws, Snapshot
from bot.dws_retry import DWS_BACKOFF, Verdict, dws_problem, dws_read_verdict
from bot.notifier import News, tell
from bot.retention import DELETE, DELETE_FOLLOW, follow_delete_job
from bot.store import Store
from bot.trail import step
from bot.work.backoff import Backoff
from bot.work.queue import Claimed
from bot.work.workers import Done, Result, Retry

log = logging.getLogger(__name__)

# DWS's answers for a snapshot it does not have (any more).
_GONE_CODES = frozenset({"DWS.5149", "DWS.0015"})
ALREADY_GONE = "DWS.0001"


class Deleter:
    """The handler of the DWS queue's `delete` and `delete_follow` rows."""

    def __init__(
        self,
        store: Store,
        dws: RegionalDws,
        *,
        poll_seconds: float,
        backoff: Backoff = DWS_BACKOFF,
    ) -> None:
        self.store = store
        self.dws = dws
        self.poll_seconds = poll_seconds
        self.backoff = backoff

    def __call__(self, job: Claimed) -> Result:
        request = self.store.require(job.request_id)
        if request.state != State.SUCCEEDED or request.deletion != Deletion.APPROVED:
            return Done(f"nothing to delete: {request.state}, deletion {request.deletion}")
        if job.kind == DELETE:
            return self._delete(job, request)
        if job.kind == DELETE_FOLLOW:
            return self._follow(job, request, str(job.payload.get("job_id") or ""))
        log.error("unknown deletion job", extra={"work_id": job.id, "kind": job.kind})
        return Done("unknown kind")

    def _client(self, request: CopyRequest) -> DwsClient:
        return self.dws.client(request.region)

    def _delete(self, job: Claimed, request: CopyRequest) -> Result:
        snapshot_id = request.new_snapshot_id or ""
        try:
            snapshot = self._client(request).get_snapshot(snapshot_id)
        except DwsError as error:
            if error.status == 404 or error.error_code in _GONE_CODES:
                return self._deleted(request, "DWS no longer has it")
            return self._again(job, request, error)
        refusal = _not_ours(request, snapshot)
        if refusal is not None:
            return self._failed(request, refusal)
        try:
            dws_job = self._client(request).delete_once(snapshot_id)
        except DwsError as error:
            self.store.add_dws_request_id(request.id, error.request_id)
            if error.error_code == ALREADY_GONE:
                return self._deleted(request, "already gone")
            if dws_read_verdict(error) == Verdict.FINAL:
                return self._failed(request, f"DWS refused the deletion: {error}")
            return self._again(job, request, error)
        self.store.record_event(
            request.id, "delete_called", None, {"snapshot_id": snapshot_id, "job_id": dws_job}
        )
        if dws_job is None:  # an older service: no job to follow
            return self._deleted(request, "deleted")
        return Done("delete called", then=(follow_delete_job(dws_job, self.poll_seconds),))

    def _follow(self, job: Claimed, request: CopyRequest, job_id: str) -> Result:
        try:
            dws_job = self._client(request).get_job(job_id)
        except DwsError as error:
            return self._again(job, request, error, longest=4 * self.poll_seconds)
        if dws_job.status == JobStatus.SUCCESS:
            return self._deleted(request, "the deletion job succeeded")
        if dws_job.finished:
            detail = dws_job.failed_detail or dws_job.failed_code or dws_job.status
            return self._failed(request, f"DWS's deletion job ended {dws_job.status}: {detail}")
        return Retry(after=self.poll_seconds, fresh=True)

    def _deleted(self, request: CopyRequest, how: str) -> Result:
        deleted = self.store.transition(
            request.id,
            allowed_from=[State.SUCCEEDED],
            to=State.DELETED,
            event="deleted",
            actor=None,
            details={"snapshot_id": request.new_snapshot_id, "how": how},
            work=tell(News.DELETED),
            where={"deletion": [Deletion.APPROVED.value]},
            snapshot_status="DELETED",
            keep_until=None,
            warn_at=None,
        )
        step("deleted", deleted, snapshot_id=request.new_snapshot_id, how=how)
        return Done("deleted" if deleted else "decided elsewhere")

    def _failed(self, request: CopyRequest, why: str) -> Result:
        """Nothing was deleted: the copy is kept, with no keep-until (the sweeper would only
        ask again), until someone asks again."""
        fields: dict[str, Any] = {
            "deletion": None,
            "delete_asked_by": None,
            "keep_until": None,
            "warn_at": None,
        }
        failed = self.store.transition(
            request.id,
            allowed_from=[State.SUCCEEDED],
            to=State.SUCCEEDED,
            event="delete_failed",
            actor=None,
            details={"error": why},
            work=tell(News.DELETE_FAILED, error=why),
            where={"deletion": [Deletion.APPROVED.value]},
            **fields,
        )
        step("delete_failed", failed, error=why)
        if failed is not None:
            self.store.forget_delete_approvals(request.id)
        return Done("delete failed" if failed else "decided elsewhere")

    def _again(
        self, job: Claimed, request: CopyRequest, error: DwsError, *, longest: float | None = None
    ) -> Result:
        delay = self.backoff.delay(job.attempts, error.retry_after)
        if longest is not None:
            delay = min(delay, longest)
        problem = dws_problem(error)
        if problem != job.problem:
            details = {"attempt": job.attempts, "error": str(error), "kind": job.kind}
            self.store.record_event(request.id, "dws_retrying", None, details)
        log.info(
            "DWS trouble deleting, retrying",
            extra={"request_id": request.id, "problem": problem, "retry_in": round(delay, 1)},
        )
        return Retry(after=delay, error=str(error), problem=problem)


def _not_ours(request: CopyRequest, snapshot: Snapshot) -> str | None:
    """Why this snapshot must not be deleted for this request (None: it may)."""
    if snapshot.id.lower() != (request.new_snapshot_id or "").lower():
        return f"DWS answered with another snapshot ({snapshot.id}); nothing was deleted."
    if snapshot.name.lower() != request.backup_name.lower():
        return (
            f"The snapshot is now named {snapshot.name}, not {request.backup_name}; nothing "
            "was deleted."
        )
    if snapshot.type.upper() != "MANUAL":
        return f"The snapshot is {snapshot.type or 'of no type'}, not MANUAL; nothing was deleted."
    return None
