"""The copy-request lifecycle: who may ask and decide, and every state change up to the copy.

It knows the audit store, the DWS client and the policy; it does not know Slack. People are
told what happened through a `Notifier` (the Slack layer implements it); the copy itself, once
approved, is the `Copier`'s.

Never copy twice: a backup name is unique among live requests (the store's index) and in DWS,
the first decision on a request wins, and only the copier talks to linked-copy.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import Policy, Role
from bot.copier import Copier
from bot.domain import CopyRequest, NewRequest, State
from bot.dws.client import DwsClient
from bot.dws.errors import DwsError
from bot.dws.validation import (
    InvalidInput,
    validate_backup_name,
    validate_description,
    validate_snapshot_id,
)
from bot.errors import (
    AlreadyHandled,
    AnnounceFailed,
    BadInput,
    NotAllowed,
    RequestExpired,
    SelfApproval,
    UnknownRequest,
)
from bot.notifier import News, Notifier
from bot.roles import RoleResolver
from bot.store import NameInUse, Store, iso, now_iso

log = logging.getLogger(__name__)

# DWS answers this fast or the modal is accepted and the checks wait for copy time.
PRECHECK_BUDGET_SECONDS = 1.5


@dataclass(frozen=True)
class CopyForm:
    """The three fields a person fills in, validated."""

    source_snapshot_id: str
    backup_name: str
    description: str


class CopyService:
    def __init__(
        self,
        store: Store,
        dws: DwsClient,
        policy: Policy,
        roles: RoleResolver,
        notifier: Notifier,
        *,
        poll_seconds: float,
        follow_seconds: float,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.dws = dws
        self.policy = policy
        self.roles = roles
        self.notifier = notifier
        self.stop = stop or threading.Event()
        self.copier = Copier(
            store,
            dws,
            notifier,
            poll_seconds=poll_seconds,
            follow_seconds=follow_seconds,
            stop=self.stop,
        )
        self._prechecks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="precheck")
        self._announcing: set[int] = set()
        self._announcing_lock = threading.Lock()

    # --- asking --------------------------------------------------------------------------

    def ensure_role(self, user_id: str, role: Role, *, action: str) -> None:
        """Raise NotAllowed (and audit the refusal) unless the user holds `role`."""
        if self.roles.has(user_id, role):
            return
        self.store.record_event(None, "refused", user_id, {"action": action, "needed": role})
        raise NotAllowed(
            f"You need the {role} role to {action}.", needed=role.value, admins=self.roles.admins()
        )

    @staticmethod
    def validate(snapshot_id: str, backup_name: str, description: str | None) -> CopyForm:
        """Check the three fields against DWS's rules; BadInput names the field at fault."""
        try:
            return CopyForm(
                source_snapshot_id=validate_snapshot_id(snapshot_id or ""),
                backup_name=validate_backup_name(backup_name or ""),
                description=validate_description(description),
            )
        except InvalidInput as error:
            raise BadInput(error.field, error.message) from None

    def precheck(self, form: CopyForm, budget: float = PRECHECK_BUDGET_SECONDS) -> None:
        """Ask DWS whether the source is copyable and the name free, if it answers in time.

        A slow or failing DWS does not block the request: the copy checks again anyway.
        """
        future = self._prechecks.submit(self._precheck, form)
        try:
            future.result(timeout=budget)
        except FutureTimeout:
            log.info("precheck skipped: DWS is slow", extra={"budget": budget})
        except DwsError as error:
            log.info("precheck skipped: %s", error, extra={"error_code": error.error_code})

    def _precheck(self, form: CopyForm) -> None:
        try:
            source = self.dws.get_snapshot(form.source_snapshot_id)
        except DwsError as error:
            if error.status in (403, 404) or error.error_code in ("DWS.5149", "DWS.0015"):
                raise BadInput(
                    "snapshot_id",
                    f"DWS has no snapshot {form.source_snapshot_id} in this project.",
                ) from None
            raise
        if not source.is_automated:
            raise BadInput(
                "snapshot_id",
                f"Snapshot {source.name} is a {source.type.lower()} snapshot; only automated "
                "snapshots can be copied.",
            )
        if self.dws.find_snapshot_by_name(form.backup_name) is not None:
            raise BadInput(
                "backup_name",
                f"A snapshot named {form.backup_name} already exists; pick another name.",
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
    ) -> CopyRequest:
        """Everything between a filled-in form and a recorded request, in this order: the role
        first (nobody without it learns anything from DWS), then DWS's rules, then DWS itself.
        """
        self.ensure_role(requested_by, Role.REQUESTER, action="request snapshot copies")
        form = self.validate(snapshot_id, backup_name, description)
        if not channel_id:
            raise BadInput("channel", "Choose the channel where the request is posted.")
        self.precheck(form)
        return self._record(
            form, requested_by=requested_by, channel_id=channel_id, thread_ts=thread_ts
        )

    def _record(
        self, form: CopyForm, *, requested_by: str, channel_id: str, thread_ts: str | None
    ) -> CopyRequest:
        """Record the request. With approval required it waits; otherwise it is approved."""
        new = NewRequest(
            source_snapshot_id=form.source_snapshot_id,
            backup_name=form.backup_name,
            description=form.description,
            requested_by=requested_by,
            channel_id=channel_id,
            thread_ts=thread_ts,
        )
        required = self.policy.approval.required
        expires = datetime.now(UTC) + timedelta(minutes=self.policy.approval.expires_after_minutes)
        try:
            request = self.store.create(
                new,
                state=State.PENDING_APPROVAL if required else State.APPROVED,
                expires_at=iso(expires) if required else None,
                actor=requested_by,
            )
        except NameInUse as error:
            raise BadInput(
                "backup_name",
                f"Request #{error.request_id} already uses the name {form.backup_name}; "
                "pick another name.",
            ) from None
        if not required:
            self.store.record_event(
                request.id, "approved", None, {"reason": "approval not required by policy"}
            )
        return request

    def announce(self, request_id: int) -> CopyRequest:
        """Post the request to its channel, remember the thread, and start it if approved."""
        with self._announcing_lock:
            if request_id in self._announcing:
                return self._get(request_id)
            self._announcing.add(request_id)
        try:
            return self._announce(request_id)
        finally:
            with self._announcing_lock:
                self._announcing.discard(request_id)

    def _announce(self, request_id: int) -> CopyRequest:
        request = self._get(request_id)
        if request.message_ts is not None:
            return request
        try:
            posted = self.notifier.announce(request)
        except AnnounceFailed as error:
            self.store.record_event(request.id, "announce_failed", None, {"error": error.reason})
            raise
        request = self.store.update(
            request.id,
            channel_id=posted.channel_id,
            message_ts=posted.message_ts,
            thread_ts=posted.thread_ts,
            event="announced",
            details={"channel_id": posted.channel_id, "message_ts": posted.message_ts},
        )
        if request.state == State.APPROVED:
            self.copier.start(request.id)
        return request

    # --- deciding ------------------------------------------------------------------------

    def approve(self, request_id: int, user_id: str) -> CopyRequest:
        request = self.deciding(request_id, user_id, action="approve")
        if request.requested_by == user_id and not self.policy.approval.allow_self_approval:
            self.store.record_event(
                request.id, "refused", user_id, {"action": "approve", "reason": "self approval"}
            )
            raise SelfApproval(
                f"You asked for request #{request.id} yourself; another approver has to approve it."
            )
        approved = self._decide(request, State.APPROVED, actor=user_id, approved_by=user_id)
        self.copier.start(approved.id)
        return approved

    def deny(self, request_id: int, user_id: str, reason: str | None = None) -> CopyRequest:
        request = self.deciding(request_id, user_id, action="deny")
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
        **fields: Any,
    ) -> CopyRequest:
        """The one way out of pending_approval: the first decision wins, later ones are told."""
        decided = self.store.transition(
            request.id,
            allowed_from=[State.PENDING_APPROVAL],
            to=to,
            event=to.value,
            actor=actor,
            details=details,
            **fields,
        )
        if decided is None:
            raise AlreadyHandled(self._get(request.id))
        self.notifier.tell(decided, News(to.value))
        return decided

    def deciding(self, request_id: int, user_id: str, *, action: str) -> CopyRequest:
        """The request, if this user may decide it now; raises the reason otherwise."""
        request = self._get(request_id)
        if not self.roles.has(user_id, Role.APPROVER):
            self.store.record_event(
                request.id, "refused", user_id, {"action": action, "needed": Role.APPROVER}
            )
            raise NotAllowed(
                f"You need the approver role to {action} snapshot copies.",
                needed=Role.APPROVER.value,
                admins=self.roles.admins(),
            )
        if request.state != State.PENDING_APPROVAL:
            raise AlreadyHandled(request)
        if request.expires_at and request.expires_at <= now_iso():
            self._expire(request)
            raise RequestExpired(
                f"Request #{request.id} expired after waiting "
                f"{_minutes(self.policy.approval.expires_after_minutes)}; ask for a new one."
            )
        return request

    def expire_due(self) -> list[CopyRequest]:
        """Expire every pending request past its deadline; the sweeper calls this."""
        return [
            expired
            for request in self.store.due_to_expire(now_iso())
            if (expired := self._expire(request)) is not None
        ]

    def _expire(self, request: CopyRequest) -> CopyRequest | None:
        expired = self.store.transition(
            request.id,
            allowed_from=[State.PENDING_APPROVAL],
            to=State.EXPIRED,
            event="expired",
            actor=None,
        )
        if expired is not None:
            self.notifier.tell(expired, News.EXPIRED)
        return expired

    # --- after a restart -----------------------------------------------------------------

    def announce_unposted(self, older_than_seconds: float = 0.0) -> None:
        """Post requests whose message never made it (Slack down, bot not in the channel)."""
        cutoff = iso(datetime.now(UTC) - timedelta(seconds=older_than_seconds))
        for request in self.store.find(states=[State.PENDING_APPROVAL, State.APPROVED]):
            if request.message_ts is None and request.created_at <= cutoff:
                self._announce_quietly(request.id)

    def reconcile(self) -> list[int]:
        """Pick up what a crash or restart interrupted; returns the request ids resumed."""
        self.announce_unposted()
        resumed = []
        for request in self.store.find(states=[State.APPROVED, State.COPYING], newest_first=False):
            if request.message_ts is None and request.state == State.APPROVED:
                continue  # announce() starts it once the thread exists
            self.store.record_event(request.id, "reconciled", None, {"state": request.state})
            if self.copier.start(request.id):
                resumed.append(request.id)
        return resumed

    def _announce_quietly(self, request_id: int) -> None:
        try:
            self.announce(request_id)
        except AnnounceFailed as error:
            log.warning(
                "announcing request failed: %s", error.reason, extra={"request_id": request_id}
            )

    def _get(self, request_id: int) -> CopyRequest:
        request = self.store.get(request_id)
        if request is None:
            raise UnknownRequest(f"There is no request #{request_id}.")
        return request

    def close(self) -> None:
        self.stop.set()
        self._prechecks.shutdown(wait=False, cancel_futures=True)


def _minutes(minutes: float) -> str:
    if minutes >= 120 and minutes % 60 == 0:
        return f"{int(minutes // 60)} hours"
    return f"{minutes:g} minutes"
