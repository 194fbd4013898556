"""Two hosts on one PostgreSQL: the second `snapcopy serve` in a pid and UTS namespace of its
own, with another hostname, as two containers on two nodes would be. A dead holder's copy is
finished by the other with one linked-copy call; a paused holder wakes to nothing it may
write; two hosts starting together migrate once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from bot.domain import State
from bot.store.schema import MIGRATIONS
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated
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

# The other host: its own pids and its own hostname.
OTHER_HOST = (*UNSHARE, "sh", "-c", 'hostname snapcopy-node-b && exec "$@"', "sh")


def test_the_other_host_has_a_name_and_pids_of_its_own() -> None:
    probe = "import os, socket; print(socket.gethostname(), os.getpid())"
    done = subprocess.run(
        [*OTHER_HOST, sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    name, pid = done.stdout.split()
    assert name == "snapcopy-node-b" and name != socket.gethostname()
    assert int(pid) < 10, "a pid namespace of its own: it sees none of this host's processes"


def test_the_other_host_finishes_the_copy_of_a_killed_one_with_one_call(
    start_process: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    pg_url: str,
) -> None:
    first = start_process(env_overrides=LEASE | {"SNAPCOPY_DB": pg_url})
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"killed-{i}") for i in range(2)]
    slow_copies(dws, 4.0)
    approve_all(first, requests)
    wait_for_posts(dws, requests)  # in flight on the first host
    second = start_process(env_overrides=LEASE | {"SNAPCOPY_DB": pg_url}, prefix=OTHER_HOST)

    started = time.monotonic()
    first.kill()
    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    assert time.monotonic() - started < 45, "finished by the other host within 45 s"
    for kinds in trails:
        assert "lease_expired" in kinds, kinds  # not given back by a pid check across hosts


def test_a_host_paused_past_its_lease_writes_nothing_when_it_wakes(
    start_process: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    pg_url: str,
) -> None:
    first = start_process(env_overrides=LEASE | {"SNAPCOPY_DB": pg_url})
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(first, slack, REQUESTER, source, f"stopped-{i}") for i in range(2)]
    slow_copies(dws, 5.0)
    approve_all(first, requests)
    wait_for_posts(dws, requests)

    os.killpg(first.process.pid, signal.SIGSTOP)  # a GC stall, a frozen VM, a partition
    try:
        second = start_process(env_overrides=LEASE | {"SNAPCOPY_DB": pg_url}, prefix=OTHER_HOST)
        for request in requests:
            second.wait_for_request(request.id, State.SUCCEEDED, timeout=40)
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 15
    while first.stderr().count("lease lost") < len(requests):
        assert time.monotonic() < deadline, first.stderr()[-3000:]
        time.sleep(0.1)
    time.sleep(1.0)

    trails = assert_one_copy_each_and_no_stale_writes(dws, slack, second, requests)
    for request, kinds in zip(requests, trails, strict=True):
        assert kinds.count("available") == 1 and kinds.count("copied") == 1, kinds
        assert second.store.require(request.id).state == State.SUCCEEDED


def test_two_hosts_starting_together_on_an_empty_database_migrate_once(
    start_process: StartServer, bot_env: dict[str, str], pg_url: str
) -> None:
    servers: list[BotServer] = []
    errors: list[BaseException] = []

    def start(prefix: tuple[str, ...]) -> None:
        try:
            env = bot_env | {"SNAPCOPY_DB": pg_url}  # fixtures resolved before the threads
            servers.append(start_process(env, prefix=prefix))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(p,)) for p in ((), OTHER_HOST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(servers) == 2, [str(error) for error in errors]
    with psycopg.connect(pg_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
    for server in servers:
        assert server.health()["database"] is True
        assert "Traceback" not in server.stderr()
