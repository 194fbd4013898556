"""Real DWS's odd days, end to end: copies frozen for arrears, lists with null fields, and IAM's
encoded explanation of a refusal. The stand-in answers with every field of the official SDK's
models (tests/dws/test_sdk_contract.py holds it to them)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain import State
from bot.dws.standin import Fault
from bot.slack.ids import Action
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    thread_replies,
    wait_for_reply,
    wait_state,
)
from tests.harness import APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn


@pytest.mark.parametrize(
    ("status", "who"),
    [("FROZEN", "billing"), ("POLICE_FROZEN", "Huawei Cloud support")],
)
def test_a_frozen_copy_is_told_at_once_and_its_thaw_reported(
    server: BotServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    status: str,
    who: str,
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "ice-age")
    dws.freeze_next_copy(thaw_after=1.5, status=status)
    click(server, APPROVER, Action.APPROVE, request)

    frozen = wait_for_reply(slack, request, f"is {status}")
    assert who in frozen["text"] and f"<@{REQUESTER}>" in frozen["text"]
    assert server.store.require(request.id).state == State.COPYING
    done = wait_state(server, request, State.SUCCEEDED, timeout=15)

    assert done.snapshot_status == "AVAILABLE"
    wait_for_reply(slack, done, "is AVAILABLE")
    told = [c for c in thread_replies(slack, done) if f"is {status}" in c["text"]]
    assert len(told) == 1, "once, not at every poll"


def test_a_lost_copy_answer_is_adopted_past_a_snapshot_with_null_fields(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    # One odd item in the list used to make every name lookup fail, and with it the adoption.
    dws.add_snapshot("odd-one", nulls=("name", "type", "size", "description", "started"))
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "past-odd")
    dws.inject(Fault("drop_after_store", method="POST", path="linked-copy"))
    click(server, APPROVER, Action.APPROVE, request)

    done = wait_state(server, request, State.SUCCEEDED)

    assert dws.copy_calls == 1
    assert [s.id for s in dws.snapshots if s.name == "past-odd"] == [done.new_snapshot_id]


def test_iams_encoded_message_reaches_the_audit_log_and_not_slack(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    encoded = "vH3pQmFyZS1lbmNvZGVkLWF1dGgtbWVzc2FnZQ"
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "no-rights")
    dws.inject(
        Fault(
            "status",
            method="POST",
            path="linked-copy",
            status=403,
            error_code="DWS.0015",
            error_msg="Policy doesn't allow dws:snapshot:copy to be performed.",
            body_extra={"encoded_authorization_message": encoded},
        )
    )
    click(server, APPROVER, Action.APPROVE, request)

    failed = wait_state(server, request, State.FAILED)
    wait_for_reply(slack, failed, "an admin must grant it")

    event = next(e for e in server.store.events(failed.id) if e["kind"] == "copy_failed")
    assert event["details"]["encoded_authorization_message"] == encoded
    slack.wait_for(
        "chat.update", lambda c: c["ts"] == request.message_ts and "Failed" in str(c["blocks"])
    )
    assert all(encoded not in str(call.params) for call in slack.calls())
