"""The copy-request lifecycle: who may do what, the state changes, and the copy itself.

It knows the audit store, the DWS client and the policy; it does not know Slack. People are
told what happened through a `Notifier` (the Slack layer implements it).

Never copy twice: a request only reaches DWS by winning the `approved → copying` transition, the
backup name is the idempotency key (unique among live requests here, unique in DWS), and after a
crash a request found in `copying` is looked up by name before anything is sent again.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bot.config import Policy, Role
from bot.domain import CopyRequest, NewRequest, State
from bot.dws.client import DwsClient
from bot.dws.errors import DwsError, SnapshotFailed, WaitTimedOut
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
from bot.roles import RoleResolver
from bot.store import NameInUse, Store, iso, now_iso

log = logging.getLogger(__name__)

# DWS answers this fast or the modal is accepted and the checks wait for copy time.
PRECHECK_BUDGET_SECONDS = 1.5


class News(StrEnum):
    """What the lifecycle tells people about; the notifier decides how."""

    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    COPY_STARTED = "copy_started"
    COPIED = "copied"
    STATUS = "status"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FOLLOW_STOPPED = "follow_stopped"


@dataclass(frozen=True)
class Posted:
    """Where the approval request was posted: its message is the thread root."""

    channel_id: str
    message_ts: str
    thread_ts: str


class Notifier(Protocol):
    def announce(self, request: CopyRequest) -> Posted:
        """Post the approval request (or, with no approval needed, the request) to its channel."""

    def tell(self, request: CopyRequest, news: News) -> None:
        """Let the request's thread know; must not raise."""


@dataclass(frozen=True)
class CopyForm:
    """The three fields a person fills in, validated."""

    source_snapshot_id: str
    backup_name: str
    description: str


class Stopping(Exception):
    """The process is shutting down; unfinished copies are picked up again at start-up."""


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
        self.poll_seconds = poll_seconds
        self.follow_seconds = follow_seconds
        self.stop = stop or threading.Event()
        self._prechecks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="precheck")
        self._running: set[int] = set()
        self._announcing: set[int] = set()
        self._running_lock = threading.Lock()

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

    def submit(
        self, form: CopyForm, *, requested_by: str, channel_id: str, thread_ts: str | None = None
    ) -> CopyRequest:
        """Record the request. With approval required it waits; otherwise it is approved."""
        self.ensure_role(requested_by, Role.REQUESTER, action="request snapshot copies")
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
        with self._running_lock:
            if request_id in self._announcing:
                return self._get(request_id)
            self._announcing.add(request_id)
        try:
            return self._announce(request_id)
        finally:
            with self._running_lock:
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
            self.start_copy(request.id)
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
        self.start_copy(approved.id)
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

    # --- copying -------------------------------------------------------------------------

    def start_copy(self, request_id: int) -> bool:
        """Run the copy on its own thread; False if this process is already running it."""
        with self._running_lock:
            if request_id in self._running:
                return False
            self._running.add(request_id)
        thread = threading.Thread(
            target=self._run_and_release,
            args=(request_id,),
            name=f"copy-{request_id}",
            daemon=True,  # a crash mid-copy is recovered by reconcile(), not by joining
        )
        thread.start()
        return True

    def _run_and_release(self, request_id: int) -> None:
        try:
            self.run_copy(request_id)
        except Stopping:
            log.info("copy paused for shutdown", extra={"request_id": request_id})
        except Exception:
            log.exception("copy crashed", extra={"request_id": request_id})
            self._fail(self._get(request_id), "snapcopy hit an internal error while copying.")
        finally:
            with self._running_lock:
                self._running.discard(request_id)

    def run_copy(self, request_id: int) -> CopyRequest:
        """Copy (or adopt the copy of) an approved request, then follow it to the end."""
        request = self._get(request_id)
        if request.state == State.APPROVED:
            request = self._first_copy(request)
        elif request.state == State.COPYING and not request.new_snapshot_id:
            request = self._resume_copy(request)
        if request.state == State.COPYING and request.new_snapshot_id:
            request = self._follow(request)
        return request

    def _first_copy(self, request: CopyRequest) -> CopyRequest:
        try:
            # Checked just before the first call: a snapshot with this name now is not ours.
            if self.dws.find_snapshot_by_name(request.backup_name) is not None:
                return self._fail(
                    request,
                    f"A snapshot named {request.backup_name} already exists in DWS, so "
                    "nothing was copied; ask again with another name.",
                )
        except DwsError as error:
            return self._fail(request, error)
        copying = self.store.transition(
            request.id,
            allowed_from=[State.APPROVED],
            to=State.COPYING,
            event="copy_started",
            actor=None,
        )
        if copying is None:  # somebody else's thread or process won the transition
            return self._get(request.id)
        self.notifier.tell(copying, News.COPY_STARTED)
        return self._call_copy(copying)

    def _resume_copy(self, request: CopyRequest) -> CopyRequest:
        """After a crash in `copying`: the call may or may not have reached DWS."""
        try:
            existing = self.dws.find_snapshot_by_name(request.backup_name)
        except DwsError as error:
            return self._fail(request, error)
        if existing is None:
            self.store.record_event(request.id, "copy_resumed", None, {"found": False})
            return self._call_copy(request)
        self.store.record_event(
            request.id, "copy_resumed", None, {"found": True, "snapshot_id": existing.id}
        )
        return self._copied(request, existing.id, dws_request_id=None, adopted=True)

    def _call_copy(self, request: CopyRequest) -> CopyRequest:
        try:
            copied = self.dws.copy_snapshot(
                request.source_snapshot_id, request.backup_name, request.description
            )
        except (DwsError, InvalidInput) as error:
            return self._fail(request, error)
        return self._copied(
            request, copied.snapshot_id, dws_request_id=copied.request_id, adopted=copied.adopted
        )

    def _copied(
        self, request: CopyRequest, snapshot_id: str, *, dws_request_id: str | None, adopted: bool
    ) -> CopyRequest:
        self.store.add_dws_request_id(request.id, dws_request_id)
        copied = self.store.update(
            request.id,
            new_snapshot_id=snapshot_id,
            snapshot_status="CREATING",
            event="copied",
            details={
                "new_snapshot_id": snapshot_id,
                "dws_request_id": dws_request_id,
                "adopted": adopted,
            },
        )
        self.notifier.tell(copied, News.COPIED)
        return copied

    def _follow(self, request: CopyRequest) -> CopyRequest:
        assert request.new_snapshot_id is not None
        seen = {"status": request.snapshot_status}

        def on_status(status: str) -> None:
            if self.stop.is_set():
                raise Stopping
            if status == seen["status"]:
                return
            seen["status"] = status
            updated = self.store.update(
                request.id, snapshot_status=status, event="status", details={"status": status}
            )
            self.notifier.tell(updated, News.STATUS)

        try:
            final = self.dws.wait_until_available(
                request.new_snapshot_id,
                poll_seconds=self.poll_seconds,
                timeout=self.follow_seconds,
                on_status=lambda snapshot: on_status(snapshot.status),
            )
        except SnapshotFailed as error:
            return self._fail(request, error, snapshot_status="UNAVAILABLE")
        except (WaitTimedOut, DwsError) as error:
            # The copy exists; only our view of it stopped. Say so; a restart resumes following.
            self.store.record_event(request.id, "follow_stopped", None, {"reason": str(error)})
            stopped = self._get(request.id)
            self.notifier.tell(stopped, News.FOLLOW_STOPPED)
            return stopped
        done = self.store.transition(
            request.id,
            allowed_from=[State.COPYING],
            to=State.SUCCEEDED,
            event="available",
            actor=None,
            snapshot_status=final.status,
        )
        if done is None:
            return self._get(request.id)
        self.notifier.tell(done, News.SUCCEEDED)
        return done

    def _fail(
        self,
        request: CopyRequest,
        error: DwsError | InvalidInput | str,
        **fields: str,
    ) -> CopyRequest:
        sentence, code, dws_request_id = _failure(error)
        self.store.add_dws_request_id(request.id, dws_request_id)
        failed = self.store.transition(
            request.id,
            allowed_from=[State.APPROVED, State.COPYING],
            to=State.FAILED,
            event="copy_failed",
            actor=None,
            details={"error_code": code, "dws_request_id": dws_request_id, "error": sentence},
            error=sentence,
            error_code=code,
            **fields,
        )
        if failed is None:
            return self._get(request.id)
        self.notifier.tell(failed, News.FAILED)
        return failed

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
            if self.start_copy(request.id):
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


def _failure(error: DwsError | InvalidInput | str) -> tuple[str, str | None, str | None]:
    if isinstance(error, DwsError):
        return str(error), error.error_code, error.request_id
    if isinstance(error, InvalidInput):
        return error.message, "invalid_input", None
    return error, None, None


def _minutes(minutes: float) -> str:
    if minutes >= 120 and minutes % 60 == 0:
        return f"{int(minutes // 60)} hours"
    return f"{minutes:g} minutes"
