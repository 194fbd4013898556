"""Approving in an incident: escalation when nobody answers, and the review of emergency copies.

- Escalation: a request still short of approvals at its `escalate_at` mentions `escalate_to`
  (in its thread, and by DM with the buttons), who may then approve it too
  (`RoleResolver.deciders`). Once per request, across processes: the due time is claimed in
  the database, as reminders are.
- Break-glass: a copy made at once by someone `[break_glass]` allows (bot/lifecycle.py) owes a
  review. Its deciders answer **Looks right** or **Flag**, once; a review not given within
  `review_within_hours` escalates to the admins, once, and is recorded as late.

Like the lifecycle, it knows the store, the roles and what people are owed, not Slack.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.clock import iso, now_iso
from bot.domain import CopyRequest, State
from bot.errors import AlreadyHandled, NotAllowed, SelfApproval, SnapcopyError, UnknownRequest
from bot.notifier import News, notify, tell
from bot.policy import ApprovalPolicy, BreakGlass
from bot.roles import RoleResolver
from bot.store import Store
from bot.trail import step

VERDICTS = ("ok", "flagged")
# A review is owed whatever became of the copy since.
ANY_STATE = tuple(State)


def escalation(approval: ApprovalPolicy, now: datetime, *, required: bool) -> dict[str, Any]:
    """A new request's escalation: when, and to whom (none without both keys)."""
    minutes = approval.settings.escalate_after_minutes
    if not required or minutes is None or not approval.settings.escalate_to:
        return {}
    return {
        "escalate_at": iso(now + timedelta(minutes=minutes)),
        "escalate_to": list(approval.settings.escalate_to),
    }


def review_owed(glass: BreakGlass | None, now: datetime) -> dict[str, Any]:
    """An emergency copy's review, owed within `[break_glass]`'s hours."""
    if glass is None:
        return {}
    return {
        "break_glass": True,
        "review_due_at": iso(now + timedelta(hours=glass.review_within_hours)),
    }


class Incident:
    def __init__(self, store: Store, roles: RoleResolver) -> None:
        self.store = store
        self.roles = roles

    def escalate_due(self) -> list[int]:
        """Escalate every request still waiting at its escalation time, once each."""
        escalated = [
            request
            for request in self.store.due("escalate_at", now_iso(), State.PENDING_APPROVAL)
            if self.store.take_mark(
                request.id,
                "escalate_at",
                State.PENDING_APPROVAL,
                "escalated",
                (*tell(News.ESCALATED), *notify(News.ESCALATED, request.escalate_to)),
                escalated_at=now_iso(),
            )
        ]
        # Those it is escalated to may decide now: their groups are looked up before they click.
        self.roles.prefetch(group for request in escalated for group in request.escalate_to)
        return [request.id for request in escalated]

    def overdue_reviews(self) -> list[int]:
        """Escalate to the admins every emergency copy not reviewed in time, once each."""
        return [
            request.id
            for request in self.store.due("review_due_at", now_iso(), ANY_STATE)
            if request.break_glass
            and request.reviewed_by is None
            and self.store.take_mark(
                request.id,
                "review_due_at",
                ANY_STATE,
                "review_overdue",
                (
                    *tell(News.REVIEW_OVERDUE, admins=list(self.roles.admins())),
                    *notify(News.REVIEW_OVERDUE, list(self.roles.admins())),
                ),
                review_late=True,
            )
        ]

    def review(self, request_id: int, user_id: str, verdict: str) -> CopyRequest:
        """One review of an emergency copy, by one of its deciders (not whoever made it); the
        first review counts, later ones are told it is done."""
        request = self._get(request_id)
        if not request.break_glass:
            raise AlreadyHandled(request)
        if user_id == request.requested_by:
            raise SelfApproval(
                f"You made the emergency copy {request.label}; someone else has to review it."
            )
        if not self.roles.is_among(user_id, self.roles.deciders(request)):
            self.store.record_event(request.id, "refused", user_id, {"action": "review"})
            raise NotAllowed(
                f"Only the approvers of request {request.label} or an admin can review it.",
                needed="approver",
                admins=self.roles.admins(),
            )
        now = now_iso()
        late = request.review_late or bool(request.review_due_at and request.review_due_at < now)
        reviewed = self.store.transition(
            request.id,
            allowed_from=ANY_STATE,
            to=None,
            event="reviewed",
            actor=user_id,
            details={"verdict": verdict, "late": late},
            work=tell(News.REVIEWED),
            where={"reviewed_by": [None]},
            reviewed_by=user_id,
            reviewed_at=now,
            review_verdict=verdict,
            review_due_at=None,
            review_late=late,
        )
        if reviewed is None:
            done = self._get(request.id)
            raise SnapcopyError(
                f"Request {done.label} was already reviewed by <@{done.reviewed_by}>."
            )
        step("reviewed", reviewed, user_id, verdict=verdict, late=late)
        return reviewed

    def _get(self, request_id: int) -> CopyRequest:
        request = self.store.get(request_id)
        if request is None:
            raise UnknownRequest(f"There is no request #{request_id}.")
        return request
