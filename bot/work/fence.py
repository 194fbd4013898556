"""The fence: writes made while running a row of work count only while its lease holds.

A worker runs each row's handler inside `holding(claimed)`. Every write transaction the store
opens on that thread meanwhile first checks, inside the same transaction, that the lease is
still `claimed`'s (bot/work/queue.py `held`) and raises `LeaseLost` otherwise, so it writes
nothing. The check and the writes commit together, and a takeover is itself a write, so none
can slip in between: a holder that lost its lease (paused past it, cut off from the database)
changes no request, adds no event and owes nobody a message afterwards, whichever store method
its handler calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bot.work.queue import Claimed

_local = threading.local()


class LeaseLost(Exception):
    """The lease on a row of work is no longer this holder's: another one works on it now."""

    def __init__(self, claimed: Claimed) -> None:
        self.claimed = claimed
        super().__init__(f"the lease on work {claimed.id} ({claimed.kind}) is lost")


@contextmanager
def holding(claimed: Claimed) -> Iterator[None]:
    """Fence this thread's store writes with `claimed`'s lease until the block ends."""
    previous = getattr(_local, "claimed", None)
    _local.claimed = claimed
    try:
        yield
    finally:
        _local.claimed = previous


def current() -> Claimed | None:
    """The lease this thread's writes are fenced by, if any."""
    claimed: Claimed | None = getattr(_local, "claimed", None)
    return claimed
