"""`/snapcopy [snapshot_id] | help | list | status <id> | roles`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain import Role
from bot.errors import SnapcopyError
from bot.slack import answers, mrkdwn, views
from bot.slack.errors import reports_errors, sentence_for
from bot.slack.ids import COMMAND
from bot.slack.sandbox import mark
from bot.slack.services import Services

SUBCOMMANDS = ("help", "list", "status", "roles", "cancel", "keep", "delete")
_ID_LIKE = re.compile(r"[0-9a-fA-F-]{8,}")


@dataclass(frozen=True)
class ParsedCommand:
    kind: str  # "open" or one of SUBCOMMANDS, or "unknown"
    argument: str | None = None
    rest: str = ""  # what follows the argument (keep's date or duration)


def parse_command(text: str) -> ParsedCommand:
    words = text.split()
    if not words:
        return ParsedCommand("open")
    first = words[0].lower()
    if first in SUBCOMMANDS:
        return ParsedCommand(first, words[1] if len(words) > 1 else None, " ".join(words[2:]))
    if _ID_LIKE.fullmatch(words[0]):
        # Prefill even a mistyped id: the modal says exactly what is wrong with it.
        return ParsedCommand("open", words[0])
    return ParsedCommand("unknown", words[0])


# Answers made of text alone go back in the acknowledgement itself: no second round trip. A
# cancel is a decision, committed before the acknowledgement, so its answer goes back there too.
DECISIONS = ("cancel", "keep", "delete")
IN_ACK = ("help", "unknown", *DECISIONS)


def register(app: App, services: Services) -> None:
    def shown(text: str) -> str:
        open_policy = services.copies.policy.is_open
        return mark(text, open_policy=open_policy) if services.sandbox else text

    def acknowledge(ack: Ack, body: dict[str, Any]) -> None:
        parsed = parse_command(body.get("text") or "")
        if parsed.kind == "help":
            ack(text=shown(answers.help_text()), response_type="ephemeral")
        elif parsed.kind in DECISIONS:
            try:
                text = answers.decision_text(
                    services, parsed.kind, parsed.argument, parsed.rest, body["user_id"]
                )
            except SnapcopyError as error:
                text = sentence_for(error) or error.message
            ack(text=shown(text), response_type="ephemeral")
        elif parsed.kind == "unknown":
            word = mrkdwn.escape(parsed.argument or "")
            ack(
                text=shown(f"I don't know `{word}`.\n{answers.help_text()}"),
                response_type="ephemeral",
            )
        else:
            ack()

    @reports_errors
    def run(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        user = body["user_id"]
        parsed = parse_command(body.get("text") or "")
        if parsed.kind in IN_ACK:
            return
        if parsed.kind == "open":
            services.copies.ensure_role(user, Role.REQUESTER, action="request snapshot copies")
            client.views_open(
                trigger_id=body["trigger_id"],
                view=views.copy_modal(
                    keep=services.copies.policy.lifecycle,
                    break_glass=services.copies.may_break_glass(user),
                    channel_id=body["channel_id"],
                    thread_ts=None,
                    snapshot_id=parsed.argument,
                    sandbox=services.sandbox,
                    reason_required=services.copies.policy.reason_required(),
                ),
            )
        else:
            text = answers.answer(services, parsed.kind, parsed.argument, user)
            respond(text=shown(text), response_type="ephemeral")

    app.command(COMMAND)(services.after_ack(acknowledge, run))
