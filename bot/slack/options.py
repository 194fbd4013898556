"""The modal's snapshot picker (`external_select`): options come back in the acknowledgement.

Once a snapshot is picked, and the policy's rules differ on whether a reason is needed, the form
is shown again saying whether this snapshot's cluster needs one.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.slack import picker_views, views
from bot.slack.errors import reports_errors
from bot.slack.forms import ModalMetadata
from bot.slack.ids import Action, Block
from bot.slack.services import Services

MAX_OPTIONS = 100  # Slack shows at most 100 options


def register(app: App, services: Services) -> None:
    def suggest(ack: Ack, body: dict[str, Any]) -> None:
        found, unavailable = services.catalog.search(
            str(body.get("value") or ""), limit=MAX_OPTIONS - 1
        )
        several = len(services.catalog.regions) > 1
        options = [picker_views.snapshot_option(listed, show_region=several) for listed in found]
        if unavailable and several:
            options.append(picker_views.unavailable_regions_option(unavailable))
        ack(options=options)

    def acknowledge(ack: Ack) -> None:
        ack()

    @reports_errors
    def picked(body: dict[str, Any], client: WebClient) -> None:
        policy = services.copies.policy
        option = (body.get("actions") or [{}])[0].get("selected_option") or {}
        if policy.reason_required() is not None or not option.get("value"):
            return  # the form says it already, whatever is picked
        found = [
            listed.snapshot
            for listed in services.catalog.search(str(option["value"]))[0]
            if listed.snapshot.id == option["value"]
        ]
        if not found:
            return  # unknown to the catalogue: the submission decides
        rule = policy.for_cluster(found[0].cluster_id, found[0].cluster_name)
        view = body["view"]
        metadata = ModalMetadata.parse(view.get("private_metadata"))
        client.views_update(
            view_id=view["id"],
            view=views.copy_modal(
                keep=policy.lifecycle,
                break_glass=services.copies.may_break_glass(body["user"]["id"]),
                channel_id=metadata.channel_id,
                thread_ts=metadata.thread_ts,
                ask_channel=any(b.get("block_id") == Block.CHANNEL for b in view["blocks"]),
                sandbox=services.sandbox,
                reason_required=rule.settings.require_reason,
                picked=option,
            ),
        )

    app.options(Action.PICK_SNAPSHOT)(suggest)
    app.action(Action.PICK_SNAPSHOT)(services.after_ack(acknowledge, picked))
