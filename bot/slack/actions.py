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

from bot.domain import RequestRef
from bot.errors import NotAllowed, SnapcopyError, UnknownRequest, WrongRequest
from bot.slack import views
from bot.slack.errors import report, reports_errors
from bot.slack.forms import action_ref
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
            services.copies.approve(_ref(body), body["user"]["id"], audit=False)
        except SnapcopyError as error:
            context["refusal"] = error
        ack()

    @reports_errors
    def after_approval(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        refusal = context.get("refusal")
        if isinstance(refusal, NotAllowed | WrongRequest):
            services.copies.audit_refusal(refusal)
        if refusal is not None:
            report(refusal, body, client)
        if (body.get("view") or {}).get("type") == "home":
            publish_home(services, client, body["user"]["id"])

    @reports_errors
    def open_deny(body: dict[str, Any], client: WebClient) -> None:
        # Checked before the modal opens, and again when it is submitted.
        request = services.copies.deciding(_ref(body), body["user"]["id"], action="deny")
        client.views_open(
            trigger_id=body["trigger_id"],
            view=views.deny_modal(
                request, from_home=(body.get("view") or {}).get("type") == "home"
            ),
        )

    app.action(Action.APPROVE)(services.after_ack(decide_approval, after_approval))
    # Retry sits on the request's own message, like Approve and Deny.
    app.action(Action.RETRY)(
        decided_by(services, services.copies.retry, action="retry", on_root=True)
    )
    app.action(Action.DENY)(services.after_ack(acknowledge, open_deny))
    _register_after_the_copy(app, services)


def _register_after_the_copy(app: App, services: Services) -> None:
    """Buttons of thread replies and App Home, not of the request's message: token only."""
    # A copy's life after it succeeded (bot/retention.py).
    app.action(Action.KEEP_MORE)(
        decided_by(
            services, lambda number, user: services.retention.keep(number, user), action="keep"
        )
    )
    app.action(Action.DELETE_NOW)(
        decided_by(services, services.retention.ask_delete, action="delete")
    )
    app.action(Action.APPROVE_DELETE)(
        decided_by(services, services.retention.approve_delete, action="approve deletion")
    )
    # An emergency copy's review (bot/incident.py).
    app.action(Action.REVIEW_OK)(
        decided_by(
            services,
            lambda number, user: services.incident.review(number, user, "ok"),
            action="review",
        )
    )
    app.action(Action.REVIEW_FLAG)(
        decided_by(
            services,
            lambda number, user: services.incident.review(number, user, "flagged"),
            action="review",
        )
    )


def decided_by(
    services: Services,
    decide: Callable[[int, str], object],
    *,
    action: str,
    on_root: bool = False,
) -> Callable[..., None]:
    """A button whose decision is committed inside the acknowledgement, once the button is
    found to be its request's (`CopyService.named`: its token, and, `on_root`, the request's
    own message); a refusal is told (and a wrong request audited) afterwards."""

    def decide_now(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        user = body["user"]["id"]
        try:
            ref = _ref(body, on_root=on_root)
            decide(services.copies.named(ref, user, action=action, audit=False).id, user)
        except SnapcopyError as error:
            context["refusal"] = error
        ack()

    @reports_errors
    def tell_refusal(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        refusal = context.get("refusal")
        if isinstance(refusal, WrongRequest):
            services.copies.audit_refusal(refusal)
        if refusal is not None:
            report(refusal, body, client)

    return services.after_ack(decide_now, tell_refusal)


def _ref(body: dict[str, Any], *, on_root: bool = True) -> RequestRef:
    ref = action_ref(body, on_root=on_root)
    if ref is None:
        raise UnknownRequest("That button does not name a request I know.")
    return ref
