"""Requests shaped and signed exactly as Slack sends them to `POST /slack/events`.

Builders return a `SlackRequest` (raw body, content type, and for interactivity the payload
dict); `BotServer.send()` signs and posts one. Signing follows Slack's v0 scheme:
`X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{raw body}"))` with
`X-Slack-Request-Timestamp: {timestamp}`.

Field sets follow https://api.slack.com/interactivity/slash-commands,
https://api.slack.com/reference/interaction-payloads and https://api.slack.com/apis/events-api.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bot.slack.ids import COMMAND
from tests.slack_standin import BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

API_APP_ID = "A0SNAPCOPY"
# The deprecated verification token Slack still sends; Bolt ignores it in favour of signatures.
VERIFICATION_TOKEN = "legacy-verification-token"
DEFAULT_CHANNEL = "C0INCIDENT"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# Where the builders' response_urls point. The `slack` fixture points it at the Slack stand-in,
# which records what the bot posts there; otherwise it is a loopback port nobody listens on, so
# a reply nobody watches never leaves the machine.
RESPONSE_URL_BASE = "http://127.0.0.1:9/response_url/"

_serial = itertools.count(1)


@dataclass(frozen=True)
class SlackRequest:
    body: bytes
    content_type: str
    # The decoded payload of interactivity requests (what `payload=` carries), for reference.
    payload: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def signed_headers(self, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
        return {
            "Content-Type": self.content_type,
            **sign(self.body, secret, timestamp=timestamp),
            **self.headers,
        }


# --- signing -------------------------------------------------------------------------------------


def signature(body: bytes, secret: str, timestamp: int) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds; `timestamp` defaults to now (pass an old one to go stale)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": signature(body, secret, stamp),
    }


def retry_headers(num: int = 1, reason: str = "http_timeout") -> dict[str, str]:
    """What Slack adds when it re-sends an event it thinks we did not acknowledge."""
    return {"X-Slack-Retry-Num": str(num), "X-Slack-Retry-Reason": reason}


# --- ids -----------------------------------------------------------------------------------------


def new_trigger_id() -> str:
    n = next(_serial)
    return f"{1764340000 + n}.{TEAM_ID[1:]}.{n:032x}"


def new_message_ts() -> str:
    return f"{1764330000 + next(_serial)}.000100"


def _user(user_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID}


def _team() -> dict[str, Any]:
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


def _response_url(kind: str) -> str:
    return f"{RESPONSE_URL_BASE}{kind}-{next(_serial)}"


# --- slash commands ------------------------------------------------------------------------------


def command_fields(
    user_id: str,
    text: str = "",
    *,
    channel_id: str = DEFAULT_CHANNEL,
    channel_name: str = "incident-db",
    trigger_id: str | None = None,
    command: str = COMMAND,
    response_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Every field Slack sends with a slash command."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or _response_url("commands"),
        "trigger_id": trigger_id or new_trigger_id(),
        **extra,
    }


def slash_command(user_id: str, text: str = "", **fields: Any) -> SlackRequest:
    """`/snapcopy <text>` typed by `user_id`, form-encoded; fields as for command_fields()."""
    return SlackRequest(urlencode(command_fields(user_id, text, **fields)).encode(), FORM)


# --- interactivity -------------------------------------------------------------------------------


def interactive(payload: dict[str, Any]) -> SlackRequest:
    """Any interaction payload, form-encoded as `payload=<json>` the way Slack posts it."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return SlackRequest(body, FORM, payload=payload)


def channel_message(
    text: str = "",
    *,
    user: str = BOT_USER_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A channel message as Slack embeds it in interaction payloads."""
    msg: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts or new_message_ts(),
    }
    if thread_ts:
        msg["thread_ts"] = thread_ts
    if blocks is not None:
        msg["blocks"] = blocks
    if user == BOT_USER_ID:
        msg["bot_id"] = "B0SNAPBOT"
    return msg


def block_actions(
    user_id: str,
    action_id: str,
    value: str | None = None,
    *,
    block_id: str = "actions",
    message: dict[str, Any] | None = None,
    container: dict[str, Any] | None = None,
    channel: str | None = DEFAULT_CHANNEL,
    view: dict[str, Any] | None = None,
    action_type: str = "button",
    **action_fields: Any,
) -> SlackRequest:
    """A click on a button (default) or another block element.

    Pass `message` for a click on a channel message (the container is derived from it), or
    `view` for a click inside a modal or the App Home.
    """
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": f"{time.time():.6f}",
        **action_fields,
    }
    if value is not None:
        action["value"] = value
    if action_type == "button":
        action.setdefault("text", {"type": "plain_text", "text": action_id, "emoji": True})
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": new_trigger_id(),
        "team": _team(),
        "enterprise": None,
        "is_enterprise_install": False,
        "actions": [action],
    }
    if view is not None:
        payload["view"] = view
        payload["container"] = container or {"type": "view", "view_id": view.get("id", "V0")}
        payload["state"] = view.get("state", {"values": {}})
    else:
        msg = message if message is not None else channel_message()
        payload["message"] = msg
        payload["container"] = container or {
            "type": "message",
            "message_ts": msg["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        }
        payload["state"] = {"values": {}}
        payload["response_url"] = _response_url("actions")
    if channel is not None and view is None:
        payload["channel"] = {"id": channel, "name": "incident-db"}
    return interactive(payload)


def state_values(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`{block_id: {action_id: "text"}}` → view state values; non-strings pass through.

    Strings become plain_text_input values, which is what the copy modal's inputs are.
    """
    return {
        block: {
            action: (
                {"type": "plain_text_input", "value": value} if isinstance(value, str) else value
            )
            for action, value in actions.items()
        }
        for block, actions in values.items()
    }


def view_submission(
    user_id: str,
    callback_id: str,
    values: dict[str, dict[str, Any]],
    private_metadata: str = "",
    *,
    view_id: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> SlackRequest:
    """A modal submitted; `values` as `state_values` takes them."""
    vid = view_id or f"V0{next(_serial):08d}"
    view = {
        "id": vid,
        "team_id": TEAM_ID,
        "type": "modal",
        "blocks": blocks or [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state_values(values)},
        "hash": f"{int(time.time())}.{vid}",
        "title": {"type": "plain_text", "text": "snapcopy"},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": {"type": "plain_text", "text": "Submit"},
        "previous_view_id": None,
        "root_view_id": vid,
        "app_id": API_APP_ID,
        "external_id": "",
        "app_installed_team_id": TEAM_ID,
        "bot_id": "B0SNAPBOT",
    }
    payload = {
        "type": "view_submission",
        "team": _team(),
        "user": _user(user_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": new_trigger_id(),
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return interactive(payload)


def message_action(
    user_id: str,
    callback_id: str,
    message: dict[str, Any] | None = None,
    channel: str = DEFAULT_CHANNEL,
) -> SlackRequest:
    """A message shortcut used on `message` (default: a fresh message by someone else)."""
    msg = message if message is not None else channel_message("disk full", user="U0OTHER")
    payload = {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": f"{time.time():.6f}",
        "team": _team(),
        "user": _user(user_id),
        "channel": {"id": channel, "name": "incident-db"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": new_trigger_id(),
        "response_url": _response_url("app"),
        "message_ts": msg["ts"],
        "message": msg,
    }
    return interactive(payload)


def block_suggestion(
    user_id: str,
    action_id: str,
    value: str,
    *,
    block_id: str = "pick_snapshot",
    view: dict[str, Any] | None = None,
) -> SlackRequest:
    """What Slack sends while somebody types into an external_select."""
    the_view = view or {"id": "V0SUGGEST", "type": "modal", "callback_id": "", "state": {}}
    payload = {
        "type": "block_suggestion",
        "user": _user(user_id),
        "container": {"type": "view", "view_id": the_view.get("id", "V0SUGGEST")},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "team": _team(),
        "enterprise": None,
        "is_enterprise_install": False,
        "view": the_view,
    }
    return interactive(payload)


# --- Events API ----------------------------------------------------------------------------------


def event_callback(
    event: dict[str, Any], *, event_id: str | None = None, headers: dict[str, str] | None = None
) -> SlackRequest:
    """An Events API delivery of `event`; pass `headers=retry_headers()` for a re-delivery."""
    envelope = {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": API_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev0{next(_serial):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return SlackRequest(json.dumps(envelope).encode(), JSON, headers=dict(headers or {}))


def app_home_opened(user_id: str, tab: str = "home") -> dict[str, Any]:
    return {
        "type": "app_home_opened",
        "user": user_id,
        "channel": f"D0{user_id[1:]}",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


def app_mention(
    user_id: str, text: str, *, channel: str = DEFAULT_CHANNEL, thread_ts: str | None = None
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": user_id,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": new_message_ts(),
        "channel": channel,
        "event_ts": f"{time.time():.6f}",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def subteam_members_changed(
    group_id: str, *, added: Sequence[str] = (), removed: Sequence[str] = ()
) -> dict[str, Any]:
    """Slack's event when users are added to or removed from a user group (a delta only)."""
    now = int(time.time())
    return {
        "type": "subteam_members_changed",
        "subteam_id": group_id,
        "team_id": TEAM_ID,
        "date_previous_update": now - 60,
        "date_update": now,
        "added_users": list(added),
        "added_users_count": str(len(added)),
        "removed_users": list(removed),
        "removed_users_count": str(len(removed)),
        "event_ts": f"{time.time():.6f}",
    }


def subteam_updated(
    group_id: str, users: list[str], *, user_count: int | None = None, disabled: bool = False
) -> dict[str, Any]:
    """Slack's event when a user group changes; `users` is cut at 500, `user_count` is not."""
    now = int(time.time())
    return {
        "type": "subteam_updated",
        "subteam": {
            "id": group_id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "name": f"Group {group_id}",
            "handle": group_id.lower(),
            "date_create": now - 86400,
            "date_update": now,
            "date_delete": now if disabled else 0,
            "users": users,
            "user_count": len(users) if user_count is None else user_count,
        },
        "event_ts": f"{time.time():.6f}",
    }


def url_verification(challenge: str) -> SlackRequest:
    """Slack's handshake when somebody saves the Events request URL."""
    body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return SlackRequest(json.dumps(body).encode(), JSON)


def ssl_check() -> SlackRequest:
    """Slack's periodic certificate check of slash command URLs."""
    return SlackRequest(urlencode({"ssl_check": "1", "token": VERIFICATION_TOKEN}).encode(), FORM)


# --- Socket Mode ---------------------------------------------------------------------------------


def socket_envelope(
    kind: str, payload: dict[str, Any], *, envelope_id: str | None = None
) -> dict[str, Any]:
    """A Socket Mode message: `kind` is slash_commands, interactive or events_api; `payload`
    is what HTTP mode would have posted (command_fields(), an interaction payload, or an
    event_callback envelope). Send it with SlackStandIn.socket_send()."""
    return {
        "envelope_id": envelope_id or f"{next(_serial):08x}-socket-envelope",
        "type": kind,
        "accepts_response_payload": kind != "events_api",
        "payload": payload,
    }
