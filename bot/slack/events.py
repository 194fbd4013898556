"""`@snapcopy` in a thread: `copy <snapshot_id> <name> [description…]`, and `status <id>`,
`list`, `roles` and `help` as the slash command answers them.

Answers go to the thread the mention was made in; refusals and answers about one person's own
requests go only to that person (ephemeral), so nobody's admins are pinged in public. Slack
retries an event it thinks was lost; each event id is handled once, however often it arrives.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.errors import BadInput, SnapcopyError
from bot.slack import answers, mrkdwn
from bot.slack.errors import reports_errors, sentence_for
from bot.slack.services import Services

# Answered to the person alone: they may show requests or roles not everyone should see.
PRIVATE_ANSWERS = ("status", "list", "roles")

_LEADING_MENTIONS = re.compile(r"^(\s*<@[A-Z0-9]+(\|[^>]*)?>\s*)+")

MENTION_USAGE = (
    "Usage: `@snapcopy copy <snapshot_id> <new name> [description…]`, for example "
    "`@snapcopy copy 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90 inc-1234-before-restore before restore`."
)


def mention_words(text: str) -> list[str]:
    return _LEADING_MENTIONS.sub("", text or "", count=1).split()


def register(app: App, services: Services) -> None:
    def acknowledge(ack: Ack) -> None:
        ack()

    @reports_errors
    def mentioned(body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if not services.store.first_delivery(str(body.get("event_id") or event.get("ts"))):
            return
        thread_ts = event.get("thread_ts") or event["ts"]

        def say(text: str) -> None:
            client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts, text=text)

        def whisper(text: str) -> None:
            client.chat_postEphemeral(
                channel=event["channel"], user=event["user"], thread_ts=thread_ts, text=text
            )

        words = mention_words(event.get("text", ""))
        command = words[0].lower() if words else "help"
        if command == "copy":
            words += [""] * (3 - len(words))  # missing words fail validation, by name
            try:
                services.copies.ask(
                    requested_by=event["user"],
                    snapshot_id=words[1],
                    backup_name=words[2],
                    description=" ".join(words[3:]),
                    channel_id=event["channel"],
                    thread_ts=thread_ts,
                )
            except BadInput as error:
                say(f"{error.message}\n{MENTION_USAGE}")
            except SnapcopyError as error:
                whisper(sentence_for(error) or error.message)
        elif command in PRIVATE_ANSWERS:
            try:
                text = answers.answer(
                    services, command, words[1] if len(words) > 1 else None, event["user"]
                )
            except SnapcopyError as error:
                text = sentence_for(error) or error.message
            whisper(text.replace("/snapcopy", "@snapcopy"))
        elif command == "help":
            say(answers.help_text())
        else:
            say(f"I don't know `{mrkdwn.escape(command)}`.\n{MENTION_USAGE}")

    app.event("app_mention")(services.after_ack(acknowledge, mentioned))
