"""Production's bad days for the work the bot owes, in one process: DWS throttling and outages,
answers lost, Slack rate limits, archived channels. The work lives in the database; these
prove that transient trouble never fails, loses or duplicates a copy, and that people are told.

(Crashes, deploys and several processes are in tests/test_processes.py.)
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.domain import CopyRequest, State
from bot.dws.standin import Fault
from bot.slack.ids import Action
from bot.slack.views import button_value
from tests.conftest import StartServer, fill_volume, hold_write_lock
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    ephemeral_to,
    modal_values,
    submit_modal,
    thread_replies,
    wait_for_reply,
    wait_state,
)
from tests.harness import APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn


def kinds(server: BotServer, request_id: int) -> list[str]:
    return [event["kind"] for event in server.store.events(request_id)]


def copies_named(dws: Any, name: str) -> list[Any]:
    return [s for s in dws.snapshots if s.name.lower() == name.lower()]


@pytest.mark.engines
def test_a_throttled_copy_waits_for_retry_after_and_succeeds(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "throttled")
    dws.inject(
        Fault(
            "status",
            method="POST",
            path="linked-copy",
            status=429,
            error_code="APIG.0308",
            error_msg="Too many requests",
            retry_after="1",
        )
    )
    click(server, APPROVER, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)
    assert dws.copy_calls == 1
    assert [s.id for s in copies_named(dws, "throttled")] == [done.new_snapshot_id]
    posts = [r for r in dws.requests if r.method == "POST"]
    assert len(posts) == 2, "the throttled call, then the one after Retry-After"
    wait_for_reply(slack, done, "DWS is busy; I will try again")


@pytest.mark.engines
def test_a_dws_outage_while_following_ends_in_success_and_is_told_once(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "outage-follow")
    dws.copy_delay = 13.0  # still CREATING when the outage ends
    click(server, APPROVER, Action.APPROVE, request)
    copying = server.wait_for_request(request.id, State.COPYING)
    deadline = time.monotonic() + 5
    while not server.store.require(request.id).new_snapshot_id:
        assert time.monotonic() < deadline, "the copy was never made"
        time.sleep(0.02)
    outage = dws.outage(12.0, method="GET", status=503, error_code="DWS.0005")

    done = wait_state(server, copying, State.SUCCEEDED, timeout=30)

    assert outage.until is not None and time.monotonic() >= outage.until
    assert dws.copy_calls == 1
    assert done.snapshot_status == "AVAILABLE"
    busy = [c for c in thread_replies(slack, done) if "DWS is busy" in c["text"]]
    assert len(busy) == 1, "one notice per problem, not one per attempt"
    failed_reads = [e for e in server.store.events(done.id) if e["kind"] == "dws_retrying"]
    assert len(failed_reads) == 1
    wait_for_reply(slack, done, "is AVAILABLE")


@pytest.mark.engines
def test_a_lost_copy_answer_is_adopted_once_the_lookup_answers_again(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "lost-answer")
    dws.inject(Fault("drop_after_store", method="POST", path="linked-copy"))
    seen = len(dws.requests)
    click(server, APPROVER, Action.APPROVE, request)
    # The copy is made and its answer lost; then DWS's list fails for a while.
    deadline = time.monotonic() + 5
    while not any(r.method == "POST" for r in dws.requests[seen:]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    dws.outage(3.0, method="GET", path="snapshots", status=503)

    done = wait_state(server, request, State.SUCCEEDED, timeout=20)

    assert dws.copy_calls == 1, "never copied again"
    assert [s.id for s in copies_named(dws, "lost-answer")] == [done.new_snapshot_id]
    resumed = [e for e in server.store.events(done.id) if e["kind"] == "copy_resumed"]
    assert resumed[-1]["details"] == {"found": True, "snapshot_id": done.new_snapshot_id}


@pytest.mark.engines
def test_slack_rate_limited_for_seconds_delays_no_copy_and_loses_no_reply(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "ratelimited")
    slack.rate_limit_for(8.0)
    approved_at = time.monotonic()
    click(server, APPROVER, Action.APPROVE, request)

    deadline = approved_at + 1.0
    while dws.copy_calls == 0:
        assert time.monotonic() < deadline, "the copy waited for Slack"
        time.sleep(0.01)

    done = wait_state(server, request, State.SUCCEEDED, timeout=20)
    for needle in ("was approved by", str(done.new_snapshot_id), "is AVAILABLE"):
        reply = wait_for_reply(slack, done, needle, timeout=20)
        assert reply.get("channel") == request.channel_id
    limited = [c for c in slack.calls("chat.postMessage") if c.get("thread_ts")]
    assert len([c for c in limited if "was approved by" in c["text"]]) >= 1
    # Honouring Retry-After: a handful of refused calls, not a storm of them.
    refused = [c for c in slack.calls() if c.method in ("chat.postMessage", "chat.update")]
    assert len(refused) < 20, f"{len(refused)} calls while rate limited"


def test_an_archived_channel_sends_the_new_snapshot_id_to_the_requester_by_dm(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "archived")
    assert request.channel_id is not None
    slack.archived.add(request.channel_id)
    click(server, APPROVER, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)

    dm = slack.wait_for(
        "chat.postMessage",
        lambda c: c["channel"] == REQUESTER and str(done.new_snapshot_id) in c["text"],
    )
    assert "could not post" in dm["text"]
    assert "slack_failed" in kinds(server, done.id)


@pytest.mark.engines
def test_without_approval_an_unpostable_channel_still_copies(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    from tests.flow import modal_values, request_named, submit_modal
    from tests.harness import POLICY_TOML

    server = start_server(policy=POLICY_TOML.replace("required = true", "required = false"))
    slack.archived.add("C0GONE")
    answer = submit_modal(
        server,
        REQUESTER,
        modal_values(automated(dws_snapshots).id, "no-channel"),
        channel_id="C0GONE",
    )
    assert answer.status_code == 200 and answer.text == ""
    request = request_named(server, "no-channel")

    done = wait_state(server, request, State.SUCCEEDED)

    assert done.message_ts is None
    assert dws.copy_calls == 1
    slack.wait_for(
        "chat.postMessage",
        lambda c: c["channel"] == REQUESTER and str(done.new_snapshot_id) in c["text"],
    )
    announce_tries = [c for c in slack.calls("chat.postMessage") if c["channel"] == "C0GONE"]
    assert len(announce_tries) == 1, "a permanent refusal is not retried in a loop"


@pytest.mark.engines
def test_a_request_decided_before_its_message_could_be_posted_is_shown_decided(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    from tests import slackreq
    from tests.flow import modal_values, request_named, submit_modal

    server = start_server()
    slack.fail_next("chat.postMessage", error="not_in_channel")
    submit_modal(server, REQUESTER, modal_values(automated(dws_snapshots).id, "late-post"))
    request = request_named(server, "late-post")
    # The channel refused it: the approver gets the request, with its buttons, by DM ...
    dm = slack.wait_for(
        "chat.postMessage", lambda c: c["channel"] == APPROVER and "blocks" in c.params
    )
    assert Action.APPROVE in str(dm["blocks"])
    # ... and approves there.
    answer = server.interact(
        slackreq.block_actions(
            APPROVER,
            Action.APPROVE,
            button_value(request),
            block_id=f"decision_{request.id}",
            channel="D0APPROVER",
        )
    )
    assert answer.status_code == 200
    done = wait_state(server, request, State.SUCCEEDED)
    assert done.message_ts is None
    slack.wait_for(
        "chat.postMessage",
        lambda c: c["channel"] == REQUESTER and str(done.new_snapshot_id) in c["text"],
    )

    # Once the bot is in the channel (here: at the next start), the request is shown there as
    # it is now: copied, with no buttons left to click.
    server.stop()
    restarted = start_server()
    posted = slack.wait_for(
        "chat.postMessage",
        lambda c: (
            c["channel"] == request.channel_id
            and "(request #" in c["text"]
            and "AVAILABLE" in c["text"]
        ),
    )
    assert Action.APPROVE not in str(posted["blocks"])
    deadline = time.monotonic() + 5
    while restarted.store.require(request.id).message_ts is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_message_slack_keeps_refusing_is_given_up_with_an_audit_event(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(env_overrides={"SNAPCOPY_SLACK_GIVE_UP_HOURS": "0.0003"})  # ~1 s
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "given-up")
    slack.fail_next("chat.postMessage", error="internal_error", times=1000)
    slack.fail_next("chat.update", error="internal_error", times=1000)
    click(server, APPROVER, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)  # the copy never waited for Slack
    deadline = time.monotonic() + 15
    while server.store.open_work(done.id):
        assert time.monotonic() < deadline, server.store.open_work(done.id)
        time.sleep(0.05)

    gave_up = [e for e in server.store.events(done.id) if e["kind"] == "slack_gave_up"]
    assert gave_up and all(e["details"]["error"] == "internal_error" for e in gave_up)
    assert dws.copy_calls == 1


@pytest.mark.engines
def test_following_that_ran_out_of_time_is_resumed_by_a_status_check(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(env_overrides={"SNAPCOPY_FOLLOW_MINUTES": "0.005"})  # 0.3 s
    dws.copy_delay = 3600.0  # still CREATING when following gives up
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "slow-one")
    click(server, APPROVER, Action.APPROVE, request)
    stopped = wait_for_reply(slack, request, "I stopped following")
    assert f"/snapcopy status {request.id}" in stopped["text"]
    assert server.store.require(request.id).state == State.COPYING

    dws.copy_delay = 0.0  # DWS finishes it meanwhile
    server.command(REQUESTER, f"status {request.id}", response_url=slack.response_url("s"))

    done = wait_state(server, request, State.SUCCEEDED)
    assert "reconciled" in kinds(server, done.id)
    assert dws.copy_calls == 1, "resumed by following, never copied again"


# --- a database that cannot take the change: the answer says so ---------------------------------
#
# Regressions: with the disk full, approvals and modal submissions got an empty 200 (Slack closed
# the modal; the input was lost) though nothing was stored, and /healthz said ok; with another
# writer holding the database for 10 s, no acknowledgement came within 3 s and /healthz took
# 10 s.


def _submitted(server: BotServer, source: str, name: str) -> bool:
    """Submit the copy modal; True if it was stored, after checking the answer says which."""
    answer = submit_modal(server, REQUESTER, modal_values(source, name))  # within 2.5 s
    assert answer.status_code == 200
    stored = any(request.backup_name == name for request in server.requests())
    if answer.text == "":
        assert stored, "an empty 200 closes the modal: it must have been saved"
        return True
    refusal = answer.json()
    assert refusal["response_action"] == "errors", refusal
    assert "could not be saved" in json.dumps(refusal)
    assert not stored, "refused, yet stored"
    return False


def _clicked(server: BotServer, slack: SlackStandIn, request: CopyRequest) -> bool:
    """Approve; True if it counted, after checking the approver was told which."""
    click(server, APPROVER, Action.APPROVE, request)  # within 2.5 s
    if server.store.require(request.id).state != State.PENDING_APPROVAL:
        return True
    ephemeral_to(slack, APPROVER, "did not count")
    return False


def _health_within(server: BotServer, status: int, seconds: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        answer = server.get("/healthz")
        assert time.monotonic() - started < 2.5, "/healthz waited"
        if answer.status_code == status:
            body: dict[str, Any] = answer.json()
            return body
        assert time.monotonic() < deadline, f"/healthz stayed {answer.status_code}: {answer.text}"
        time.sleep(0.1)


def test_a_full_disk_is_refused_in_the_answer_and_health_says_so_until_space_is_freed(
    start_http_server: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    small_volume: Path,
) -> None:
    server = start_http_server(env_overrides={"SNAPCOPY_DB": str(small_volume / "snapcopy.db")})
    source = automated(dws_snapshots).id
    waiting = [ask_for_copy(server, slack, REQUESTER, source, f"before-{n}") for n in range(3)]
    filler = fill_volume(small_volume)

    assert _health_within(server, 503)["database_problem"] == "full"
    outcomes = [_submitted(server, source, f"while-full-{n}") for n in range(3)]
    for number in range(3, 40):  # SQLite may find room in its journal for a few more
        if outcomes.count(False) >= 3:
            break
        outcomes.append(_submitted(server, source, f"while-full-{number}"))
    assert outcomes.count(False) >= 3, "a full disk never refused a submission"
    clicks = [_clicked(server, slack, request) for request in waiting[:2]]

    filler.unlink()
    _health_within(server, 200)
    assert _submitted(server, source, "after-full")
    assert _clicked(server, slack, waiting[2])
    for request in [r for r, counted in zip(waiting, clicks, strict=False) if not counted]:
        assert _clicked(server, slack, request)
    for request in waiting:
        wait_state(server, request, State.SUCCEEDED, timeout=20)


def test_a_database_held_by_another_writer_is_refused_within_seconds_then_works(
    start_http_server: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
) -> None:
    server = start_http_server()
    source = automated(dws_snapshots).id
    waiting = [ask_for_copy(server, slack, REQUESTER, source, f"held-{n}") for n in range(4)]
    hold_write_lock(server.db_path, seconds=8)
    released_at = time.monotonic() + 8

    with ThreadPoolExecutor(8) as pool:  # at once, as Slack sends them
        clicks = list(pool.map(lambda r: _clicked(server, slack, r), waiting))
        submitted = list(pool.map(lambda n: _submitted(server, source, f"during-{n}"), range(4)))
    assert clicks == [False] * 4 and submitted == [False] * 4
    assert _health_within(server, 503, seconds=2)["database_problem"] == "locked"

    time.sleep(max(0.0, released_at - time.monotonic()))
    _health_within(server, 200)
    for request in waiting:
        assert _clicked(server, slack, request)
        wait_state(server, request, State.SUCCEEDED, timeout=20)
    assert not [r for r in server.requests() if r.backup_name.startswith("during-")]
