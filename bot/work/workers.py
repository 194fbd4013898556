"""Threads that claim due work from the database and run it.

Each `Workers` serves one `Queue` with a few threads. A thread claims one due
row with a lease (`Store.claim`: one conditional UPDATE, so threads and processes never run a row
twice), hands it to the queue's handler, and applies the handler's `Result`: done (with the work
that follows), or due again later. Threads sleep until the next row is due, a listener of this
process adds work (the store calls `wake()` after such a commit), or a short poll finds work
another process added.

While a handler runs, its lease is renewed by the `Keeper` (bot/work/leases.py) and its writes
are fenced by it (bot/work/fence.py): if the lease was lost meanwhile, the handler's writes and
the row's outcome are all refused, and the row is left to whoever holds it now.

Shutdown (`stop()`) stops claiming, lets calls in flight end, and gives back every lease this
process holds: work is paused, never failed. A crashed holder's leases run out by themselves
(a lease's length after its last renewal); when the holder is certainly dead
(bot/work/holder.py), `release_dead_holders` gives them back at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.clock import age_seconds
from bot.errors import StoreUnavailable
from bot.store import Store
from bot.work.fence import LeaseLost, holding
from bot.work.holder import certainly_dead, this_process
from bot.work.leases import LEASE_SECONDS, Keeper
from bot.work.queue import Claimed, Queue, Work

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5
# A store that cannot be written is said once this often per queue, not at every poll.
TROUBLE_LOG_SECONDS = 30.0


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
    """A new, unique name for the holder of this process's leases (bot/work/holder.py)."""
    return this_process().name


def release_dead_holders(store: Store) -> list[int]:
    """Give back leases held by processes that certainly no longer run (SIGKILL, OOM) on this
    host, in this pid namespace, since its boot, so their work goes on now instead of when the
    lease runs out; returns the requests concerned."""
    me = this_process()
    released: list[int] = []
    for holder in store.lease_holders():
        if certainly_dead(holder, me):
            released += store.release(holder, event="reconciled")
    return released


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
    _keeper: Keeper | None = None
    _trouble_said: float = -TROUBLE_LOG_SECONDS

    @property
    def keeper(self) -> Keeper:
        if self._keeper is None:
            self._keeper = Keeper(
                self.store, self.queue, self.holder, self.lease_seconds, on_freed=self.wake
            )
        return self._keeper

    def start(self) -> None:
        self.keeper.start()
        for number in range(self.threads):
            # The first thread polls for work other processes add; the others mostly wait to
            # be woken (a poll of every thread costs the database a read each).
            poll = self.idle_seconds * (1 if number == 0 else self.threads)
            thread = threading.Thread(
                target=self._loop, args=(poll,), name=f"{self.queue}-worker-{number}", daemon=True
            )
            thread.start()
            self._running.append(thread)

    def wake(self, added_to: Queue | None = None) -> None:
        """New work may be due now: one waiting thread looks at once instead of at its next
        poll. A woken thread that claims a row wakes the next, so rows added together are
        taken in parallel, and no thread looks for work that is not there (a herd of reads).

        `added_to`: the queue a commit added work to. Only its own workers wake, and none
        when the work was added by one of them: that thread claims again as soon as its row
        is done."""
        if added_to is not None and (
            added_to != self.queue or threading.current_thread() in self._running
        ):
            return
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify()

    def stop(self, timeout: float) -> None:
        """Stop claiming, wait up to `timeout` for calls in flight, give back the leases."""
        self._stop.set()
        with self._wakeup:
            self._wakeup.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._running:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.keeper.stop()
        try:
            released = self.store.release(self.holder)
        except StoreUnavailable as error:
            log.warning(
                "could not give work back at shutdown; its leases will run out",
                extra={"queue": self.queue, "error": str(error)},
            )
            return
        if released:
            log.info("work paused for shutdown", extra={"queue": self.queue, "requests": released})

    def _loop(self, poll: float) -> None:
        ran = False
        while not self._stop.is_set():
            # Taken before looking: a wake() while this thread looks is not lost.
            generation = self._generation
            try:
                wait = self._run_one(ran)
            except StoreUnavailable as error:
                self._trouble(error)
                wait = self.idle_seconds
            except Exception:
                log.exception("claiming work failed", extra={"queue": self.queue})
                wait = self.idle_seconds
            ran = wait == 0
            if wait > 0:
                self._sleep(min(wait, poll) if wait < self.idle_seconds else poll, generation)

    def _trouble(self, error: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self._trouble_said >= TROUBLE_LOG_SECONDS:
            self._trouble_said = now
            log.warning(
                "the database cannot be used; work waits",
                extra={"queue": self.queue, "reason": error.reason, "error": error.detail},
            )

    def _run_one(self, ran: bool) -> float:
        """Run one due row; returns how long to sleep before looking again (0: at once).

        `ran`: this thread has just run a row. Work tends to come in runs, so it claims at once
        rather than first reading when the next row is due (a statement less per row); an idle
        thread reads first, so no write is made while there is nothing to do."""
        wait = self.hold_off() or (0.0 if ran else self._until_due())
        if wait > 0:
            return wait
        claimed = self.store.claim(self.queue, self.holder, self.lease_seconds)
        if claimed is None:
            # What was due is held by another thread, or waits behind a row of its request
            # that is: the holder goes on to it when it is done. After a run, the read says
            # how long to sleep.
            if ran:
                return self._until_due() or self.idle_seconds
            return self.idle_seconds
        self.keeper.hold(claimed)
        if not ran:
            # Woken for new work: there may be more, so the next thread looks. A thread that
            # goes on from its own run does not: it will look again itself.
            self.wake()
        try:
            result = self._handle(claimed)
            if result is not None and not self._apply(claimed, result):
                self._lost(claimed)
        finally:
            self.keeper.drop(claimed)
        return 0.0

    def _handle(self, claimed: Claimed) -> Result | None:
        """The handler's result, with every write it makes fenced by the lease; None when the
        lease was lost meanwhile (the handler wrote nothing after that)."""
        try:
            with holding(claimed):
                return self.handler(claimed)
        except LeaseLost:
            self._lost(claimed)
            return None
        except StoreUnavailable as error:
            self._trouble(error)
            return Retry(after=self.idle_seconds * 4, error=f"database: {error.reason}")
        except Exception as error:
            # A bug of ours, not a refusal: keep the work, and say so loudly.
            where = {"queue": self.queue, "work_id": claimed.id, "kind": claimed.kind}
            log.exception("work failed", extra=where)
            return Retry(after=60.0, error=f"internal error: {type(error).__name__}")

    def _apply(self, claimed: Claimed, result: Result) -> bool:
        """Finish or retry the row; False when its lease is no longer ours."""
        if isinstance(result, Done):
            return self.store.finish(claimed, result.outcome, work=result.then)
        return self.store.retry(
            claimed,
            after=result.after,
            error=result.error,
            problem=result.problem,
            fresh=result.fresh,
        )

    def _lost(self, claimed: Claimed) -> None:
        log.warning(
            "lease lost while working: nothing more written, the new holder goes on",
            extra={"queue": self.queue, "work_id": claimed.id, "kind": claimed.kind},
        )

    def _sleep(self, seconds: float, generation: int) -> None:
        """Until `seconds` pass, a wake() since `generation`, or stop()."""
        with self._wakeup:
            self._wakeup.wait_for(
                lambda: self._generation != generation or self._stop.is_set(),
                timeout=seconds,
            )

    def _until_due(self) -> float:
        """Seconds until the earliest unfinished row is due (0 if one is); an idle poll's worth
        when there is none, since another process may add some."""
        due = self.store.next_due(self.queue)
        if due is None:
            return self.idle_seconds
        return max(0.0, -age_seconds(due))
