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
        found, unavailable = services.catalog.search(
            str(body.get("value") or ""), limit=MAX_OPTIONS - 1
        )
        several = len(services.catalog.regions) > 1
        options = [views.snapshot_option(listed, show_region=several) for listed in found]
        if unavailable and several:
            options.append(views.unavailable_regions_option(unavailable))
        ack(options=options)

    app.options(Action.PICK_SNAPSHOT)(suggest)
