"""How long to wait before the next try of a row of work.

Work is retried by being put back in the queue with a later due time, never by sleeping in a
worker, so a shutdown or a crash only pauses it. Which failures are worth another try is each
queue's own business (bot/dws_retry.py for DWS, bot/slack/outbox.py for Slack); this is only
the arithmetic they share.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`base * 2**(attempt-1)` seconds, at most `cap`, drawn with "equal jitter": between half
    that ceiling and the ceiling, so processes drift apart yet never retry at once. A server's
    `Retry-After` wins, up to `longest_retry_after`."""

    base: float = 1.0
    cap: float = 300.0
    longest_retry_after: float = 3600.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        if retry_after is not None:
            return min(retry_after, self.longest_retry_after)
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return uniform(ceiling / 2, ceiling)
