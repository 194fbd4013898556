"""Which DWS failures are worth another try, and after how long (bot/dws_retry.py): the table
the copy and follow jobs live by."""

from __future__ import annotations

import pytest

from bot.dws.errors import DwsError, DwsTimeout, DwsTransportError, MalformedResponse
from bot.dws_retry import Verdict, dws_copy_verdict, dws_problem, dws_read_verdict
from bot.work.backoff import Backoff


def refused(status: int, code: str | None = None) -> DwsError:
    return DwsError("no", status=status, error_code=code)


@pytest.mark.parametrize(
    ("error", "copy", "read"),
    [
        # Throttled or busy: refused before anything was done. Try again.
        (refused(429, "APIG.0308"), Verdict.TRANSIENT, Verdict.TRANSIENT),
        (refused(409, "DWS.0011"), Verdict.TRANSIENT, Verdict.TRANSIENT),
        # Never connected: nothing can have happened.
        (DwsTransportError("refused", sent=False), Verdict.TRANSIENT, Verdict.TRANSIENT),
        # The copy may exist: look the name up before calling again.
        (DwsTimeout("no answer", sent=None), Verdict.AMBIGUOUS, Verdict.TRANSIENT),
        (DwsTransportError("reset", sent=None), Verdict.AMBIGUOUS, Verdict.TRANSIENT),
        (refused(503, "DWS.0005"), Verdict.AMBIGUOUS, Verdict.TRANSIENT),
        (refused(500), Verdict.AMBIGUOUS, Verdict.TRANSIENT),
        # A success the client cannot read: the copy exists (its id is found by name).
        (MalformedResponse("html"), Verdict.AMBIGUOUS, Verdict.TRANSIENT),
        # Definite refusals fail the request.
        (refused(400, "DWS.0001"), Verdict.FINAL, Verdict.FINAL),
        (refused(403, "DWS.0015"), Verdict.FINAL, Verdict.FINAL),
        (refused(404, "DWS.5149"), Verdict.FINAL, Verdict.FINAL),
        (refused(401, "APIG.0301"), Verdict.FINAL, Verdict.FINAL),
    ],
)
def test_each_failure_has_its_verdict(error: DwsError, copy: Verdict, read: Verdict) -> None:
    assert dws_copy_verdict(error) == copy
    assert dws_read_verdict(error) == read


def test_problems_are_named_by_kind_so_people_hear_each_once() -> None:
    assert dws_problem(refused(503, "DWS.0005")) == dws_problem(refused(503, "DWS.0005"))
    assert dws_problem(refused(429, "APIG.0308")) != dws_problem(refused(503, "DWS.0005"))
    assert dws_problem(DwsTimeout("a", sent=None)) == dws_problem(
        DwsTransportError("b", sent=False)
    )
    assert dws_problem(refused(502)) == "502"  # no code: the status stands in


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (9, 300.0)])
def test_backoff_doubles_with_jitter_up_to_its_cap(attempt: int, ceiling: float) -> None:
    backoff = Backoff(base=2.0, cap=300.0)

    low = backoff.delay(attempt, uniform=lambda a, b: a)
    high = backoff.delay(attempt, uniform=lambda a, b: b)

    assert (low, high) == (ceiling / 2, ceiling)


def test_retry_after_wins_but_is_bounded() -> None:
    backoff = Backoff(base=2.0, cap=300.0, longest_retry_after=3600.0)

    assert backoff.delay(1, retry_after=40.0) == 40.0
    assert backoff.delay(1, retry_after=86400.0) == 3600.0
