"""Two hosts on one PostgreSQL: the second `snapcopy serve` in a pid and UTS namespace of its
own, with another hostname, as two containers on two nodes would be. Neither can tell whether
the other's processes run, so work moves between them only when a lease runs out.

- A holder killed mid-copy: the other host finishes the copy within 45 s, with the one
  linked-copy call that reached DWS (adopted by name), either way round.
- A holder paused past its lease: the other host takes over and finishes; the paused one wakes
  to its DWS answer and writes nothing (its lease token no longer matches): one call, one
  `available`, and nothing in the trail of the paused process after the takeover.
- Two hosts starting together on an empty database: one runs the migrations, the other finds
  them done; both serve.

The crash loop of tests/test_processes.py runs on PostgreSQL too (it is marked `engines`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from bot.domain import CopyRequest, State
from bot.store.postgres import MIGRATION_LOCK
from bot.store.schema import MIGRATIONS
from bot.work.holder import Holder
from bot.work.queue import Queue
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, thread_replies
from tests.harness import REQUESTER, BotServer
from tests.slack_standin import SlackStandIn
from tests.test_processes import (
    LEASE,
    UNSHARE,
    _can_unshare,
    approve_all,
    assert_one_copy_each_and_no_stale_writes,
    slow_copies,
    wait_for_posts,
)

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not _can_unshare(), reason="needs root to run unshare --pid --uts"),
]

# The other host: its own pids and its own hostname. The mount namespace --mount-proc makes is a
# copy of this one's, so PostgreSQL's socket directory is there too.
OTHER_HOSTNAME = "snapcopy-node-b"
OTHER_HOST = (*UNSHARE, "sh", "-c", f'hostname {OTHER_HOSTNAME} && exec "$@"', "sh")
THIS_HOST: tuple[str, ...] = ()


def on_postgres(pg_url: str) -> dict[str, str]:
    return LEASE | {"SNAPCOPY_DB": pg_url}


def hostname(prefix: Sequence[str]) -> str:
    return OTHER_HOSTNAME if prefix else socket.gethostname()


def host_of(holder: str) -> str:
    """The host a lease holder's name says it runs on (bot/work/holder.py)."""
    parsed = Holder.parse(holder)
    assert parsed is not None, holder
    return parsed.host


def copy_rows(server: BotServer, request: CopyRequest) -> list[dict[str, Any]]:
    rows = server.store.work_rows(request.id)
    return [row for row in rows if row["queue"] == Queue.DWS and row["kind"] == "copy"]


def copy_holder(server: BotServer, request: CopyRequest) -> str:
    """Who holds the lease on the request's copy job now."""
    (row,) = copy_rows(server, request)
    assert row["done_at"] is None and row["claimed_by"], row
    return str(row["claimed_by"])


def expired_copy_leases(server: BotServer, request: CopyRequest) -> list[dict[str, Any]]:
    events = server.store.events(request.id)
    return [e for e in events if e["kind"] == "lease_expired" and e["details"]["kind"] == "copy"]


def refused_copies(server: BotServer) -> set[int]:
    """The copy jobs whose writes `server` found refused: its lease on them was lost."""
    return {
        r["work_id"]
        for r in server.log_records()
        if r.get("message", "").startswith("lease lost while working") and r["kind"] == "copy"
    }


def test_the_other_host_has_a_name_and_pids_of_its_own_and_reaches_postgresql(
    pg_url: str,
) -> None:
    probe = (
        "import os, socket, sys, psycopg\n"
        "with psycopg.connect(sys.argv[1]) as conn:\n"
        "    print(socket.gethostname(), os.getpid(), conn.execute('SELECT 1').fetchone()[0])"
    )
    done = subprocess.run(
        [*OTHER_HOST, sys.executable, "-c", probe, pg_url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    name, pid, answer = done.stdout.split()
    assert name == OTHER_HOSTNAME != socket.gethostname()
    assert int(pid) < 10, "a pid namespace of its own: it sees none of this host's processes"
    assert answer == "1", "PostgreSQL's socket is reachable from there"


@pytest.mark.parametrize(
    ("killed", "survivor"),
    [(THIS_HOST, OTHER_HOST), (OTHER_HOST, THIS_HOST)],
    ids=["this-host-killed", "other-host-killed"],
)
def test_the_other_host_finishes_the_copy_of_a_killed_holder_with_one_call(
    pg_url: str,  # first: the database outlives the processes on it
    start_process: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    killed: tuple[str, ...],
    survivor: tuple[str, ...],
) -> None:
    holder = start_process(env_overrides=on_postgres(pg_url), prefix=killed)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(holder, slack, REQUESTER, source, f"killed-{i}") for i in range(2)]
    slow_copies(dws, 4.0)  # the copies are made, their answers are late: in flight
    approve_all(holder, requests)
    wait_for_posts(dws, requests)
    other = start_process(env_overrides=on_postgres(pg_url), prefix=survivor)
    held = {request.id: copy_holder(other, request) for request in requests}
    assert {host_of(name) for name in held.values()} == {hostname(killed)}, held

    started = time.monotonic()
    holder.kill()
    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, other, requests)
    took = time.monotonic() - started
    assert took < 45, f"finished by the other host {took:.1f} s after the kill"
    assert dws.copy_calls == len(requests), "one linked-copy made per request"
    for request, kinds in zip(requests, trails, strict=True):
        # Not given back by a pid check (the other host cannot see the pid): it ran out.
        assert "reconciled" not in kinds, kinds
        (expired,) = expired_copy_leases(other, request)
        assert expired["details"]["holder"] == held[request.id]
        copied = [e for e in other.store.events(request.id) if e["kind"] == "copied"]
        assert copied[0]["details"]["adopted"] is True, "found by name, not copied again"


def test_a_host_paused_past_its_lease_writes_nothing_when_it_wakes(
    pg_url: str,  # first: the database outlives the processes on it
    start_process: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
) -> None:
    first = start_process(env_overrides=on_postgres(pg_url))
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"stopped-{i}") for i in range(2)]
    slow_copies(dws, 5.0)  # answered while it is stopped: it reads the answer when it wakes
    approve_all(first, requests)
    wait_for_posts(dws, requests)
    held = {request.id: copy_holder(first, request) for request in requests}
    stale_rows = {request.id: copy_rows(first, request)[0]["id"] for request in requests}

    os.killpg(first.process.pid, signal.SIGSTOP)  # a GC stall, a frozen VM, a partition
    stopped = time.monotonic()
    try:
        second = start_process(env_overrides=on_postgres(pg_url), prefix=OTHER_HOST)
        for request in requests:
            second.wait_for_request(request.id, State.SUCCEEDED, timeout=40)
        assert time.monotonic() - stopped > float(LEASE["SNAPCOPY_LEASE_SECONDS"])
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)

    # It wakes up to DWS's answers and writes them under leases that are no longer its own:
    # each copy's write is refused, by the token of the lease it held.
    deadline = time.monotonic() + 15
    while not set(stale_rows.values()) <= refused_copies(first):
        assert time.monotonic() < deadline, first.stderr()[-3000:]
        time.sleep(0.1)

    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    assert dws.copy_calls == len(requests)
    for request, kinds in zip(requests, trails, strict=True):
        assert kinds.count("available") == 1, kinds  # succeeded once
        assert second.store.require(request.id).state == State.SUCCEEDED
        replies = [c for c in thread_replies(slack, request) if "is AVAILABLE" in c["text"]]
        assert len(replies) == 1, "told once"

        # The takeover, and after it nothing of the stopped process.
        events = second.store.events(request.id)
        (expired,) = expired_copy_leases(second, request)
        assert expired["details"]["holder"] == held[request.id]
        after = [e for e in events if e["id"] > expired["id"]]
        assert {"copied", "available"} <= {e["kind"] for e in after}, after
        for event in after:
            assert event["actor"] is None, event
            if event["kind"] == "lease_expired":  # the other host taking over its Slack work
                assert event["details"]["holder"] == held[request.id], event
            else:
                assert held[request.id] not in json.dumps(event["details"]), event
        copied = next(e for e in after if e["kind"] == "copied")
        assert copied["details"]["adopted"] is True, "taken over: found by name"

        # The work rows: the copy job claimed twice (once by each host) and finished once,
        # by the new holder; a finish of the stale holder would have added a second follow.
        rows = second.store.work_rows(request.id)
        dws_rows = [(r["kind"], r["outcome"]) for r in rows if r["queue"] == Queue.DWS]
        assert dws_rows == [("copy", "copied"), ("follow", "available")], rows
        (copy_row,) = copy_rows(second, request)
        assert copy_row["id"] == stale_rows[request.id] and copy_row["attempts"] == 2, copy_row
        assert all(r["done_at"] and r["lease_token"] is None for r in rows), rows

    # The stopped process logged no step of these requests after the takeover; the other did.
    ids = {request.id for request in requests}
    steps = [r for r in first.log_records() if r.get("logger") == "snapcopy.requests"]
    before = {"requested", "approved", "copy_started"}
    assert not [r for r in steps if r["request_id"] in ids and r["event"] not in before], steps
    finished = [r for r in second.log_records() if r.get("event") == "available"]
    assert {r["request_id"] for r in finished} == ids
    assert first.process.poll() is None and first.health()["database"] is True, "serving on"


def test_two_hosts_starting_together_on_an_empty_database_migrate_once(
    pg_url: str,  # first: the database outlives the processes on it
    start_process: StartServer,
    slack: SlackStandIn,
    bot_env: dict[str, str],
    dws_snapshots: list[Any],
) -> None:
    servers: list[BotServer] = []
    errors: list[BaseException] = []
    env = bot_env | {"SNAPCOPY_DB": pg_url}  # fixtures resolved before the threads

    def start(prefix: tuple[str, ...]) -> None:
        try:
            servers.append(start_process(env, prefix=prefix))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(p,)) for p in (THIS_HOST, OTHER_HOST)]
    # Both must meet at the migration, not one after the other is done: a third host holds
    # the migrations' lock until both wait for it.
    with psycopg.connect(pg_url, autocommit=True) as third:
        third.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 15
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        while (count := third.execute(waiting).fetchone()) != (2,):
            assert not errors, [str(error) for error in errors]
            assert time.monotonic() < deadline, f"{count} of 2 hosts wait for the migrations"
            time.sleep(0.02)
        third.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
    for thread in threads:
        thread.join()
    assert errors == [] and len(servers) == 2, [str(error) for error in errors]

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version, at FROM schema_version ORDER BY version").fetchall()
    assert [version for version, _ in rows] == list(range(1, len(MIGRATIONS) + 1))
    assert len({at for _, at in rows}) == 1, "every migration in one transaction: one host's"
    for server in servers:
        assert server.health()["database"] is True
        problems = [r for r in server.log_records() if r["level"] in ("ERROR", "CRITICAL")]
        assert problems == [] and "Traceback" not in server.stderr(), problems
    # Both serve, on the one schema.
    source = automated(dws_snapshots).id
    asked = [
        ask_for_copy(server, slack, REQUESTER, source, f"host-{number}")
        for number, server in enumerate(servers)
    ]
    for server in servers:
        assert [r.id for r in server.requests()] == [r.id for r in asked]
