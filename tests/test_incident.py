"""Approving in an incident, end to end: the card shows what is at stake (read from the DWS
stand-in, "unknown" when it is slow), a copy on a busy cluster waits, requests nobody answers
are escalated, and break-glass copies at once and is reviewed afterwards, once.

Policy times are shrunk to seconds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bot.domain import CopyRequest, State
from bot.dws.standin import DwsStandIn, Fault
from bot.slack.ids import Action, Block, Callback
from tests.conftest import StartServer
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    ephemeral_to,
    modal_values,
    request_named,
    submit_modal,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, REQUESTER
from tests.slack_standin import SlackStandIn

LEAD, COMMANDER, SECURITY = "U0LEAD", "U0COMMANDER", "C0SECURITY"


def policy(extra: str = "") -> str:
    return f"""\
[roles]
requester = ["{REQUESTER}", "{COMMANDER}"]
approver = ["{APPROVER}"]
admin = ["{ADMIN}"]

[approval]
expires_after_minutes = 240
{extra}
"""


def card_text(slack: SlackStandIn, request: CopyRequest, needle: str) -> str:
    """The request message, once some version of it (post or update) contains `needle`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for call in slack.calls():
            if call.method in ("chat.update", "chat.postMessage") and (
                f"(request {request.label})" in call.get("text", "")
            ):
                blocks = json.dumps(call.get("blocks") or [])
                if needle in blocks:
                    return blocks
        time.sleep(0.05)
    raise AssertionError(f"no version of the request message shows {needle!r}")


def test_the_card_shows_the_source_expiry_storage_and_a_paid_storage_warning(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy())
    source = automated(dws_snapshots)
    used = sum(
        s.size or 0
        for s in dws.snapshots
        if s.cluster_id == source.cluster_id and s.type == "MANUAL"
    )
    dws.clusters.free_gb[source.cluster_id] = used + 5.0  # 5 GB free: less than the source
    request = ask_for_copy(server, slack, REQUESTER, source.id, "what-is-at-stake")
    blocks = card_text(slack, request, "Snapshot storage")
    assert "Source expires* <!date^" in blocks
    assert "free 5.0 GB" in blocks and "moves into paid storage" in blocks
    assert "*Cluster* AVAILABLE" in blocks
    stored = server.store.require(request.id)
    assert stored.source_expires_at is not None and stored.storage_free == 5.0


def test_slow_stakes_reads_say_unknown_without_slowing_the_modal(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy())
    for suffix in ("statistics", "snapshot-policies"):
        dws.inject(Fault("delay", method="GET", path=suffix, seconds=6))
    source = automated(dws_snapshots)
    started = time.monotonic()
    request = ask_for_copy(server, slack, REQUESTER, source.id, "slow-stakes")
    assert time.monotonic() - started < 2.5  # the acknowledgement did not wait
    blocks = card_text(slack, request, "Snapshot storage")
    assert "used unknown, free unknown, paid unknown" in blocks
    assert "*Cluster* AVAILABLE" in blocks  # the cluster answered in time


def test_a_copy_approved_while_the_cluster_is_busy_waits_then_runs(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy())
    source = automated(dws_snapshots)
    request = ask_for_copy(server, slack, REQUESTER, source.id, "busy-then-free")
    dws.clusters.task_status[source.cluster_id] = "SNAPSHOTTING"
    click(server, APPROVER, Action.APPROVE, request)
    wait_for_reply(slack, request, "The cluster is busy (SNAPSHOTTING)")
    assert dws.copy_calls == 0 and server.store.require(request.id).state == State.APPROVED
    del dws.clusters.task_status[source.cluster_id]
    wait_state(server, request, State.SUCCEEDED, timeout=20)
    assert dws.copy_calls == 1


def test_escalation_mentions_escalate_to_once_and_their_click_counts(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy(f'escalate_after_minutes = 0.02\nescalate_to = ["{LEAD}"]'))
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "escalate")
    click(server, LEAD, Action.APPROVE, request)  # not yet theirs to decide
    ephemeral_to(slack, LEAD, "approver role")
    wait_for_reply(slack, request, f"<@{LEAD}>, you may approve", timeout=10)
    slack.wait_for("chat.postMessage", lambda c: c["channel"] == LEAD)  # and by DM
    click(server, LEAD, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED, timeout=15)
    time.sleep(1.0)  # several sweeps later, still one escalation
    kinds = [event["kind"] for event in server.store.events(request.id)]
    assert kinds.count("escalated") == 1


GLASS = f"""
[break_glass]
allowed = ["{COMMANDER}"]
notify = ["{SECURITY}"]
review_within_hours = 0.0005
"""


def break_glass_values(source_id: str, name: str, reason: str | None) -> dict[str, Any]:
    values = modal_values(source_id, name)
    values[Block.BREAK_GLASS] = {
        Action.BREAK_GLASS: {
            "type": "checkboxes",
            "selected_options": [{"value": "break_glass"}],
        }
    }
    if reason is not None:
        values[Block.REASON] = {Action.REASON: reason}
    return values


def test_break_glass_copies_at_once_notifies_and_is_reviewed_once(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy() + GLASS.replace("0.0005", "24"))
    source = automated(dws_snapshots).id
    no_reason = submit_modal(server, COMMANDER, break_glass_values(source, "glass", None))
    assert "reason" in no_reason.json()["errors"][Block.REASON]
    answer = submit_modal(server, COMMANDER, break_glass_values(source, "glass", "INC-42 restore"))
    assert answer.text == ""
    request = request_named(server, "glass")
    assert request.break_glass and request.review_due_at
    wait_state(server, request, State.SUCCEEDED, timeout=15)  # no click needed
    slack.wait_for(
        "chat.postMessage", lambda c: c["channel"] == SECURITY and "emergency" in c["text"]
    )
    request = server.store.require(request.id)
    review = wait_for_reply(slack, request, "please review it")
    assert [e["action_id"] for e in review["blocks"][1]["elements"]] == [
        Action.REVIEW_OK,
        Action.REVIEW_FLAG,
    ]
    click(server, COMMANDER, Action.REVIEW_OK, request, block_id=Block.REVIEW)
    ephemeral_to(slack, COMMANDER, "someone else has to review it")
    click(server, APPROVER, Action.REVIEW_FLAG, request, block_id=Block.REVIEW)
    click(server, ADMIN, Action.REVIEW_OK, request, block_id=Block.REVIEW)
    ephemeral_to(slack, ADMIN, "already reviewed")
    reviewed = server.store.require(request.id)
    assert (reviewed.reviewed_by, reviewed.review_verdict, reviewed.review_late) == (
        APPROVER,
        "flagged",
        False,
    )


def test_nobody_else_is_offered_break_glass_and_a_forged_one_is_refused(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy() + GLASS)
    server.command(REQUESTER, "")
    opened = slack.wait_for("views.open", lambda c: True)
    assert Block.BREAK_GLASS not in json.dumps(opened["view"])
    server.command(COMMANDER, "")
    offered = slack.wait_for("views.open", lambda c: Block.BREAK_GLASS in json.dumps(c["view"]))
    assert offered["view"]["callback_id"] == Callback.COPY_MODAL
    source = automated(dws_snapshots).id
    forged = submit_modal(server, REQUESTER, break_glass_values(source, "forged", "trust me"))
    assert "break_glass" in forged.text or "without approval" in forged.text
    assert server.requests() == [] and dws.copy_calls == 0


@pytest.mark.process
def test_an_overdue_review_escalates_to_the_admins_once_across_two_processes(
    start_process: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    first = start_process(policy=policy() + GLASS)
    second = start_process(policy=policy() + GLASS)
    source = automated(dws_snapshots).id
    answer = submit_modal(first, COMMANDER, break_glass_values(source, "overdue", "INC-7"))
    assert answer.text == ""
    request = request_named(first, "overdue")
    wait_for_reply(slack, request, "Nobody has reviewed the emergency copy", timeout=20)
    time.sleep(2.0)  # both sweepers have had their turns
    overdue = [e for e in first.store.events(request.id) if e["kind"] == "review_overdue"]
    assert len(overdue) == 1
    assert first.store.require(request.id).review_late
    replies = [
        c
        for c in slack.calls("chat.postMessage")
        if "Nobody has reviewed the emergency copy" in c["text"] and c["channel"] != ADMIN
    ]
    assert len(replies) == 1
    slack.wait_for("chat.postMessage", lambda c: c["channel"] == ADMIN)  # by DM too
    second.store.require(request.id)
