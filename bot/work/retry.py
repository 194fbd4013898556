"""Which failures are worth another try, and when: the retry policy of all owed work, as data.

Work is retried by being put back in the queue with a later due time, never by sleeping in a
worker, so a shutdown or a crash only pauses it. Three verdicts:

- TRANSIENT: the same call may succeed later (throttling, a busy cluster, 5xx, timeouts, a
  connection that failed, an answer that is not JSON). Retried with capped exponential backoff
  and full jitter, or after the server's `Retry-After` when it gives one.
- AMBIGUOUS: a linked-copy that may or may not have created the copy (the answer was lost, or a
  5xx). Retried like TRANSIENT, and the retry looks the name up before calling again.
- FINAL: a definite refusal; the request fails with the reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.dws.errors import DwsError, DwsTransportError, MalformedResponse


class Verdict(StrEnum):
    TRANSIENT = "transient"
    AMBIGUOUS = "ambiguous"
    FINAL = "final"


@dataclass(frozen=True)
class Backoff:
    """`base * 2**(attempt-1)` seconds, at most `cap`; full jitter keeps processes apart."""

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


DWS_BACKOFF = Backoff(base=2.0, cap=300.0)
SLACK_BACKOFF = Backoff(base=1.0, cap=300.0)


def dws_read_verdict(error: DwsError) -> Verdict:
    """A GET (snapshot list or detail) that failed."""
    if error.retryable or isinstance(error, MalformedResponse | DwsTransportError):
        return Verdict.TRANSIENT
    return Verdict.FINAL


def dws_copy_verdict(error: DwsError) -> Verdict:
    """A linked-copy that failed: did it certainly not copy, maybe copy, or was it refused?"""
    if isinstance(error, DwsTransportError):
        return Verdict.TRANSIENT if error.sent is False else Verdict.AMBIGUOUS
    if isinstance(error, MalformedResponse):
        return Verdict.AMBIGUOUS  # a success status: the copy exists, its id is found by name
    if error.status is not None and error.status >= 500:
        return Verdict.AMBIGUOUS
    if error.retryable:  # 429/APIG.0308, 409/DWS.0011: refused before anything was done
        return Verdict.TRANSIENT
    return Verdict.FINAL


def dws_problem(error: DwsError) -> str:
    """A name for the kind of trouble, so people hear about each problem once, not per try."""
    if isinstance(error, DwsTransportError):
        return "unreachable"
    if isinstance(error, MalformedResponse):
        return "unreadable"
    return str(error.error_code or error.status or "error")


# Slack errors that no retry will fix: the message has to go somewhere else, or nowhere.
SLACK_PERMANENT = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "thread_not_found",
        "message_not_found",
        "cant_update_message",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "messages_tab_disabled",
    }
)
# Not listed, so retried until the outbox gives up: rate limits, Slack's 5xx and network trouble,
# and the token's own problems (invalid_auth, token_revoked, missing_scope), which an operator
# fixes for every message at once.
