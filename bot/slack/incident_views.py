"""Words and buttons for approving in an incident: escalation, break-glass and its review."""

from __future__ import annotations

from typing import Any

from bot.domain import CopyRequest
from bot.slack.ids import Action, Block, button_value
from bot.slack.mrkdwn import escape, mention, mentions

Blocks = list[dict[str, Any]]


def escalated_reply(request: CopyRequest) -> str:
    return (
        f":rotating_light: Request {request.label} still needs approvals: "
        f"{mentions(request.escalate_to)}, you may approve or deny it too."
    )


def break_glass_reply(request: CopyRequest) -> str:
    who = mentions(request.approvers) if request.approvers else "Approvers"
    return (
        f":rotating_light: *Emergency copy*: {mention(request.requested_by)} copied without "
        f"waiting for approval (break-glass). Reason: {escape(request.reason or '')}\n"
        f"{who}: please review it; is it right?"
    )


def break_glass_blocks(request: CopyRequest) -> Blocks:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": break_glass_reply(request)}},
        {
            "type": "actions",
            "block_id": f"{Block.REVIEW}_{request.id}",
            "elements": [
                _button(Action.REVIEW_OK, "Looks right", request, "primary"),
                _button(Action.REVIEW_FLAG, "Flag", request, "danger"),
            ],
        },
    ]


def break_glass_notice(request: CopyRequest) -> str:
    where = f" in <#{request.channel_id}>" if request.channel_id else ""
    return (
        f":rotating_light: {mention(request.requested_by)} made an emergency copy{where} "
        f"without approval (request {request.label}, {escape(request.backup_name)}). Reason: "
        f"{escape(request.reason or '')}. Its approvers review it afterwards."
    )


def reviewed_reply(request: CopyRequest) -> str:
    verdict = "looks right" if request.review_verdict == "ok" else "is *flagged*"
    late = " (the review came late)" if request.review_late else ""
    return (
        f":mag: {mention(request.reviewed_by or '')} reviewed the emergency copy "
        f"{request.label}: it {verdict}{late}."
    )


def review_overdue_reply(request: CopyRequest, admins: tuple[str, ...]) -> str:
    return (
        f":warning: Nobody has reviewed the emergency copy {request.label} in time. "
        f"{mentions(admins) if admins else 'Admins'}: please review it."
    )


def _button(action: Action, text: str, request: CopyRequest, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": text},
        "style": style,
        "value": button_value(request),
    }


def cluster_busy_reply(request: CopyRequest, task: str) -> str:
    return (
        f":hourglass_flowing_sand: The cluster is busy ({escape(task)}): the approved copy "
        f"{request.label} waits for it and starts when it is free."
    )
