"""Slack's events: `@snapcopy` in a thread, and changes to user groups' members.

`@snapcopy copy <snapshot_id> <name> [description…]`, and `status <id>`, `list`, `roles` and
`help` as the slash command answers them. Answers go to the thread the mention was made in;
refusals and answers about one person's own requests go only to that person (ephemeral), so
nobody's admins are pinged in public.

`subteam_members_changed` and `subteam_updated` keep the memberships that roles come through
fresh (bot/roles.py): somebody removed from a group loses its roles at once.

Slack retries an event it thinks was lost; each event id is handled once, however often it
arrives.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.errors import BadInput, SnapcopyError
from bot.group_changes import GroupChange
from bot.slack import answers, mrkdwn
from bot.slack.errors import reports_errors, sentence_for
from bot.slack.services import Services

# Answered to the person alone: they may show requests or roles not everyone should see.
PRIVATE_ANSWERS = ("status", "list", "roles")

_LEADING_MENTIONS = re.compile(r"^(\s*<@[A-Z0-9]+(\|[^>]*)?>\s*)+")

MENTION_USAGE = (
    "Usage: `@snapcopy copy <snapshot_id> <new name> [description…] [reason: <text>]`, for "
    "example `@snapcopy copy 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90 inc-1234-before-restore "
    "before restore reason: INC-1234`."
)

_REASON = re.compile(r"(?i)(?:^|\s)reason:\s*")


def mention_words(text: str) -> list[str]:
    return _LEADING_MENTIONS.sub("", text or "", count=1).split()


class CopyWords(TypedDict):
    snapshot_id: str
    backup_name: str
    description: str
    reason: str | None


def copy_fields(words: list[str]) -> CopyWords:
    """`copy <snapshot_id> <name> [description…] [reason: <text>]` → the snapshot, the name,
    the description and the reason (None when not given); missing words are empty, and fail
    validation by name."""
    words = words + [""] * (3 - len(words))
    description, *reason = _REASON.split(" ".join(words[3:]), maxsplit=1)
    return CopyWords(
        snapshot_id=words[1],
        backup_name=words[2],
        description=description.strip(),
        reason=(reason[0].strip() or None) if reason else None,
    )


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
            try:
                services.copies.ask(
                    requested_by=event["user"],
                    channel_id=event["channel"],
                    thread_ts=thread_ts,
                    **copy_fields(words),
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
        else:  # to the person alone: the channel need not read a typo
            whisper(f"I don't know `{mrkdwn.escape(command)}`.\n{MENTION_USAGE}")

    def group_changed(ack: Ack, body: dict[str, Any]) -> None:
        # Learnt before Slack hears back: the next click cannot beat a removal.
        change = group_change(body["event"])
        event_id = body.get("event_id")
        if change is not None and (not event_id or services.store.first_delivery(event_id)):
            services.roles.learn(change)
        ack()

    app.event("app_mention")(services.after_ack(acknowledge, mentioned))
    app.event("subteam_members_changed")(group_changed)
    app.event("subteam_updated")(group_changed)


def group_change(event: dict[str, Any]) -> GroupChange | None:
    """What a `subteam_members_changed` or `subteam_updated` event says about a group."""
    if event.get("type") == "subteam_members_changed":
        if not event.get("subteam_id"):
            return None
        return GroupChange(
            group=str(event["subteam_id"]),
            added=frozenset(event.get("added_users") or ()),
            removed=frozenset(event.get("removed_users") or ()),
            updated=_number(event.get("date_update")),
        )
    subteam = event.get("subteam") or {}
    if not subteam.get("id"):
        return None
    return GroupChange(
        group=str(subteam["id"]),
        members=_whole_membership(subteam),
        updated=_number(subteam.get("date_update")),
    )


def _whole_membership(subteam: dict[str, Any]) -> frozenset[str] | None:
    if _number(subteam.get("date_delete")):
        return frozenset()  # disabled: it gives nobody a role
    users = subteam.get("users")
    if isinstance(users, list) and len(users) == _number(subteam.get("user_count"), len(users)):
        return frozenset(users)
    return None  # Slack lists 500 users at most: a cut list says nothing for sure


def _number(value: Any, default: float = 0.0) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default
