"""Bad input and outages found by trying the bot: each gets a plain answer, never a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.domain import State
from bot.slack.ids import Action, Block, Callback
from tests import slackreq
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    ephemeral_to,
    modal_values,
    submit_modal,
    timed,
)
from tests.harness import (
    ADMIN,
    APPROVER,
    ONCALL_GROUP,
    ONCALL_MEMBER,
    OUTSIDER,
    REQUESTER,
    BotServer,
)
from tests.slack_standin import SlackStandIn


def no_tracebacks(server: BotServer) -> None:
    errors = [r for r in server.log_records() if r["level"] == "ERROR" or "exception" in r]
    assert errors == [], errors


@pytest.mark.parametrize("viewer", [REQUESTER, APPROVER, ADMIN])
def test_status_shows_a_request_to_its_people(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any], viewer: str
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "mine-to-see")

    server.command(viewer, f"status {request.id}", response_url=slack.response_url(viewer))

    told = slack.wait_for("response_url", lambda c: "mine-to-see" in c["text"])
    assert "Waiting for approval" in told["text"]


def test_status_tells_anybody_else_plainly(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "not-theirs")

    server.command(OUTSIDER, f"status {request.id}", response_url=slack.response_url("o"))

    told = slack.wait_for("response_url", lambda c: "not yours to see" in c["text"])
    assert "not-theirs" not in told["text"]


@pytest.mark.parametrize("argument", ["²", "٣", "-1", "1e3", "99999999999999999999999", "0"])
def test_status_of_something_that_is_no_request_id_is_a_usage_answer(
    server: BotServer, slack: SlackStandIn, argument: str
) -> None:
    server.command(REQUESTER, f"status {argument}", response_url=slack.response_url("u"))

    told = slack.wait_for("response_url")
    assert "Usage: `/snapcopy status <request id>`" in told["text"]
    no_tracebacks(server)


@pytest.mark.parametrize("value", ["1e23", "100000000000000000000000", "-4", "²"])
def test_a_button_naming_no_request_of_ours_is_answered_plainly(
    server: BotServer, slack: SlackStandIn, value: str
) -> None:
    timed(server.interact, slackreq.block_actions(APPROVER, Action.APPROVE, value))

    ephemeral_to(slack, APPROVER, "does not name a request")
    no_tracebacks(server)


def test_a_forged_deny_modal_with_a_huge_id_is_answered_plainly(server: BotServer) -> None:
    metadata = json.dumps({"request_id": 10**30})
    answer = timed(
        server.interact,
        slackreq.view_submission(APPROVER, Callback.DENY_MODAL, {}, metadata),
    )

    assert answer.json()["response_action"] == "errors"
    no_tracebacks(server)


def test_a_forged_25_kb_deny_reason_is_refused_not_stored(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "long-reason")
    metadata = json.dumps({"request_id": request.id, "token": request.token})
    values = {Block.DENY_REASON: {Action.DENY_REASON: "x" * 25_000}}

    answer = timed(
        server.interact,
        slackreq.view_submission(APPROVER, Callback.DENY_MODAL, values, metadata),
    )

    assert "under 500 characters" in answer.json()["errors"][Block.DENY_REASON]
    stored = server.store.require(request.id)
    assert stored.state == State.PENDING_APPROVAL and stored.deny_reason is None


def test_a_group_lookup_slack_throttles_stays_inside_the_acknowledgement(
    start_server: Any, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    # Throttled from the start: the group was never looked up, so nothing is known about it.
    slack.fail_next("usergroups.users.list", error="ratelimited", retry_after=30, times=50)
    server = start_server()

    answer = submit_modal(  # timed: fails past Slack's budget
        server, ONCALL_MEMBER, modal_values(automated(dws_snapshots).id, "group-outage")
    )

    errors = answer.json()["errors"]
    assert any("could not ask Slack" in text for text in errors.values()), errors
    assert f"<!subteam^{ONCALL_GROUP}>" in json.dumps(errors)
    assert "requester role" not in json.dumps(errors), "the person's role is not the problem"
    # Asked once, then not again at every click while Slack is down.
    submit_modal(server, ONCALL_MEMBER, modal_values(automated(dws_snapshots).id, "again"))
    assert len(slack.calls("usergroups.users.list")) == 1


def test_a_group_approver_refused_during_an_outage_is_told_why(
    start_server: Any, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    from tests.harness import POLICY_TOML

    # Throttled since start-up: the group was never looked up (a membership once looked up
    # would still answer, see tests/test_group_roles.py).
    slack.usergroups["S0DBAS"] = ["U0DBA"]
    slack.fail_next("usergroups.users.list", error="ratelimited", retry_after=30, times=50)
    server = start_server(
        policy=POLICY_TOML.replace('approver = ["U0APPROVE"]', 'approver = ["S0DBAS"]')
    )
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "dba-outage")

    click(server, "U0DBA", Action.APPROVE, request)

    told = ephemeral_to(slack, "U0DBA", "could not ask Slack")
    assert "approver role" not in told["text"]
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
