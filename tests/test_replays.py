"""Replays of signed requests (bot/replays.py), over HTTP: within Slack's five-minute window a
request sent again, byte for byte with its signature, gets the first one's answer and does
nothing again, in this process or another one on the same database.

Regressions: an Approve click replayed 50 times gave the approver 49 ephemeral messages; a modal
submission replayed after its request was cancelled created a new pending request.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bot.domain import CopyRequest, State
from bot.replays import guarded
from bot.slack.ids import Action, Block, Callback, button_value
from tests import slackreq
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, modal_values, request_named, wait_state
from tests.harness import APPROVER, REQUESTER, SIGNING_SECRET, BotServer
from tests.slack_standin import SlackStandIn
from tests.slackreq import SlackRequest


def signed_once(request: SlackRequest) -> dict[str, str]:
    """The request's headers, signed now: sending them again is a replay."""
    return request.signed_headers(SIGNING_SECRET)


def send_as_is(server: BotServer, request: SlackRequest, headers: dict[str, str]) -> httpx.Response:
    return server.http.post("/slack/events", content=request.body, headers=headers)


def replay(
    server: BotServer, request: SlackRequest, headers: dict[str, str], times: int
) -> list[httpx.Response]:
    with ThreadPoolExecutor(10) as pool:
        return list(pool.map(lambda _: send_as_is(server, request, headers), range(times)))


def approve_click(request: CopyRequest, user: str) -> SlackRequest:
    """Approve, clicked on the request's own message."""
    message = slackreq.channel_message("request", ts=request.message_ts)
    return slackreq.block_actions(
        user,
        Action.APPROVE,
        button_value(request),
        block_id=Block.DECISION,
        message=message,
        channel=request.channel_id,
    )


def test_fifty_replays_of_a_refused_click_give_one_ephemeral(
    http_server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(http_server, slack, REQUESTER, automated(dws_snapshots).id, "mine")
    click = approve_click(request, REQUESTER)  # their own: refused, with an ephemeral
    headers = signed_once(click)

    answers = [send_as_is(http_server, click, headers), *replay(http_server, click, headers, 50)]

    assert {(a.status_code, a.text) for a in answers} == {(answers[0].status_code, answers[0].text)}
    time.sleep(1.0)  # what the replays would have sent, had they run
    told = [c for c in slack.calls("chat.postEphemeral") if c["user"] == REQUESTER]
    assert len(told) == 1 and "someone else must approve" in told[0]["text"]
    assert http_server.store.require(request.id).state == State.PENDING_APPROVAL


def test_fifty_replays_of_an_approval_approve_once_and_tell_nobody_again(
    http_server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(http_server, slack, REQUESTER, automated(dws_snapshots).id, "once")
    click = approve_click(request, APPROVER)
    headers = signed_once(click)

    answers = [send_as_is(http_server, click, headers), *replay(http_server, click, headers, 50)]

    assert all(a.status_code == 200 for a in answers)
    wait_state(http_server, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    approvals = [e for e in http_server.store.events(request.id) if e["kind"] == "approved"]
    assert len(approvals) == 1
    time.sleep(0.5)
    assert not [c for c in slack.calls("chat.postEphemeral") if c["user"] == APPROVER]


def test_a_submission_replayed_after_its_request_was_cancelled_creates_nothing(
    http_server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    submission = slackreq.view_submission(
        REQUESTER,
        Callback.COPY_MODAL,
        modal_values(automated(dws_snapshots).id, "cancel-me"),
        json.dumps({"channel_id": slackreq.DEFAULT_CHANNEL, "thread_ts": None}),
    )
    headers = signed_once(submission)
    first = send_as_is(http_server, submission, headers)
    assert (first.status_code, first.text) == (200, "")
    request = request_named(http_server, "cancel-me")
    http_server.command(REQUESTER, f"cancel {request.id}")
    wait_state(http_server, request, State.CANCELLED)

    again = send_as_is(http_server, submission, headers)

    assert (again.status_code, again.text) == (200, "")
    assert [r.backup_name for r in http_server.requests()] == ["cancel-me"]
    assert http_server.store.require(request.id).state == State.CANCELLED


def test_a_replay_sent_to_another_process_gets_the_first_answer_there(
    start_http_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    first, second = start_http_server(), start_http_server()  # one database
    request = ask_for_copy(first, slack, REQUESTER, automated(dws_snapshots).id, "elsewhere")
    click = approve_click(request, REQUESTER)
    headers = signed_once(click)

    answers = [send_as_is(first, click, headers), send_as_is(second, click, headers)]

    assert answers[0].text == answers[1].text and answers[1].status_code == 200
    time.sleep(1.0)
    assert len([c for c in slack.calls("chat.postEphemeral") if c["user"] == REQUESTER]) == 1


def test_requests_signed_anew_are_not_replays(
    http_server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(http_server, slack, REQUESTER, automated(dws_snapshots).id, "twice")
    click = approve_click(request, REQUESTER)
    for _ in range(2):  # the same click made twice: two requests, two answers
        assert http_server.send(click).status_code == 200
        time.sleep(1.1)  # a new timestamp, so a new signature
    deadline = time.monotonic() + 5
    while len([c for c in slack.calls("chat.postEphemeral") if c["user"] == REQUESTER]) < 2:
        assert time.monotonic() < deadline, "the second click was taken for a replay"
        time.sleep(0.05)


def test_only_reads_and_events_go_unguarded() -> None:
    """Which requests the replay guard records: everything that acts, including a click whose
    words happen to name a read, and neither a suggestion nor an Events API delivery."""
    click = slackreq.block_actions(APPROVER, Action.APPROVE, "1", block_id=Block.DECISION)
    naming_a_read = slackreq.block_actions(
        APPROVER, Action.APPROVE, "block_suggestion", block_id=Block.DECISION
    )
    suggestion = slackreq.block_suggestion(REQUESTER, Action.PICK_SNAPSHOT, "dws-prod")
    mention = slackreq.app_mention(REQUESTER, "copy block_suggestion")
    command = slackreq.slash_command(REQUESTER, "block_suggestion")

    assert guarded(click.content_type, click.body)
    assert guarded(naming_a_read.content_type, naming_a_read.body)
    assert guarded(command.content_type, command.body)
    assert not guarded(suggestion.content_type, suggestion.body)
    event = json.dumps(mention).encode()
    assert not guarded(slackreq.JSON, event)
