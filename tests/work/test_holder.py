"""Holder names (bot/work/holder.py): a lease is given back early only when its holder is
certainly dead, which a process in another pid namespace, on another boot or another host never
is (regression: a second process in its own pid namespace could not see the first one's pid,
took it for dead and gave its live leases back)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bot.work.holder import Holder, certainly_dead, this_process

pytestmark = pytest.mark.skipif(
    not this_process().pid_namespace, reason="needs a /proc of this pid namespace (Linux)"
)


@pytest.fixture
def ended() -> Holder:
    """The holder name a process had, after it exited and was reaped."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    name = dataclasses.replace(this_process(), pid=child.pid, start=_start(child.pid))
    child.kill()
    child.wait()
    return name


@pytest.fixture
def running() -> Iterator[Holder]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield dataclasses.replace(this_process(), pid=child.pid, start=_start(child.pid))
    finally:
        child.kill()
        child.wait()


def _start(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[19]


def test_a_name_says_host_pid_namespace_boot_start_and_instance() -> None:
    me = this_process()
    assert Holder.parse(me.name) == me
    assert me.pid_namespace.isdigit() and len(me.boot) == 36 and me.start.isdigit()
    assert this_process().instance != me.instance


def test_a_process_that_ended_here_is_dead(ended: Holder) -> None:
    assert certainly_dead(ended.name)


def test_a_running_process_is_not(running: Holder) -> None:
    assert not certainly_dead(running.name)


def test_a_reused_pid_is_not_its_old_holder(running: Holder) -> None:
    earlier = dataclasses.replace(running, start=str(int(running.start) - 1))
    assert certainly_dead(earlier.name)
    assert certainly_dead(dataclasses.replace(this_process(), start="1").name)


def test_a_zombie_holds_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holder = dataclasses.replace(this_process(), pid=child.pid, start=_start(child.pid))
        child.kill()
        deadline = time.monotonic() + 10
        while True:  # until the kernel has made it a zombie (nobody reaps it yet)
            with open(f"/proc/{child.pid}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] == "Z":
                    break
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.005)
        assert certainly_dead(holder.name)
    finally:
        child.wait()


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"pid_namespace": "4026531999"},  # another container on the same volume
        {"boot": "00000000-0000-0000-0000-000000000000"},  # before a reboot, or another host
        {"host": "another-host"},
        {"pid_namespace": ""},  # a process that could not tell its namespace
    ],
    ids=["other-pid-namespace", "other-boot", "other-host", "unknown-namespace"],
)
def test_a_holder_elsewhere_is_never_declared_dead(
    ended: Holder, elsewhere: dict[str, str]
) -> None:
    assert not certainly_dead(dataclasses.replace(ended, **elsewhere).name)


@pytest.mark.parametrize("name", ["host:123:abcd", "garbage", "", "h:x:1:2:3:4"])
def test_names_of_older_versions_wait_for_their_lease(name: str) -> None:
    assert Holder.parse(name) is None or not Holder.parse(name)
    assert not certainly_dead(name)
