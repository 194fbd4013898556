"""The modal's snapshot picker (`external_select`): options come back in the acknowledgement."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.slack import views
from bot.slack.ids import Action
from bot.slack.services import Services

MAX_OPTIONS = 100  # Slack shows at most 100 options


def register(app: App, services: Services) -> None:
    def suggest(ack: Ack, body: dict[str, Any]) -> None:
        snapshots = services.catalog.search(str(body.get("value") or ""), limit=MAX_OPTIONS)
        ack(options=[views.snapshot_option(snapshot) for snapshot in snapshots])

    app.options(Action.PICK_SNAPSHOT)(suggest)
