"""The copy-request lifecycle: who may ask and decide, and every state change up to the copy.

It knows the audit store, the DWS client and the policy; it does not know Slack. Each decision
is one compare-and-set in the store, committed before the click is acknowledged, together with
the work it causes: the DWS copy job (bot/dws_jobs.py) and the Slack outbox rows that tell people
(bot/notifier.py). Once the transaction commits, a crash can only delay what follows.

Never copy twice: a backup name is unique among live requests (the store's index) and in DWS,
the first decision on a request wins, and only the copy job talks to linked-copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.approvals import counted
from bot.clicks import audit_wrong, named
from bot.clock import iso, now_iso
from bot.domain import CopyRequest, RequestRef, Role, State
from bot.durations import minutes_text
from bot.dws import (
    Listed,
    RegionalDws,
    Snapshot,
)
from bot.dws_jobs import copy_job
from bot.errors import (
    AlreadyApproved,
    AlreadyHandled,
    BadInput,
    GroupsUnanswered,
    NotAllowed,
    RequestExpired,
    SelfApproval,
    SnapcopyError,
    UnknownRequest,
    WrongRequest,
)
from bot.form import REASON_MAX_CHARS, CopyForm, FormChecker, new_request, validate
from bot.incident import escalation, review_owed
from bot.notifier import News, announce, notify, tell
from bot.policy import ApprovalPolicy, Policy
from bot.retention import keeping
from bot.roles import RoleResolver
from bot.stakes import StakesReader
from bot.store import Counted, NameInUse, Store
from bot.store.engine import Duplicate
from bot.trail import step, step_new
from bot.work.queue import Queue, Work

log = logging.getLogger(__name__)


class CopyService:
    def __init__(
        self,
        store: Store,
        dws: RegionalDws,
        policy: Policy,
        roles: RoleResolver,
        stakes: StakesReader | None = None,
        *,
        groups_readable: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.dws = dws
        self.policy = policy
        self.roles = roles
        self.stakes = stakes
        # False while Slack will not tell us any group's members (a scope missing).
        self.groups_readable = groups_readable
        self.forms = FormChecker(dws)

    # --- asking --------------------------------------------------------------------------

    def ensure_role(self, user_id: str, role: Role, *, action: str) -> None:
        """Raise NotAllowed (and audit the refusal) unless the user holds `role`; when Slack
        could not say whether the user is in a group holding it, say that instead."""
        check = self.roles.check(user_id, self.roles.holding(role))
        if check.held:
            return
        if check.unanswered:
            raise GroupsUnanswered(list(check.unanswered), unreadable=not self.groups_readable())
        self.store.record_event(None, "refused", user_id, {"action": action, "needed": role})
        raise NotAllowed(
            f"You need the {role} role to {action}.", needed=role.value, admins=self.roles.admins()
        )

    def ask(
        self,
        *,
        requested_by: str,
        snapshot_id: str,
        backup_name: str,
        description: str | None,
        channel_id: str | None,
        thread_ts: str | None = None,
        reason: str | None = None,
        keep_until: date | None = None,
        break_glass: bool = False,
    ) -> CopyRequest:
        """Everything between a filled-in form and a recorded request, in this order: the role
        first (nobody without it learns anything from DWS), then DWS's rules, then DWS itself.
        With `break_glass`, someone allowed to copies at once and is reviewed afterwards.
        """
        self.ensure_role(requested_by, Role.REQUESTER, action="request snapshot copies")
        if break_glass:
            self.ensure_break_glass(requested_by)
        form = validate(snapshot_id, backup_name, description, reason)
        if not channel_id:
            raise BadInput("channel", "Choose the channel where the request is posted.")
        found = self.forms.precheck(form)
        source = found.snapshot if found else None
        approval = self._approval_for(form, source)
        if (approval.settings.require_reason or break_glass) and not form.reason:
            raise BadInput(
                "reason",
                "An emergency copy needs a reason or an incident link."
                if break_glass
                else "Copies of this cluster's snapshots need a reason or an incident link.",
            )
        request = self._record(
            form,
            found,
            approval,
            keep_until=keep_until,
            break_glass=break_glass,
            requested_by=requested_by,
            channel_id=channel_id,
            thread_ts=thread_ts,
        )
        if self.stakes is not None:
            self.stakes.look(request, source, approval.settings.urgent_within_hours)
        return request

    def may_break_glass(self, user_id: str) -> bool:
        glass = self.policy.break_glass
        return glass is not None and self.roles.is_among(user_id, glass.allowed)

    def ensure_break_glass(self, user_id: str) -> None:
        """Refuse (and audit) an emergency copy by anyone `[break_glass]` does not allow: a
        forged submission gets no further than this."""
        if self.may_break_glass(user_id):
            return
        self.store.record_event(None, "refused", user_id, {"action": "break glass"})
        raise NotAllowed(
            "Only the people the policy's [break_glass] table allows can copy without approval.",
            needed="break_glass",
            admins=self.roles.admins(),
        )

    def _approval_for(self, form: CopyForm, source: Snapshot | None) -> ApprovalPolicy:
        """How this request is approved: the first rule matching the source's cluster."""
        if source is None and self.policy.rules:
            # Guessing a rule could ask too little of a production copy: fail closed.
            raise BadInput(
                "snapshot_id",
                "DWS did not say in time which cluster this snapshot belongs to, and approval "
                "depends on it; submit again in a moment.",
            )
        if source is None:
            return self.policy.for_cluster(None, None)
        return self.policy.for_cluster(source.cluster_id, source.cluster_name)

    def _record(
        self,
        form: CopyForm,
        found: Listed | None,
        approval: ApprovalPolicy,
        *,
        keep_until: date | None,
        break_glass: bool,
        requested_by: str,
        channel_id: str,
        thread_ts: str | None,
    ) -> CopyRequest:
        """Record the request. With approval required it waits; otherwise it is approved."""
        settings = approval.settings
        now = datetime.now(UTC)
        keep = keeping(approval.lifecycle, keep_until, now)
        required = settings.required and not break_glass
        remind = settings.remind_after_minutes if required else None
        urgent = {
            **escalation(approval, now, required=required),
            **(review_owed(self.policy.break_glass, now) if break_glass else {}),
        }
        new = new_request(
            form,
            found,
            approval,
            requested_by=requested_by,
            channel_id=channel_id,
            thread_ts=thread_ts,
            remind_at=iso(now + timedelta(minutes=remind)) if remind else None,
            **keep,
            **urgent,
        )
        expires = now + timedelta(minutes=settings.expires_after_minutes)
        # Without approval the copy starts whether or not the message can be posted.
        work: list[Work] = [announce()] if required else [announce(), copy_job()]
        if break_glass:
            assert self.policy.break_glass is not None  # ensure_break_glass checked it
            work += (
                *tell(News.BREAK_GLASS),
                *notify(News.BREAK_GLASS, list(self.policy.break_glass.notify)),
            )
        try:
            request = self.store.create(
                new,
                state=State.PENDING_APPROVAL if required else State.APPROVED,
                expires_at=iso(expires) if required else None,
                actor=requested_by,
                work=work,
                approved_event=None
                if required
                else {"reason": "break glass" if break_glass else "approval not required"},
            )
        except NameInUse as error:
            raise BadInput(
                "backup_name",
                f"Request #{error.request_id} already uses the name {form.backup_name}; "
                "pick another name.",
            ) from None
        step_new(request, required=required, break_glass=break_glass)
        if required:
            # By the time an approver clicks, Slack has said who is in the deciding groups.
            self.roles.prefetch(self.roles.deciders(request))
        return request

    # --- deciding ------------------------------------------------------------------------

    def audit_refusal(self, refusal: NotAllowed | WrongRequest) -> None:
        if isinstance(refusal, WrongRequest):
            audit_wrong(self.store, refusal)
            return
        details = {"action": refusal.action, "needed": refusal.needed}
        self.store.record_event(refusal.request_id, "refused", refusal.actor, details)

    def named(
        self, ref: RequestRef, user_id: str, *, action: str, audit: bool = True
    ) -> CopyRequest:
        """The request a button or form names, if it is that request (bot/clicks.py); with
        `audit=False` a refusal is audited by the caller, once Slack has its answer."""
        try:
            return named(self.store, ref, user_id, action=action)
        except WrongRequest as refusal:
            if audit:
                self.audit_refusal(refusal)
            raise

    def approve(self, ref: RequestRef, user_id: str, *, audit: bool = True) -> CopyRequest:
        """Count one approval; the last one needed approves the request and starts the copy,
        all in one transaction, so the copy starts once however the clicks race."""
        request = self.named(ref, user_id, action="approve", audit=audit)
        if (
            request.requested_by == user_id
            and not request.allow_self_approval
            and request.state == State.PENDING_APPROVAL
        ):
            # Whatever roles the requester holds: what they need is somebody else.
            self.store.record_event(
                request.id, "refused", user_id, {"action": "approve", "reason": "self approval"}
            )
            raise SelfApproval(
                f"You asked for request {request.label} yourself, so someone else must approve "
                "it; nothing was done."
            )
        request = self._may_decide_now(request, user_id, action="approve", audit=audit)
        outcome, approved = self.store.count_approval(
            request.id,
            user_id,
            lambda users, needed: _counted(user_id, users, needed),
            waiting=lambda current: current.state == State.PENDING_APPROVAL,
        )
        if outcome == "handled":
            raise AlreadyHandled(approved)
        if outcome == "again":
            raise AlreadyApproved(approved)
        # The row may have moved on (the copy started) by now: count, rather than read the state.
        done = len(approved.approvals) >= approved.approvals_needed
        step("approved" if done else "approval", approved, user_id)
        return approved

    def deny(
        self, ref: RequestRef, user_id: str, reason: str | None = None, *, audit: bool = True
    ) -> CopyRequest:
        request = self.deciding(ref, user_id, action="deny", audit=audit)
        if reason and len(reason) > REASON_MAX_CHARS:
            # The modal allows no more; a longer one was not typed there.
            raise BadInput("deny_reason", f"Keep the reason under {REASON_MAX_CHARS} characters.")
        return self._decide(
            request,
            State.DENIED,
            actor=user_id,
            details={"reason": reason} if reason else None,
            denied_by=user_id,
            deny_reason=reason or None,
        )

    def cancel(self, request_id: int, user_id: str) -> CopyRequest:
        request = self._get(request_id)
        if request.requested_by != user_id and not self.roles.has(user_id, Role.ADMIN):
            self.store.record_event(request.id, "refused", user_id, {"action": "cancel"})
            raise NotAllowed(
                "Only the requester or an admin can cancel a request.",
                needed=Role.ADMIN.value,
                admins=self.roles.admins(),
            )
        return self._decide(request, State.CANCELLED, actor=user_id)

    def _decide(
        self,
        request: CopyRequest,
        to: State,
        *,
        actor: str,
        details: dict[str, Any] | None = None,
        work: Sequence[Work] = (),
        **fields: Any,
    ) -> CopyRequest:
        """The one way out of pending_approval: the first decision wins, later ones are told.

        The decision, its event, the copy job and the messages are one transaction.
        """
        decided = self.store.transition(
            request.id,
            allowed_from=[State.PENDING_APPROVAL],
            to=to,
            event=to.value,
            actor=actor,
            details=details,
            work=(*work, *tell(News(to.value))),
            **fields,
        )
        if decided is None:
            raise AlreadyHandled(self._get(request.id))
        step(to.value, decided, actor, **(details or {}))
        return decided

    def deciding(
        self, ref: RequestRef, user_id: str, *, action: str, audit: bool = True
    ) -> CopyRequest:
        """The request, if it is the one `ref` names and this user may decide it now; raises
        the reason otherwise.

        With `audit=False` a refusal (the wrong request, or the role missing) is not written
        yet: the caller is acknowledging a click and calls `audit_refusal` once Slack has its
        answer.
        """
        request = self.named(ref, user_id, action=action, audit=audit)
        return self._may_decide_now(request, user_id, action=action, audit=audit)

    def _may_decide_now(
        self, request: CopyRequest, user_id: str, *, action: str, audit: bool
    ) -> CopyRequest:
        check = self.roles.check(user_id, self.roles.deciders(request))
        if not check.held:
            if check.unanswered:
                unreadable = not self.groups_readable()
                raise GroupsUnanswered(list(check.unanswered), unreadable=unreadable)
            refusal = NotAllowed(
                self._who_may_decide(request, action),
                needed=Role.APPROVER.value,
                admins=self.roles.admins(),
                request_id=request.id,
                actor=user_id,
                action=action,
            )
            if audit:
                self.audit_refusal(refusal)
            raise refusal
        if request.state != State.PENDING_APPROVAL:
            raise AlreadyHandled(request)
        if request.expires_at and request.expires_at <= now_iso():
            self.expire(request)
            raise RequestExpired(
                f"Request #{request.id} expired after waiting "
                f"{minutes_text(self.policy.approval.expires_after_minutes)}; ask for a new one."
            )
        return request

    def may_decide(self, user_id: str, request: CopyRequest) -> bool:
        """Whether the user is one of the request's deciders (`RoleResolver.deciders`)."""
        return self.roles.is_among(user_id, self.roles.deciders(request))

    def may_see(self, user_id: str, request: CopyRequest) -> bool:
        """Its requester, those who may decide it, and admins."""
        return request.requested_by == user_id or self.may_decide(user_id, request)

    @staticmethod
    def _who_may_decide(request: CopyRequest, action: str) -> str:
        if request.approvers and request.rule is not None:
            return (
                f"Only the approvers of this cluster's rule (or an admin) can {action} request "
                f"{request.label}."
            )
        return f"You need the approver role to {action} snapshot copies."

    def retry(self, request_id: int, user_id: str) -> CopyRequest:
        """Try a failed copy again: a new, audited attempt that looks the name up first, so
        a copy an earlier attempt did make is adopted, never made twice. (The button's request
        is checked by `named` first.)"""
        request = self._get(request_id)
        if request.requested_by != user_id and not self.roles.has(user_id, Role.ADMIN):
            self.store.record_event(request.id, "refused", user_id, {"action": "retry"})
            raise NotAllowed(
                "Only the requester or an admin can retry a failed copy.",
                needed=Role.ADMIN.value,
                admins=self.roles.admins(),
            )
        if request.state != State.FAILED:
            raise AlreadyHandled(request)
        try:
            retried = self.store.transition(
                request.id,
                allowed_from=[State.FAILED],
                to=State.COPYING,
                event="retried",
                actor=user_id,
                details={"previous_error": request.error},
                work=(copy_job(), *tell(News.RETRIED)),
                new_snapshot_id=None,
                snapshot_status=None,
                error=None,
                error_code=None,
            )
        except Duplicate:
            raise BadInput(
                "backup_name",
                f"Another request uses the name {request.backup_name} now; ask again with "
                "another name.",
            ) from None
        if retried is None:
            raise AlreadyHandled(self._get(request.id))
        step("retried", retried, user_id)
        return retried

    def expire(self, request: CopyRequest) -> CopyRequest | None:
        expired = self.store.transition(
            request.id,
            allowed_from=[State.PENDING_APPROVAL],
            to=State.EXPIRED,
            event="expired",
            actor=None,
            work=tell(News.EXPIRED),
        )
        step("expired", expired)
        return expired

    def status(self, request_id: int, viewer: str) -> CopyRequest:
        """The request, for its requester, those who may decide it and admins; a copy still
        underway that nobody follows any more (the follow time ran out) is followed again."""
        request = self._get(request_id)
        if not self.may_see(viewer, request):
            raise SnapcopyError(
                f"Request {request.label} is not yours to see: only its requester, its "
                "approvers and admins can."
            )
        if request.state == State.COPYING and not any(
            row["queue"] == Queue.DWS for row in self.store.open_work(request.id)
        ):
            self.resume(request)
        return request

    def resume(self, request: CopyRequest) -> None:
        """A copy job for a request nobody works on: it looks the copy up before anything."""
        self.store.record_event(
            request.id, "reconciled", None, {"state": request.state}, work=[copy_job()]
        )

    def _get(self, request_id: int) -> CopyRequest:
        request = self.store.get(request_id)
        if request is None:
            raise UnknownRequest(f"There is no request #{request_id}.")
        return request

    def close(self) -> None:
        self.forms.close()


def _counted(user_id: str, users: list[str], needed: int) -> Counted:
    """The N-th of N approvals approves the request and starts the copy."""
    return counted(
        user_id,
        users,
        needed,
        column="approved_by",
        events=("approved", "approval"),
        done_fields={"state": State.APPROVED.value},
        done_work=(copy_job(),),
        news=(News.APPROVED, News.APPROVAL),
    )
