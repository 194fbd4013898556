"""Thread replies: what people are told in a request's thread, one function per piece of news.

Every reply about an outcome mentions the requester: it is their copy. User text is escaped
(`mrkdwn.escape`) before it reaches mrkdwn.
"""

from __future__ import annotations

from bot.domain import CopyRequest, State
from bot.slack.mrkdwn import escape, mention, mentions, slack_date


def approval_reply(request: CopyRequest, *, by: str, count: int) -> str:
    needed = request.approvals_needed
    return (
        f":ballot_box_with_check: {mention(by)} approved request {request.label} "
        f"({count} of {needed} approvals). Waiting for {needed - count} more from "
        f"{mentions(request.approvers) if request.approvers else 'the approvers'}."
    )


def approved_reply(request: CopyRequest) -> str:
    return (
        f":white_check_mark: {mention(request.requested_by)}, your request {request.label} was "
        f"approved by {mentions(request.approvals)}. Copying `{request.source_snapshot_id}` as "
        f"*{escape(request.backup_name)}* now."
    )


def copied_reply(request: CopyRequest) -> str:
    return (
        f":camera_with_flash: {mention(request.requested_by)}, DWS accepted the copy. New "
        f"snapshot ID: `{request.new_snapshot_id}` (*{escape(request.backup_name)}*). Status: "
        "CREATING; I will post here once it becomes AVAILABLE."
    )


def succeeded_reply(request: CopyRequest) -> str:
    return (
        f":white_check_mark: {mention(request.requested_by)}, snapshot "
        f"*{escape(request.backup_name)}* (`{request.new_snapshot_id}`) is AVAILABLE. It is a "
        "manual snapshot now and outlives the automated one's retention."
    )


# What to do next, for the failures people can act on.
_NEXT_STEP = {
    "DWS.0015": "The bot's access key lacks DWS permission in this project: an admin must grant "
    "it (IAM, DWS permissions), then press Retry.",
    "DWS.0011": "The cluster is busy with another operation: press Retry later.",
}


def failed_reply(request: CopyRequest) -> str:
    hint = _NEXT_STEP.get(request.error_code or "", "")
    if not hint and request.snapshot_status == "UNAVAILABLE":
        hint = "Check the cluster and the snapshot in the DWS console before trying again."
    elif not hint and (request.error or "").startswith("DWS refused the request (403"):
        hint = _NEXT_STEP["DWS.0015"]
    text = (
        f":x: {mention(request.requested_by)}, request {request.label} failed: "
        f"{escape(request.error or 'unknown error')}"
    )
    return f"{text}\n{hint}" if hint else text


def frozen_reply(request: CopyRequest, status: str) -> str:
    why = (
        "Huawei Cloud froze it for a compliance or security reason: the account's owner must "
        "contact Huawei Cloud support"
        if status == "POLICE_FROZEN"
        else "DWS froze it because the Huawei Cloud account is in arrears: whoever manages the "
        "account's billing must settle it"
    )
    return (
        f":ice_cube: {mention(request.requested_by)}, the new snapshot `{request.new_snapshot_id}` "
        f"is {escape(status)}. {why}. I keep checking, less often, and will say here when it is "
        "AVAILABLE."
    )


def retried_reply(request: CopyRequest) -> str:
    return (
        f":repeat: {mention(request.requested_by)}, trying request {request.label} again: I look "
        f"for *{escape(request.backup_name)}* in DWS first, so an earlier attempt's copy is kept "
        "rather than made twice."
    )


def reminder_reply(request: CopyRequest) -> str:
    who = mentions(request.notify) if request.notify else "approvers"
    expires = f" It expires {slack_date(request.expires_at)}." if request.expires_at else ""
    return (
        f":bell: {who}: request {request.label} from {mention(request.requested_by)} still "
        f"waits for approval ({len(request.approvals)} of {request.approvals_needed}).{expires}"
    )


def denied_reply(request: CopyRequest) -> str:
    reason = f" Reason: {escape(request.deny_reason)}" if request.deny_reason else ""
    return (
        f":no_entry: {mention(request.requested_by)}, {mention(request.denied_by or '')} denied "
        f"request {request.label}; nothing was copied.{reason}"
    )


def expired_reply(request: CopyRequest) -> str:
    return (
        f":alarm_clock: Request {request.label} expired without a decision; nothing was copied. "
        f"{mention(request.requested_by)}, ask again with `/snapcopy` if it is still needed."
    )


def cancelled_reply(request: CopyRequest) -> str:
    return f":heavy_multiplication_x: Request {request.label} was cancelled; nothing was copied."


def follow_stopped_reply(request: CopyRequest) -> str:
    return (
        f":warning: {mention(request.requested_by)}, I stopped following snapshot "
        f"`{request.new_snapshot_id}` while it was {escape(request.snapshot_status or 'unknown')}."
        " The copy itself goes on in DWS; `/snapcopy status "
        f"{request.id}` picks it up again, or check it in the console."
    )


def dws_retrying_reply(*, next_in: int) -> str:
    """One short sentence: what DWS said, and its request id, are in the audit event."""
    return (
        f":hourglass_flowing_sand: DWS is busy; I will try again in {_seconds(next_in)} "
        "(nothing to do meanwhile)."
    )


def unposted_dm(request: CopyRequest, code: str) -> str:
    fix = {
        "not_in_channel": "Invite me there (`/invite @snapcopy`) and I will post it.",
        "channel_not_found": "The channel is gone or private to me; invite me, or ask again "
        "from another channel.",
        "is_archived": "The channel is archived; ask again from another channel.",
    }.get(code, "")
    return (
        f"I could not post your request {request.label} ({escape(request.backup_name)}) in "
        f"<#{request.channel_id}> ({code}). {fix} Its news will come to you here meanwhile."
    ).replace("  ", " ")


def _seconds(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"


def already_handled(request: CopyRequest) -> str:
    """Who decided it, next to the decision: "approved by @bob and is being copied"."""
    if request.state == State.DENIED:
        by = f" by {mention(request.denied_by)}" if request.denied_by else ""
        return f"Request {request.label} was already denied{by}; nothing more to do."
    approved = f"approved by {mentions(request.approvals)}" if request.approvals else "approved"
    verb = {
        State.APPROVED: approved,
        State.COPYING: f"{approved} and is being copied",
        State.SUCCEEDED: f"{approved} and copied",
        State.FAILED: f"{approved}, but the copy failed",
        State.EXPIRED: "left waiting too long and expired",
        State.CANCELLED: "cancelled",
    }.get(request.state, request.state.value)
    return f"Request {request.label} was already {verb}; nothing more to do."
