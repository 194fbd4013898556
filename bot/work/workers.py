"""Threads that claim due work from the database and run it.

Each `Workers` serves one `Queue` with a few threads. A thread claims one due
row with a lease (`Store.claim`: one conditional UPDATE, so threads and processes never run a row
twice), hands it to the queue's handler, and applies the handler's `Result`: done (with the work
that follows), or due again later. Threads sleep until the next row is due, a listener of this
process adds work (the store calls `wake()` after such a commit), or a short poll finds work
another process added.

Shutdown (`stop()`) stops claiming, lets calls in flight end, and gives back every lease this
process holds: work is paused, never failed. A crashed holder's leases run out by themselves;
on the same host, `release_dead_holders` gives them back at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.clock import age_seconds
from bot.store import Store
from bot.work.queue import Claimed, Queue, Work

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5
LEASE_SECONDS = 120.0


@dataclass(frozen=True)
class Done:
    """The row is finished; `then` is the work that follows it, added in the same transaction."""

    outcome: str
    then: tuple[Work, ...] = ()


@dataclass(frozen=True)
class Retry:
    """Try the row again `after` seconds from now.

    `problem` names the trouble (None when there was none, as when a poll found the copy still
    being created); `fresh` starts the attempt count (and so the backoff) from zero again.
    """

    after: float
    error: str = ""
    problem: str | None = None
    fresh: bool = False


Result = Done | Retry
Handler = Callable[[Claimed], Result]


def by_kind(handlers: dict[str, Handler]) -> Handler:
    """One queue's handler made of one handler per kind of row."""

    def handle(claimed: Claimed) -> Result:
        handler = handlers.get(claimed.kind)
        if handler is None:
            log.error("unknown kind of work", extra={"work_id": claimed.id, "kind": claimed.kind})
            return Done("unknown kind")
        return handler(claimed)

    return handle


def holder_name() -> str:
    """Who holds a lease: host and pid (so a dead holder on this host can be recognised) and a
    random part (so a reused pid is not mistaken for the old holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def release_dead_holders(store: Store) -> list[int]:
    """Give back leases held by processes of this host that no longer run (SIGKILL, OOM), so
    their work goes on now instead of when the lease runs out; returns the requests concerned."""
    host = socket.gethostname()
    released: list[int] = []
    for holder in store.lease_holders():
        name, _, rest = holder.partition(":")
        pid_text = rest.partition(":")[0]
        if name == host and pid_text.isdigit() and not _alive(int(pid_text)):
            released += store.release(holder, event="reconciled")
    return released


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process: alive
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process nobody has reaped yet (common in containers) holds nothing any more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc here: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


@dataclass
class Workers:
    store: Store
    queue: Queue
    handler: Handler
    holder: str
    threads: int = 4
    lease_seconds: float = LEASE_SECONDS
    idle_seconds: float = IDLE_POLL_SECONDS
    # Seconds to hold off claiming (Slack asked us to wait); 0 to go on.
    hold_off: Callable[[], float] = lambda: 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _wakeup: threading.Condition = field(default_factory=threading.Condition)
    _generation: int = 0
    _running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number in range(self.threads):
            thread = threading.Thread(
                target=self._loop, name=f"{self.queue}-worker-{number}", daemon=True
            )
            thread.start()
            self._running.append(thread)

    def wake(self) -> None:
        """New work may be due now: look at once instead of at the next poll."""
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    def stop(self, timeout: float) -> None:
        """Stop claiming, wait up to `timeout` for calls in flight, give back the leases."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._running:
            thread.join(max(0.0, deadline - time.monotonic()))
        released = self.store.release(self.holder)
        if released:
            log.info("work paused for shutdown", extra={"queue": self.queue, "requests": released})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._run_one()
            except Exception:
                log.exception("claiming work failed", extra={"queue": self.queue})
                wait = self.idle_seconds
            if wait > 0:
                self._sleep(wait)

    def _run_one(self) -> float:
        """Run one due row; returns how long to sleep before looking again (0: at once)."""
        wait = max(self.hold_off(), self._until_due())
        if wait > 0:
            return wait  # a read found nothing due: no write lock taken while idle
        claimed = self.store.claim(self.queue, self.holder, self.lease_seconds)
        if claimed is None:
            # What was due is held by another thread, or waits behind a row of its request
            # that is: the holder goes on to it when it is done.
            return self.idle_seconds
        try:
            result = self.handler(claimed)
        except Exception as error:
            # A bug of ours, not a refusal: keep the work, and say so loudly.
            where = {"queue": self.queue, "work_id": claimed.id, "kind": claimed.kind}
            log.exception("work failed", extra=where)
            result = Retry(after=60.0, error=f"internal error: {type(error).__name__}")
        if isinstance(result, Done):
            self.store.finish(claimed, result.outcome, work=result.then)
        else:
            self.store.retry(
                claimed,
                after=result.after,
                error=result.error,
                problem=result.problem,
                fresh=result.fresh,
            )
        return 0.0

    def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass (at most one idle poll), a wake(), or stop()."""
        with self._wakeup:
            generation = self._generation
            self._wakeup.wait_for(
                lambda: self._generation != generation or self._stop.is_set(),
                timeout=min(seconds, self.idle_seconds),
            )

    def _until_due(self) -> float:
        """Seconds until the earliest unfinished row is due (0 if one is); an idle poll's worth
        when there is none, since another process may add some."""
        due = self.store.next_due(self.queue)
        if due is None:
            return self.idle_seconds
        return max(0.0, -age_seconds(due))
