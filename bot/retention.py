"""A copy's life after it exists: how long it is kept, the warning before that time passes, and
its deletion, decided the way the copy was (the same approvers, N-of-M, four eyes).

Like the lifecycle (bot/lifecycle.py), it knows the store, the roles and what people are owed,
not Slack. Each decision is one guarded change of the request row, committed with its work:
the deletion job (bot/deletion_jobs.py) and the thread's news.

Never touch what snapcopy did not make: only a succeeded request's own copy is ever deleted,
and the job checks the snapshot again before it calls DWS.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bot.approvals import counted
from bot.clock import iso, now_iso, parse_iso
from bot.domain import CopyRequest, Deletion, State
from bot.errors import (
    AlreadyApproved,
    AlreadyHandled,
    BadInput,
    NotAllowed,
    SelfApproval,
    UnknownRequest,
)
from bot.notifier import News, tell
from bot.policy import Lifecycle
from bot.roles import RoleResolver
from bot.store import Counted, Store
from bot.trail import step
from bot.work.queue import Queue, Work

DELETE = "delete"
DELETE_FOLLOW = "delete_follow"
# What "Keep 30 more days" adds.
MORE_DAYS = 30.0
# A copy may be kept longer unless its deletion is already under way.
_OPEN_DELETION = [None, Deletion.PENDING.value]


def delete_job() -> Work:
    return Work(Queue.DWS, DELETE)


def follow_delete_job(job_id: str, delay: float) -> Work:
    return Work(Queue.DWS, DELETE_FOLLOW, {"job_id": job_id}, delay=delay)


def keeping(lifecycle: Lifecycle, chosen: date | None, now: datetime) -> dict[str, Any]:
    """A new request's keep-until and warning time: the chosen day (to its end, UTC), or
    `keep_days` from now; None for both when neither is set (kept until deleted)."""
    if chosen is not None:
        until = datetime.combine(chosen, time.max, tzinfo=UTC)
        if until <= now:
            raise BadInput("keep_until", "Pick a day after today to keep the copy until.")
    elif lifecycle.keep_days is not None:
        until = now + timedelta(days=lifecycle.keep_days)
    else:
        until = None
    if until is not None:
        _within_limit(lifecycle.max_keep_days, until, now, field="keep_until")
    return {
        "keep_until": iso(until) if until else None,
        "warn_at": _warn_at(until, lifecycle.warn_before_days, now),
        "max_keep_days": lifecycle.max_keep_days,
        "warn_before_days": lifecycle.warn_before_days,
        "delete_requires_approval": lifecycle.delete_requires_approval,
    }


def _warn_at(until: datetime | None, before_days: float, now: datetime) -> str | None:
    if until is None:
        return None
    return iso(max(now, until - timedelta(days=before_days)))


def _within_limit(max_days: float | None, until: datetime, now: datetime, *, field: str) -> None:
    if max_days is not None and until > now + timedelta(days=max_days, minutes=1):
        limit = (now + timedelta(days=max_days)).date().isoformat()
        raise BadInput(
            field, f"Copies may be kept at most {max_days:g} days, until {limit} at the latest."
        )


class Retention:
    def __init__(self, store: Store, roles: RoleResolver) -> None:
        self.store = store
        self.roles = roles

    # --- keeping ---------------------------------------------------------------------------

    def keep(self, request_id: int, user_id: str, *, until: datetime | None = None) -> CopyRequest:
        """Keep a copy longer (`until`, or 30 more days), within its rule's limit; a deletion
        waiting for approval is called off."""
        request = self._copy_of(request_id, user_id, action="keep")
        now = datetime.now(UTC)
        if until is None:
            current = parse_iso(request.keep_until) if request.keep_until else now
            until = max(current, now) + timedelta(days=MORE_DAYS)
            if request.max_keep_days is not None:  # the button never asks for too much
                until = min(until, now + timedelta(days=request.max_keep_days))
        if until <= now:
            raise BadInput("keep_until", "Pick a time in the future to keep the copy until.")
        _within_limit(request.max_keep_days, until, now, field="keep_until")
        kept = self.store.transition(
            request.id,
            allowed_from=[State.SUCCEEDED],
            to=State.SUCCEEDED,
            event="keep_extended",
            actor=user_id,
            details={"keep_until": iso(until), "previous": request.keep_until},
            work=tell(News.KEEP_EXTENDED, by=user_id),
            where={"deletion": _OPEN_DELETION},
            keep_until=iso(until),
            warn_at=_warn_at(until, request.warn_before_days or 0, now),
            deletion=None,
            delete_asked_by=None,
            delete_approved_by=None,
        )
        if kept is None:
            raise AlreadyHandled(self._get(request.id))
        step("keep_extended", kept, user_id, keep_until=kept.keep_until)
        self.store.forget_delete_approvals(request.id)
        return kept

    # --- deleting --------------------------------------------------------------------------

    def ask_delete(self, request_id: int, user_id: str | None) -> CopyRequest:
        """Ask for the copy's deletion: by a person (the requester, a decider, an admin), or
        by the sweeper (`user_id` None) once its keep-until has passed. Without approval the
        deletion starts at once."""
        request = (
            self._get(request_id)
            if user_id is None
            else self._copy_of(request_id, user_id, action="delete")
        )
        if not request.new_snapshot_id:
            raise AlreadyHandled(request)
        approved = not request.delete_requires_approval
        asked = self.store.transition(
            request.id,
            allowed_from=[State.SUCCEEDED],
            to=State.SUCCEEDED,
            event="delete_approved" if approved else "delete_requested",
            actor=user_id,
            details={"reason": "keep-until passed" if user_id is None else "asked"}
            | ({"approval": "not required by policy"} if approved else {}),
            work=(delete_job(), *tell(News.DELETE_STARTED))
            if approved
            else tell(News.DELETE_REQUESTED),
            where={"deletion": [None]},
            deletion=Deletion.APPROVED if approved else Deletion.PENDING,
            delete_asked_by=user_id,
        )
        if asked is None:
            raise AlreadyHandled(self._get(request.id))
        step("delete_approved" if approved else "delete_requested", asked, user_id)
        return asked

    def approve_delete(self, request_id: int, user_id: str) -> CopyRequest:
        """One approval of a deletion; the last one needed starts the DWS job."""
        request = self._get(request_id)
        if request.state != State.SUCCEEDED or request.deletion != Deletion.PENDING:
            raise AlreadyHandled(request)
        if user_id == request.delete_asked_by or (
            user_id == request.requested_by and not request.allow_self_approval
        ):
            raise SelfApproval(
                f"You asked for this copy or its deletion; another approver has to approve "
                f"deleting {request.label}."
            )
        if not self.roles.is_among(user_id, self.roles.deciders(request)):
            self._refuse(request, user_id, "approve the deletion of")
        outcome, counted = self.store.count_approval(
            request.id,
            user_id,
            lambda users, needed: _delete_counted(user_id, users, needed),
            waiting=lambda now: now.state == State.SUCCEEDED and now.deletion == Deletion.PENDING,
            table="delete_approvals",
        )
        if outcome == "handled":
            raise AlreadyHandled(counted)
        if outcome == "again":
            raise AlreadyApproved(counted)
        done = counted.deletion == Deletion.APPROVED
        step("delete_approved" if done else "delete_approval", counted, user_id)
        return counted

    # --- the sweeper's part ----------------------------------------------------------------

    def warn_due(self) -> list[int]:
        """Tell the thread, once, that a copy's keep-until is near."""
        return [
            request.id
            for request in self.store.due("warn_at", now_iso(), State.SUCCEEDED)
            if self.store.take_mark(
                request.id, "warn_at", State.SUCCEEDED, "keep_warned", tell(News.KEEP_WARNING)
            )
        ]

    def delete_due(self) -> list[int]:
        """Ask for the deletion of every copy whose keep-until has passed, once each."""
        asked = []
        for request in self.store.due("keep_until", now_iso(), State.SUCCEEDED):
            if request.deletion is None and request.new_snapshot_id:
                try:
                    asked.append(self.ask_delete(request.id, None).id)
                except AlreadyHandled:
                    pass  # another process asked first
        return asked

    # --- who may -----------------------------------------------------------------------------

    def _copy_of(self, request_id: int, user_id: str, *, action: str) -> CopyRequest:
        """The succeeded request, if this user may keep or delete its copy: its requester,
        those who may decide it, admins."""
        request = self._get(request_id)
        if request.state != State.SUCCEEDED:
            raise AlreadyHandled(request)
        if user_id != request.requested_by and not self.roles.is_among(
            user_id, self.roles.deciders(request)
        ):
            self._refuse(request, user_id, action)
        return request

    def _refuse(self, request: CopyRequest, user_id: str, action: str) -> None:
        self.store.record_event(request.id, "refused", user_id, {"action": action})
        raise NotAllowed(
            f"Only the requester, the approvers of request {request.label} or an admin can "
            f"{action} its copy.",
            needed="approver",
            admins=self.roles.admins(),
        )

    def _get(self, request_id: int) -> CopyRequest:
        request = self.store.get(request_id)
        if request is None:
            raise UnknownRequest(f"There is no request #{request_id}.")
        return request


def _delete_counted(user_id: str, users: list[str], needed: int) -> Counted:
    """The N-th of N approvals of a deletion starts the DWS job."""
    return counted(
        user_id,
        users,
        needed,
        column="delete_approved_by",
        events=("delete_approved", "delete_approval"),
        done_fields={"deletion": Deletion.APPROVED.value},
        done_work=(delete_job(),),
        news=(News.DELETE_STARTED, News.DELETE_APPROVAL),
    )
