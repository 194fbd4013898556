"""What an operator reads: /healthz that tells the truth, and Prometheus metrics."""

from __future__ import annotations

import re
import time
from typing import Any

from bot.domain import State
from bot.slack.ids import Action
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, click, wait_state
from tests.harness import APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format; fails if it is not there."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in metrics.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{([^}]*)\})? (\S+)", line)
        if match and match[1] == name:
            found = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if found == wanted:
                return float(match[3])
    raise AssertionError(f"no sample {name}{{{wanted}}} in:\n{metrics}")


def test_metrics_count_requests_calls_and_copy_time(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "measured")
    waiting = server.get("/metrics")
    assert waiting.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert sample(waiting.text, "snapcopy_requests", state="pending_approval") == 1

    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED)
    deadline = time.monotonic() + 5
    while server.health()["outbox"]["pending"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    metrics = server.get("/metrics").text

    assert sample(metrics, "snapcopy_requests", state="succeeded") == 1
    assert sample(metrics, "snapcopy_requests", state="pending_approval") == 0
    assert sample(metrics, "snapcopy_calls_total", system="dws", method="copy", outcome="ok") == 1
    posted = sample(
        metrics, "snapcopy_calls_total", system="slack", method="chat.postMessage", outcome="ok"
    )
    assert posted >= 4  # the request, approved, copied, AVAILABLE
    assert sample(metrics, "snapcopy_copy_duration_seconds_count") == 1
    assert sample(metrics, "snapcopy_work_pending", queue="slack") == 0
    assert sample(metrics, "snapcopy_work_pending", queue="dws") == 0


def test_health_shows_the_last_calls_and_the_work_owed(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "healthy")
    slack.fail_next("chat.postMessage", error="ratelimited", retry_after=30)
    server.command(REQUESTER, "cancel 1")  # its news waits behind the rate limit

    health = server.health()

    assert health["ok"] is True
    # The last DWS call: the form's checks, or the reads of what is at stake after them.
    assert health["dws"]["ok"] is True
    assert health["dws"]["last"].split()[0] in ("list", "show", "cluster", "statistics", "policy")
    assert health["dws"]["last"].endswith(" ok")
    assert health["slack"]["age_seconds"] < 10
    deadline = time.monotonic() + 5
    while not (health["slack"]["ok"] is False and health["outbox"]["pending"]):
        assert time.monotonic() < deadline, health
        time.sleep(0.02)
        health = server.health()
    assert "ratelimited" in health["slack"]["last"]
    assert health["outbox"]["oldest_seconds"] is not None


def test_health_is_503_when_slack_messages_are_stuck(
    start_server: StartServer, slack: SlackStandIn, dws_snapshots: list[Any]
) -> None:
    server = start_server(env_overrides={"SNAPCOPY_OUTBOX_STUCK_MINUTES": "0.01"})  # 0.6 s
    slack.rate_limit_for(30.0)
    from tests.flow import modal_values, submit_modal

    submit_modal(server, REQUESTER, modal_values(automated(dws_snapshots).id, "stuck"))

    deadline = time.monotonic() + 5
    answer = server.get("/healthz")
    while answer.status_code == 200:
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.05)
        answer = server.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["outbox"]["stuck"] is True
    assert answer.json()["database"] is True
