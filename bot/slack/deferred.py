"""Work after the acknowledgement, on a thread pool of our own.

Bolt's lazy listeners do the same job, but deep-copy the whole request and its context (Web API
client, respond, say, …) for every lazy function; profiled, that copy was three quarters of the
CPU a click cost. Here the acknowledging function runs as the listener, the work is handed to
the pool with the objects Bolt already built, and the HTTP answer leaves as soon as the
listener returns. `process_before_response` stays on, so Bolt's 10 ms ack polling stays off.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, BoltContext, Respond, Say
from slack_sdk import WebClient

log = logging.getLogger(__name__)

Listener = Callable[..., None]


def _wanted(function: Listener) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


class AfterAck:
    """`app.action(X)(after_ack(acknowledge, work))`: acknowledge now, `work` right after."""

    def __init__(self, workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="after-ack")

    def __call__(self, acknowledge: Listener, work: Listener) -> Listener:
        ack_names, work_names = _wanted(acknowledge), _wanted(work)
        pool = self._pool

        def listener(
            ack: Ack,
            body: dict[str, Any],
            client: WebClient,
            context: BoltContext,
            respond: Respond,
            say: Say,
        ) -> None:
            given = {
                "ack": ack,
                "body": body,
                "client": client,
                "context": context,
                "respond": respond,
                "say": say,
            }
            acknowledge(**{name: given[name] for name in ack_names})
            future = pool.submit(work, **{name: given[name] for name in work_names})
            future.add_done_callback(_log_failure)

        listener.__name__ = f"{acknowledge.__name__}_then_{work.__name__}"
        return listener

    def close(self) -> None:
        # Work already handed over finishes; a restart's reconciliation covers the rest.
        self._pool.shutdown(wait=False)


def _log_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:  # work is wrapped with reports_errors; this is the last resort
        log.error("work after the acknowledgement failed", exc_info=error)
