"""Block Kit: every message and modal snapcopy shows, as functions that return dicts.

User text is escaped before it reaches mrkdwn (`escape`), so a description such as
`<!channel>` pings nobody. Ids come from `bot.slack.ids`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain import EVERYONE, CopyRequest, State
from bot.policy import Lifecycle
from bot.slack.ids import Action, Block, Callback, button_value
from bot.slack.incident_views import break_glass_blocks
from bot.slack.mrkdwn import escape, mention, mentions, size_text, slack_date
from bot.slack.sandbox import mark
from bot.slack.stakes_view import incident_lines, stakes_lines

Blocks = list[dict[str, Any]]

NAME_HINT = (
    "4–64 characters: letters, digits, - and _, starting with a letter. "
    "Unique in the project (case does not matter)."
)
DESCRIPTION_HINT = "Optional, at most 256 characters, none of ! < > ' = & \""

STATE_LABEL = {
    State.PENDING_APPROVAL: ":hourglass_flowing_sand: Waiting for approval",
    State.APPROVED: ":white_check_mark: Approved, copy starting",
    State.COPYING: ":arrows_counterclockwise: Copying",
    State.SUCCEEDED: ":white_check_mark: Copied, AVAILABLE",
    State.DELETED: ":wastebasket: Copied, kept its time, and deleted",
    State.FAILED: ":x: Failed",
    State.DENIED: ":no_entry: Denied",
    State.EXPIRED: ":alarm_clock: Expired",
    State.CANCELLED: ":heavy_multiplication_x: Cancelled",
}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


# --- the copy modal --------------------------------------------------------------------------


REASON_HINTS = {
    True: "Required for this snapshot's cluster. Shown to the approvers and kept in the audit "
    "log; any characters.",
    False: "Shown to the approvers and kept in the audit log; any characters.",
    None: "Required for some clusters (their rule says so): known once the snapshot is picked. "
    "Shown to the approvers and kept in the audit log.",
}


def copy_modal(
    *,
    channel_id: str | None,
    thread_ts: str | None,
    snapshot_id: str | None = None,
    ask_channel: bool = False,
    sandbox: bool = False,
    keep: Lifecycle | None = None,
    break_glass: bool = False,
    reason_required: bool | None = False,
    picked: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The form behind `/snapcopy`, the message shortcut and App Home's "New copy".

    The snapshot is one of two fields, not two optional ones: the picker sits in a section of
    its own (Slack marks only inputs optional), the ID below it. `reason_required` is True or
    False where the policy says so for every cluster, None where it depends on the cluster:
    once a snapshot is picked, the form is shown again with the answer (`picked`).
    """
    id_input: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": Action.SNAPSHOT_ID,
        "placeholder": _plain("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90"),
    }
    if snapshot_id:
        id_input["initial_value"] = snapshot_id
    picker: dict[str, Any] = {
        "type": "external_select",
        "action_id": Action.PICK_SNAPSHOT,
        "placeholder": _plain("Search automated snapshots"),
        "min_query_length": 0,
    }
    if picked:
        picker["initial_option"] = picked
    blocks: Blocks = [
        {
            "type": "section",
            "block_id": Block.PICK_SNAPSHOT,
            "text": {
                "type": "mrkdwn",
                "text": "*Snapshot*: one of these two. Pick an automated snapshot (type part "
                "of a cluster or snapshot name), or paste its ID below.",
            },
            "accessory": picker,
        },
        {
            "type": "input",
            "block_id": Block.SNAPSHOT_ID,
            "optional": True,
            "label": _plain("…or its snapshot ID"),
            "hint": _plain("One of the two: an ID typed here wins over the one picked above."),
            "element": id_input,
        },
        {
            "type": "input",
            "block_id": Block.BACKUP_NAME,
            "label": _plain("New snapshot name"),
            "hint": _plain(NAME_HINT),
            "element": {
                "type": "plain_text_input",
                "action_id": Action.BACKUP_NAME,
                "max_length": 64,
                "placeholder": _plain("incident-1234-before-restore"),
            },
        },
        {
            "type": "input",
            "block_id": Block.DESCRIPTION,
            "optional": True,
            "label": _plain("Description"),
            "hint": _plain(DESCRIPTION_HINT),
            "element": {
                "type": "plain_text_input",
                "action_id": Action.DESCRIPTION,
                "multiline": True,
                "max_length": 256,
            },
        },
        {
            "type": "input",
            "block_id": Block.REASON,
            "optional": reason_required is not True,
            "label": _plain("Reason or incident link"),
            "hint": _plain(REASON_HINTS[reason_required]),
            "element": {
                "type": "plain_text_input",
                "action_id": Action.REASON,
                "multiline": True,
                "max_length": 500,
                "placeholder": _plain("https://status.example.com/incidents/1234"),
            },
        },
    ]
    if keep is not None and (keep.keep_days or keep.max_keep_days):
        blocks.append(keep_until_input(keep))
    if break_glass:  # only ever offered to those [break_glass] allows
        blocks.append(BREAK_GLASS_INPUT)
    if ask_channel:
        blocks.append(
            {
                "type": "input",
                "block_id": Block.CHANNEL,
                "label": _plain("Post the request in"),
                "element": {
                    "type": "conversations_select",
                    "action_id": Action.CHANNEL,
                    "filter": {"include": ["public", "private"], "exclude_bot_users": True},
                    **({"initial_conversation": channel_id} if channel_id else {}),
                },
            }
        )
    if sandbox:
        blocks.insert(0, _context(":test_tube: *sandbox*: copies go to a local stand-in, not DWS."))
    return {
        "type": "modal",
        "callback_id": Callback.COPY_MODAL,
        "title": _plain("Copy DWS snapshot"),
        "submit": _plain("Ask for approval"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"channel_id": channel_id, "thread_ts": thread_ts}),
        "blocks": blocks,
    }


BREAK_GLASS_INPUT: dict[str, Any] = {
    "type": "input",
    "block_id": Block.BREAK_GLASS,
    "optional": True,
    "label": _plain("Emergency"),
    "hint": _plain(
        "Copies at once, without waiting for approval; needs a reason. The security contacts "
        "are told now, and the approvers review it afterwards."
    ),
    "element": {
        "type": "checkboxes",
        "action_id": Action.BREAK_GLASS,
        "options": [
            {
                "text": _plain("Emergency: copy now, review afterwards"),
                "value": "break_glass",
            }
        ],
    },
}


def keep_until_input(keep: Lifecycle) -> dict[str, Any]:
    """The modal's "Keep until" day: `keep_days` ahead unless changed, at most `max_keep_days`.
    A cluster's rule may say otherwise; it is checked when the form is sent."""
    today = datetime.now(UTC).date()
    picker: dict[str, Any] = {"type": "datepicker", "action_id": Action.KEEP_UNTIL}
    hint = "Left empty: "
    if keep.keep_days:
        picker["initial_date"] = (today + timedelta(days=keep.keep_days)).isoformat()
        hint += f"{keep.keep_days:g} days from now."
    else:
        hint += "kept until someone deletes it."
    if keep.max_keep_days:
        hint += f" At most {keep.max_keep_days:g} days."
    hint += " Then its deletion is asked for, and approved like the copy."
    return {
        "type": "input",
        "block_id": Block.KEEP_UNTIL,
        "optional": True,
        "label": _plain("Keep the copy until"),
        "hint": _plain(hint),
        "element": picker,
    }


def deny_modal(request: CopyRequest, *, from_home: bool = False) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": Callback.DENY_MODAL,
        "title": _plain("Deny copy request"),
        "submit": _plain("Deny"),
        "close": _plain("Back"),
        "private_metadata": json.dumps(
            {"request_id": request.id, "token": request.token, "from_home": from_home}
        ),
        "blocks": [
            _section(
                f"Deny request {request.label}: copy `{request.source_snapshot_id}` "
                f"as *{escape(request.backup_name)}* for {mention(request.requested_by)}?"
            ),
            {
                "type": "input",
                "block_id": Block.DENY_REASON,
                "optional": True,
                "label": _plain("Reason (shown in the thread)"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": Action.DENY_REASON,
                    "max_length": 500,
                },
            },
        ],
    }


def notice_modal(title: str, text: str) -> dict[str, Any]:
    """A small modal that only says something; for clicks that have no channel (App Home)."""
    return {"type": "modal", "title": _plain(title[:24]), "blocks": [_section(text)]}


# --- the request message (the thread root) ---------------------------------------------------


def request_text(request: CopyRequest) -> str:
    """The notification text: what people see in a push notification or a screen reader. While
    the request waits, it mentions who is to act on it, so they are pinged."""
    source = request.source_snapshot_id
    if request.source_name:
        source = f"{escape(request.source_name)} ({source})"
    text = (
        f"{mention(request.requested_by)} asks to copy DWS snapshot {source} as "
        f"{escape(request.backup_name)} (request {request.label}): {STATE_LABEL[request.state]}"
    )
    if request.state == State.PENDING_APPROVAL and request.notify:
        text = f"{mentions(request.notify)}: {text}"
    return text


def request_blocks(request: CopyRequest, *, sandbox: bool = False) -> Blocks:
    title = (
        "Snapshot copy request"
        if request.approved_by or request.state != State.APPROVED
        else "Snapshot copy (no approval needed)"
    )
    source = f"`{request.source_snapshot_id}`"
    if request.source_name:
        source = f"{escape(request.source_name)}\n{source}"
    fields = [
        f"*Requested by*\n{mention(request.requested_by)}",
        f"*Source snapshot*\n{source}",
        f"*Cluster*\n{escape(request.cluster_name or request.cluster_id or 'unknown')}",
        f"*Taken*\n{slack_date(request.source_started)}",
        f"*Size*\n{size_text(request.source_size)}",
        f"*New name*\n{escape(request.backup_name)}",
        f"*Description*\n{escape(request.description) or '_none_'}",
        f"*Reason*\n{escape(request.reason or '') or '_none given_'}",
    ]
    blocks: Blocks = [
        {"type": "header", "text": _plain(f"{title} {request.label}")},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if request.state == State.PENDING_APPROVAL:
        blocks.append(_section(approval_line(request)))
    at_stake = stakes_lines(request) + incident_lines(request)
    if at_stake:
        blocks.append(_section("\n".join(at_stake)))
    if request.new_snapshot_id:
        blocks.append(
            _section(
                f"*New snapshot*: `{request.new_snapshot_id}` · "
                f"status *{escape(request.snapshot_status or 'unknown')}*"
            )
        )
    if request.keep_until and request.state != State.DELETED:
        blocks.append(_context(f":calendar: Kept until {slack_date(request.keep_until)}"))
    if request.state == State.PENDING_APPROVAL:
        blocks.append(decision_buttons(request))
    if request.state == State.FAILED:
        blocks.append(retry_button(request))
    outcome = outcome_line(request)
    open_policy = EVERYONE in request.approvers
    blocks.append(_context(mark(outcome, open_policy=open_policy) if sandbox else outcome))
    return blocks


def approval_line(request: CopyRequest) -> str:
    """Who may approve, how many approvals it needs and has, and until when."""
    who = mentions(request.approvers) if request.approvers else "the approvers"
    if EVERYONE in request.approvers:
        who = "anyone but the requester (the sandbox has no policy file)"
    needed = request.approvals_needed
    line = f"*Approval*: {needed} approval{'s' if needed != 1 else ''} from {who} (or an admin)"
    if request.expires_at:
        line += f" · expires {slack_date(request.expires_at)}"
    if request.approvals:
        line += f"\n{len(request.approvals)} of {needed} approvals: {mentions(request.approvals)}"
    return line


def outcome_line(request: CopyRequest) -> str:
    """One line under the request that says where it stands."""
    line = STATE_LABEL[request.state]
    if request.approved_by and request.state != State.PENDING_APPROVAL:
        line += f" · approved by {mentions(request.approvals)}"
    if request.state == State.DENIED and request.denied_by:
        line += f" by {mention(request.denied_by)}"
        if request.deny_reason:
            line += f": {escape(request.deny_reason)}"
    if request.state == State.FAILED and request.error:
        line += f": {escape(request.error)}"
    return line


# --- App Home --------------------------------------------------------------------------------


def retry_button(request: CopyRequest) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"{Block.RETRY}_{request.id}",
        "elements": [
            {
                "type": "button",
                "action_id": Action.RETRY,
                "text": _plain("Retry"),
                "value": button_value(request),
            }
        ],
    }


def decision_buttons(request: CopyRequest) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"{Block.DECISION}_{request.id}",
        "elements": [
            {
                "type": "button",
                "action_id": Action.APPROVE,
                "text": _plain("Approve"),
                "style": "primary",
                "value": button_value(request),
            },
            {
                "type": "button",
                "action_id": Action.DENY,
                "text": _plain("Deny"),
                "style": "danger",
                "value": button_value(request),
            },
        ],
    }


def home_view(
    *,
    waiting: list[CopyRequest],
    mine: list[CopyRequest],
    can_request: bool,
    sandbox: bool = False,
    reviews: list[CopyRequest] | None = None,
) -> dict[str, Any]:
    """App Home: what waits for me, what I asked for, and a way to ask for more."""
    blocks: Blocks = [{"type": "header", "text": _plain("snapcopy")}]
    if sandbox:
        blocks.append(_context(":test_tube: *sandbox*: copies go to a local stand-in, not DWS."))
    if can_request:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": Action.NEW_COPY,
                        "text": _plain("New copy"),
                        "style": "primary",
                    }
                ],
            }
        )
    blocks += [{"type": "divider"}, _section("*Waiting for your approval*")]
    if not waiting:
        blocks.append(_context("Nothing waits for you."))
    for request in waiting:
        blocks.append(
            _section(
                f"*{request.label}* {mention(request.requested_by)} asks to copy "
                f"`{request.source_snapshot_id}` as *{escape(request.backup_name)}*"
                + (f"\n>{escape(request.description)}" if request.description else "")
            )
        )
        blocks.append(decision_buttons(request))
    if reviews:
        blocks += [{"type": "divider"}, _section("*Emergency copies to review*")]
        for request in reviews:
            if request.review_late:
                blocks.append(_context(f"{request.label}: :warning: *review overdue*"))
            blocks += break_glass_blocks(request)
    blocks += [{"type": "divider"}, _section("*Your recent requests*")]
    if not mine:
        blocks.append(_context("You have not asked for a copy yet."))
    for request in mine:
        line = f"*{request.label}* {escape(request.backup_name)} · {STATE_LABEL[request.state]}"
        if request.new_snapshot_id:
            line += f"\nnew snapshot `{request.new_snapshot_id}`"
        kept = request.state == State.SUCCEEDED and request.new_snapshot_id
        if kept and request.keep_until:
            line += f" · kept until {slack_date(request.keep_until)}"
        blocks.append(_section(line))
        if kept and request.deletion is None:
            # A copy with no keep-until is kept anyway: only deleting it is a choice.
            choices = (Action.KEEP_MORE,) if request.keep_until else ()
            blocks.append(retention_buttons(request, *choices, Action.DELETE_NOW))
    return {"type": "home", "blocks": blocks[:100]}


_RETENTION_BUTTONS: dict[Action, tuple[str, str | None]] = {
    Action.KEEP_MORE: ("Keep 30 more days", "primary"),
    Action.DELETE_NOW: ("Delete now", "danger"),
    Action.APPROVE_DELETE: ("Delete", "danger"),
}


def retention_buttons(request: CopyRequest, *actions: Action) -> dict[str, Any]:
    """Buttons about keeping or deleting a request's copy."""
    elements = []
    for action in actions:
        text, style = _RETENTION_BUTTONS[action]
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action,
            "text": _plain(text),
            "value": button_value(request),
        }
        if style:
            button["style"] = style
        elements.append(button)
    return {"type": "actions", "block_id": f"{Block.RETENTION}_{request.id}", "elements": elements}
