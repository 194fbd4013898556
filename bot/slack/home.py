"""App Home: published on `app_home_opened` and after every decision made from it."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import Role
from bot.slack import answers, views
from bot.slack.errors import reports_errors
from bot.slack.ids import Action
from bot.slack.services import Services

HOME_LIMIT = 15


def publish_home(services: Services, client: WebClient, user_id: str) -> None:
    roles = services.roles.roles_of(user_id)
    waiting = answers.waiting_for(services, user_id)[:HOME_LIMIT]
    client.views_publish(
        user_id=user_id,
        view=views.home_view(
            waiting=waiting,
            mine=services.store.find(requested_by=user_id, limit=HOME_LIMIT),
            can_request=Role.REQUESTER in roles,
            sandbox=services.sandbox,
            reviews=answers.to_review(services, user_id)[:HOME_LIMIT],
        ),
    )


def register(app: App, services: Services) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    @reports_errors
    def home_opened(body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if event.get("tab", "home") == "home":
            publish_home(services, client, event["user"])

    @reports_errors
    def new_copy(body: dict[str, Any], client: WebClient) -> None:
        services.copies.ensure_role(
            body["user"]["id"], Role.REQUESTER, action="request snapshot copies"
        )
        client.views_open(
            trigger_id=body["trigger_id"],
            view=views.copy_modal(
                keep=services.copies.policy.lifecycle,
                break_glass=services.copies.may_break_glass(body["user"]["id"]),
                channel_id=None,
                thread_ts=None,
                ask_channel=True,
                sandbox=services.sandbox,
                reason_required=services.copies.policy.reason_required(),
            ),
        )

    app.event("app_home_opened")(services.after_ack(acknowledge, home_opened))
    app.action(Action.NEW_COPY)(services.after_ack(acknowledge, new_copy))
