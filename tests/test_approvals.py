"""Approvals that reach the right people, end to end: per-cluster rules, N-of-M approvals,
pings, reminders, reasons, outcome replies to the requester, failures that say what to do,
Retry, and mentions that work like the command.

The DWS stand-in's demo snapshots belong to two clusters, dws-prod and dws-analytics; the
policy here gives each a rule of its own.
"""

from __future__ import annotations

import calendar
import json
import threading
import time
from typing import Any

import pytest

from bot.domain import CopyRequest, State
from bot.dws.standin import Fault
from bot.slack.ids import Action, Block
from tests import slackreq
from tests.conftest import StartServer
from tests.flow import (
    click,
    ephemeral_to,
    modal_values,
    request_named,
    submit_modal,
    thread_replies,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

# The promises hold on both engines: each test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.engines

PROD_DBAS = "S0PRODDBA"
DBA_ONE, DBA_TWO, DBA_THREE = "U0DBAONE", "U0DBATWO", "U0DBATHREE"

RULES_POLICY = f"""\
[roles]
requester = ["{REQUESTER}"]
approver = ["{APPROVER}"]
admin = ["{ADMIN}"]

[approval]
expires_after_minutes = 240

[[rules]]
clusters = ["dws-prod*"]
approvers = ["{PROD_DBAS}"]
approvals = 2
remind_after_minutes = 0.02
require_reason = true

[[rules]]
clusters = ["dws-analytics"]
required = false
"""


@pytest.fixture
def rules(start_server: StartServer, slack: SlackStandIn) -> BotServer:
    slack.usergroups[PROD_DBAS] = [DBA_ONE, DBA_TWO, DBA_THREE]
    return start_server(policy=RULES_POLICY)


def of_cluster(dws_snapshots: list[Any], cluster: str) -> Any:
    return next(s for s in dws_snapshots if s.is_automated and s.cluster_name == cluster)


def ask(
    server: BotServer, slack: SlackStandIn, source: Any, name: str, reason: str | None = None
) -> CopyRequest:
    values = modal_values(source.id, name)
    if reason is not None:
        values[Block.REASON] = {Action.REASON: reason}
    answer = submit_modal(server, REQUESTER, values)
    assert answer.status_code == 200 and answer.text == "", answer.text
    request = request_named(server, name)
    slack.wait_for(
        "chat.postMessage", lambda c: f"(request {request.label})" in c["text"] and c.get("blocks")
    )
    deadline = time.monotonic() + 5
    while request.message_ts is None:
        assert time.monotonic() < deadline, "the request was not posted"
        time.sleep(0.02)
        request = server.store.require(request.id)
    return request


def root_message(slack: SlackStandIn, request: CopyRequest) -> Any:
    return slack.wait_for(
        "chat.postMessage",
        lambda c: c["channel"] == request.channel_id and f"(request {request.label})" in c["text"],
    )


def test_a_prod_copy_needs_two_distinct_approvers_of_its_group(
    rules: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask(rules, slack, of_cluster(dws_snapshots, "dws-prod"), "prod-keep", "INC-7")

    # The approver role is not enough for this cluster's rule.
    click(rules, APPROVER, Action.APPROVE, request)
    ephemeral_to(slack, APPROVER, "approvers of this cluster's rule")
    # One DBA: one of two.
    click(rules, DBA_ONE, Action.APPROVE, request)
    wait_for_reply(slack, request, "(1 of 2 approvals)")
    # The same DBA again counts once, and is told so.
    click(rules, DBA_ONE, Action.APPROVE, request)
    ephemeral_to(slack, DBA_ONE, "already approved")
    halfway = rules.store.require(request.id)
    assert halfway.state == State.PENDING_APPROVAL
    assert halfway.approvals == [DBA_ONE]
    progress = slack.wait_for(
        "chat.update",
        lambda c: c["ts"] == request.message_ts and "1 of 2 approvals" in json.dumps(c["blocks"]),
    )
    assert f"<@{DBA_ONE}>" in json.dumps(progress["blocks"])
    assert dws.copy_calls == 0

    click(rules, DBA_TWO, Action.APPROVE, request)

    done = wait_state(rules, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    assert done.approved_by == f"{DBA_ONE},{DBA_TWO}", "everyone who approved, in order"
    kinds = [e["kind"] for e in rules.store.events(request.id)]
    assert kinds.count("approval") == 1 and kinds.count("approved") == 1
    refused = [e for e in rules.store.events(request.id) if e["kind"] == "refused"]
    assert [e["actor"] for e in refused] == [APPROVER]


def test_concurrent_final_approvals_start_exactly_one_copy(
    rules: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask(rules, slack, of_cluster(dws_snapshots, "dws-prod"), "prod-race", "INC-8")
    click(rules, DBA_ONE, Action.APPROVE, request)
    clickers = [DBA_TWO, DBA_THREE, ADMIN, DBA_TWO, DBA_THREE, ADMIN]
    threads = [
        threading.Thread(target=click, args=(rules, user, Action.APPROVE, request))
        for user in clickers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    done = wait_state(rules, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    assert len(done.approvals) == 2 and done.approvals[0] == DBA_ONE
    approved = [e for e in rules.store.events(request.id) if e["kind"] == "approved"]
    assert len(approved) == 1
    copy_jobs = [r for r in rules.store.work_rows(request.id) if r["kind"] == "copy"]
    assert len(copy_jobs) == 1


def test_the_request_message_pings_the_approvers_and_shows_what_they_decide_on(
    rules: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    source = of_cluster(dws_snapshots, "dws-prod")
    reason = "It's for INC-77: https://status.example.com/incidents/77 <!channel>"
    request = ask(rules, slack, source, "prod-shown", reason)

    root = root_message(slack, request)
    blocks = json.dumps(root["blocks"])
    assert root["text"].startswith(f"<!subteam^{PROD_DBAS}>"), "the approvers are pinged"
    assert "dws-prod" in blocks and source.name in blocks
    assert "180.4 GB" in blocks
    assert "2 approvals from <!subteam^S0PRODDBA>" in blocks
    expires = calendar.timegm(time.strptime(request.expires_at or "", "%Y-%m-%dT%H:%M:%S.%fZ"))
    assert f"<!date^{expires}^" in blocks, "the expiry in each reader's time zone"
    assert "It's for INC-77: https://status.example.com/incidents/77" in blocks
    assert "<!channel>" not in blocks, "user text pings nobody"
    stored = rules.store.require(request.id)
    assert stored.reason == reason and stored.cluster_name == "dws-prod"
    assert stored.rule == 1 and stored.approvals_needed == 2


def test_a_rule_that_needs_a_reason_refuses_a_request_without_one(
    rules: BotServer, dws_snapshots: list[Any]
) -> None:
    source = of_cluster(dws_snapshots, "dws-prod")
    answer = submit_modal(rules, REQUESTER, modal_values(source.id, "no-reason"))

    assert answer.json()["response_action"] == "errors"
    assert "reason" in answer.json()["errors"][Block.REASON]
    assert rules.requests() == []


def test_a_rule_without_approval_copies_with_no_click(
    rules: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = of_cluster(dws_snapshots, "dws-analytics")
    answer = submit_modal(rules, REQUESTER, modal_values(source.id, "analytics-keep"))
    assert answer.status_code == 200 and answer.text == ""
    request = request_named(rules, "analytics-keep")

    done = wait_state(rules, request, State.SUCCEEDED)

    assert dws.copy_calls == 1 and done.rule == 2
    assert [e["kind"] for e in rules.store.events(done.id)][:2] == ["requested", "approved"]


def test_the_reminder_pings_the_approvers_once(
    rules: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask(rules, slack, of_cluster(dws_snapshots, "dws-prod"), "prod-remind", "INC-9")

    reminder = wait_for_reply(slack, request, "still waits for approval")
    assert f"<!subteam^{PROD_DBAS}>" in reminder["text"]
    time.sleep(1.5)  # well past the reminder time, several sweeps later
    reminders = [c for c in thread_replies(slack, request) if "still waits" in c["text"]]
    assert len(reminders) == 1
    assert [e["kind"] for e in rules.store.events(request.id)].count("reminded") == 1


def test_every_outcome_reply_mentions_the_requester(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = next(s for s in dws_snapshots if s.is_automated)
    request = ask(server, slack, source, "told-every-time")
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED)
    for needle in ("was approved by", str(done.new_snapshot_id), "is AVAILABLE"):
        reply = wait_for_reply(slack, done, needle)
        assert f"<@{REQUESTER}>" in reply["text"], reply["text"]

    denied = ask(server, slack, source, "told-denied")
    click(server, APPROVER, Action.DENY, denied)
    modal = slack.wait_for("views.open", lambda c: c["view"]["callback_id"].endswith("deny_modal"))
    server.interact(
        slackreq.view_submission(
            APPROVER,
            modal["view"]["callback_id"],
            {Block.DENY_REASON: {Action.DENY_REASON: "not now"}},
            modal["view"]["private_metadata"],
        )
    )
    reply = wait_for_reply(slack, denied, "denied request")
    assert f"<@{REQUESTER}>" in reply["text"] and "not now" in reply["text"]


def test_a_permission_failure_says_what_to_do_and_retry_copies_once(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    source = next(s for s in dws_snapshots if s.is_automated)
    request = ask(server, slack, source, "retry-me")
    dws.inject(
        Fault(
            "status",
            method="POST",
            path="linked-copy",
            status=403,
            error_code="DWS.0015",
            error_msg="No permission",
        )
    )
    click(server, APPROVER, Action.APPROVE, request)
    failed = wait_state(server, request, State.FAILED)
    reply = wait_for_reply(slack, failed, "failed")
    assert f"<@{REQUESTER}>" in reply["text"]
    assert "an admin must grant it" in reply["text"]
    update = slack.wait_for(
        "chat.update",
        lambda c: c["ts"] == request.message_ts and Action.RETRY in json.dumps(c["blocks"]),
    )
    assert update

    # Somebody else may not retry; the requester may.
    click(server, APPROVER, Action.RETRY, failed)
    ephemeral_to(slack, APPROVER, "Only the requester or an admin")
    click(server, REQUESTER, Action.RETRY, failed)

    done = wait_state(server, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    assert [s.id for s in dws.snapshots if s.name == "retry-me"] == [done.new_snapshot_id]
    kinds = [e["kind"] for e in server.store.events(request.id)]
    assert kinds.count("copy_failed") == 1 and "retried" in kinds and "copy_resumed" in kinds
    wait_for_reply(slack, done, "trying request")


def test_a_request_made_in_a_thread_is_broadcast_to_the_channel(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    source = next(s for s in dws_snapshots if s.is_automated)
    thread = slackreq.new_message_ts()
    server.event(slackreq.app_mention(REQUESTER, f"copy {source.id} from-thread", thread_ts=thread))

    root = slack.wait_for("chat.postMessage", lambda c: "from-thread" in c["text"])

    assert root["thread_ts"] == thread
    assert root["reply_broadcast"] is True


@pytest.mark.parametrize(
    ("words", "needle"),
    [("status {id}", "from-mention"), ("list", "Your recent requests"), ("help", "/snapcopy")],
)
def test_mentions_answer_like_the_command_to_the_person_alone(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any], words: str, needle: str
) -> None:
    source = next(s for s in dws_snapshots if s.is_automated)
    request = ask(server, slack, source, "from-mention")
    thread = slackreq.new_message_ts()

    server.event(slackreq.app_mention(REQUESTER, words.format(id=request.id), thread_ts=thread))

    if words == "help":
        told = slack.wait_for("chat.postMessage", lambda c: c.get("thread_ts") == thread)
    else:
        told = slack.wait_for("chat.postEphemeral", lambda c: c.get("thread_ts") == thread)
        assert told["user"] == REQUESTER
    assert needle in told["text"]
