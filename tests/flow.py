"""Steps of the copy flow as a person takes them in Slack, for end-to-end tests.

Each step sends what Slack would send to the running bot (signed, over HTTP) and returns what a
test needs next; assertions about outcomes stay in the tests.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bot.domain import CopyRequest, State
from bot.slack.ids import Action, Block, Callback
from bot.slack.views import button_value
from tests import slackreq
from tests.harness import BotServer
from tests.slack_standin import Call, SlackStandIn

ACK_LIMIT_SECONDS = 2.5  # Slack gives 3 s; leave room for a loaded test machine


def timed(send: Any, *args: Any, **kwargs: Any) -> httpx.Response:
    """Send, and fail unless the acknowledgement came inside Slack's limit."""
    started = time.monotonic()
    response: httpx.Response = send(*args, **kwargs)
    elapsed = time.monotonic() - started
    assert elapsed < ACK_LIMIT_SECONDS, f"acknowledged after {elapsed:.2f} s"
    return response


def modal_values(
    snapshot_id: str = "", backup_name: str = "", description: str | None = None
) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {
        Block.SNAPSHOT_ID: {Action.SNAPSHOT_ID: snapshot_id},
        Block.BACKUP_NAME: {Action.BACKUP_NAME: backup_name},
        Block.PICK_SNAPSHOT: {
            Action.PICK_SNAPSHOT: {"type": "external_select", "selected_option": None}
        },
    }
    if description is not None:
        values[Block.DESCRIPTION] = {Action.DESCRIPTION: description}
    return values


def submit_modal(
    server: BotServer,
    user: str,
    values: dict[str, dict[str, Any]],
    *,
    channel_id: str = slackreq.DEFAULT_CHANNEL,
    thread_ts: str | None = None,
    private_metadata: str | None = None,
) -> httpx.Response:
    metadata = private_metadata
    if metadata is None:
        metadata = json.dumps({"channel_id": channel_id, "thread_ts": thread_ts})
    return timed(
        server.interact,
        slackreq.view_submission(user, Callback.COPY_MODAL, values, metadata),
    )


def ask_for_copy(
    server: BotServer,
    slack: SlackStandIn,
    user: str,
    snapshot_id: str,
    backup_name: str,
    description: str = "",
    *,
    channel_id: str = slackreq.DEFAULT_CHANNEL,
    thread_ts: str | None = None,
) -> CopyRequest:
    """Submit the copy modal and wait until the request is posted; returns the audit row."""
    answer = submit_modal(
        server,
        user,
        modal_values(snapshot_id, backup_name, description),
        channel_id=channel_id,
        thread_ts=thread_ts,
    )
    assert answer.status_code == 200, answer.text
    assert answer.text == "", f"the modal answered with errors: {answer.text}"
    request = request_named(server, backup_name)
    slack.wait_for("chat.postMessage", lambda call: f"#{request.id}" in call["text"])
    deadline = time.monotonic() + 5
    while request.message_ts is None and time.monotonic() < deadline:
        time.sleep(0.02)
        request = server.store.require(request.id)
    assert request.message_ts, "the request message was not recorded"
    return request


def request_named(server: BotServer, backup_name: str, timeout: float = 5.0) -> CopyRequest:
    deadline = time.monotonic() + timeout
    while True:
        for request in server.requests():
            if request.backup_name == backup_name:
                return request
        if time.monotonic() > deadline:
            raise AssertionError(f"no request named {backup_name}: {server.requests()}")
        time.sleep(0.02)


def click(
    server: BotServer,
    user: str,
    action: Action,
    request: CopyRequest,
    *,
    block_id: str = Block.DECISION,
    **options: Any,
) -> httpx.Response:
    """Click a button (Approve, Deny, …) of the request's thread, in its channel."""
    message = slackreq.channel_message(
        "request",
        ts=request.message_ts,
        thread_ts=request.thread_ts if request.thread_ts != request.message_ts else None,
    )
    answer = timed(
        server.interact,
        slackreq.block_actions(
            user,
            action,
            button_value(request),
            block_id=block_id,
            message=message,
            channel=request.channel_id,
        ),
        **options,
    )
    assert answer.status_code == 200, answer.text
    return answer


def armed(slack: SlackStandIn, request: CopyRequest, timeout: float = 10.0) -> Call:
    """The update that gives the request message its buttons: it is posted without them, and
    they come once its ts is recorded (so a post sent again after a crash has none)."""
    return slack.wait_for(
        "chat.update",
        lambda call: (
            call["ts"] == request.message_ts
            and any(block["type"] == "actions" for block in call["blocks"])
        ),
        timeout=timeout,
    )


def thread_replies(slack: SlackStandIn, request: CopyRequest) -> list[Call]:
    return [
        call
        for call in slack.calls("chat.postMessage")
        if call.get("thread_ts") == request.thread_ts and call.get("channel") == request.channel_id
    ]


def wait_for_reply(
    slack: SlackStandIn, request: CopyRequest, needle: str, timeout: float = 10.0
) -> Call:
    return slack.wait_for(
        "chat.postMessage",
        lambda call: call.get("thread_ts") == request.thread_ts and needle in call["text"],
        timeout=timeout,
    )


def ephemeral_to(slack: SlackStandIn, user: str, needle: str, timeout: float = 5.0) -> Call:
    return slack.wait_for(
        "chat.postEphemeral",
        lambda call: call["user"] == user and needle in call["text"],
        timeout=timeout,
    )


def wait_state(
    server: BotServer, request: CopyRequest, state: State, timeout: float = 10.0
) -> CopyRequest:
    return server.wait_for_request(request.id, state, timeout=timeout)


def automated(dws_snapshots: list[Any]) -> Any:
    return next(snapshot for snapshot in dws_snapshots if snapshot.is_automated)


def manual(dws_snapshots: list[Any]) -> Any:
    return next(snapshot for snapshot in dws_snapshots if not snapshot.is_automated)
