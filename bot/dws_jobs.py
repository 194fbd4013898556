"""The DWS jobs: copying an approved request, and following the copy until DWS says it is done.

Each job is a row of the DWS queue (bot/work/queue.py), run by whichever worker claims it, in any
process; one call to DWS per run, never a sleep. What a run does depends only on the request's
row, so running a job again after a crash is always safe:

- `copy`, request `approved`: the name must be free (a snapshot with that name now is not ours);
  then `approved → copying`, then linked-copy.
- `copy`, request `copying` without a new id: a call may or may not have reached DWS, so the
  name is looked up first and the copy adopted if it is there; otherwise linked-copy again.
  The backup name is the idempotency key that linked-copy itself lacks: a "name already
  exists" answer to the call is adopted too (the copy the request knows, or the snapshot the
  name finds), never a failure.
- `follow`: one status read per run, due again every `poll_seconds` until AVAILABLE or
  UNAVAILABLE. A new id DWS no longer knows is looked up by name.

Transient trouble puts the job back with backoff (bot/dws_retry.py) and tells the thread once
per problem; only a definite refusal fails the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.clock import age_seconds, now_iso
from bot.domain import CopyRequest, State
from bot.dws import DwsClient, DwsError, InvalidInput, RegionalDws, SnapshotStatus
from bot.dws_retry import (
    DWS_BACKOFF,
    Verdict,
    dws_copy_verdict,
    dws_problem,
    dws_read_verdict,
    name_taken,
)
from bot.notifier import News, tell
from bot.store import Store
from bot.trail import step
from bot.work.backoff import Backoff
from bot.work.queue import Claimed, Queue, Work
from bot.work.workers import Done, Result, Retry

log = logging.getLogger(__name__)

COPY = "copy"
FOLLOW = "follow"
# DWS's answers for a snapshot id it does not know (or will not show).
_MISSING_CODES = frozenset({"DWS.5149", "DWS.0015"})
# After this long following a copy (or half the follow time, if shorter), a copy DWS knows by
# neither id nor name is taken as deleted: the request fails and the thread is told, rather
# than being followed in silence until the follow time runs out.
MISSING_GRACE_SECONDS = 600.0
FROZEN_STATUSES = frozenset({SnapshotStatus.FROZEN, SnapshotStatus.POLICE_FROZEN})
FROZEN_SLOWDOWN = 4
KNOWN_STATUSES = frozenset(status.value for status in SnapshotStatus)
# How often a "name already exists" answer is met with a lookup that finds no such snapshot
# before the request fails with it.
NAME_TAKEN_TRIES = 5


def copy_job() -> Work:
    return Work(Queue.DWS, COPY)


def follow_job(delay: float = 0.0) -> Work:
    return Work(Queue.DWS, FOLLOW, {"since": now_iso()}, delay=delay)


class Copier:
    """The handler of the DWS queue."""

    def __init__(
        self,
        store: Store,
        dws: RegionalDws,
        *,
        poll_seconds: float,
        follow_seconds: float,
        backoff: Backoff = DWS_BACKOFF,
        on_available: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.store = store
        # Told how long each copy took, from its last approval to AVAILABLE (metrics).
        self.on_available = on_available
        self.dws = dws
        self.poll_seconds = poll_seconds
        self.follow_seconds = follow_seconds
        self.backoff = backoff

    def _dws(self, request: CopyRequest) -> DwsClient:
        """The client of the request's region: the copy is made where the source is."""
        return self.dws.client(request.region)

    def __call__(self, job: Claimed) -> Result:
        request = self.store.require(job.request_id)
        if job.kind == COPY:
            return self._copy(job, request)
        if job.kind == FOLLOW:
            return self._follow(job, request)
        log.error("unknown DWS job", extra={"work_id": job.id, "kind": job.kind})
        return Done("unknown kind")

    # --- copy ------------------------------------------------------------------------------

    def _copy(self, job: Claimed, request: CopyRequest) -> Result:
        if request.state == State.APPROVED:
            return self._first_copy(job, request)
        if request.state != State.COPYING:
            return Done(f"nothing to do: {request.state}")
        if request.new_snapshot_id:
            return Done("copied", then=(follow_job(),))
        return self._resume(job, request)

    def _first_copy(self, job: Claimed, request: CopyRequest) -> Result:
        try:
            taken = self._dws(request).find_snapshot_by_name(request.backup_name)
        except DwsError as error:
            return self._read_failed(job, request, error)
        if taken is not None:
            return self._fail(
                request,
                f"A snapshot named {request.backup_name} already exists in DWS, so nothing was "
                "copied; ask again with another name.",
            )
        busy = self._busy_with(request)
        if busy is not None:
            return self._wait_for_cluster(job, request, busy)
        copying = self.store.transition(
            request.id,
            allowed_from=[State.APPROVED],
            to=State.COPYING,
            event="copy_started",
            actor=None,
            work=tell(News.COPY_STARTED),
        )
        step("copy_started", copying)
        if copying is None:
            return Done("decided elsewhere")
        return self._call(job, copying)

    def _busy_with(self, request: CopyRequest) -> str | None:
        """The operation the source's cluster is running (SNAPSHOTTING, RESTORING, …), if
        DWS says; a cluster DWS cannot tell about is not waited for (the copy call finds out)."""
        if not request.cluster_id:
            return None
        try:
            return self._dws(request).get_cluster(request.cluster_id).task_status or None
        except DwsError:
            return None

    def _wait_for_cluster(self, job: Claimed, request: CopyRequest, task: str) -> Result:
        """An approved copy waits for its cluster instead of failing; the thread hears once."""
        problem = f"cluster_busy:{task}"
        if problem != job.problem:
            self.store.record_event(
                request.id,
                "cluster_busy",
                None,
                {"task_status": task},
                work=tell(News.CLUSTER_BUSY, task=task),
            )
        return Retry(after=self.poll_seconds, error=f"cluster busy: {task}", problem=problem)

    def _resume(self, job: Claimed, request: CopyRequest) -> Result:
        """The copy may have been made by an earlier run whose answer never arrived."""
        try:
            existing = self._dws(request).find_snapshot_by_name(request.backup_name)
        except DwsError as error:
            return self._read_failed(job, request, error)
        if existing is None:
            self.store.record_event(request.id, "copy_resumed", None, {"found": False})
            return self._call(job, request)
        self.store.record_event(
            request.id, "copy_resumed", None, {"found": True, "snapshot_id": existing.id}
        )
        return self._copied(request, existing.id, dws_request_id=None, adopted=True)

    def _call(self, job: Claimed, request: CopyRequest) -> Result:
        try:
            copied = self._dws(request).copy_once(
                request.source_snapshot_id, request.backup_name, request.description
            )
        except InvalidInput as error:
            return self._fail(request, error)
        except DwsError as error:
            self.store.add_dws_request_id(request.id, error.request_id)
            if name_taken(error):
                return self._name_taken(job, request, error)
            verdict = dws_copy_verdict(error)
            if verdict == Verdict.FINAL:
                return self._fail(request, error)
            # Transient or ambiguous: the next run looks the name up before calling again.
            return self._again(job, request, error)
        return self._copied(
            request, copied.snapshot_id, dws_request_id=copied.request_id, adopted=False
        )

    def _name_taken(self, job: Claimed, request: CopyRequest, error: DwsError) -> Result:
        """DWS says the name is taken: by this request's own copy, made by an earlier call
        whose answer was lost or by a worker that lost its lease. It is adopted, never failed
        for: the request's copy if known, else the snapshot of that name."""
        known = self.store.require(request.id).new_snapshot_id
        if known:
            return Done("copied", then=(follow_job(),))
        try:
            found = self._dws(request).find_snapshot_by_name(request.backup_name)
        except DwsError as lookup_error:
            return self._again(job, request, lookup_error)
        if found is not None:
            return self._copied(request, found.id, dws_request_id=None, adopted=True)
        if job.attempts >= NAME_TAKEN_TRIES:
            return self._fail(request, error)  # DWS keeps saying so, yet shows no such snapshot
        return self._again(job, request, error)

    def _copied(
        self, request: CopyRequest, snapshot_id: str, *, dws_request_id: str | None, adopted: bool
    ) -> Result:
        self.store.add_dws_request_id(request.id, dws_request_id)
        self.store.update(
            request.id,
            new_snapshot_id=snapshot_id,
            snapshot_status="CREATING",
            event="copied",
            details={
                "new_snapshot_id": snapshot_id,
                "dws_request_id": dws_request_id,
                "adopted": adopted,
            },
            work=tell(News.COPIED),
        )
        return Done("copied", then=(follow_job(delay=self.poll_seconds),))

    # --- follow ----------------------------------------------------------------------------

    def _follow(self, job: Claimed, request: CopyRequest) -> Result:
        if request.state != State.COPYING or not request.new_snapshot_id:
            return Done(f"nothing to follow: {request.state}")
        if self._followed_too_long(job):
            return self._stop_following(request, "the follow time ran out")
        try:
            snapshot = self._dws(request).get_snapshot(request.new_snapshot_id)
        except DwsError as error:
            if error.status == 404 or error.error_code in _MISSING_CODES:
                return self._find_missing(job, request, error)
            if dws_read_verdict(error) == Verdict.FINAL:
                return self._stop_following(request, str(error))
            # Never much longer than a poll: the copy goes on in DWS meanwhile.
            return self._again(job, request, error, longest=4 * self.poll_seconds)
        if snapshot.status == SnapshotStatus.AVAILABLE:
            done = self.store.transition(
                request.id,
                allowed_from=[State.COPYING],
                to=State.SUCCEEDED,
                event="available",
                actor=None,
                snapshot_status=snapshot.status,
                work=tell(News.SUCCEEDED),
            )
            step("available", done)
            if done is not None:
                approved = [e["at"] for e in self.store.events(done.id) if e["kind"] == "approved"]
                if approved:
                    self.on_available(age_seconds(approved[-1]))
            return Done("available" if done else "decided elsewhere")
        if snapshot.status == SnapshotStatus.UNAVAILABLE:
            return self._fail(
                request,
                f"The snapshot {snapshot.id} failed: DWS reports it {snapshot.status}.",
                snapshot_status=snapshot.status,
            )
        frozen = snapshot.status in FROZEN_STATUSES
        if snapshot.status != request.snapshot_status:
            if snapshot.status not in KNOWN_STATUSES:
                log.warning(
                    "DWS reports a snapshot status snapcopy does not know; showing it as it is",
                    extra={"request_id": request.id, "status": snapshot.status},
                )
            # A freeze gets a reply of its own: somebody outside snapcopy has to act.
            self.store.update(
                request.id,
                snapshot_status=snapshot.status,
                event="status",
                details={"status": snapshot.status},
                work=tell(News.FROZEN if frozen else News.STATUS, status=snapshot.status),
            )
        # Frozen copies are followed more slowly: they thaw when the account is settled.
        return Retry(after=self.poll_seconds * (FROZEN_SLOWDOWN if frozen else 1), fresh=True)

    def _find_missing(self, job: Claimed, request: CopyRequest, error: DwsError) -> Result:
        """DWS does not know the new id (it answered, or was adopted, wrongly): by name, then."""
        try:
            found = self._dws(request).find_snapshot_by_name(request.backup_name)
        except DwsError as lookup_error:
            return self._again(job, request, lookup_error)
        if found is None and self._missing_for_good(job):
            return self._fail(
                request,
                f"The copy {request.new_snapshot_id} ({request.backup_name}) no longer exists in "
                "DWS: neither its id nor its name is known there any more, so it was deleted "
                "outside snapcopy. Nothing more will happen for this request.",
            )
        if found is None or found.id == request.new_snapshot_id:
            return self._again(job, request, error)
        self.store.update(
            request.id,
            new_snapshot_id=found.id,
            event="adopted",
            details={"snapshot_id": found.id, "instead_of": request.new_snapshot_id},
        )
        return Retry(after=0.0, fresh=True)

    def _missing_for_good(self, job: Claimed) -> bool:
        """Right after the copy call DWS may not list a new snapshot yet; once it has been
        followed for a while, a snapshot DWS knows by neither id nor name is gone."""
        return _followed_for(job) > min(MISSING_GRACE_SECONDS, self.follow_seconds / 2)

    def _followed_too_long(self, job: Claimed) -> bool:
        return _followed_for(job) > self.follow_seconds

    def _stop_following(self, request: CopyRequest, reason: str) -> Result:
        """The copy exists; only our view of it stops. `/snapcopy status` or a restart resumes."""
        self.store.record_event(
            request.id, "follow_stopped", None, {"reason": reason}, work=tell(News.FOLLOW_STOPPED)
        )
        return Done("follow stopped")

    # --- trouble ---------------------------------------------------------------------------

    def _read_failed(self, job: Claimed, request: CopyRequest, error: DwsError) -> Result:
        if dws_read_verdict(error) == Verdict.FINAL:
            return self._fail(request, error)
        return self._again(job, request, error)

    def _again(
        self,
        job: Claimed,
        request: CopyRequest,
        error: DwsError,
        *,
        longest: float | None = None,
    ) -> Result:
        """Back off and try again; the thread hears of each new problem once."""
        delay = self.backoff.delay(job.attempts, error.retry_after)
        if longest is not None:
            delay = min(delay, longest)
        problem = dws_problem(error)
        details = {
            "attempt": job.attempts,
            "next_in_seconds": round(delay),
            "error": str(error),
            "error_code": error.error_code,
            "dws_request_id": error.request_id,
        }
        if problem != job.problem:
            self.store.record_event(
                request.id, "dws_retrying", None, details, work=tell(News.DWS_RETRYING, **details)
            )
        log.info(
            "DWS trouble, retrying",
            extra={"request_id": request.id, "problem": problem, **details},
        )
        return Retry(after=delay, error=str(error), problem=problem)

    def _fail(
        self, request: CopyRequest, error: DwsError | InvalidInput | str, **fields: Any
    ) -> Result:
        sentence, code, dws_request_id = _failure(error)
        self.store.add_dws_request_id(request.id, dws_request_id)
        failed = self.store.transition(
            request.id,
            allowed_from=[State.APPROVED, State.COPYING],
            to=State.FAILED,
            event="copy_failed",
            actor=None,
            details={
                "error_code": code,
                "dws_request_id": dws_request_id,
                "error": sentence,
                # IAM's encoded explanation of a 403: for support, in the audit log only.
                **(
                    {"encoded_authorization_message": error.encoded_authorization_message}
                    if isinstance(error, DwsError) and error.encoded_authorization_message
                    else {}
                ),
            },
            error=sentence,
            error_code=code,
            work=tell(News.FAILED),
            **fields,
        )
        step("failed", failed, error=sentence, error_code=code, dws_request_id=dws_request_id)
        return Done("failed" if failed else "decided elsewhere")


def _followed_for(job: Claimed) -> float:
    """Seconds since the copy began to be followed (a follow row keeps its `since` through
    its retries)."""
    return age_seconds(job.payload.get("since") or job.created_at)


def _failure(error: DwsError | InvalidInput | str) -> tuple[str, str | None, str | None]:
    if isinstance(error, DwsError):
        return str(error), error.error_code, error.request_id
    if isinstance(error, InvalidInput):
        return error.message, "invalid_input", None
    return error, None, None
