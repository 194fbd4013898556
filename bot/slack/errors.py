"""The one place where errors become words in Slack.

Bolt calls `handle` (registered with `@app.error`) for errors raised while acknowledging; the
work after the acknowledgement (bot/slack/deferred.py) is out of Bolt's reach, so it is wrapped
with `reports_errors`, which sends its errors through the same `report`. Our own error types become
their one sentence; anything else is logged with a traceback and the person gets a short apology
with an id to quote.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.dws import DwsError, InvalidInput
from bot.errors import AlreadyHandled, NotAllowed, SnapcopyError
from bot.slack import mrkdwn, replies, views
from bot.slack.client import marked

log = logging.getLogger(__name__)


def sentence_for(error: Exception) -> str | None:
    """What to tell a person about an error we understand; None for the ones we do not."""
    if isinstance(error, AlreadyHandled):
        return replies.already_handled(error.request)
    if isinstance(error, NotAllowed):
        return (
            f"{error.message} Ask an admin ({mrkdwn.mentions(error.admins)}) to add you to the "
            f"`{error.needed}` role in the snapcopy policy."
        )
    if isinstance(error, SlackApiError) and _code(error) == "expired_trigger_id":
        return "Slack took too long to let me open the form; please run the command again."
    if isinstance(error, SnapcopyError | InvalidInput):
        return error.message
    if isinstance(error, DwsError):
        return str(error)
    if isinstance(error, SlackApiError):
        return f"Slack refused a call I made ({_code(error)}); please try again in a moment."
    return None


def _code(error: SlackApiError) -> str:
    return str(error.response.get("error") if error.response is not None else "unknown")


def report(error: Exception, body: dict[str, Any], client: WebClient) -> str:
    """Tell the person behind `body` what went wrong, wherever Slack lets us; returns the text."""
    text = sentence_for(error)
    if text is None:
        error_id = uuid.uuid4().hex[:8]
        log.error("unexpected error", extra={"error_id": error_id}, exc_info=error)
        text = (
            f"Sorry, something went wrong on my side (error id `{error_id}`). Nothing was "
            "copied by this click; try again, or quote the id to the snapcopy admins."
        )
    else:
        log.info("told user: %s", text, extra={"error_type": type(error).__name__})
    try:
        _deliver(text, body, client)
    except Exception:
        log.warning("could not deliver an error message", exc_info=True)
    return text


def _deliver(text: str, body: dict[str, Any], client: WebClient) -> None:
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    event = body.get("event") or {}
    if event.get("type") == "app_mention":
        client.chat_postMessage(
            channel=event["channel"], thread_ts=event.get("thread_ts") or event["ts"], text=text
        )
        return
    if body.get("command") and body.get("response_url"):
        # A slash command's own reply channel: works in DMs and channels the bot is not in.
        WebhookClient(body["response_url"], timeout=10).send(
            text=marked(client, text), response_type="ephemeral"
        )
        return
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    view = body.get("view") or {}
    if channel is None and view.get("type") == "modal":
        channel = json.loads(view.get("private_metadata") or "{}").get("channel_id")
    if user and channel:
        thread_ts = ((body.get("message") or {}).get("thread_ts")) or None
        client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
    elif body.get("trigger_id"):
        client.views_open(trigger_id=body["trigger_id"], view=views.notice_modal("snapcopy", text))
    elif user:
        client.chat_postMessage(channel=user, text=text)


def handle(error: Exception, body: dict[str, Any], client: WebClient) -> BoltResponse:
    """Bolt's global error handler: errors while acknowledging."""
    if body.get("command"):
        # A slash command's acknowledgement can carry the answer itself: fastest, always allowed.
        text = sentence_for(error)
        if text is None:
            text = report(error, {}, client)
        return BoltResponse(
            status=200,
            body=json.dumps({"response_type": "ephemeral", "text": text}),
            headers={"content-type": "application/json"},
        )
    if body.get("type") == "view_submission":
        # An empty 200 would close the modal as if it had been saved: keep it open, and say.
        text = sentence_for(error) or report(error, {}, client)
        return BoltResponse(
            status=200,
            body=json.dumps(modal_refusal(body.get("view") or {}, text)),
            headers={"content-type": "application/json"},
        )
    report(error, body, client)
    return BoltResponse(status=200, body="")


def modal_refusal(view: dict[str, Any], text: str) -> dict[str, Any]:
    """The answer to a submission that was not saved: the error under the modal's first input
    (the modal stays open with what was typed), or a notice pushed on top of it."""
    inputs = [block for block in view.get("blocks") or [] if block.get("type") == "input"]
    if inputs and inputs[0].get("block_id"):
        return {"response_action": "errors", "errors": {inputs[0]["block_id"]: text}}
    return {"response_action": "push", "view": views.notice_modal("snapcopy", text)}


Listener = Callable[..., None]


def reports_errors(listener: Listener) -> Listener:
    """Wrap work done after the acknowledgement so that its errors reach the person too."""

    @functools.wraps(listener)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            listener(*args, **kwargs)
        except Exception as error:
            report(error, kwargs["body"], kwargs["client"])

    return wrapper
