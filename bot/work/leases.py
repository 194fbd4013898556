"""Keeping leases: renewing this process's, and ending other holders' that ran out.

- Renewal: a `Keeper` renews every lease its workers hold, every `lease_seconds / 3` on its own
  thread and its own monotonic schedule, whatever those workers are doing. A DWS call longer
  than the lease (DWS_COPY_TIMEOUT may be) keeps its lease for as long as the process runs; a
  process that stops running (SIGKILL, SIGSTOP, a frozen VM) stops renewing.
- Expiry: a lease runs out when this process has watched its beat count (renewals and fenced
  writes, bot/work/queue.py) stand still for `lease_seconds` by its own time.monotonic(). Only
  then is it ended, by a compare-and-set on the token and beat count it watched, so a renewal
  in between wins. No wall clock is compared anywhere: stepping the clock forward ends no live
  lease, and stepping it back keeps no dead one. A holder that is certainly dead
  (bot/work/holder.py) is given back at once by the sweeper instead.
- Due times: rows whose due time was set before the clock was set back are moved to their
  intended delay from now (`rebase`), so following a copy is not held up by the step.

What a holder that lost its lease may still write is stopped by the fence (bot/work/fence.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.errors import StoreUnavailable
from bot.store import Store
from bot.work.queue import Claimed, Lease, Queue

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
RENEWALS_PER_LEASE = 3


@dataclass
class Keeper:
    store: Store
    queue: Queue
    holder: str
    lease_seconds: float = LEASE_SECONDS
    # Called after leases that ran out were ended: their rows can be claimed now.
    on_freed: Callable[[], None] = lambda: None
    monotonic: Callable[[], float] = time.monotonic
    _held: dict[str, Claimed] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Other holders' leases by row: as first seen without a beat since, and when.
    _watched: dict[int, tuple[Lease, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self.lease_seconds / RENEWALS_PER_LEASE

    def hold(self, claimed: Claimed) -> None:
        with self._lock:
            self._held[claimed.token] = claimed

    def drop(self, claimed: Claimed) -> None:
        with self._lock:
            self._held.pop(claimed.token, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.queue}-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tend()
            except StoreUnavailable as error:
                log.warning(
                    "could not renew leases", extra={"queue": self.queue, "error": str(error)}
                )
            except Exception:
                log.exception("keeping leases failed", extra={"queue": self.queue})

    def tend(self) -> None:
        """One round: renew ours, end others' that ran out, move due times a clock step left
        behind."""
        self.renew()
        if self.expire_stale():
            self.on_freed()
        if self.store.rebase_due(self.queue):
            log.warning("the clock was set back: due times moved", extra={"queue": self.queue})
            self.on_freed()

    def renew(self) -> list[Claimed]:
        """Renew every lease held here; returns those found lost (taken over, or ended)."""
        with self._lock:
            held = dict(self._held)
        kept = self.store.renew(list(held), self.lease_seconds)
        lost = [claimed for token, claimed in held.items() if token not in kept]
        for claimed in lost:
            log.warning(
                "lease lost: another holder works on this row now; this one writes nothing more",
                extra={"queue": self.queue, "work_id": claimed.id, "kind": claimed.kind},
            )
        return lost

    def expire_stale(self) -> list[Lease]:
        """End other holders' leases whose beats stood still for a whole lease."""
        seen = {lease.id: lease for lease in self.store.leases(self.queue)}
        # Read after the leases: a stall during the read (a pause, a wait for a connection)
        # must not count as time they were seen standing still.
        now = self.monotonic()
        watched: dict[int, tuple[Lease, float]] = {}
        for row_id, lease in seen.items():
            if lease.holder == self.holder:
                continue  # ours are renewed, not watched
            before = self._watched.get(row_id)
            if before is not None and before[0] == lease:
                watched[row_id] = before
            else:
                watched[row_id] = (lease, now)
        self._watched = watched
        ended = []
        for lease, since in list(watched.values()):
            if now - since >= self.lease_seconds and self.store.expire(lease, now - since):
                log.warning(
                    "a lease ran out: its holder stopped renewing it",
                    extra={"queue": self.queue, "work_id": lease.id, "holder": lease.holder},
                )
                del self._watched[lease.id]
                ended.append(lease)
        return ended
