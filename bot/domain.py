"""The copy request as the rest of snapcopy sees it: its states and its fields.

States (the contract):  pending_approval → approved → copying → succeeded | failed
                        pending_approval → denied | expired | cancelled
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class State(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    COPYING = "copying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {State.SUCCEEDED, State.FAILED, State.DENIED, State.EXPIRED, State.CANCELLED}
)
# Left in these after a crash, a request still owes somebody an outcome.
UNFINISHED_AFTER_APPROVAL = frozenset({State.APPROVED, State.COPYING})


class CopyRequest(BaseModel):
    """One row of the audit log's `requests` table."""

    model_config = ConfigDict(frozen=True)

    id: int
    state: State
    source_snapshot_id: str
    backup_name: str
    description: str = ""
    requested_by: str
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
    created_at: str
    updated_at: str
    expires_at: str | None = None

    @property
    def label(self) -> str:
        """How people refer to a request in Slack: `#12`."""
        return f"#{self.id}"


class NewRequest(BaseModel):
    """What a person asked for; validated before it becomes a row."""

    model_config = ConfigDict(frozen=True)

    source_snapshot_id: str
    backup_name: str
    description: str = ""
    requested_by: str
    channel_id: str
    thread_ts: str | None = None
