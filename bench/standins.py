"""The Slack and DWS stand-ins, run in the benchmark process, with what the benchmark needs on top.

`WatchedSlack` counts calls per method and hands a call to whoever registered for it, so that
dozens of concurrent flows can wait for "their" message without each one rescanning the whole
call log on every new call (which is what `SlackStandIn.wait_for` does, and at this volume
would make the stand-in, not the bot, the slowest part of the system).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.dbread import Reader
from bot.dws import Snapshot
from bot.dws.standin import DwsStandIn
from tests.harness import DWS_AK, DWS_PROJECT_ID, DWS_SK, ONCALL_GROUP, ONCALL_MEMBER
from tests.slack_standin import Call, SlackStandIn

Predicate = Callable[[Call], bool]


class Waiter:
    """One expected call; register it before doing what causes the call."""

    def __init__(self, method: str, predicate: Predicate) -> None:
        self.method = method
        self.predicate = predicate
        self.call: Call | None = None
        self._arrived = threading.Event()

    def matches(self, call: Call) -> bool:
        if call.method != self.method:
            return False
        try:
            return bool(self.predicate(call))
        except (KeyError, TypeError, IndexError):
            return False

    def deliver(self, call: Call) -> None:
        self.call = call
        self._arrived.set()

    def wait(self, timeout: float) -> Call:
        if not self._arrived.wait(timeout) or self.call is None:
            raise TimeoutError(f"no matching {self.method} call within {timeout} s")
        return self.call


class WatchedSlack(SlackStandIn):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._watch = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._waiters: list[Waiter] = []

    def _record(self, call: Call) -> Any:
        fault = super()._record(call)
        with self._watch:
            self._counts[call.method] += 1
            hits = [waiter for waiter in self._waiters if waiter.matches(call)]
            for waiter in hits:
                self._waiters.remove(waiter)
        for waiter in hits:
            waiter.deliver(call)
        return fault

    def expect(self, method: str, predicate: Predicate) -> Waiter:
        waiter = Waiter(method, predicate)
        with self._watch:
            self._waiters.append(waiter)
        return waiter

    def forget(self, waiter: Waiter) -> None:
        with self._watch:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def count(self, *methods: str) -> int:
        with self._watch:
            return sum(self._counts[method] for method in methods)

    def wait_count(self, methods: tuple[str, ...], at_least: int, timeout: float) -> float:
        """Wait until `methods` were called `at_least` times in all; returns the seconds waited.

        Used to let the bot finish the work it does after acknowledging before the next
        measurement starts, so one phase's backlog does not slow the next one down.
        """
        started = time.perf_counter()
        deadline = started + timeout
        while self.count(*methods) < at_least:
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{'/'.join(methods)}: {self.count(*methods)} of {at_least} calls after "
                    f"{timeout} s"
                )
            time.sleep(0.01)
        return time.perf_counter() - started


def start_slack() -> WatchedSlack:
    standin = WatchedSlack(usergroups={ONCALL_GROUP: [ONCALL_MEMBER]})
    standin.start()
    return standin


def start_dws() -> tuple[DwsStandIn, Snapshot]:
    """DWS answering at once (copies are AVAILABLE immediately); returns it and a copyable
    automated snapshot."""
    standin = DwsStandIn(DWS_AK, DWS_SK, DWS_PROJECT_ID, copy_delay=0.0).start()
    source = next(snapshot for snapshot in standin.seed_demo() if snapshot.is_automated)
    return standin, source


DRAIN_TIMEOUT = 120.0


def wait_until_idle(database: str, timeout: float = DRAIN_TIMEOUT) -> None:
    """Until the bot owes no DWS job and no Slack message."""
    deadline = time.monotonic() + timeout
    reader = Reader(database)
    try:
        while time.monotonic() < deadline:
            found = reader.one("SELECT count(*) FROM work WHERE done_at IS NULL")
            if found is not None and found[0] == 0:
                return
            time.sleep(0.1)
    finally:
        reader.close_thread()
    raise TimeoutError(f"the bot still owed work after {timeout} s")


def forget_copies(dws: DwsStandIn, database: str) -> int:
    """Once the bot owes nothing (no copy still followed), drop the copies the benchmark made
    from the DWS stand-in; returns how many.

    snapcopy lists the whole snapshot catalogue to check a name (twice per flow), so a catalogue
    that grows by one snapshot per flow would make every later flow slower than the one before
    and the ramp would measure the catalogue's size. Between ramp steps it goes back to the
    seeded handful. The stand-in has no delete call, hence its private state.
    """
    wait_until_idle(database)
    with dws._lock:
        copies = [key for key, record in dws._records.items() if record.created_at is not None]
        for key in copies:
            del dws._records[key]
        dws._requests.clear()  # the request log is for tests; here it only grows
    return len(copies)
