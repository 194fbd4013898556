"""A copy's life after it succeeds, end to end (bot/retention.py, bot/deletion_jobs.py): kept
until a date, warned about before it, its deletion asked for and approved like the copy was, and
carried out with one DELETE of the right snapshot, or refused when the snapshot is not the copy.

Policy times are fractions of a day, so a copy is "kept" for seconds.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.domain import CopyRequest, Deletion, State
from bot.dws.standin import DwsStandIn, Fault
from bot.slack.ids import Action, Block
from tests import slackreq
from tests.conftest import StartServer
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    ephemeral_to,
    modal_values,
    submit_modal,
    wait_for_reply,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

SECOND = "U0APPROVE2"
KEEP_SECONDS = 4.0
DAY = 86400.0


def policy(*, requires_approval: bool = True, keep_seconds: float = KEEP_SECONDS) -> str:
    return f"""\
[roles]
requester = ["{REQUESTER}"]
approver = ["{APPROVER}", "{SECOND}"]
admin = ["{ADMIN}"]

[lifecycle]
keep_days = {keep_seconds / DAY}
warn_before_days = {keep_seconds / 2 / DAY}
max_keep_days = 60
delete_requires_approval = {str(requires_approval).lower()}
"""


@pytest.fixture
def bot(start_server: StartServer) -> BotServer:
    return start_server(policy=policy())


def copied(server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any], name: str) -> Any:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, name)
    assert request.keep_until is not None and request.warn_at is not None
    click(server, APPROVER, Action.APPROVE, request)
    return wait_state(server, request, State.SUCCEEDED)


def press(server: BotServer, user: str, action: Action, request: CopyRequest) -> None:
    click(server, user, action, request, block_id=Block.RETENTION)


def wait_for(server: BotServer, request: CopyRequest, check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        current = server.store.require(request.id)
        if check(current):
            return current
        assert time.monotonic() < deadline, f"not reached: {current}"
        time.sleep(0.05)


def deletes(dws: DwsStandIn) -> list[str]:
    return [r.path for r in dws.requests if r.method == "DELETE"]


def asked_for_deletion(server: BotServer, slack: SlackStandIn, request: CopyRequest) -> Any:
    wait_for_reply(slack, request, "is kept until", timeout=15)
    wait_for_reply(slack, request, "keep-until has passed", timeout=15)
    return wait_for(server, request, lambda r: r.deletion == Deletion.PENDING)


def test_a_kept_copy_is_warned_about_then_deleted_with_a_second_persons_approval(
    bot: BotServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    request = copied(bot, slack, dws_snapshots, "kept-for-a-while")
    warning = wait_for_reply(slack, request, "is kept until", timeout=15)
    assert [e["action_id"] for e in warning["blocks"][1]["elements"]] == [
        Action.KEEP_MORE,
        Action.DELETE_NOW,
    ]
    asking = wait_for_reply(slack, request, "keep-until has passed", timeout=15)
    assert f"<@{APPROVER}>" in asking["text"] or "the approvers" in asking["text"]
    press(bot, REQUESTER, Action.APPROVE_DELETE, request)  # four eyes: not the requester
    ephemeral_to(slack, REQUESTER, "another approver has to approve")
    assert deletes(dws) == []
    press(bot, APPROVER, Action.APPROVE_DELETE, request)
    deleted = wait_state(bot, request, State.DELETED, timeout=15)
    assert deletes(dws) == [f"/v1.0/{dws.project_id}/snapshots/{request.new_snapshot_id}"]
    assert deleted.new_snapshot_id not in {s.id for s in dws.snapshots}
    wait_for_reply(slack, request, "is deleted")
    kinds = [event["kind"] for event in bot.store.events(request.id)]
    for kind in ("keep_warned", "delete_requested", "delete_approved", "deleted"):
        assert kind in kinds


def test_keep_30_more_days_moves_the_date_and_calls_off_the_deletion(
    bot: BotServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    request = asked_for_deletion(bot, slack, copied(bot, slack, dws_snapshots, "keep-it-longer"))
    press(bot, REQUESTER, Action.KEEP_MORE, request)
    kept = wait_for(bot, request, lambda r: r.deletion is None)
    assert kept.keep_until is not None and kept.keep_until > request.keep_until  # type: ignore[operator]
    wait_for_reply(slack, request, "nothing will be deleted before then")
    press(bot, APPROVER, Action.APPROVE_DELETE, request)  # the old button does nothing now
    time.sleep(0.5)
    assert deletes(dws) == [] and bot.store.require(request.id).state == State.SUCCEEDED


def test_a_snapshot_that_is_not_the_copy_any_more_is_never_deleted(
    bot: BotServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    request = asked_for_deletion(bot, slack, copied(bot, slack, dws_snapshots, "became-auto"))
    record = dws._records[request.new_snapshot_id]
    record.snapshot = record.snapshot.model_copy(update={"type": "AUTO"})
    press(bot, APPROVER, Action.APPROVE_DELETE, request)
    failed = wait_for(bot, request, lambda r: r.deletion is None)
    assert (failed.state, failed.keep_until) == (State.SUCCEEDED, None)
    wait_for_reply(slack, request, "not MANUAL; nothing was deleted")
    assert deletes(dws) == []


def test_a_copy_already_gone_counts_as_deleted(
    bot: BotServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    request = asked_for_deletion(bot, slack, copied(bot, slack, dws_snapshots, "gone-already"))
    dws.inject(
        Fault("status", method="DELETE", status=400, error_code="DWS.0001", error_msg="gone")
    )
    press(bot, APPROVER, Action.APPROVE_DELETE, request)
    wait_state(bot, request, State.DELETED, timeout=15)
    assert len(deletes(dws)) == 1
    assert bot.store.events(request.id)[-1]["details"]["how"] == "already gone"


def test_a_busy_cluster_is_retried_until_the_deletion_goes_through(
    bot: BotServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    request = asked_for_deletion(bot, slack, copied(bot, slack, dws_snapshots, "busy-cluster"))
    dws.clusters.task_status[request.cluster_id or ""] = "SNAPSHOTTING"
    press(bot, APPROVER, Action.APPROVE_DELETE, request)
    wait_for(
        bot, request, lambda r: any(e["kind"] == "dws_retrying" for e in bot.store.events(r.id))
    )
    del dws.clusters.task_status[request.cluster_id or ""]
    wait_state(bot, request, State.DELETED, timeout=20)
    assert dws.deletions == 1


def test_a_failed_deletion_job_keeps_the_copy_and_says_why(
    bot: BotServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    request = asked_for_deletion(bot, slack, copied(bot, slack, dws_snapshots, "job-fails"))
    dws.clusters.fail_next_job = True
    press(bot, APPROVER, Action.APPROVE_DELETE, request)
    wait_for_reply(slack, request, "was not deleted", timeout=15)
    assert bot.store.require(request.id).state == State.SUCCEEDED


def test_without_approval_the_copy_is_deleted_with_no_click(
    start_server: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=policy(requires_approval=False))
    request = copied(server, slack, dws_snapshots, "no-click-delete")
    wait_state(server, request, State.DELETED, timeout=20)
    assert deletes(dws) == [f"/v1.0/{dws.project_id}/snapshots/{request.new_snapshot_id}"]


def test_keep_beyond_the_limit_is_refused_with_the_limit(
    bot: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = copied(bot, slack, dws_snapshots, "keep-too-long")
    answer = bot.command(REQUESTER, f"keep {request.id} 90d")
    assert "at most 60 days" in answer.json()["text"]
    answer = bot.command(REQUESTER, f"keep {request.id} 10d")
    assert "is kept until" in answer.json()["text"]
    kept = bot.store.require(request.id)
    assert kept.keep_until is not None and kept.keep_until > request.keep_until  # type: ignore[operator]


def test_a_keep_until_day_past_the_limit_is_a_modal_error(
    bot: BotServer, dws_snapshots: list[Any]
) -> None:
    values = modal_values(automated(dws_snapshots).id, "too-far-ahead")
    values[Block.KEEP_UNTIL] = {
        Action.KEEP_UNTIL: {"type": "datepicker", "selected_date": "2099-01-01"}
    }
    answer = submit_modal(bot, REQUESTER, values)
    assert answer.json()["errors"][Block.KEEP_UNTIL].startswith("Copies may be kept at most 60")
    assert bot.requests() == []


def test_nobody_else_may_delete_a_copy(
    bot: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = copied(bot, slack, dws_snapshots, "not-yours")
    answer = bot.command("U0OUTSIDE", f"delete {request.id}")
    assert "Only the requester, the approvers" in answer.json()["text"]
    assert bot.store.require(request.id).deletion is None


def test_app_home_shows_your_copies_with_their_keep_until_and_buttons(
    bot: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = copied(bot, slack, dws_snapshots, "shown-at-home")
    bot.event(slackreq.app_home_opened(REQUESTER))
    home = slack.wait_for("views.publish", lambda call: call["user_id"] == REQUESTER)
    blocks = home["view"]["blocks"]
    line = next(b for b in blocks if "shown-at-home" in b.get("text", {}).get("text", ""))
    assert "kept until <!date^" in line["text"]["text"]
    buttons = next(b for b in blocks if b.get("block_id") == f"{Block.RETENTION}_{request.id}")
    assert [e["action_id"] for e in buttons["elements"]] == [Action.KEEP_MORE, Action.DELETE_NOW]


@pytest.mark.process
def test_a_sigkill_between_the_approval_and_the_delete_still_deletes_once(
    start_process: StartServer, slack: SlackStandIn, dws: DwsStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_process(policy=policy())
    request = asked_for_deletion(server, slack, copied(server, slack, dws_snapshots, "killed"))
    # DWS deletes, then answers slowly: the process dies before it hears back.
    dws.inject(Fault("delay", method="DELETE", seconds=5))
    press(server, APPROVER, Action.APPROVE_DELETE, request)
    deadline = time.monotonic() + 10
    while not deletes(dws):
        assert time.monotonic() < deadline, "the deletion was never called"
        time.sleep(0.02)
    server.kill()
    restarted = start_process(policy=policy())
    wait_state(restarted, request, State.DELETED, timeout=30)
    assert len(deletes(dws)) == 1
