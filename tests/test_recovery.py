"""Crashes and restarts: the bot is killed with SIGKILL at each point of a copy, restarted on
the same database, and must end with exactly one copy and a truthful audit trail."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.domain import State
from bot.dws.standin import Fault
from bot.slack.ids import Action
from tests.flow import ask_for_copy, automated, click, wait_for_reply, wait_state
from tests.harness import APPROVER, REQUESTER
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.process

HANG = 60.0  # longer than any test: the stand-in holds the answer until the bot is gone


def until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def copies_named(dws: Any, name: str) -> list[Any]:
    return [s for s in dws.snapshots if s.name.lower() == name.lower()]


def kinds(server: Any, request_id: int) -> list[str]:
    return [event["kind"] for event in server.store.events(request_id)]


def test_killed_before_the_copy_call_copies_once_after_restart(
    start_process: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "kill-before")
    # The name check that comes right before linked-copy hangs: the bot dies inside it.
    dws.inject(Fault("delay", method="GET", path="snapshots", seconds=HANG))
    seen = len(dws.requests)
    click(server, APPROVER, Action.APPROVE, request)
    until(
        # The name check itself (the list of snapshots), not any other read DWS got meanwhile.
        lambda: any(
            r.method == "GET" and r.path.rstrip("/").endswith("/snapshots")
            for r in dws.requests[seen:]
        ),
        what="the hanging name check",
    )
    assert server.store.require(request.id).state == State.APPROVED
    server.kill()
    assert dws.copy_calls == 0

    restarted = start_process()
    done = wait_state(restarted, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1
    assert [s.id for s in copies_named(dws, "kill-before")] == [done.new_snapshot_id]
    assert "reconciled" in kinds(restarted, request.id)


def test_killed_after_the_call_but_before_the_database_write_adopts_the_copy(
    start_process: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "kill-after")
    # DWS stores the copy, then holds the answer: the bot dies before it learns the new id.
    dws.inject(Fault("delay", method="POST", path="linked-copy", seconds=HANG))
    click(server, APPROVER, Action.APPROVE, request)
    until(lambda: dws.copy_calls == 1, what="the copy to be stored")
    server.kill()
    assert server.store.require(request.id).new_snapshot_id is None

    restarted = start_process()
    done = wait_state(restarted, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1, "the copy was made again instead of being adopted"
    assert [s.id for s in copies_named(dws, "kill-after")] == [done.new_snapshot_id]
    resumed = [e for e in restarted.store.events(request.id) if e["kind"] == "copy_resumed"]
    assert resumed and resumed[0]["details"]["found"] is True
    wait_for_reply(slack, done, done.new_snapshot_id or "?")


def test_killed_while_following_status_resumes_following(
    start_process: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "kill-follow")
    dws.copy_delay = HANG  # the copy stays CREATING while the bot follows it
    click(server, APPROVER, Action.APPROVE, request)
    until(lambda: server.store.require(request.id).new_snapshot_id is not None, what="the copy")
    server.kill()
    dws.copy_delay = 0.0  # DWS finishes the copy while snapcopy is down

    restarted = start_process()
    done = wait_state(restarted, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1
    assert done.snapshot_status == "AVAILABLE"
    wait_for_reply(slack, done, "is AVAILABLE")


def test_pending_requests_survive_a_restart_and_their_buttons_keep_working(
    start_process: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "survivor")
    server.kill()
    restarted = start_process()
    click(restarted, APPROVER, Action.APPROVE, request)
    wait_state(restarted, request, State.SUCCEEDED)
    assert dws.copy_calls == 1


def test_a_request_whose_message_could_not_be_posted_is_posted_later(
    start_process: Any, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    from tests.flow import modal_values, request_named, submit_modal

    server = start_process()
    slack.fail_next("chat.postMessage", error="not_in_channel")
    answer = submit_modal(server, REQUESTER, modal_values(automated(dws_snapshots).id, "unposted"))
    assert answer.status_code == 200 and answer.text == ""
    told = slack.wait_for("chat.postMessage", lambda c: "/invite" in c["text"])
    assert told["channel"] == REQUESTER, "the requester hears it by DM"
    request = request_named(server, "unposted")
    until(lambda: "announce_failed" in kinds(server, request.id), what="announce_failed")
    assert server.store.require(request.id).message_ts is None
    server.kill()

    restarted = start_process()  # reconciling posts it
    until(lambda: restarted.store.require(request.id).message_ts is not None, what="the post")
    click(restarted, APPROVER, Action.APPROVE, restarted.store.require(request.id))
    wait_state(restarted, request, State.SUCCEEDED)
