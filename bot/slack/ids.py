"""Every id Slack sends back to us, defined once and shared by the views and the registrations.

`manifest.yaml` repeats the command name and the shortcut's callback id; a test keeps them equal.
"""

from __future__ import annotations

from enum import StrEnum

from bot.domain import CopyRequest

COMMAND = "/snapcopy"


class Callback(StrEnum):
    """`callback_id` of modals and shortcuts."""

    COPY_MODAL = "snapcopy_copy_modal"
    DENY_MODAL = "snapcopy_deny_modal"
    MESSAGE_SHORTCUT = "copy_dws_snapshot"


class Action(StrEnum):
    """`action_id` of buttons and selects."""

    APPROVE = "snapcopy_approve"
    DENY = "snapcopy_deny"
    NEW_COPY = "snapcopy_new_copy"
    PICK_SNAPSHOT = "snapcopy_pick_snapshot"
    SNAPSHOT_ID = "snapcopy_snapshot_id"
    BACKUP_NAME = "snapcopy_backup_name"
    DESCRIPTION = "snapcopy_description"
    CHANNEL = "snapcopy_channel"
    DENY_REASON = "snapcopy_deny_reason"
    REASON = "snapcopy_reason"
    RETRY = "snapcopy_retry"
    OPEN_THREAD = "snapcopy_open_thread"
    KEEP_UNTIL = "snapcopy_keep_until"  # the modal's date picker
    KEEP_MORE = "snapcopy_keep_more"  # "Keep 30 more days", on the warning and the deletion
    DELETE_NOW = "snapcopy_delete_now"  # asks for the deletion (approved like the copy)
    APPROVE_DELETE = "snapcopy_approve_delete"
    BREAK_GLASS = "snapcopy_break_glass"  # the modal's "Emergency: copy now" checkbox
    REVIEW_OK = "snapcopy_review_ok"  # an emergency copy's review
    REVIEW_FLAG = "snapcopy_review_flag"


class Block(StrEnum):
    """`block_id` of modal inputs: `response_action: errors` points at these."""

    SNAPSHOT_ID = "snapshot_id"
    PICK_SNAPSHOT = "pick_snapshot"
    BACKUP_NAME = "backup_name"
    DESCRIPTION = "description"
    CHANNEL = "channel"
    DENY_REASON = "deny_reason"
    REASON = "reason"
    DECISION = "decision"
    RETRY = "retry"
    KEEP_UNTIL = "keep_until"
    RETENTION = "retention"
    BREAK_GLASS = "break_glass"
    REVIEW = "review"


def button_value(request: CopyRequest) -> str:
    """What every button of a request carries: its id and its token (bot.domain.RequestRef),
    so that a click names this request and no other request #N, in this database or a later
    one."""
    return f"{request.id}.{request.token}"
