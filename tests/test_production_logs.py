"""Logs, health and metrics that fit production (issue 25, part 5).

Regressions: a refused signature left only Bolt's words (or nothing) and no metric; a SIEM had
to read SQLite to follow requests; start-up did not say how the process runs; uvicorn's lines
carried ANSI colour codes; every DWS call was logged twice; liveness and readiness were one
route, so a Slack outage restart-looped pods; Socket Mode served no health at all; /metrics
could only be on the public Slack port.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import time
from typing import Any

import httpx
import pytest

from bot.domain import State
from bot.dws.standin import Fault
from bot.logs import configure_logging
from bot.slack.ids import Action
from tests import slackreq
from tests.conftest import StartServer, StartSocketBot
from tests.flow import (
    ask_for_copy,
    automated,
    click,
    modal_values,
    submit_modal,
    wait_state,
)
from tests.harness import ADMIN, APPROVER, REQUESTER, BotServer, free_port
from tests.slack_standin import SlackStandIn
from tests.test_operations import sample
from tests.test_retention import policy as retention_policy

# --- refused signatures --------------------------------------------------------------------------

SECRET_URL = "https://hooks.slack.com/actions/T0/1/secret-response-url"
NOT_A_TIME = {"X-Slack-Signature": "v0=x", "X-Slack-Request-Timestamp": "soon"}


def refused(server: BotServer) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r["message"].startswith("refused a request to")]


@pytest.mark.parametrize(
    ("send", "reason"),
    [
        ({"sign": False}, "missing_headers"),
        ({"timestamp": int(time.time()) - 600}, "stale_timestamp"),
        ({"secret": "not-the-signing-secret"}, "bad_signature"),
        ({"sign": False, "headers": NOT_A_TIME}, "bad_timestamp"),
    ],
)
def test_each_refused_signature_is_one_warning_with_its_reason_and_never_the_body(
    http_server: BotServer, send: dict[str, Any], reason: str
) -> None:
    body = slackreq.command_fields(REQUESTER, "help", response_url=SECRET_URL)
    request = slackreq.slash_command(REQUESTER, "help", response_url=SECRET_URL)

    answer = http_server.send(request, **send)

    assert answer.status_code == 401
    [line] = refused(http_server)
    assert (line["level"], line["reason"]) == ("WARNING", reason)
    assert line["logger"] == "bot.server"
    log = http_server.stderr()
    assert SECRET_URL not in log and "secret-response-url" not in log
    assert body["trigger_id"] not in log
    metrics = http_server.get("/metrics").text
    assert sample(metrics, "snapcopy_rejected_requests_total", reason=reason) == 1


def test_a_signed_request_is_not_counted_as_refused(http_server: BotServer) -> None:
    assert http_server.command(REQUESTER, "help").status_code == 200
    assert refused(http_server) == []
    assert "snapcopy_rejected_requests_total{" not in http_server.get("/metrics").text


# --- request events as log lines -----------------------------------------------------------------


def steps(server: BotServer, request_id: int) -> list[dict[str, Any]]:
    return [
        record
        for record in server.log_records()
        if record["logger"] == "snapcopy.requests" and record["request_id"] == request_id
    ]


def wait_steps(server: BotServer, request_id: int, last: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while not any(s["event"] == last for s in steps(server, request_id)):
        assert time.monotonic() < deadline, steps(server, request_id)
        time.sleep(0.02)
    return steps(server, request_id)


def test_every_step_of_a_copy_is_one_structured_log_line(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    source = automated(dws_snapshots)
    request = ask_for_copy(server, slack, REQUESTER, source.id, "logged-copy")
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED)

    lines = wait_steps(server, request.id, "available")

    assert [line["event"] for line in lines] == [
        "requested",
        "approved",
        "copy_started",
        "available",
    ]
    requested, approved, started, available = lines
    assert requested["message"] == f"request #{request.id} requested"
    assert (requested["actor"], requested["requested_by"]) == (REQUESTER, REQUESTER)
    assert (approved["actor"], approved["approved_by"]) == (APPROVER, [APPROVER])
    for line in lines:
        assert line["level"] == "INFO"
        assert line["cluster"] == source.cluster_name and line["cluster_id"] == source.cluster_id
        assert line["backup_name"] == "logged-copy"
    assert available["new_snapshot_id"] == done.new_snapshot_id
    assert started["approved_by"] == [APPROVER]


def test_denied_cancelled_failed_and_expired_are_logged_too(
    start_server: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    policy = {
        "roles": {"requester": [REQUESTER], "approver": [APPROVER], "admin": [ADMIN]},
        "approval": {"required": True, "expires_after_minutes": 0.02},
    }
    server = start_server(policy=policy)
    source = automated(dws_snapshots).id
    expiring = ask_for_copy(server, slack, REQUESTER, source, "logged-expiry")
    wait_state(server, expiring, State.EXPIRED)
    assert wait_steps(server, expiring.id, "expired")[-1]["actor"] is None

    server.stop()
    server = start_server()
    cancelled = ask_for_copy(server, slack, REQUESTER, source, "logged-cancel")
    server.command(REQUESTER, f"cancel {cancelled.id}")
    assert wait_steps(server, cancelled.id, "cancelled")[-1]["actor"] == REQUESTER

    dws.inject(
        Fault(
            "status",
            method="POST",
            path="linked-copy",
            status=403,
            error_code="DWS.0015",
            error_msg="No permission",
        )
    )
    failing = ask_for_copy(server, slack, REQUESTER, source, "logged-failure")
    click(server, APPROVER, Action.APPROVE, failing)
    failed = wait_steps(server, failing.id, "failed")[-1]
    assert failed["level"] == "INFO" and failed["error_code"] == "DWS.0015"


def test_a_deny_is_logged_with_its_reason(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "logged-deny")
    server.runtime.services.copies.deny(request.ref, APPROVER, "not today")

    [*_, denied] = wait_steps(server, request.id, "denied")
    assert (denied["actor"], denied["denied_by"], denied["reason"]) == (
        APPROVER,
        APPROVER,
        "not today",
    )


# --- start-up, uvicorn, DWS calls ----------------------------------------------------------------


def test_start_up_says_how_this_process_runs(server: BotServer) -> None:
    [line] = [r for r in server.log_records() if r["message"].endswith(" starting")]

    assert line["mode"] == "http"
    assert line["policy"] == server.env["SNAPCOPY_POLICY"]
    assert line["database"] == {"engine": "sqlite", "path": str(server.db_path.resolve())}
    assert line["regions"] == [server.env["DWS_ENDPOINT"]]


def test_uvicorns_colour_copy_of_its_message_is_dropped() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        logging.getLogger("uvicorn.error").info(
            "Started", extra={"color_message": "\x1b[32mStarted\x1b[0m"}
        )
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "Started" and "color_message" not in line


def test_each_dws_call_is_logged_once(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    submit_modal(server, REQUESTER, modal_values(automated(dws_snapshots).id, "once"))

    logged = server.stderr()
    assert "DWS GET" in logged
    assert "HTTP Request:" not in logged, "httpx's line repeats ours"


# --- liveness, readiness, metrics ----------------------------------------------------------------


def test_livez_answers_while_healthz_says_slack_is_stuck(
    start_server: StartServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(env_overrides={"SNAPCOPY_OUTBOX_STUCK_MINUTES": "0.01"})
    slack.rate_limit_for(30.0)
    submit_modal(server, REQUESTER, modal_values(automated(dws_snapshots).id, "stuck"))
    deadline = time.monotonic() + 5
    while server.get("/healthz").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    live = server.get("/livez")

    assert live.status_code == 200 and live.json()["ok"] is True


def test_livez_asks_nothing_of_the_database(http_server: BotServer) -> None:
    with sqlite3.connect(http_server.db_path) as db:  # a restore of the wrong file, say
        db.execute("ALTER TABLE requests RENAME TO requests_elsewhere")
    db.close()

    assert http_server.get("/healthz").status_code == 503
    assert http_server.get("/livez").status_code == 200


@pytest.mark.process
def test_socket_mode_serves_livez_healthz_and_metrics_on_port(
    start_socket_bot: StartSocketBot, slack_only_env: dict[str, str]
) -> None:
    bot = start_socket_bot(slack_only_env)
    base = f"http://127.0.0.1:{bot.env['PORT']}"

    answers = {path: get(base + path) for path in ("/livez", "/healthz", "/metrics")}

    assert {path: a.status_code for path, a in answers.items()} == dict.fromkeys(answers, 200)
    assert answers["/healthz"].json()["database"] is True
    assert "snapcopy_requests" in answers["/metrics"].text
    events = httpx.post(base + "/slack/events", content=b"{}", trust_env=False)
    assert events.status_code == 404, "no events URL: Socket Mode's requests are not signed"


@pytest.mark.process
def test_metrics_port_moves_metrics_off_the_slack_port(start_process: StartServer) -> None:
    metrics_port = free_port()
    server = start_process(env_overrides={"SNAPCOPY_METRICS_PORT": str(metrics_port)})

    assert server.get("/metrics").status_code == 404
    assert server.get("/healthz").status_code == 200
    aside = get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert aside.status_code == 200 and "snapcopy_requests" in aside.text
    assert get(f"http://127.0.0.1:{metrics_port}/healthz").status_code == 404
    assert "\x1b[" not in server.stderr() and "color_message" not in server.stderr()


def get(url: str, timeout: float = 10.0) -> httpx.Response:
    """GET, retrying while the port is not listening yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2.0, trust_env=False)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_copy_deleted_without_approval_is_logged_as_deleted(
    start_server: StartServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(policy=retention_policy(requires_approval=False, keep_seconds=2.0))
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "logged-delete")
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.DELETED, timeout=20)

    lines = wait_steps(server, request.id, "deleted")

    events = [line["event"] for line in lines]
    assert events[-2:] == ["delete_approved", "deleted"]
    assert lines[-1]["actor"] is None and lines[-1]["new_snapshot_id"]
