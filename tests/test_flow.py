"""The approval-gated copy flow, end to end: the real server, signed Slack requests, and the
Slack and DWS stand-ins. Each test reads the outcome where a person (Slack) and an auditor
(the SQLite log) would."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bot.domain import State
from bot.slack.ids import Action, Block, Callback
from tests import slackreq
from tests.flow import (
    armed,
    ask_for_copy,
    automated,
    click,
    ephemeral_to,
    manual,
    modal_values,
    submit_modal,
    thread_replies,
    timed,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, ONCALL_MEMBER, OUTSIDER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn


def events_of(server: BotServer, request_id: int | None = None) -> list[str]:
    return [event["kind"] for event in server.store.events(request_id)]


def test_happy_path_copies_once_and_posts_the_new_snapshot_id_to_the_thread(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots)

    answer = timed(server.command, REQUESTER, source.id)
    assert answer.status_code == 200
    opened = slack.wait_for("views.open")
    view = opened["view"]
    assert view["callback_id"] == Callback.COPY_MODAL
    prefilled = next(b for b in view["blocks"] if b.get("block_id") == Block.SNAPSHOT_ID)
    assert prefilled["element"]["initial_value"] == source.id
    assert json.loads(view["private_metadata"])["channel_id"] == slackreq.DEFAULT_CHANNEL

    request = ask_for_copy(server, slack, REQUESTER, source.id, "inc-42-keep", "before restore")
    assert request.state == State.PENDING_APPROVAL
    root = slack.wait_for("chat.postMessage", lambda c: f"#{request.id}" in c["text"])
    assert root["channel"] == slackreq.DEFAULT_CHANNEL
    assert not [block for block in root["blocks"] if block["type"] == "actions"]
    buttons = [
        element["action_id"]
        for block in armed(slack, request)["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]
    assert buttons == [Action.APPROVE, Action.DENY]
    assert dws.copy_calls == 0, "nothing may be copied before approval"

    click(server, APPROVER, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)
    new = next(s for s in dws.snapshots if s.name == "inc-42-keep")
    assert done.new_snapshot_id == new.id
    assert done.approved_by == APPROVER and done.requested_by == REQUESTER
    assert done.snapshot_status == "AVAILABLE"
    assert dws.copy_calls == 1
    assert done.dws_request_ids, "the DWS request id of the copy is kept"
    wait_for_reply(slack, done, new.id)
    wait_for_reply(slack, done, "is AVAILABLE")
    updated = slack.wait_for(
        "chat.update", lambda c: c["ts"] == request.message_ts and "approved by" in str(c["blocks"])
    )
    assert not any(block["type"] == "actions" for block in updated["blocks"])
    kinds = events_of(server, request.id)
    for kind in ("requested", "announced", "approved", "copy_started", "copied", "available"):
        assert kind in kinds
    assert kinds.index("approved") < kinds.index("copy_started") < kinds.index("copied")


def test_someone_without_a_role_is_refused_and_the_refusal_is_audited(
    server: BotServer, slack: SlackStandIn
) -> None:
    answer = timed(server.command, OUTSIDER, "", response_url=slack.response_url("cmd"))
    assert answer.status_code == 200
    told = slack.wait_for("response_url", lambda c: "requester" in c["text"])
    assert f"<@{ADMIN}>" in told["text"], "the refusal names who can grant the role"
    assert told["response_type"] == "ephemeral"
    assert not slack.calls("views.open")
    refused = [e for e in server.store.events() if e["kind"] == "refused"]
    assert refused and refused[0]["actor"] == OUTSIDER


def test_group_member_may_request(server: BotServer, slack: SlackStandIn) -> None:
    timed(server.command, ONCALL_MEMBER, "")
    slack.wait_for("views.open")
    slack.wait_for("usergroups.users.list")


def test_requester_cannot_approve_own_request(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, ADMIN, automated(dws_snapshots).id, "self-check")
    click(server, ADMIN, Action.APPROVE, request)
    ephemeral_to(slack, ADMIN, "someone else must approve")
    time.sleep(0.3)
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert dws.copy_calls == 0
    assert "refused" in events_of(server, request.id)


def test_requester_who_is_not_an_approver_cannot_approve(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "not-yours")
    click(server, ONCALL_MEMBER, Action.APPROVE, request)
    told = ephemeral_to(slack, ONCALL_MEMBER, "approver role")
    assert f"<@{ADMIN}>" in told["text"]
    time.sleep(0.3)
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert dws.copy_calls == 0


def test_second_click_is_told_it_is_already_handled(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "twice-clicked")
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED)
    click(server, ADMIN, Action.APPROVE, request)
    ephemeral_to(slack, ADMIN, "already approved")
    assert dws.copy_calls == 1


@pytest.mark.parametrize(
    ("values", "block", "words"),
    [
        (modal_values("", "valid-name"), Block.SNAPSHOT_ID, "Pick an automated snapshot"),
        (modal_values("not-a-uuid", "valid-name"), Block.SNAPSHOT_ID, "UUID"),
        (
            modal_values("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "1abc"),
            Block.BACKUP_NAME,
            "letter",
        ),
        (modal_values("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "abc"), Block.BACKUP_NAME, "4"),
        (
            modal_values("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "has space"),
            Block.BACKUP_NAME,
            "letters",
        ),
        (
            modal_values("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "a" * 65),
            Block.BACKUP_NAME,
            "64",
        ),
        (
            modal_values("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "valid-name", "x" * 257),
            Block.DESCRIPTION,
            "256",
        ),
        (
            modal_values("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "valid-name", "a <b> & c"),
            Block.DESCRIPTION,
            "<",
        ),
    ],
)
def test_modal_validation_errors_point_at_the_field(
    server: BotServer, dws: Any, values: dict[str, Any], block: str, words: str
) -> None:
    answer = submit_modal(server, REQUESTER, values)
    assert answer.status_code == 200
    body = answer.json()
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [block]
    assert words in body["errors"][block]
    assert server.requests() == []


def test_modal_refuses_a_manual_snapshot_an_unknown_one_and_a_taken_name(
    server: BotServer, dws: Any, dws_snapshots: list[Any]
) -> None:
    answer = submit_modal(server, REQUESTER, modal_values(manual(dws_snapshots).id, "copy-one"))
    assert "only automated" in answer.json()["errors"][Block.SNAPSHOT_ID]
    unknown = "00000000-0000-4000-8000-000000000000"
    answer = submit_modal(server, REQUESTER, modal_values(unknown, "copy-two"))
    assert "no snapshot" in answer.json()["errors"][Block.SNAPSHOT_ID]
    taken = manual(dws_snapshots).name.upper()  # DWS compares names without case
    answer = submit_modal(server, REQUESTER, modal_values(automated(dws_snapshots).id, taken))
    assert "already exists" in answer.json()["errors"][Block.BACKUP_NAME]
    assert server.requests() == []


def test_a_name_waiting_for_approval_cannot_be_asked_for_twice(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots).id
    first = ask_for_copy(server, slack, REQUESTER, source, "only-once")
    answer = submit_modal(server, REQUESTER, modal_values(source, "ONLY-once"))
    assert f"#{first.id}" in answer.json()["errors"][Block.BACKUP_NAME]


def test_deny_with_a_reason_tells_the_thread_and_copies_nothing(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "to-deny")
    click(server, APPROVER, Action.DENY, request)
    modal = slack.wait_for("views.open", lambda c: c["view"]["callback_id"] == Callback.DENY_MODAL)
    answer = timed(
        server.interact,
        slackreq.view_submission(
            APPROVER,
            Callback.DENY_MODAL,
            {Block.DENY_REASON: {Action.DENY_REASON: "use last week's <!channel>"}},
            modal["view"]["private_metadata"],
        ),
    )
    assert answer.status_code == 200
    denied = wait_state(server, request, State.DENIED)
    assert denied.denied_by == APPROVER
    reply = wait_for_reply(slack, denied, "denied")
    assert "&lt;!channel&gt;" in reply["text"] and "<!channel>" not in reply["text"]
    slack.wait_for("chat.update", lambda c: c["ts"] == request.message_ts and "Denied" in c["text"])
    assert dws.copy_calls == 0


def test_someone_who_is_not_an_approver_cannot_deny(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "keep-waiting")
    click(server, OUTSIDER, Action.DENY, request)
    ephemeral_to(slack, OUTSIDER, "approver role")
    assert not [c for c in slack.calls("views.open") if c["view"]["callback_id"] == "deny"]
    assert server.store.require(request.id).state == State.PENDING_APPROVAL


EXPIRING_POLICY = {
    "roles": {"requester": [REQUESTER], "approver": [APPROVER], "admin": [ADMIN]},
    "approval": {"required": True, "expires_after_minutes": 0.02},
}


def test_a_request_left_waiting_expires_and_its_buttons_do_nothing(
    start_server: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=EXPIRING_POLICY)
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "too-late")
    expired = wait_state(server, request, State.EXPIRED, timeout=10)
    wait_for_reply(slack, expired, "expired")
    slack.wait_for(
        "chat.update", lambda c: c["ts"] == request.message_ts and "Expired" in c["text"]
    )
    click(server, APPROVER, Action.APPROVE, request)
    ephemeral_to(slack, APPROVER, "expired")
    assert dws.copy_calls == 0
    assert "expired" in events_of(server, request.id)


def test_without_required_approval_the_copy_starts_at_once(
    start_server: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(
        policy={"roles": {"requester": [REQUESTER]}, "approval": {"required": False}}
    )
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "no-wait")
    done = wait_state(server, request, State.SUCCEEDED)
    assert done.approved_by is None
    assert dws.copy_calls == 1
    wait_for_reply(slack, done, done.new_snapshot_id or "?")


@pytest.mark.parametrize(
    ("status", "code"), [(403, "DWS.0015"), (400, "DWS.0001")], ids=["no-permission", "invalid"]
)
def test_a_failed_copy_says_why_in_one_sentence_with_code_and_request_id(
    server: BotServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    status: int,
    code: str,
) -> None:
    from bot.dws.standin import Fault

    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "doomed-copy")
    dws.inject(Fault("status", method="POST", path="linked-copy", status=status, error_code=code))
    click(server, APPROVER, Action.APPROVE, request)
    failed = wait_state(server, request, State.FAILED)
    assert failed.error_code == code
    reply = wait_for_reply(slack, failed, code)
    assert reply["text"].count(code) == 1, "one sentence, the code once"
    assert failed.dws_request_ids and failed.dws_request_ids[-1] in reply["text"]
    assert dws.copy_calls == 0
    assert len(thread_replies(slack, failed)) >= 2  # approved, then failed


def test_the_requester_can_cancel_a_waiting_request_and_others_cannot(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "withdrawn")
    refused = timed(server.command, OUTSIDER, f"cancel {request.id}")
    assert "requester or an admin" in refused.json()["text"]
    assert server.store.require(request.id).state == State.PENDING_APPROVAL

    # The cancel is decided before the acknowledgement, which carries the answer.
    answer = timed(server.command, REQUESTER, f"cancel #{request.id}")
    assert f"#{request.id} is cancelled" in answer.json()["text"]
    cancelled = server.store.require(request.id)
    assert cancelled.state == State.CANCELLED
    wait_for_reply(slack, cancelled, "cancelled")
    click(server, APPROVER, Action.APPROVE, request)
    ephemeral_to(slack, APPROVER, "already cancelled")
    assert dws.copy_calls == 0
