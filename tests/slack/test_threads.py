"""Copies asked for inside an incident thread: the message shortcut "Copy DWS snapshot" and
`@snapcopy copy …`. Whatever the bot says about such a request (the approval request, the
buttons' outcome, the new snapshot id, every status) lands in that thread and nowhere else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bot.domain import CopyRequest, State
from bot.slack.ids import Action, Block, Callback
from bot.slack.views import button_value
from tests import slackreq
from tests.flow import (
    armed,
    automated,
    click,
    ephemeral_to,
    manual,
    modal_values,
    request_named,
    submit_modal,
    timed,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, ONCALL_MEMBER, OUTSIDER, REQUESTER, BotServer
from tests.slack_standin import Call, SlackStandIn

CHANNEL = slackreq.DEFAULT_CHANNEL
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def copy_modal_opened(slack: SlackStandIn) -> dict[str, Any]:
    opened = slack.wait_for(
        "views.open", lambda call: call["view"]["callback_id"] == Callback.COPY_MODAL
    )
    view: dict[str, Any] = opened["view"]
    return view


def prefilled_id(view: dict[str, Any]) -> str | None:
    block = next(b for b in view["blocks"] if b.get("block_id") == Block.SNAPSHOT_ID)
    value: str | None = block["element"].get("initial_value")
    return value


def shortcut(server: BotServer, user: str, message: dict[str, Any]) -> None:
    answer = timed(
        server.interact, slackreq.message_action(user, Callback.MESSAGE_SHORTCUT, message)
    )
    assert answer.status_code == 200, answer.text


def mention(server: BotServer, user: str, text: str, thread_ts: str | None) -> dict[str, Any]:
    event = slackreq.app_mention(user, text, thread_ts=thread_ts)
    answer = timed(server.event, event)
    assert answer.status_code == 200, answer.text
    return event


def said_in_thread(slack: SlackStandIn, thread_ts: str, needle: str) -> Call:
    return slack.wait_for(
        "chat.postMessage",
        lambda call: (
            call["channel"] == CHANNEL and call["thread_ts"] == thread_ts and needle in call["text"]
        ),
    )


def announced(slack: SlackStandIn, request_id: int) -> Call:
    return slack.wait_for("chat.postMessage", lambda call: f"#{request_id}" in call["text"])


def announced_row(server: BotServer, request_id: int) -> CopyRequest:
    """The audit row once the request message's ts is recorded (clicks need it)."""
    deadline = time.monotonic() + 5
    request = server.store.require(request_id)
    while request.message_ts is None and time.monotonic() < deadline:
        time.sleep(0.02)
        request = server.store.require(request_id)
    assert request.message_ts, "the request message was not recorded"
    return request


def buttons(call: Call) -> list[tuple[str, str]]:
    return [
        (element["action_id"], element["value"])
        for block in call["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


# --- the message shortcut ------------------------------------------------------------------------


@pytest.mark.parametrize("in_reply", [True, False], ids=["on-a-thread-reply", "on-a-top-level"])
def test_shortcut_keeps_request_approval_and_new_snapshot_id_in_the_messages_thread(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any], in_reply: bool
) -> None:
    source = automated(dws_snapshots)
    parent_ts = slackreq.new_message_ts()
    message = slackreq.channel_message(
        f"prod is down; last night's snapshot {source.id} looks clean",
        user="U0OTHER",
        thread_ts=parent_ts if in_reply else None,
    )
    thread = parent_ts if in_reply else message["ts"]

    shortcut(server, REQUESTER, message)

    view = copy_modal_opened(slack)
    assert prefilled_id(view) == source.id
    assert json.loads(view["private_metadata"]) == {"channel_id": CHANNEL, "thread_ts": thread}
    answer = submit_modal(
        server,
        REQUESTER,
        modal_values(source.id, "inc-77-keep", "before restore"),
        private_metadata=view["private_metadata"],
    )
    assert answer.status_code == 200 and answer.text == "", answer.text
    request = request_named(server, "inc-77-keep")
    root = announced(slack, request.id)
    assert root["channel"] == CHANNEL and root["thread_ts"] == thread
    request = announced_row(server, request.id)
    assert buttons(root) == [], "its buttons come once its ts is recorded"
    live = armed(slack, request)
    value = button_value(request)
    assert buttons(live) == [(Action.APPROVE, value), (Action.DENY, value)]
    assert request.thread_ts == thread and request.message_ts != thread
    assert dws.copy_calls == 0

    click(server, APPROVER, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)
    new = next(snapshot for snapshot in dws.snapshots if snapshot.name == "inc-77-keep")
    assert done.new_snapshot_id == new.id and done.source_snapshot_id == source.id
    assert (done.requested_by, done.approved_by) == (REQUESTER, APPROVER)
    assert done.channel_id == CHANNEL and done.thread_ts == thread
    wait_for_reply(slack, done, f"your request #{request.id} was approved by <@{APPROVER}>")
    wait_for_reply(slack, done, f"New snapshot ID: `{new.id}`")
    wait_for_reply(slack, done, f"`{new.id}`) is AVAILABLE")
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 4, "the request, approved, copied, available"
    assert all((p["channel"], p.get("thread_ts")) == (CHANNEL, thread) for p in posts), posts
    updates = slack.calls("chat.update")
    assert updates and {(u["channel"], u["ts"]) for u in updates} == {
        (CHANNEL, request.message_ts)
    }, "status updates change the request message in the thread"
    assert "Copied, AVAILABLE" in str(updates[-1]["blocks"])
    assert not slack.calls("chat.postEphemeral")
    assert dws.copy_calls == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("restore from {id} please", "{id}"),
        ("`{ID}` (upper case in the console)", "{id}"),
        ("see <https://console.example/dws/snapshots/{id}|the console>", "{id}"),
        ("disk full on dws-prod, no id yet", None),
        ("almost an id: {id}0", None),
    ],
    ids=["plain", "upper-case-in-code", "inside-a-link", "no-id", "not-standing-alone"],
)
def test_shortcut_prefills_the_snapshot_id_found_in_the_message(
    server: BotServer,
    slack: SlackStandIn,
    dws_snapshots: list[Any],
    text: str,
    expected: str | None,
) -> None:
    source_id = automated(dws_snapshots).id
    message = slackreq.channel_message(
        text.format(id=source_id, ID=source_id.upper()), user="U0OTHER"
    )
    shortcut(server, REQUESTER, message)
    view = copy_modal_opened(slack)
    assert prefilled_id(view) == (expected.format(id=source_id) if expected else None)


def test_shortcut_by_a_group_member_opens_the_modal(
    server: BotServer, slack: SlackStandIn, dws: Any
) -> None:
    shortcut(server, ONCALL_MEMBER, slackreq.channel_message("disk full", user="U0OTHER"))
    copy_modal_opened(slack)
    slack.wait_for("usergroups.users.list", lambda call: call["usergroup"] == "S0ONCALL")


@pytest.mark.parametrize("in_reply", [True, False], ids=["on-a-thread-reply", "on-a-top-level"])
def test_shortcut_without_a_role_is_refused_privately_and_opens_no_modal(
    server: BotServer, slack: SlackStandIn, dws: Any, in_reply: bool
) -> None:
    parent_ts = slackreq.new_message_ts()
    message = slackreq.channel_message(
        "disk full", user="U0OTHER", thread_ts=parent_ts if in_reply else None
    )
    shortcut(server, OUTSIDER, message)
    told = ephemeral_to(slack, OUTSIDER, "requester role")
    assert told["channel"] == CHANNEL
    assert told.get("thread_ts") == (parent_ts if in_reply else None)
    assert f"<@{ADMIN}>" in told["text"], "the refusal names who can grant the role"
    # The ephemeral is the listener's last word: a modal would have been opened before it.
    assert not slack.calls("views.open")
    assert not slack.calls("chat.postMessage")
    refused = [event for event in server.store.events() if event["kind"] == "refused"]
    assert [event["actor"] for event in refused] == [OUTSIDER]
    assert server.requests() == []


# --- @snapcopy in a thread -----------------------------------------------------------------------


def test_mention_copy_makes_the_request_in_the_thread_and_the_new_id_lands_there(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots)
    thread = slackreq.new_message_ts()

    mention(server, REQUESTER, f"copy {source.id} inc-88-keep before the restore", thread)

    request = request_named(server, "inc-88-keep")
    root = announced(slack, request.id)
    assert (root["channel"], root["thread_ts"]) == (CHANNEL, thread)
    live = armed(slack, announced_row(server, request.id))
    value = button_value(request)
    assert buttons(live) == [(Action.APPROVE, value), (Action.DENY, value)]
    request = wait_state(server, request, State.PENDING_APPROVAL)
    assert request.source_snapshot_id == source.id
    assert request.description == "before the restore"
    assert (request.requested_by, request.channel_id, request.thread_ts) == (
        REQUESTER,
        CHANNEL,
        thread,
    )
    assert "requested" in [event["kind"] for event in server.store.events(request.id)]

    request = announced_row(server, request.id)
    click(server, ADMIN, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)
    new = next(snapshot for snapshot in dws.snapshots if snapshot.name == "inc-88-keep")
    assert done.new_snapshot_id == new.id and done.approved_by == ADMIN
    said_in_thread(slack, thread, f"your request #{request.id} was approved by <@{ADMIN}>")
    said_in_thread(slack, thread, f"New snapshot ID: `{new.id}`")
    said_in_thread(slack, thread, f"`{new.id}`) is AVAILABLE")
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 4, "the request, approved, copied, available"
    assert all((p["channel"], p.get("thread_ts")) == (CHANNEL, thread) for p in posts), posts
    assert dws.copy_calls == 1


def test_mention_copy_outside_a_thread_starts_one_on_the_mention(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    event = mention(server, REQUESTER, f"copy {automated(dws_snapshots).id} inc-89-keep", None)
    request = request_named(server, "inc-89-keep")
    root = announced(slack, request.id)
    assert (root["channel"], root["thread_ts"]) == (CHANNEL, event["ts"])
    assert announced_row(server, request.id).thread_ts == event["ts"]


@pytest.mark.parametrize(
    ("words", "answer"),
    [
        ("copy not-a-snapshot-id inc-90-keep", "must be a UUID"),
        ("copy {auto} 9lives", "must start with a letter"),
        ("copy {auto} inc.90.keep", "only letters, digits"),
        ("copy {auto} inc-90-keep it's gone", "cannot contain"),
        ("copy {manual} inc-90-keep", "only automated snapshots can be copied"),
        ("copy {unknown} inc-90-keep", "DWS has no snapshot"),
        ("copy {auto} {taken}", "already exists"),
        ("copy {auto}", "Usage: `@snapcopy copy"),
        ("copy", "Usage: `@snapcopy copy"),
    ],
    ids=[
        "bad-id",
        "name-starts-with-digit",
        "name-with-dots",
        "bad-description",
        "manual-snapshot",
        "unknown-snapshot",
        "name-taken-in-dws",
        "no-name",
        "no-words",
    ],
)
def test_mention_copy_problems_are_answered_in_the_thread_and_nothing_is_asked(
    server: BotServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    words: str,
    answer: str,
) -> None:
    thread = slackreq.new_message_ts()
    text = words.format(
        auto=automated(dws_snapshots).id,
        manual=manual(dws_snapshots).id,
        unknown=UNKNOWN_ID,
        taken=manual(dws_snapshots).name.upper(),
    )
    mention(server, REQUESTER, text, thread)
    told = said_in_thread(slack, thread, answer)
    assert told["channel"] == CHANNEL
    assert len(slack.calls("chat.postMessage")) == 1, "one answer, and no request message"
    assert not slack.calls("chat.postEphemeral")
    assert server.requests() == []
    assert dws.copy_calls == 0


def test_mention_copy_without_a_role_is_refused_to_the_person_alone(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    thread = slackreq.new_message_ts()
    mention(server, OUTSIDER, f"copy {automated(dws_snapshots).id} inc-91-keep", thread)
    # Told in the thread, but only to the person: the admins are named, not pinged in public.
    told = slack.wait_for(
        "chat.postEphemeral", lambda c: c["thread_ts"] == thread and "requester role" in c["text"]
    )
    assert told["user"] == OUTSIDER
    assert f"<@{ADMIN}>" in told["text"]
    assert slack.calls("chat.postMessage") == []
    assert server.requests() == []
    refused = [event for event in server.store.events() if event["kind"] == "refused"]
    assert [event["actor"] for event in refused] == [OUTSIDER]
    assert dws.copy_calls == 0


@pytest.mark.parametrize("which", ["manual", "unknown"])
def test_mention_copy_without_a_role_is_refused_before_dws_is_asked_anything(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any], which: str
) -> None:
    snapshot_id = manual(dws_snapshots).id if which == "manual" else UNKNOWN_ID
    thread = slackreq.new_message_ts()
    asked_before = len(dws.requests)
    mention(server, OUTSIDER, f"copy {snapshot_id} inc-92-keep", thread)
    told = slack.wait_for("chat.postEphemeral", lambda call: call["thread_ts"] == thread)
    assert "requester role" in told["text"], told["text"]
    assert len(dws.requests) == asked_before, "DWS was asked about a snapshot for an outsider"
    refused = [event for event in server.store.events() if event["kind"] == "refused"]
    assert [event["actor"] for event in refused] == [OUTSIDER]


@pytest.mark.parametrize("words", ["help", "HELP", ""], ids=["help", "upper-case", "nothing"])
def test_mention_help_is_answered_in_the_thread(
    server: BotServer, slack: SlackStandIn, words: str
) -> None:
    thread = slackreq.new_message_ts()
    mention(server, ONCALL_MEMBER, words, thread)
    told = said_in_thread(slack, thread, "/snapcopy list")
    for command in ("/snapcopy status", "/snapcopy roles", "@snapcopy copy", "Copy DWS snapshot"):
        assert command in told["text"]
    assert len(slack.calls("chat.postMessage")) == 1
    assert server.requests() == []


@pytest.mark.parametrize(
    ("words", "shown"),
    [
        ("frobnicate the cluster", "`frobnicate`"),
        ("<!channel> wake up", "`&lt;!channel&gt;`"),
        ("*bold* claim", "`*bold*`"),
    ],
    ids=["word", "channel-ping", "markup"],
)
def test_mention_with_an_unknown_word_is_answered_plainly_and_privately_in_the_thread(
    server: BotServer, slack: SlackStandIn, words: str, shown: str
) -> None:
    """Regression (issue 25): "I don't know `hello`" was posted for the whole channel."""
    thread = slackreq.new_message_ts()
    mention(server, REQUESTER, words, thread)
    told = slack.wait_for("chat.postEphemeral", lambda c: "I don't know" in c["text"])
    assert (told["user"], told["thread_ts"]) == (REQUESTER, thread)
    assert told["text"].startswith(f"I don't know {shown}.")
    assert "Usage: `@snapcopy copy" in told["text"]
    assert "<!channel>" not in told["text"]
    assert slack.calls("chat.postMessage") == []
    assert server.requests() == []
