"""Words people read (issue 25, part 6): each says who did what, and no more than it must.

Regressions: "✅ @alice, @bob approved request #1" did not say who asked and who approved; a
requester clicking Approve was told to seek the approver role; "is being copied by @bob" named
the approver as the copier; both snapshot fields of the form said "optional"; the Reason field
never said it was required; `status` showed raw ISO times; `@snapcopy copy` had no way to give a
reason; "DWS is busy" replies carried DWS's whole error with its request id.
"""

from __future__ import annotations

import time
from typing import Any

from bot.domain import State
from bot.dws.standin import Fault
from bot.slack import replies, views
from bot.slack.ids import Action, Block
from tests import slackreq
from tests.conftest import StartServer
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    ephemeral_to,
    request_named,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, POLICY_TOML, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

PROD_NEEDS_A_REASON = POLICY_TOML + '\n[[rules]]\nclusters = ["dws-prod"]\nrequire_reason = true\n'


def test_the_approved_reply_says_who_asked_and_who_approved(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "who-is-who")
    click(server, APPROVER, Action.APPROVE, request)

    reply = wait_for_reply(slack, request, "was approved by")

    assert reply["text"].startswith(
        f":white_check_mark: <@{REQUESTER}>, your request #{request.id} was approved by "
        f"<@{APPROVER}>. Copying"
    )


def test_a_requester_approving_their_own_request_is_told_someone_else_must(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "mine")

    click(server, REQUESTER, Action.APPROVE, request)

    told = ephemeral_to(slack, REQUESTER, "yourself")
    assert "someone else must approve it" in told["text"]
    assert "role" not in told["text"], "no role would let them: somebody else must approve"
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert dws.copy_calls == 0


def test_a_late_click_says_who_approved_not_who_copies(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "late")
    dws.copy_delay = 5.0
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.COPYING)

    click(server, ADMIN, Action.APPROVE, request)

    told = ephemeral_to(slack, ADMIN, "already")
    assert told["text"] == (
        f"Request #{request.id} was already approved by <@{APPROVER}> and is being copied; "
        "nothing more to do."
    )


# --- the form ------------------------------------------------------------------------------------


def test_the_snapshot_is_one_of_two_fields_not_two_optional_ones() -> None:
    modal = views.copy_modal(channel_id="C1", thread_ts=None)
    picker, typed = modal["blocks"][0], modal["blocks"][1]

    assert picker["type"] == "section" and "optional" not in picker
    assert picker["block_id"] == Block.PICK_SNAPSHOT
    assert picker["accessory"]["action_id"] == Action.PICK_SNAPSHOT
    assert "one of these two" in picker["text"]["text"]
    assert typed["block_id"] == Block.SNAPSHOT_ID and "One of the two" in typed["hint"]["text"]


def reason_block(view: dict[str, Any]) -> dict[str, Any]:
    return next(block for block in view["blocks"] if block.get("block_id") == Block.REASON)


def test_the_reason_is_required_in_the_form_where_every_cluster_needs_one(
    start_server: StartServer, slack: SlackStandIn, dws: Any
) -> None:
    server = start_server(policy=POLICY_TOML + "require_reason = true\n")
    server.command(REQUESTER, "")

    opened = slack.wait_for("views.open")["view"]

    assert reason_block(opened)["optional"] is False


def test_the_reason_is_marked_required_once_a_snapshot_of_such_a_cluster_is_picked(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=PROD_NEEDS_A_REASON)
    server.command(REQUESTER, "")
    opened = slack.wait_for("views.open")["view"]
    reason = reason_block(opened)
    assert reason["optional"] is True
    assert "known once the snapshot is picked" in reason["hint"]["text"]

    updates = {}
    for cluster in ("dws-prod", "dws-analytics"):
        snapshot = next(s for s in dws_snapshots if s.is_automated and s.cluster_name == cluster)
        option = {"text": {"type": "plain_text", "text": snapshot.name}, "value": snapshot.id}
        before = len(slack.calls("views.update"))
        view = opened | {"id": "V0FORM", "hash": "1.2"}
        server.interact(
            slackreq.block_actions(
                REQUESTER,
                Action.PICK_SNAPSHOT,
                block_id=Block.PICK_SNAPSHOT,
                view=view,
                action_type="external_select",
                selected_option=option,
            )
        )
        deadline = time.monotonic() + 5
        while len(slack.calls("views.update")) <= before:
            assert time.monotonic() < deadline, "the form was not shown again"
            time.sleep(0.02)
        updates[cluster] = slack.calls("views.update")[before]

    prod = updates["dws-prod"]
    assert prod["view_id"] == "V0FORM"
    assert reason_block(prod["view"])["optional"] is False
    assert "Required for this snapshot's cluster" in reason_block(prod["view"])["hint"]["text"]
    assert prod["view"]["blocks"][0]["accessory"]["initial_option"]["value"]
    assert reason_block(updates["dws-analytics"]["view"])["optional"] is True


# --- status, threads, DWS trouble ----------------------------------------------------------------


def test_status_shows_times_in_each_readers_time_zone(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "when")
    server.command(REQUESTER, f"status {request.id}", response_url=slack.response_url("s"))

    told = slack.wait_for("response_url")["text"]

    assert f"Requested by <@{REQUESTER}> <!date^" in told
    assert request.created_at not in told


def test_a_copy_asked_for_in_a_thread_can_give_a_reason(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=PROD_NEEDS_A_REASON)
    source = next(s for s in dws_snapshots if s.is_automated and s.cluster_name == "dws-prod")
    thread = slackreq.new_message_ts()

    server.event(
        slackreq.app_mention(REQUESTER, f"copy {source.id} no-reason keep", thread_ts=thread)
    )
    slack.wait_for("chat.postMessage", lambda c: "need a reason" in c["text"])
    server.event(
        slackreq.app_mention(
            REQUESTER,
            f"copy {source.id} with-reason keep it Reason: INC-1234 db down",
            thread_ts=thread,
        )
    )

    request = request_named(server, "with-reason")
    assert (request.description, request.reason) == ("keep it", "INC-1234 db down")


def test_dws_busy_is_one_short_sentence_and_its_request_id_stays_in_the_audit_log(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "busy")
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

    busy = wait_for_reply(slack, done, "DWS is busy")["text"]

    assert busy == (
        ":hourglass_flowing_sand: DWS is busy; I will try again in 1 s (nothing to do meanwhile)."
    )
    [event] = [e for e in server.store.events(done.id) if e["kind"] == "dws_retrying"]
    assert event["details"]["dws_request_id"] and event["details"]["dws_request_id"] not in busy


def test_the_busy_reply_is_one_sentence_whatever_the_wait() -> None:
    for seconds in (1, 90, 600):
        text = replies.dws_retrying_reply(next_in=seconds)
        assert text.count(".") == 1 and text.endswith(".")
