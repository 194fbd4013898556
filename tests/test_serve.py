"""`snapcopy serve` in HTTP mode: the routes and Slack's signature checks (served from the test
process), and what is about the process itself: SIGTERM, the log stream, PORT, the sandbox,
Socket Mode (real processes)."""

from __future__ import annotations

import inspect
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bot
from bot.app import build_runtime
from tests import slackreq
from tests.conftest import StartServer, StartSocketBot
from tests.harness import (
    APP_TOKEN,
    OUTSIDER,
    SECRETS,
    BotServer,
    ProcessServer,
    free_port,
    subprocess_env,
)
from tests.slack_standin import SlackStandIn


@pytest.fixture
def http_server(start_http_server: StartServer, slack_only_env: dict[str, str]) -> BotServer:
    """The bot served over HTTP, without a live DWS: nothing here needs one."""
    return start_http_server(slack_only_env)


def test_healthz_reports_version_and_database(http_server: BotServer) -> None:
    answer = http_server.get("/healthz")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    health = answer.json()
    slack = health.pop("slack")
    assert health == {
        "ok": True,
        "version": bot.__version__,
        "database": True,
        "database_engine": "sqlite",
        "sandbox": False,
        "dws": None,  # nothing asked of DWS yet
        "outbox": {"pending": 0, "oldest_seconds": None},
        "jobs": {"pending": 0, "oldest_seconds": None},
    }
    # Slack was asked at start: about the token, then (in the background) the policy's groups.
    assert slack["ok"] is True and slack["age_seconds"] < 30
    assert slack["last"] in ("auth.test ok", "usergroups.users.list ok")


def test_healthz_is_503_when_the_database_is_unusable(http_server: BotServer) -> None:
    # The audit log losing its schema (a restore of the wrong file, a bad manual edit) must
    # show on the health check rather than on the next copy request.
    with sqlite3.connect(http_server.db_path) as db:
        db.execute("ALTER TABLE requests RENAME TO requests_elsewhere")
    db.close()

    answer = http_server.get("/healthz")

    assert answer.status_code == 503
    assert answer.json()["ok"] is False
    assert answer.json()["database"] is False


def test_unknown_path_is_a_json_404(http_server: BotServer) -> None:
    answer = http_server.get("/nothing/here")

    assert answer.status_code == 404
    assert answer.json() == {"ok": False, "error": "not_found"}


def test_get_on_the_events_url_is_refused(http_server: BotServer) -> None:
    answer = http_server.get("/slack/events")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


def test_unsigned_request_is_rejected(http_server: BotServer) -> None:
    request = slackreq.url_verification("unsigned-challenge")

    answer = http_server.send(request, sign=False)

    assert answer.status_code == 401
    assert "unsigned-challenge" not in answer.text


def test_request_signed_with_another_secret_is_rejected(http_server: BotServer) -> None:
    answer = http_server.send(slackreq.url_verification("forged"), secret="not-the-secret")

    assert answer.status_code == 401


def test_request_with_a_tampered_body_is_rejected(http_server: BotServer) -> None:
    request = slackreq.url_verification("original")
    headers = request.signed_headers(http_server.signing_secret)
    tampered = request.body.replace(b"original", b"tampered")

    answer = http_server.post(tampered, request.content_type, sign=False, headers=headers)

    assert answer.status_code == 401


def test_replayed_request_older_than_five_minutes_is_rejected(http_server: BotServer) -> None:
    six_minutes_ago = int(time.time()) - 6 * 60

    answer = http_server.send(slackreq.url_verification("stale"), timestamp=six_minutes_ago)

    assert answer.status_code == 401


def test_url_verification_signed_like_slack_is_answered(http_server: BotServer) -> None:
    answer = http_server.send(
        slackreq.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    )

    assert answer.status_code == 200
    assert answer.json()["challenge"] == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"


def test_ssl_check_is_answered(http_server: BotServer) -> None:
    answer = http_server.send(slackreq.ssl_check())

    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'payload={"type": "block_actions", "user', slackreq.FORM),
        (b'{"type": "event_callback", "event": {', slackreq.JSON),
        (b"payload=%FF%FE", slackreq.FORM),
    ],
    ids=["truncated-payload", "truncated-json", "not-utf8"],
)
def test_an_unreadable_body_is_a_400_not_a_crash(
    http_server: BotServer, body: bytes, content_type: str
) -> None:
    # Regression: Bolt parses the body before checking the signature, and the exception used
    # to reach gunicorn, which answered with an HTML 500 page.
    answer = http_server.post(body, content_type)

    assert answer.status_code == 400
    assert answer.json() == {"ok": False, "error": "unreadable_body"}
    assert http_server.health()["ok"] is True


def test_a_signed_payload_of_the_wrong_shape_is_a_400_not_a_crash(http_server: BotServer) -> None:
    # Regression: Bolt indexes payloads without checking (here `user` of a view submission),
    # and the KeyError reached gunicorn, which answered with an HTML 500 page.
    payload = {"type": "view_submission", "view": {"callback_id": "snapcopy_copy_modal"}}

    answer = http_server.interact(payload)

    assert answer.status_code == 400
    assert answer.json() == {"ok": False, "error": "malformed_payload"}
    assert http_server.health()["ok"] is True


@pytest.mark.parametrize(
    "body",
    [
        b'payload={"type": "block_actions", "user',
        slackreq.interactive({"type": "view_submission", "view": {"callback_id": "x"}}).body,
    ],
    ids=["unreadable", "wrong-shape"],
)
def test_a_bad_body_without_a_valid_signature_is_a_401(http_server: BotServer, body: bytes) -> None:
    unsigned = http_server.post(body, slackreq.FORM, sign=False)
    forged = http_server.post(body, slackreq.FORM, secret="not-the-secret")
    stale = http_server.post(body, slackreq.FORM, timestamp=int(time.time()) - 6 * 60)

    assert [unsigned.status_code, forged.status_code, stale.status_code] == [401, 401, 401]


@pytest.fixture
def served_process(start_process: StartServer, slack_only_env: dict[str, str]) -> BotServer:
    """The real `snapcopy serve` process, without a live DWS."""
    return start_process(slack_only_env)


@pytest.mark.process
def test_sigterm_stops_the_server_within_seconds(served_process: ProcessServer) -> None:
    http_server = served_process
    started = time.monotonic()

    status = http_server.terminate(timeout=10)

    assert status == 0, http_server.stderr()
    assert time.monotonic() - started < 5


@pytest.mark.process
def test_logs_are_json_lines_without_secrets(served_process: BotServer) -> None:
    http_server = served_process
    http_server.send(slackreq.url_verification("x"), sign=False)
    http_server.send(slackreq.url_verification("y"))
    http_server.stop()

    records = http_server.log_records()  # fails on any line that is not JSON

    assert records, "the server logged nothing"
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    output = http_server.stderr()
    for secret in SECRETS:
        assert secret not in output
    assert any("running on" in record["message"] for record in records)
    # Bolt reads SLACK_BOT_TOKEN again and warns it will not use it; nothing is wrong, so no line.
    assert not any("will be unused" in record["message"] for record in records)


@pytest.mark.process
def test_port_comes_from_the_port_variable(
    start_process: StartServer, slack_only_env: dict[str, str]
) -> None:
    port = free_port()

    served = start_process(slack_only_env | {"PORT": str(port)}, port_option=False)

    assert served.url.endswith(f":{port}")
    assert served.health()["ok"] is True


@pytest.mark.skipif(
    "sandbox" not in inspect.signature(build_runtime).parameters,
    reason="build_runtime does not support the sandbox yet",
)
@pytest.mark.process
def test_sandbox_needs_no_cloud_keys_and_says_so(
    start_process: StartServer, slack_only_env: dict[str, str]
) -> None:
    cloud = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID")
    env = {k: v for k, v in slack_only_env.items() if k not in (*cloud, "DWS_ENDPOINT")}

    sandbox = start_process(env, args=("--sandbox",))

    assert sandbox.health()["sandbox"] is True
    assert json.loads(sandbox.get("/healthz").text)["ok"] is True


# --- Socket Mode ---------------------------------------------------------------------------------


@pytest.mark.process
def test_socket_mode_connects_with_the_app_token_and_acknowledges_a_command(
    start_socket_bot: StartSocketBot, slack: SlackStandIn, slack_only_env: dict[str, str]
) -> None:
    start_socket_bot(slack_only_env)
    opened = slack.wait_for("apps.connections.open")
    envelope = slackreq.socket_envelope("slash_commands", slackreq.command_fields(OUTSIDER, "help"))

    slack.socket_send(envelope)

    ack = slack.wait_for("socket_mode.ack", lambda c: c["envelope_id"] == envelope["envelope_id"])
    assert opened.token == APP_TOKEN
    assert ack["envelope_id"] == envelope["envelope_id"]


@pytest.mark.process
def test_socket_mode_stops_on_sigterm(
    start_socket_bot: StartSocketBot, slack: SlackStandIn, slack_only_env: dict[str, str]
) -> None:
    bot = start_socket_bot(slack_only_env)
    # Once a message has arrived, the client's receiving thread sits in recv(): the slow case.
    envelope = slackreq.socket_envelope("slash_commands", slackreq.command_fields(OUTSIDER, "help"))
    slack.socket_send(envelope)
    slack.wait_for("socket_mode.ack")
    started = time.monotonic()

    status = bot.terminate(timeout=10)

    assert status == 0, bot.stderr()
    assert time.monotonic() - started < 5
    assert "Traceback" not in bot.stderr()


@pytest.mark.process
def test_socket_mode_refused_by_slack_exits_with_a_clear_message(
    slack: SlackStandIn, slack_only_env: dict[str, str], tmp_path: Path
) -> None:
    slack.fail_next("apps.connections.open", error="invalid_auth")
    env = slack_only_env | {"SLACK_APP_TOKEN": APP_TOKEN}

    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--socket"],
        env=subprocess_env(env),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "invalid_auth" in result.stderr
    assert "connections:write" in result.stderr
    assert "Traceback" not in result.stderr
    assert APP_TOKEN not in result.stderr
