"""Hostile and broken input: forged ids, text that tries to ping or break layout, random and
truncated payloads. None of it may copy anything, leak a secret or crash a request."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlencode

from bot.domain import State
from bot.slack.ids import Action, Block, Callback
from tests import slackreq
from tests.flow import ask_for_copy, automated, click, ephemeral_to, wait_state
from tests.harness import APPROVER, OUTSIDER, REPO_ROOT, REQUESTER, SECRETS, BotServer
from tests.slack_standin import SlackStandIn


def test_a_forged_deny_modal_cannot_deny_for_someone_without_the_role(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "forged-deny")
    answer = server.interact(
        slackreq.view_submission(
            OUTSIDER,
            Callback.DENY_MODAL,
            {Block.DENY_REASON: {Action.DENY_REASON: "because"}},
            # Even knowing the request's token, which only its buttons carry.
            json.dumps({"request_id": request.id, "token": request.token, "user": APPROVER}),
        )
    )
    assert answer.status_code == 200
    assert "approver role" in answer.json()["errors"][Block.DENY_REASON]
    assert server.store.require(request.id).state == State.PENDING_APPROVAL


def test_buttons_naming_no_request_or_garbage_are_answered_plainly(
    server: BotServer, slack: SlackStandIn, dws: Any
) -> None:
    for value in ("999999", "not-a-number", "1; DROP TABLE requests"):
        answer = server.interact(slackreq.block_actions(APPROVER, Action.APPROVE, value))
        assert answer.status_code == 200
    ephemeral_to(slack, APPROVER, "no request #999999")
    ephemeral_to(slack, APPROVER, "does not name a request")
    assert server.health()["database"] is True
    assert dws.copy_calls == 0


def test_user_text_cannot_ping_or_break_the_layout(
    server: BotServer, slack: SlackStandIn, dws: Any
) -> None:
    event = slackreq.app_mention(REQUESTER, "<!channel> <@U0APPROVE> *boom*", thread_ts="1.2")
    server.event(event)
    reply = slack.wait_for("chat.postEphemeral", lambda c: "don't know" in c["text"])
    assert "<!channel>" not in reply["text"] and "&lt;!channel&gt;" in reply["text"]


def test_identity_comes_from_the_signed_user_not_from_the_message(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "who-clicked")
    # The message claims an approver posted it; the click is the outsider's.
    message = slackreq.channel_message(
        "approved by <@U0APPROVE>", user=APPROVER, ts=request.message_ts
    )
    server.interact(
        slackreq.block_actions(
            OUTSIDER, Action.APPROVE, str(request.id), message=message, block_id=Block.DECISION
        )
    )
    ephemeral_to(slack, OUTSIDER, "approver role")
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    assert dws.copy_calls == 0


def _payloads(rng: random.Random, valid: list[bytes]) -> list[tuple[bytes, str]]:
    form = "application/x-www-form-urlencoded"
    cases: list[tuple[bytes, str]] = []
    for raw in valid:
        for _ in range(6):
            cases.append((raw[: rng.randrange(len(raw))], form))  # truncated
    for _ in range(15):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        cases.append((junk, rng.choice([form, "application/json", "text/plain"])))
    shapes: list[Any] = [
        {"type": "block_actions"},
        {"type": "block_actions", "actions": [{}], "user": {}},
        {"type": "block_actions", "actions": "x", "user": {"id": 5}},
        {"type": "view_submission", "view": {"callback_id": Callback.COPY_MODAL}},
        {
            "type": "view_submission",
            "view": {"callback_id": Callback.COPY_MODAL, "state": 1},
            "user": {"id": REQUESTER},
        },
        {"type": "message_action", "callback_id": Callback.MESSAGE_SHORTCUT},
        {"type": "block_suggestion", "action_id": Action.PICK_SNAPSHOT},
        [],
        "x",
        7,
        None,
    ]
    for shape in shapes:
        cases.append((urlencode({"payload": json.dumps(shape)}).encode(), form))
    cases.append(
        (
            json.dumps({"type": "event_callback", "event": {"type": "app_mention"}}).encode(),
            "application/json",
        )
    )
    cases.append((urlencode({"command": "/snapcopy"}).encode(), form))
    return cases


def test_random_and_truncated_payloads_never_crash_a_request_or_copy(
    http_server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    """Over HTTP: what a broken body gets is the serving layer's answer (bot/server.py)."""
    server = http_server
    source = automated(dws_snapshots).id
    valid = [
        slackreq.slash_command(REQUESTER, source, response_url=slack.response_url("f")).body,
        slackreq.block_actions(APPROVER, Action.APPROVE, "1").body,
        slackreq.view_submission(
            REQUESTER,
            Callback.COPY_MODAL,
            {
                Block.SNAPSHOT_ID: {Action.SNAPSHOT_ID: source},
                Block.BACKUP_NAME: {Action.BACKUP_NAME: "fuzzed-name"},
            },
            json.dumps({"channel_id": "C0INCIDENT"}),
        ).body,
    ]
    rng = random.Random(20261128)
    for body, content_type in _payloads(rng, valid):
        answer = server.post(body, content_type)
        assert answer.status_code < 500, (body[:200], answer.status_code, answer.text[:200])
        assert "Traceback" not in answer.text
        unsigned = server.post(body, content_type, sign=False)
        assert unsigned.status_code == 401
    time.sleep(0.5)
    assert dws.copy_calls == 0
    assert server.health()["ok"] is True
    assert "Traceback" not in server.stderr() or "unexpected error" in server.stderr()


def test_secrets_never_reach_logs_or_the_audit_log(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "no-leaks")
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED)
    server.post(b"garbage", "text/plain")
    audit = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "--format", "json", "--events"],
        env={"SNAPCOPY_DB": str(server.db_path), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    logs = server.stderr()
    assert "no-leaks" in audit.stdout  # the audit did print the request's trail
    for secret in SECRETS:
        assert secret not in logs
        assert secret not in audit.stdout
