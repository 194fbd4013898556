"""Which DWS failures are worth another try, and how: the retry rules of the DWS jobs, as data.

Three verdicts:

- TRANSIENT: the same call may succeed later (throttling, a busy cluster, 5xx, timeouts, a
  connection that failed, an answer that is not JSON). Retried with capped exponential backoff
  (bot/work/backoff.py), or after the server's `Retry-After` when it gives one.
- AMBIGUOUS: a linked-copy that may or may not have created the copy (the answer was lost, or a
  5xx). Retried like TRANSIENT, and the retry looks the name up before calling again.
- FINAL: a definite refusal; the request fails with the reason.
"""

from __future__ import annotations

from enum import StrEnum

from bot.dws import DwsError, DwsTransportError, MalformedResponse
from bot.work.backoff import Backoff


class Verdict(StrEnum):
    TRANSIENT = "transient"
    AMBIGUOUS = "ambiguous"
    FINAL = "final"


DWS_BACKOFF = Backoff(base=2.0, cap=300.0)


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


def name_taken(error: DwsError) -> bool:
    """A linked-copy refused because a snapshot of that name exists already."""
    client_error = error.status is not None and 400 <= error.status < 500
    return client_error and "already exist" in error.error_msg.lower()
