"""The bot's work survives its processes: SIGTERM during a deploy, SIGKILL after acknowledged
clicks, two processes on one database, messages owed at a crash, and a crash loop; and live work
is never taken over: a second process in its own pid namespace, a holder paused past its lease,
a DWS copy call slower than the lease, the wall clock stepped either way. Each test runs real
`snapcopy serve` processes against the stand-ins and reads the outcome in DWS, in Slack and in
the audit log."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.domain import CopyRequest, State
from bot.dws.standin import Fault
from bot.slack.ids import Action
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, click, wait_for_reply, wait_state
from tests.harness import APPROVER, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.process


def copies_named(dws: Any, name: str) -> list[Any]:
    return [s for s in dws.snapshots if s.name.lower() == name.lower()]


def approve_all(server: BotServer, requests: list[CopyRequest]) -> None:
    """Approve every request at once, each click acknowledged (200) before this returns."""
    errors: list[BaseException] = []

    def approve(request: CopyRequest) -> None:
        try:
            click(server, APPROVER, Action.APPROVE, request)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=approve, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def root_posts(slack: SlackStandIn, request: CopyRequest) -> list[Any]:
    """The request messages posted for `request` in its channel (not replies, not DMs)."""
    return [
        c
        for c in slack.calls("chat.postMessage")
        if c["channel"] == request.channel_id
        and not c.get("thread_ts")
        and f"(request {request.label})" in c["text"]
    ]


def assert_copied_once_each(dws: Any, server: BotServer, requests: list[CopyRequest]) -> None:
    for request in requests:
        done = wait_state(server, request, State.SUCCEEDED, timeout=30)
        assert [s.id for s in copies_named(dws, request.backup_name)] == [done.new_snapshot_id]
    assert dws.copy_calls == len(requests)


def test_sigterm_right_after_a_burst_of_approvals_with_slack_slow_loses_nothing(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(server, slack, REQUESTER, source, f"deploy-{i}") for i in range(8)]
    slack.delay = 0.5  # Slack answers slowly
    dws.copy_delay = 1.0

    approve_all(server, requests)
    assert server.terminate(timeout=15) == 0, server.stderr()  # the deploy

    for request in requests:
        assert server.store.require(request.id).state != State.PENDING_APPROVAL
    assert not [r for r in server.requests() if r.state == State.FAILED], server.requests()
    slack.delay = 0.0
    restarted = start_process()
    assert_copied_once_each(dws, restarted, requests)
    for request in requests:
        wait_for_reply(slack, restarted.store.require(request.id), "is AVAILABLE", timeout=20)


def test_sigkill_right_after_acknowledged_clicks_keeps_every_approval(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(server, slack, REQUESTER, source, f"crash-{i}") for i in range(6)]
    slack.delay = 0.3

    approve_all(server, requests)
    server.kill()

    for request in requests:
        decided = server.store.require(request.id)
        assert decided.state != State.PENDING_APPROVAL, "an acknowledged approval was lost"
        assert decided.approved_by == APPROVER
    slack.delay = 0.0
    restarted = start_process()
    assert_copied_once_each(dws, restarted, requests)


@pytest.mark.engines  # the same promise on PostgreSQL
def test_two_processes_on_one_database_copy_and_post_each_request_once(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    first = start_process()
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"twin-{i}") for i in range(6)]
    dws.copy_delay = 1.5
    approve_all(first, requests[:3])
    while dws.copy_calls == 0:  # copies in flight in the first process
        time.sleep(0.02)

    second = start_process()  # a preboot deploy, or a second web dyno
    approve_all(second, requests[3:])

    assert_copied_once_each(dws, second, requests)
    for request in requests:
        done = first.store.require(request.id)
        assert len(root_posts(slack, done)) == 1, f"{done.label} posted more than once"
        wait_for_reply(slack, done, "is AVAILABLE", timeout=20)
        posts = [e for e in first.store.events(request.id) if e["kind"] == "copy_started"]
        assert len(posts) == 1


def test_messages_owed_at_a_sigkill_are_delivered_after_the_restart(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process()
    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "owed")
    slack.rate_limit_for(4.0)
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED)
    owed = [row for row in server.store.open_work(request.id) if row["queue"] == "slack"]
    assert owed, "the replies should still be owed while Slack rate-limits"
    server.kill()

    restarted = start_process()
    for needle in ("was approved by", str(done.new_snapshot_id), "is AVAILABLE"):
        wait_for_reply(slack, done, needle, timeout=20)
    deadline = time.monotonic() + 10
    while restarted.store.open_work(request.id):
        assert time.monotonic() < deadline, restarted.store.open_work(request.id)
        time.sleep(0.05)


@pytest.mark.engines  # the same promise on PostgreSQL
def test_a_crash_loop_loses_duplicates_and_strands_nothing(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    rng = random.Random(20261129)
    source = automated(dws_snapshots).id
    dws.copy_delay = 0.3
    server = start_process()
    requests = [ask_for_copy(server, slack, REQUESTER, source, f"loop-{i}") for i in range(12)]
    acknowledged: set[int] = set()
    pending = list(requests)

    for _ in range(30):
        # A click or two on the live process, then SIGKILL at a random moment.
        for request in rng.sample(pending, k=min(len(pending), rng.choice([0, 1, 2]))):
            try:
                click(server, APPROVER, Action.APPROVE, request)
                acknowledged.add(request.id)
                pending.remove(request)
            except (httpx.TransportError, AssertionError):
                pass  # the process may already be going down: no 200, no promise
        time.sleep(rng.uniform(0.0, 0.4))
        server.kill()
        server = start_process()

    approve_all(server, pending)
    acknowledged |= {r.id for r in pending}
    assert acknowledged == {r.id for r in requests}
    assert_copied_once_each(dws, server, requests)
    for request in requests:
        done = server.store.require(request.id)
        wait_for_reply(slack, done, "is AVAILABLE", timeout=30)
        # The request message itself ends showing the final state.
        slack.wait_for(
            "chat.update",
            lambda c, done=done: c["ts"] == done.message_ts and "AVAILABLE" in str(c["blocks"]),
            timeout=30,
        )
    deadline = time.monotonic() + 15
    while any(server.store.open_work(r.id) for r in requests):
        assert time.monotonic() < deadline, "work left owed after the loop"
        time.sleep(0.1)


# --- live work is never taken over ---------------------------------------------------------------
#
# Regressions: leases were a fixed 120 s, never renewed, and a holder that lost one still wrote
# its outcome, so each of these made two linked-copy calls and failed requests whose copy
# existed ("DWS.0001 ... already exists").

LEASE = {"SNAPCOPY_LEASE_SECONDS": "3"}  # renewed every second
UNSHARE = ("unshare", "--pid", "--uts", "--fork", "--mount-proc", "--kill-child=SIGTERM")


def _can_unshare() -> bool:
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def slow_copies(dws: Any, seconds: float) -> None:
    """Every linked-copy is made at once but answered `seconds` later, for the next minute."""
    until = time.monotonic() + 60
    dws.inject(Fault("delay", method="POST", path="linked-copy", seconds=seconds, until=until))


def copy_posts(dws: Any, request: CopyRequest) -> list[Any]:
    return [
        r
        for r in dws.requests
        if r.method == "POST"
        and r.path.endswith("/linked-copy")
        and r.json()["backup_name"] == request.backup_name
    ]


def wait_for_posts(dws: Any, requests: list[CopyRequest]) -> None:
    deadline = time.monotonic() + 10
    while not all(copy_posts(dws, request) for request in requests):
        assert time.monotonic() < deadline, "the copies were never sent"
        time.sleep(0.02)


def assert_one_copy_each_and_no_stale_writes(
    dws: Any, slack: SlackStandIn, server: BotServer, requests: list[CopyRequest]
) -> list[list[str]]:
    """One linked-copy call per request, each `succeeded` with the snapshot DWS made, one
    outcome written, one request message; returns each request's event kinds."""
    trails = []
    for request in requests:
        done = wait_state(server, request, State.SUCCEEDED, timeout=40)
        assert len(copy_posts(dws, request)) == 1, f"{done.label}: more than one linked-copy"
        assert [s.id for s in copies_named(dws, request.backup_name)] == [done.new_snapshot_id]
        kinds = [e["kind"] for e in server.store.events(request.id)]
        assert kinds.count("copied") == 1 and kinds.count("available") == 1, kinds
        assert "copy_failed" not in kinds
        assert len(root_posts(slack, done)) == 1, f"{done.label} posted more than once"
        wait_for_reply(slack, done, "is AVAILABLE", timeout=20)
        trails.append(kinds)
    return trails


@pytest.mark.skipif(not _can_unshare(), reason="needs root to run unshare --pid --uts")
def test_a_second_process_in_its_own_pid_namespace_leaves_live_work_alone(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    first = start_process(env_overrides=LEASE)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"ns-{i}") for i in range(3)]
    slow_copies(dws, 8.0)  # answered after more than two leases
    approve_all(first, requests)
    wait_for_posts(dws, requests)

    # Two containers on one volume: it cannot see the first one's pids.
    second = start_process(env_overrides=LEASE, prefix=UNSHARE)

    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    for kinds in trails:
        assert "reconciled" not in kinds and "lease_expired" not in kinds, kinds
    assert "lease lost" not in first.stderr()


@pytest.mark.engines  # the same promise on PostgreSQL
def test_a_holder_stopped_past_its_lease_is_taken_over_and_writes_nothing_after(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    first = start_process(env_overrides=LEASE)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"paused-{i}") for i in range(2)]
    slow_copies(dws, 6.0)
    approve_all(first, requests)
    wait_for_posts(dws, requests)

    os.killpg(first.process.pid, signal.SIGSTOP)  # mid-call, holding the copy jobs
    try:
        second = start_process(env_overrides=LEASE)
        for request in requests:
            wait_state(second, request, State.SUCCEEDED, timeout=40)
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
    # The paused one wakes up to its answers from DWS, and to leases that are not its own.
    deadline = time.monotonic() + 10
    while first.stderr().count("lease lost") < len(requests):
        assert time.monotonic() < deadline, first.stderr()[-3000:]
        time.sleep(0.1)
    time.sleep(1.0)

    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    for request, kinds in zip(requests, trails, strict=True):
        assert "lease_expired" in kinds, kinds
        copied = [e for e in second.store.events(request.id) if e["kind"] == "copied"]
        assert copied[0]["details"]["adopted"] is True, "taken over: found by name"


def test_a_copy_call_slower_than_the_lease_keeps_its_lease(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    first = start_process(env_overrides=LEASE | {"DWS_COPY_TIMEOUT": "30"})
    second = start_process(env_overrides=LEASE)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"slow-{i}") for i in range(3)]
    slow_copies(dws, 10.0)  # more than three leases

    approve_all(first, requests)

    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    for request, kinds in zip(requests, trails, strict=True):
        assert "lease_expired" not in kinds, kinds
        copied = [e for e in second.store.events(request.id) if e["kind"] == "copied"]
        assert copied[0]["details"]["adopted"] is False, "its own answer, not a lookup"


@pytest.mark.parametrize("step", [600, -600], ids=["forward", "back"])
def test_a_clock_step_of_ten_minutes_takes_over_nothing_and_delays_nothing(
    start_process: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    tmp_path: Path,
    step: int,
) -> None:
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    shim = {"module": "tests.clockstep"}
    env = LEASE | {"TEST_CLOCK_OFFSET_FILE": str(offset), "SNAPCOPY_POLL_SECONDS": "1"}
    first = start_process(env_overrides=env, **shim)
    second = start_process(env_overrides=env, **shim)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"step-{i}") for i in range(3)]
    dws.copy_delay = 4.0  # followed for a few polls
    slow_copies(dws, 4.0)
    approve_all(first, requests)
    wait_for_posts(dws, requests)

    offset.write_text(str(step))  # mid-call, for every process at once
    started = time.monotonic()

    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    assert time.monotonic() - started < 40, "following was held up by the step"
    for kinds in trails:
        assert "lease_expired" not in kinds and "reconciled" not in kinds, kinds
