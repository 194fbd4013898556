"""Block Kit for a copy's life after it succeeded: the warning before its keep-until passes,
the deletion request and its buttons, and the thread replies about keeping and deleting.

Buttons carry the request's number; the decision is taken from the database, never from the
message a button sits in.
"""

from __future__ import annotations

from typing import Any

from bot.domain import CopyRequest
from bot.slack.ids import Action
from bot.slack.mrkdwn import escape, mention, mentions, slack_date
from bot.slack.views import retention_buttons

Blocks = list[dict[str, Any]]


def _with_buttons(text: str, request: CopyRequest, *actions: Action) -> Blocks:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        retention_buttons(request, *actions),
    ]


def _copy(request: CopyRequest) -> str:
    return f"*{escape(request.backup_name)}* (`{request.new_snapshot_id}`)"


def keep_warning_text(request: CopyRequest) -> str:
    return (
        f":calendar: {mention(request.requested_by)}, the copy {_copy(request)} is kept until "
        f"{slack_date(request.keep_until)}. Then its deletion is asked for."
    )


def keep_warning_blocks(request: CopyRequest) -> Blocks:
    return _with_buttons(keep_warning_text(request), request, Action.KEEP_MORE, Action.DELETE_NOW)


def delete_request_text(request: CopyRequest) -> str:
    who = mentions(request.approvers) if request.approvers else "the approvers"
    asked = (
        f"{mention(request.delete_asked_by)} asks to delete"
        if request.delete_asked_by
        else "Its keep-until has passed: delete"
    )
    needed = request.approvals_needed
    return (
        f":wastebasket: {asked} the copy {_copy(request)}? {who}: {needed} approval"
        f"{'s' if needed != 1 else ''} needed (or an admin's). *Keep 30 more days* calls it "
        "off."
    )


def delete_request_blocks(request: CopyRequest) -> Blocks:
    return _with_buttons(
        delete_request_text(request), request, Action.APPROVE_DELETE, Action.KEEP_MORE
    )


def keep_extended_reply(request: CopyRequest, by: str) -> str:
    return (
        f":calendar: {mention(by)} kept the copy {_copy(request)} until "
        f"{slack_date(request.keep_until)}; nothing will be deleted before then."
    )


def delete_approval_reply(request: CopyRequest, *, by: str, count: int) -> str:
    return (
        f":ballot_box_with_check: {mention(by)} approved deleting {_copy(request)} "
        f"({count} of {request.approvals_needed})."
    )


def delete_started_reply(request: CopyRequest) -> str:
    by = mentions(request.delete_approvals) if request.delete_approvals else "policy"
    return (
        f":wastebasket: Deleting the copy {_copy(request)} (approved by {by}); "
        "I will say when DWS is done."
    )


def deleted_reply(request: CopyRequest) -> str:
    return f":wastebasket: {mention(request.requested_by)}, the copy {_copy(request)} is deleted."


def delete_failed_reply(request: CopyRequest, error: str) -> str:
    return (
        f":warning: {mention(request.requested_by)}, the copy {_copy(request)} was not "
        f"deleted: {escape(error)} It is kept until someone asks again (`/snapcopy delete "
        f"{request.id}`)."
    )
