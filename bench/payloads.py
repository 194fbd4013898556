"""Requests shaped and signed exactly as Slack sends them (tests/slackreq.py builds the bodies).

Every response URL in them points at the Slack stand-in: nothing the bot does under load may
leave the machine.
"""

from __future__ import annotations

import json
from typing import Any

from bench.load import raw_post
from bench.standins import WatchedSlack
from bot.server import EVENTS_PATH
from bot.slack.ids import Action, Block, Callback
from tests import slackreq
from tests.harness import SIGNING_SECRET
from tests.slackreq import SlackRequest

CHANNEL = slackreq.DEFAULT_CHANNEL


def signed_headers(request: SlackRequest) -> dict[str, str]:
    """Slack's two signature headers for now: Slack's 5-minute window starts here."""
    return request.signed_headers(SIGNING_SECRET)


def raw(port: int, request: SlackRequest) -> bytes:
    return raw_post(port, EVENTS_PATH, request.body, signed_headers(request))


def command(slack: WatchedSlack, user: str, text: str, serial: int) -> SlackRequest:
    """`/snapcopy <text>` typed by `user`."""
    return slackreq.slash_command(user, text, response_url=slack.response_url(f"cmd-{serial}"))


def approve_click(
    slack: WatchedSlack, user: str, button: str, message_ts: str, serial: int
) -> SlackRequest:
    """A click on Approve in the request message (`message_ts`), with the value the request
    message's button carries (`button`: the request's id and token)."""
    clicked = slackreq.block_actions(
        user,
        Action.APPROVE,
        button,
        block_id=Block.DECISION,
        message=slackreq.channel_message("request", ts=message_ts),
        channel=CHANNEL,
    )
    payload: dict[str, Any] = dict(clicked.payload or {})
    payload["response_url"] = slack.response_url(f"click-{serial}")
    return slackreq.interactive(payload)


def copy_submission(user: str, source_id: str, backup_name: str) -> SlackRequest:
    """The copy modal submitted with a valid form, from a slash command in CHANNEL."""
    values: dict[str, dict[str, Any]] = {
        Block.SNAPSHOT_ID: {Action.SNAPSHOT_ID: source_id},
        Block.BACKUP_NAME: {Action.BACKUP_NAME: backup_name},
        Block.DESCRIPTION: {Action.DESCRIPTION: "kept by the benchmark"},
        Block.PICK_SNAPSHOT: {
            Action.PICK_SNAPSHOT: {"type": "external_select", "selected_option": None}
        },
    }
    metadata = json.dumps({"channel_id": CHANNEL, "thread_ts": None})
    return slackreq.view_submission(user, Callback.COPY_MODAL, values, metadata)


def approve_button_value(call: Any) -> str | None:
    """The value of the Approve button of a posted request message: "<id>.<token>"."""
    for block in call.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == Action.APPROVE:
                return str(element["value"])
    return None
