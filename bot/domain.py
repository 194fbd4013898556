"""The copy request as the rest of snapcopy sees it: its states and its fields, and the roles
of the people who ask for and decide on it.

States (the contract):  pending_approval → approved → copying → succeeded | failed
                        pending_approval → denied | expired | cancelled
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# Request ids are SQLite integers: anything larger is not one of ours, whatever a payload says.
REQUEST_ID_MAX = 2**63 - 1
_ASCII_DIGITS = frozenset("0123456789")


def parse_request_id(text: object) -> int | None:
    """A request id from text a person typed or a payload carried ("12", "#12"); None when it
    is not one (other digits such as "²", signs, exponents, too large)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if 1 <= text <= REQUEST_ID_MAX else None
    if not isinstance(text, str):
        return None
    digits = text.strip().removeprefix("#")
    if not digits or len(digits) > 19 or not set(digits) <= _ASCII_DIGITS:
        return None
    number = int(digits)
    return number if 1 <= number <= REQUEST_ID_MAX else None


def new_token() -> str:
    """A request's token: random, so that no other request, in this database or any other,
    has it. Buttons and forms carry it beside the request's number."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class RequestRef:
    """A request as a button or a form names it, and where the click was made.

    `token` is None for a button from before requests had tokens; `channel_id` and
    `message_ts` are the message the button sits on (None on App Home and in modals).
    """

    id: int
    token: str | None
    channel_id: str | None = None
    message_ts: str | None = None

    def mismatch(self, request: CopyRequest) -> str | None:
        """Why this click is not about `request` (None when it is): another request's token,
        or another message than the request's own."""
        if self.token is not None:
            if not request.token or not hmac.compare_digest(self.token, request.token):
                return "token"
        elif not (self.message_ts and self.message_ts == request.message_ts):
            return "no token"  # a button from before tokens counts only on the request's message
        if self.message_ts and request.message_ts and not _direct(self.channel_id):
            if (self.channel_id, self.message_ts) != (request.channel_id, request.message_ts):
                return "message"
        return None


def _direct(channel_id: str | None) -> bool:
    """A DM with the bot: where a request goes when its channel refuses it (its own message,
    if it is posted later, is elsewhere)."""
    return bool(channel_id and channel_id.startswith("D"))


# A role holder that stands for every member of the workspace: only the sandbox's own policy
# has it (a policy file cannot, see bot/policy.py), never mentioned or sent a message.
EVERYONE = "*"


class Role(StrEnum):
    """Roles nest: an admin is also an approver, an approver also a requester."""

    REQUESTER = "requester"
    APPROVER = "approver"
    ADMIN = "admin"


ROLE_IMPLIES: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset({Role.ADMIN, Role.APPROVER, Role.REQUESTER}),
    Role.APPROVER: frozenset({Role.APPROVER, Role.REQUESTER}),
    Role.REQUESTER: frozenset({Role.REQUESTER}),
}


class State(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    COPYING = "copying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DELETED = "deleted"  # the copy succeeded, was kept its time, and is gone

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {State.SUCCEEDED, State.FAILED, State.DENIED, State.EXPIRED, State.CANCELLED, State.DELETED}
)


class Deletion(StrEnum):
    """Where the deletion of a succeeded request's copy stands (None: nobody asked)."""

    PENDING = "pending"  # asked for; waiting for its approvals
    APPROVED = "approved"  # the DWS job deletes it (the request becomes `deleted`)


class _SourceAndApproval(BaseModel):
    """What a request knows of its source and how it is approved: the same for a new request
    and for its row."""

    model_config = ConfigDict(frozen=True)

    # The source as DWS described it when the request was made (None: DWS did not say).
    region: str | None = None  # where the source is, and so the copy (None: the only region)
    cluster_id: str | None = None
    cluster_name: str | None = None
    source_name: str | None = None
    source_started: str | None = None
    source_size: float | None = None
    # How it is approved, fixed when it was made (the policy may change while it waits).
    approvals_needed: int = 1
    approvers: list[str] = []  # who may approve besides admins; empty: the approver role
    notify: list[str] = []  # who is mentioned on it
    allow_self_approval: bool = False
    rule: int | None = None  # the [[rules]] table that matched, None for [approval]
    remind_at: str | None = None
    # How long the copy is kept ([lifecycle] and the rule's keys, fixed when it was made).
    keep_until: str | None = None  # None: until someone deletes it
    warn_at: str | None = None  # when the thread hears the date is near (None: told)
    max_keep_days: float | None = None
    warn_before_days: float | None = None
    delete_requires_approval: bool = True
    # Escalation: who is asked, and may approve, once `escalate_at` passes with approvals
    # missing (empty: nobody).
    escalate_at: str | None = None
    escalate_to: list[str] = []
    # Copied at once by someone allowed to break the glass, and reviewed afterwards.
    break_glass: bool = False
    review_due_at: str | None = None  # the review is overdue after this (None: not owed)


class CopyRequest(_SourceAndApproval):
    """One row of the audit log's `requests` table."""

    model_config = ConfigDict(frozen=True)

    id: int
    state: State
    source_snapshot_id: str
    backup_name: str
    description: str = ""
    reason: str | None = None
    requested_by: str
    # Everyone who approved, in order, comma-separated ("U1,U2").
    approved_by: str | None = None
    denied_by: str | None = None
    deny_reason: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    message_ts: str | None = None
    new_snapshot_id: str | None = None
    snapshot_status: str | None = None
    error: str | None = None
    error_code: str | None = None
    dws_request_ids: list[str] = []
    # Carried by its buttons and forms beside the id, never shown (see RequestRef).
    token: str = Field("", repr=False)
    created_at: str
    updated_at: str
    expires_at: str | None = None
    # What was at stake when it was asked for, read from DWS (None: unknown); `stakes_at` is
    # when that was read (None: not yet).
    source_expires_at: str | None = None
    storage_used: float | None = None
    storage_free: float | None = None
    storage_paid: float | None = None
    cluster_status: str | None = None
    cluster_task: str | None = None
    stakes_at: str | None = None
    escalated_at: str | None = None
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    review_verdict: str | None = None  # "ok" or "flagged"
    review_late: bool = False
    deletion: Deletion | None = None
    delete_asked_by: str | None = None
    # Everyone who approved the deletion, in order, comma-separated.
    delete_approved_by: str | None = None

    @property
    def ref(self) -> RequestRef:
        """How its buttons and forms name it."""
        return RequestRef(self.id, self.token)

    @property
    def label(self) -> str:
        """How people refer to a request in Slack: `#12`."""
        return f"#{self.id}"

    @property
    def approvals(self) -> list[str]:
        """Who approved it so far, in order."""
        return [user for user in (self.approved_by or "").split(",") if user]

    @property
    def delete_approvals(self) -> list[str]:
        """Who approved the deletion of its copy so far, in order."""
        return [user for user in (self.delete_approved_by or "").split(",") if user]


class NewRequest(_SourceAndApproval):
    """What a person asked for, and how it is to be approved; validated before it becomes a
    row."""

    model_config = ConfigDict(frozen=True)

    source_snapshot_id: str
    backup_name: str
    description: str = ""
    reason: str | None = None
    requested_by: str
    channel_id: str
    thread_ts: str | None = None
    token: str = Field(default_factory=new_token, repr=False)
