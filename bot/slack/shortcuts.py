"""The message shortcut "Copy DWS snapshot": the copy modal, bound to that message's thread."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import Role
from bot.dws import find_snapshot_id
from bot.slack import views
from bot.slack.errors import reports_errors
from bot.slack.ids import Callback
from bot.slack.services import Services


def register(app: App, services: Services) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    @reports_errors
    def open_modal(body: dict[str, Any], client: WebClient) -> None:
        services.copies.ensure_role(
            body["user"]["id"], Role.REQUESTER, action="request snapshot copies"
        )
        message = body.get("message") or {}
        client.views_open(
            trigger_id=body["trigger_id"],
            view=views.copy_modal(
                keep=services.copies.policy.lifecycle,
                break_glass=services.copies.may_break_glass(body["user"]["id"]),
                channel_id=body["channel"]["id"],
                # A reply belongs to its parent's thread; a top-level message starts one.
                thread_ts=message.get("thread_ts") or message.get("ts"),
                snapshot_id=find_snapshot_id(message.get("text") or ""),
                sandbox=services.sandbox,
                reason_required=services.copies.policy.reason_required(),
            ),
        )

    app.shortcut(Callback.MESSAGE_SHORTCUT)(services.after_ack(acknowledge, open_modal))
