"""A click acts on the request it was made for, or on nothing.

Regression (issue 25): request A was made, the audit log was lost (an ephemeral disk), request B
became the new #1, and an approver clicked Approve on A's old message: B was copied. Buttons
carried only the request number. Now they carry a random token of the request beside it, and a
click on a channel message must come from the request's own message.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bot.domain import CopyRequest, RequestRef, State
from bot.slack.ids import Action, Block, Callback
from bot.slack.views import button_value
from bot.store import Store
from bot.store.schema import MIGRATIONS
from tests import slackreq
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, click, ephemeral_to, timed, wait_state
from tests.harness import APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

REPLACED = "earlier request #1"


def posted_value(slack: SlackStandIn, request: CopyRequest, action: Action) -> str:
    """The value Slack sends back for `action` on the request's message, as it was armed (a
    request message gets its buttons with its first update)."""

    def button(call: Any) -> str | None:
        for block in call.get("blocks") or []:
            for element in block.get("elements", []):
                if element.get("action_id") == action:
                    return str(element["value"])
        return None

    armed = slack.wait_for(
        "chat.update", lambda c: c["ts"] == request.message_ts and button(c) is not None
    )
    return str(button(armed))


def click_value(
    server: BotServer, user: str, action: Action, value: str, request: CopyRequest, **kw: Any
) -> None:
    """A click on the request's message (or on `message_ts`, `channel`) carrying `value`."""
    message = slackreq.channel_message("request", ts=kw.get("message_ts", request.message_ts))
    answer = timed(
        server.interact,
        slackreq.block_actions(
            user,
            action,
            value,
            block_id=Block.DECISION,
            message=message,
            channel=kw.get("channel", request.channel_id),
        ),
    )
    assert answer.status_code == 200, answer.text


def wrong_request_events(server: BotServer, count: int = 1) -> list[dict[str, Any]]:
    """The `wrong_request` audit events, once there are `count` (refusals are audited just
    after the acknowledgement)."""
    deadline = time.monotonic() + 5
    while True:
        found = [event for event in server.store.events() if event["kind"] == "wrong_request"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_an_old_button_after_the_database_is_lost_copies_nothing(
    start_server: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    bot_env: dict[str, str],
    tmp_path: Path,
) -> None:
    source = automated(dws_snapshots).id
    first = start_server()
    a = ask_for_copy(first, slack, REQUESTER, source, "copy-a")
    a_value = posted_value(slack, a, Action.APPROVE)
    first.stop()

    # The disk was wiped: a new, empty audit log, where B becomes #1 too.
    fresh = start_server(env_overrides={"SNAPCOPY_DB": str(tmp_path / "fresh.db")})
    b = ask_for_copy(fresh, slack, REQUESTER, source, "copy-b")
    assert b.id == a.id == 1

    click_value(fresh, APPROVER, Action.APPROVE, a_value, a)

    told = ephemeral_to(slack, APPROVER, REPLACED)
    assert "nothing was done" in told["text"]
    assert fresh.store.require(b.id).state == State.PENDING_APPROVAL
    assert dws.copy_calls == 0
    [event] = wrong_request_events(fresh)
    assert (event["request_id"], event["actor"]) == (b.id, APPROVER)
    assert event["details"] == {"action": "approve", "why": "token"}
    # B's own button still works.
    click(fresh, APPROVER, Action.APPROVE, b)
    wait_state(fresh, b, State.SUCCEEDED)
    assert dws.copy_calls == 1


def test_an_old_deny_button_opens_no_form_and_an_old_retry_retries_nothing(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "deny-old")
    stale = f"{request.id}.{'0' * 32}"

    click_value(server, APPROVER, Action.DENY, stale, request)
    ephemeral_to(slack, APPROVER, REPLACED)
    click_value(server, REQUESTER, Action.RETRY, stale, request)
    ephemeral_to(slack, REQUESTER, REPLACED)

    assert not slack.calls("views.open")
    assert [e["details"]["action"] for e in wrong_request_events(server, 2)] == ["deny", "retry"]
    assert server.store.require(request.id).state == State.PENDING_APPROVAL


def test_a_deny_form_of_another_request_denies_nothing(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "deny-form")
    metadata = json.dumps({"request_id": request.id, "token": "f" * 32})
    values = {Block.DENY_REASON: {Action.DENY_REASON: "no"}}

    answer = timed(
        server.interact, slackreq.view_submission(APPROVER, Callback.DENY_MODAL, values, metadata)
    )

    assert REPLACED in answer.json()["errors"][Block.DENY_REASON]
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert [e["details"]["action"] for e in wrong_request_events(server)] == ["deny"]


def test_a_button_on_another_message_than_the_requests_own_is_refused(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "elsewhere")

    click_value(
        server, APPROVER, Action.APPROVE, button_value(request), request, message_ts="1.000100"
    )

    ephemeral_to(slack, APPROVER, "old copy of request")
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert [e["details"]["why"] for e in wrong_request_events(server)] == ["message"]
    assert dws.copy_calls == 0


def test_a_stale_app_home_button_is_refused_in_a_notice(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "home-old")
    home = {"id": "V0HOME", "type": "home", "callback_id": "", "state": {"values": {}}}

    server.interact(
        slackreq.block_actions(
            APPROVER, Action.APPROVE, f"{request.id}.{'a' * 32}", view=home, channel=None
        )
    )

    slack.wait_for("views.open", lambda c: REPLACED in json.dumps(c["view"]["blocks"]))
    assert server.store.require(request.id).state == State.PENDING_APPROVAL


def test_a_button_posted_before_tokens_counts_only_on_the_requests_own_message(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "pre-token")

    click_value(server, APPROVER, Action.APPROVE, str(request.id), request, message_ts="2.0001")
    ephemeral_to(slack, APPROVER, REPLACED)
    assert server.store.require(request.id).state == State.PENDING_APPROVAL

    click_value(server, APPROVER, Action.APPROVE, str(request.id), request)
    wait_state(server, request, State.SUCCEEDED)


def _request(**fields: Any) -> CopyRequest:
    return CopyRequest.model_validate(
        {
            "id": 1,
            "state": State.PENDING_APPROVAL,
            "source_snapshot_id": "s",
            "backup_name": "b",
            "requested_by": "U1",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "token": "t" * 32,
            "channel_id": "C1",
            "message_ts": "1.1",
        }
        | fields
    )


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        (RequestRef(1, "t" * 32, "C1", "1.1"), None),
        (RequestRef(1, "t" * 32), None),  # App Home, a modal
        (RequestRef(1, "t" * 32, "D0APPROVER", "9.9"), None),  # the DM it was sent instead
        (RequestRef(1, "x" * 32, "C1", "1.1"), "token"),
        (RequestRef(1, "t" * 32, "C1", "2.2"), "message"),
        (RequestRef(1, "t" * 32, "C2", "1.1"), "message"),
        (RequestRef(1, None, "C1", "1.1"), None),  # posted before tokens, on its own message
        (RequestRef(1, None, "C1", "2.2"), "no token"),
        (RequestRef(1, None), "no token"),
    ],
)
def test_what_makes_a_click_about_a_request(ref: RequestRef, why: str | None) -> None:
    assert ref.mismatch(_request()) == why


def test_a_request_not_posted_yet_is_checked_by_its_token_alone() -> None:
    unposted = _request(message_ts=None)
    assert RequestRef(1, "t" * 32, "C1", "5.5").mismatch(unposted) is None
    assert RequestRef(1, "u" * 32, "C1", "5.5").mismatch(unposted) == "token"


def test_every_request_gets_its_own_token_and_older_ones_get_one_at_upgrade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        before = len(MIGRATIONS) - 1
        for number, script in enumerate(MIGRATIONS[:before], start=1):
            db.executescript(script)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute(
            "INSERT INTO requests (state, source_snapshot_id, backup_name, requested_by,"
            " created_at, updated_at) VALUES ('pending_approval', 's', 'old', 'U1', 'x', 'x')"
        )
    db.close()
    store = Store(path)
    try:
        old = store.require(1)
        assert len(old.token) == 32
        assert "token" not in repr(old)
    finally:
        store.close()


def test_the_token_is_kept_out_of_the_audit_trail(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "secretive")
    assert len(request.token) == 32
    assert request.token not in json.dumps(server.store.events(request.id))
    assert request.token not in server.stderr()
