"""App Home: what waits for my approval (with Approve and Deny), what I asked for, and a "New
copy" button whose modal asks where to post the request. Buttons clicked on App Home decide a
request exactly as the ones in its thread do, and the home is published again afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.domain import CopyRequest, State
from bot.slack.ids import Action, Block, Callback
from bot.slack.views import button_value
from tests import slackreq
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    modal_values,
    request_named,
    submit_modal,
    timed,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, ONCALL_MEMBER, OUTSIDER, REQUESTER, BotServer
from tests.slack_standin import Call, SlackStandIn

HOME = {"id": "V0HOME", "type": "home", "callback_id": "", "state": {"values": {}}}
OTHER_CHANNEL = "C0OTHER"
HEADINGS = ("*Waiting for your approval*", "*Your recent requests*")


def open_home(server: BotServer, slack: SlackStandIn, user: str) -> dict[str, Any]:
    """Open the Home tab as `user`; returns the view published for them this time."""
    before = len([call for call in slack.calls("views.publish") if call["user_id"] == user])
    answer = timed(server.event, slackreq.app_home_opened(user))
    assert answer.status_code == 200, answer.text
    return published_for(slack, user, before)


def published_for(slack: SlackStandIn, user: str, already: int) -> dict[str, Any]:
    """The next views.publish for `user` after the `already` ones seen before."""
    slack.wait_for(
        "views.publish",
        lambda _: len([c for c in slack.calls("views.publish") if c["user_id"] == user]) > already,
    )
    call = [c for c in slack.calls("views.publish") if c["user_id"] == user][already]
    view: dict[str, Any] = call["view"]
    assert view["type"] == "home"
    return view


def publishes_for(slack: SlackStandIn, user: str) -> int:
    return len([call for call in slack.calls("views.publish") if call["user_id"] == user])


def texts(view: dict[str, Any]) -> list[str]:
    found = []
    for block in view["blocks"]:
        if block["type"] == "section":
            found.append(block["text"]["text"])
        elif block["type"] == "context":
            found += [element["text"] for element in block["elements"]]
    return found


def home_buttons(view: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (element["action_id"], element.get("value"))
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def part(view: dict[str, Any], heading: str) -> list[str]:
    """The texts under one of the home's headings, up to the next heading."""
    lines = texts(view)
    start = lines.index(heading) + 1
    rest = lines[start:]
    ends = [i for i, line in enumerate(rest) if line in HEADINGS]
    return rest[: ends[0]] if ends else rest


def waiting_part(view: dict[str, Any]) -> list[str]:
    return part(view, "*Waiting for your approval*")


def mine_part(view: dict[str, Any]) -> list[str]:
    return part(view, "*Your recent requests*")


def home_click(server: BotServer, user: str, action: Action, value: str | None) -> None:
    answer = timed(
        server.interact,
        slackreq.block_actions(
            user, action, value, block_id=f"{Block.DECISION}_{value}", view=HOME, channel=None
        ),
    )
    assert answer.status_code == 200, answer.text


def notice_to(slack: SlackStandIn, needle: str) -> Call:
    """A click on App Home has no channel: the bot answers with a small modal."""
    return slack.wait_for(
        "views.open",
        lambda call: (
            call["view"].get("callback_id", "") == ""
            and needle in json.dumps(call["view"]["blocks"])
        ),
    )


# --- what the home shows -------------------------------------------------------------------------


def test_approver_sees_requests_waiting_with_buttons_carrying_their_ids(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots).id
    first = ask_for_copy(server, slack, REQUESTER, source, "home-first", "before restore")
    second = ask_for_copy(server, slack, ONCALL_MEMBER, source, "home-second")

    view = open_home(server, slack, APPROVER)

    waiting = waiting_part(view)
    assert any(
        line.startswith(f"*#{first.id}* <@{REQUESTER}> asks to copy `{source}` as *home-first*")
        and line.endswith(">before restore")
        for line in waiting
    ), waiting
    assert any(line.startswith(f"*#{second.id}* <@{ONCALL_MEMBER}>") for line in waiting)
    decisions = [button for button in home_buttons(view) if button[0] != Action.NEW_COPY]
    assert sorted(decisions) == sorted(
        [
            (Action.APPROVE, button_value(first)),
            (Action.DENY, button_value(first)),
            (Action.APPROVE, button_value(second)),
            (Action.DENY, button_value(second)),
        ]
    )
    assert (Action.NEW_COPY, None) in home_buttons(view), "an approver may also ask"
    assert mine_part(view) == ["You have not asked for a copy yet."]


def test_requester_sees_their_requests_with_state_and_new_snapshot_id(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots).id
    copied = ask_for_copy(server, slack, REQUESTER, source, "home-copied")
    waits = ask_for_copy(server, slack, REQUESTER, source, "home-waits")
    click(server, APPROVER, Action.APPROVE, copied)
    done = wait_state(server, copied, State.SUCCEEDED)
    wait_for_reply(slack, done, f"`{done.new_snapshot_id}`) is AVAILABLE")

    view = open_home(server, slack, REQUESTER)

    mine = mine_part(view)
    assert mine == [
        f"*#{waits.id}* home-waits · :hourglass_flowing_sand: Waiting for approval",
        f"*#{done.id}* home-copied · :white_check_mark: Copied, AVAILABLE\n"
        f"new snapshot `{done.new_snapshot_id}`",
    ]
    assert waiting_part(view) == ["Nothing waits for you."], "a requester approves nothing"
    # A copy kept with no date may only be deleted from here (bot/retention.py).
    assert home_buttons(view) == [
        (Action.NEW_COPY, None),
        (Action.DELETE_NOW, button_value(copied)),
    ]


def test_my_own_request_does_not_wait_for_my_approval(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    own = ask_for_copy(server, slack, ADMIN, automated(dws_snapshots).id, "home-own")
    view = open_home(server, slack, ADMIN)
    assert waiting_part(view) == ["Nothing waits for you."]
    assert (Action.APPROVE, button_value(own)) not in home_buttons(view)
    assert mine_part(view)[0].startswith(f"*#{own.id}* home-own")


def test_someone_without_a_role_gets_a_home_without_new_copy(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "home-hidden")
    view = open_home(server, slack, OUTSIDER)
    assert home_buttons(view) == []
    assert waiting_part(view) == ["Nothing waits for you."]
    assert mine_part(view) == ["You have not asked for a copy yet."]


# --- New copy ------------------------------------------------------------------------------------


def test_new_copy_asks_for_a_channel_and_posts_the_request_there(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots).id
    home_click(server, REQUESTER, Action.NEW_COPY, None)
    opened = slack.wait_for("views.open")
    view = opened["view"]
    assert view["callback_id"] == Callback.COPY_MODAL
    picker = next(b for b in view["blocks"] if b.get("block_id") == Block.CHANNEL)
    assert picker["element"]["type"] == "conversations_select"
    assert picker["element"]["action_id"] == Action.CHANNEL
    assert "initial_conversation" not in picker["element"]
    metadata = view["private_metadata"]
    assert json.loads(metadata) == {"channel_id": None, "thread_ts": None}

    values = modal_values(source, "home-new-copy") | {
        Block.CHANNEL: {
            Action.CHANNEL: {
                "type": "conversations_select",
                "selected_conversation": OTHER_CHANNEL,
            }
        }
    }
    answer = submit_modal(server, REQUESTER, values, private_metadata=metadata)
    assert answer.status_code == 200 and answer.text == "", answer.text

    request = request_named(server, "home-new-copy")
    root = slack.wait_for("chat.postMessage", lambda c: f"#{request.id}" in c["text"])
    assert root["channel"] == OTHER_CHANNEL
    assert "thread_ts" not in root.params, "the request starts its own thread"
    assert [c["channel"] for c in slack.calls("chat.postMessage")] == [OTHER_CHANNEL]
    assert request.channel_id == OTHER_CHANNEL and request.source_snapshot_id == source


def test_new_copy_without_a_channel_points_at_the_channel_field(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    home_click(server, REQUESTER, Action.NEW_COPY, None)
    metadata = slack.wait_for("views.open")["view"]["private_metadata"]
    values = modal_values(automated(dws_snapshots).id, "home-nowhere") | {
        Block.CHANNEL: {
            Action.CHANNEL: {"type": "conversations_select", "selected_conversation": None}
        }
    }
    answer = submit_modal(server, REQUESTER, values, private_metadata=metadata)
    body = answer.json()
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [Block.CHANNEL]
    assert "channel" in body["errors"][Block.CHANNEL]
    assert server.requests() == []


def test_new_copy_without_a_role_is_refused_in_a_notice(
    server: BotServer, slack: SlackStandIn
) -> None:
    home_click(server, OUTSIDER, Action.NEW_COPY, None)
    told = notice_to(slack, "requester role")
    assert f"<@{ADMIN}>" in json.dumps(told["view"]["blocks"])
    assert len(slack.calls("views.open")) == 1, "no copy modal"
    refused = [event for event in server.store.events() if event["kind"] == "refused"]
    assert [event["actor"] for event in refused] == [OUTSIDER]


# --- deciding from App Home ----------------------------------------------------------------------


def pending(server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any], name: str) -> Any:
    return ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, name)


def test_approve_on_home_copies_once_tells_the_thread_and_republishes_the_home(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = pending(server, slack, dws_snapshots, "home-approved")
    before = open_home(server, slack, APPROVER)
    assert (Action.APPROVE, button_value(request)) in home_buttons(before)
    seen = publishes_for(slack, APPROVER)

    home_click(server, APPROVER, Action.APPROVE, button_value(request))

    after = published_for(slack, APPROVER, seen)
    assert (Action.APPROVE, button_value(request)) not in home_buttons(after)
    done = wait_state(server, request, State.SUCCEEDED)
    assert done.approved_by == APPROVER
    wait_for_reply(slack, done, f"your request #{request.id} was approved by <@{APPROVER}>")
    wait_for_reply(slack, done, str(done.new_snapshot_id))
    slack.wait_for(
        "chat.update", lambda c: c["ts"] == request.message_ts and "approved by" in str(c["blocks"])
    )
    assert dws.copy_calls == 1
    assert not slack.calls("chat.postEphemeral")

    # A second click (a stale home) is told, in a notice, and copies nothing more.
    home_click(server, ADMIN, Action.APPROVE, button_value(request))
    notice_to(slack, "already approved")
    assert dws.copy_calls == 1


def test_deny_on_home_opens_the_deny_modal_then_tells_the_thread_and_republishes(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = pending(server, slack, dws_snapshots, "home-denied")
    home_click(server, APPROVER, Action.DENY, button_value(request))
    modal = slack.wait_for("views.open", lambda c: c["view"]["callback_id"] == Callback.DENY_MODAL)
    metadata = modal["view"]["private_metadata"]
    assert json.loads(metadata) == {
        "request_id": request.id,
        "token": request.token,
        "from_home": True,
    }
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    seen = publishes_for(slack, APPROVER)

    answer = timed(
        server.interact,
        slackreq.view_submission(
            APPROVER,
            Callback.DENY_MODAL,
            {Block.DENY_REASON: {Action.DENY_REASON: "take last week's"}},
            metadata,
        ),
    )
    assert answer.status_code == 200 and answer.text == "", answer.text

    denied = wait_state(server, request, State.DENIED)
    assert (denied.denied_by, denied.deny_reason) == (APPROVER, "take last week's")
    wait_for_reply(slack, denied, "denied request")
    after = published_for(slack, APPROVER, seen)
    assert (Action.DENY, button_value(request)) not in home_buttons(after)
    assert dws.copy_calls == 0


@pytest.mark.parametrize(
    ("user", "action", "needle"),
    [
        (OUTSIDER, Action.APPROVE, "approver role"),
        (OUTSIDER, Action.DENY, "approver role"),
        (REQUESTER, Action.APPROVE, "someone else must approve it"),
    ],
    ids=["outsider-approves", "outsider-denies", "requester-approves"],
)
def test_a_click_on_home_by_someone_who_may_not_decide_is_refused_in_a_notice(
    server: BotServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    user: str,
    action: Action,
    needle: str,
) -> None:
    request = pending(server, slack, dws_snapshots, "home-refused")
    home_click(server, user, action, button_value(request))
    notice_to(slack, needle)
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert not [c for c in slack.calls("views.open") if c["view"].get("callback_id")]
    assert dws.copy_calls == 0
    refused = [e for e in server.store.events(request.id) if e["kind"] == "refused"]
    assert [e["actor"] for e in refused] == [user]


def test_self_approval_on_home_is_refused(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request: CopyRequest = ask_for_copy(
        server, slack, ADMIN, automated(dws_snapshots).id, "home-self"
    )
    home_click(server, ADMIN, Action.APPROVE, button_value(request))
    notice_to(slack, "someone else must approve")
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert dws.copy_calls == 0
