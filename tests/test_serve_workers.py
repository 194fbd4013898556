"""`snapcopy serve --workers N`: N processes on one port and one database, supervised."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bot.domain import State
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated
from tests.harness import REQUESTER, BotServer
from tests.slack_standin import SlackStandIn
from tests.test_processes import approve_all, assert_copied_once_each

pytestmark = pytest.mark.process


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(child) for child in text}
    return found


def serving_children(server: BotServer, count: int, timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        found = children(server.process.pid)  # type: ignore[attr-defined]
        if len(found) == count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} serving processes, not {count}"
        time.sleep(0.05)


@pytest.mark.engines
def test_two_processes_share_the_work_and_stop_together(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process(args=("--workers", "2"))
    pids = serving_children(server, 2)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(server, slack, REQUESTER, source, f"both-{n}") for n in range(8)]
    approve_all(server, requests)
    assert_copied_once_each(dws, server, requests)
    assert server.terminate(timeout=20) == 0, server.stderr()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "no process left behind"


@pytest.mark.engines
def test_a_serving_process_that_dies_is_replaced_and_nothing_is_lost(
    start_process: StartServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Any]
) -> None:
    server = start_process(args=("--workers", "2"))
    first = serving_children(server, 2)
    source = automated(dws_snapshots).id
    requests = [ask_for_copy(server, slack, REQUESTER, source, f"die-{n}") for n in range(4)]
    approve_all(server, requests)
    os.kill(min(first), signal.SIGKILL)
    replaced = serving_children(server, 2)
    deadline = time.monotonic() + 15
    while replaced == first and time.monotonic() < deadline:
        time.sleep(0.05)
        replaced = serving_children(server, 2)
    assert min(first) not in replaced, "the dead process was replaced"
    assert_copied_once_each(dws, server, requests)
    for request in requests:
        assert server.store.require(request.id).state == State.SUCCEEDED


def test_a_start_up_that_cannot_go_on_stops_every_process_once(
    start_process: StartServer, tmp_path: Path
) -> None:
    with pytest.raises(AssertionError) as refused:
        start_process(
            args=("--workers", "2"),
            env_overrides={"SNAPCOPY_DB": "postgresql://x@localhost/x?host=/nonexistent/dir"},
            timeout=15,
        )
    assert "exited with 2" in str(refused.value)
    assert str(refused.value).count("snapcopy cannot start") >= 1
