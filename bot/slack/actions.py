"""Approve, Deny and Retry buttons, and those of a copy's keep-until and deletion, in a thread
or on App Home: the same code either way.

An approval is decided inside the acknowledgement: the compare-and-set and the copy job it
causes are committed before Slack gets its 200, so a crash after the click cannot lose it.
Telling the person why a click did nothing, and re-publishing App Home, come after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import NotAllowed, SnapcopyError, UnknownRequest
from bot.slack import views
from bot.slack.errors import report, reports_errors
from bot.slack.forms import action_request_id
from bot.slack.home import publish_home
from bot.slack.ids import Action
from bot.slack.services import Services


def register(app: App, services: Services) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    def decide_approval(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        # Identity is the signed payload's user; the request comes from the database, never
        # from the message the button sits in.
        try:
            # A refusal is audited after the acknowledgement; the decision itself before it.
            services.copies.approve(_request_id(body), body["user"]["id"], audit=False)
        except SnapcopyError as error:
            context["refusal"] = error
        ack()

    @reports_errors
    def after_approval(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        refusal = context.get("refusal")
        if isinstance(refusal, NotAllowed):
            services.copies.audit_refusal(refusal)
        if refusal is not None:
            report(refusal, body, client)
        if (body.get("view") or {}).get("type") == "home":
            publish_home(services, client, body["user"]["id"])

    @reports_errors
    def open_deny(body: dict[str, Any], client: WebClient) -> None:
        # Checked before the modal opens, and again when it is submitted.
        request = services.copies.deciding(_request_id(body), body["user"]["id"], action="deny")
        client.views_open(
            trigger_id=body["trigger_id"],
            view=views.deny_modal(
                request, from_home=(body.get("view") or {}).get("type") == "home"
            ),
        )

    app.action(Action.APPROVE)(services.after_ack(decide_approval, after_approval))
    app.action(Action.RETRY)(decided_by(services, services.copies.retry))
    app.action(Action.DENY)(services.after_ack(acknowledge, open_deny))
    # A copy's life after it succeeded (bot/retention.py).
    app.action(Action.KEEP_MORE)(
        decided_by(services, lambda number, user: services.retention.keep(number, user))
    )
    app.action(Action.DELETE_NOW)(decided_by(services, services.retention.ask_delete))
    app.action(Action.APPROVE_DELETE)(decided_by(services, services.retention.approve_delete))
    # An emergency copy's review (bot/incident.py).
    app.action(Action.REVIEW_OK)(
        decided_by(services, lambda number, user: services.incident.review(number, user, "ok"))
    )
    app.action(Action.REVIEW_FLAG)(
        decided_by(services, lambda number, user: services.incident.review(number, user, "flagged"))
    )


def decided_by(services: Services, decide: Callable[[int, str], object]) -> Callable[..., None]:
    """A button whose decision is committed inside the acknowledgement; a refusal is told
    to the person afterwards."""

    def decide_now(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        try:
            decide(_request_id(body), body["user"]["id"])
        except SnapcopyError as error:
            context["refusal"] = error
        ack()

    @reports_errors
    def tell_refusal(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        refusal = context.get("refusal")
        if refusal is not None:
            report(refusal, body, client)

    return services.after_ack(decide_now, tell_refusal)


def _request_id(body: dict[str, Any]) -> int:
    request_id = action_request_id(body)
    if request_id is None:
        raise UnknownRequest("That button does not name a request I know.")
    return request_id
