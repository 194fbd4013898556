"""Races: clicks sent at the same moment over HTTP, re-delivered events, DWS and Slack faults.
Each must end with exactly one outcome."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bot.domain import State
from bot.dws.standin import Fault
from bot.slack.ids import Action
from tests import slackreq
from tests.flow import ask_for_copy, automated, click, wait_for_reply, wait_state
from tests.harness import ADMIN, APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

# The promises hold on both engines: each test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.engines


def at_once(actions: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the actions on their own threads, released together by a barrier."""
    barrier = threading.Barrier(len(actions))
    answers: list[httpx.Response | BaseException] = [RuntimeError("not run")] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = actions[index]()
        except BaseException as error:  # reported below, in the test's thread
            answers[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers  # type: ignore[return-value]


def test_many_concurrent_approvals_copy_exactly_once(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "stampede")
    clickers = [APPROVER, ADMIN] * 6
    answers = at_once(
        [lambda user=user: click(server, user, Action.APPROVE, request) for user in clickers]
    )
    assert all(answer.status_code == 200 for answer in answers)
    done = wait_state(server, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    approved = [e for e in server.store.events(request.id) if e["kind"] == "approved"]
    assert len(approved) == 1 and approved[0]["actor"] == done.approved_by
    # Everybody else is told it is handled already.
    deadline = time.monotonic() + 5
    while len(slack.calls("chat.postEphemeral")) < len(clickers) - 1:
        assert time.monotonic() < deadline, slack.calls("chat.postEphemeral")
        time.sleep(0.05)
    assert all("already" in c["text"] for c in slack.calls("chat.postEphemeral"))


def test_approve_and_deny_at_once_have_one_outcome(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    from bot.slack.ids import Block, Callback

    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "tug-of-war")
    deny = slackreq.view_submission(
        ADMIN,
        Callback.DENY_MODAL,
        {Block.DENY_REASON: {Action.DENY_REASON: "no"}},
        f'{{"request_id": {request.id}}}',
    )
    at_once(
        [
            lambda: click(server, APPROVER, Action.APPROVE, request),
            lambda: server.interact(deny),
        ]
    )
    deadline = time.monotonic() + 10
    while server.store.require(request.id).state == State.PENDING_APPROVAL:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    final = server.store.require(request.id).state
    kinds = [e["kind"] for e in server.store.events(request.id)]
    assert (kinds.count("approved"), kinds.count("denied")) in ((1, 0), (0, 1))
    if final == State.DENIED:
        time.sleep(0.5)
        assert dws.copy_calls == 0
    else:
        wait_state(server, request, State.SUCCEEDED)
        assert dws.copy_calls == 1


def test_a_redelivered_mention_makes_one_request(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    event = slackreq.app_mention(
        REQUESTER, f"copy {automated(dws_snapshots).id} echo-echo", thread_ts="1764000000.000100"
    )
    first = server.event(event, event_id="Ev0SAME")
    again = server.event(event, event_id="Ev0SAME", retry_num=1)
    assert first.status_code == again.status_code == 200
    slack.wait_for("chat.postMessage", lambda c: "echo-echo" in c["text"])
    time.sleep(0.5)
    assert len(server.requests()) == 1
    assert len([c for c in slack.calls("chat.postMessage") if "echo-echo" in c["text"]]) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", method="POST", path="linked-copy", status=503, error_code="DWS.0005"),
        Fault(
            "status",
            method="POST",
            path="linked-copy",
            status=429,
            error_code="APIG.0308",
            retry_after="1",
        ),
        Fault("status", method="POST", path="linked-copy", status=409, error_code="DWS.0011"),
        Fault("drop_after_store", method="POST", path="linked-copy"),
    ],
    ids=["503", "429-retry-after", "409-busy", "response-lost"],
)
def test_dws_faults_end_with_exactly_one_copy(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any], fault: Fault
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "faulty-copy")
    dws.inject(fault)
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1
    assert [s.id for s in dws.snapshots if s.name == "faulty-copy"] == [done.new_snapshot_id]
    wait_for_reply(slack, done, done.new_snapshot_id or "?")


def test_a_dws_call_that_hangs_past_the_timeout_ends_with_one_copy(
    start_server: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(env_overrides={"DWS_READ_TIMEOUT": "0.5"})
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "slow-copy")
    dws.inject(Fault("delay", method="POST", path="linked-copy", seconds=3))
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1
    assert [s.id for s in dws.snapshots if s.name == "slow-copy"] == [done.new_snapshot_id]


def test_rate_limited_slack_still_gets_the_request_posted(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=1)
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "slow-slack")
    assert request.state == State.PENDING_APPROVAL
    posts = [c for c in slack.calls("chat.postMessage") if "slow-slack" in c["text"]]
    assert len(posts) == 2, "one rate-limited attempt, then one that went through"


def test_slack_failing_during_the_copy_does_not_change_the_outcome(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "quiet-copy")
    slack.fail_next("chat.update", error="internal_error")
    slack.fail_next("chat.postMessage", error="internal_error")
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    # Nothing Slack refused for a moment is lost: the outbox retried until each went through.
    for needle in ("was approved by", str(done.new_snapshot_id), "is AVAILABLE"):
        wait_for_reply(slack, done, needle)
    slack.wait_for(
        "chat.update",
        lambda c: c["ts"] == request.message_ts and "Copied" in json.dumps(c["blocks"]),
    )
    retried = [row for row in server.store.work_rows(done.id) if row["attempts"] > 1]
    assert retried and all(row["last_error"] == "internal_error" for row in retried)


def test_an_expired_trigger_id_is_explained(server: BotServer, slack: SlackStandIn) -> None:
    slack.fail_next("views.open", error="expired_trigger_id")
    server.command(REQUESTER, "", response_url=slack.response_url("expired"))
    told = slack.wait_for("response_url", lambda c: "run the command again" in c["text"])
    assert told["response_type"] == "ephemeral"
