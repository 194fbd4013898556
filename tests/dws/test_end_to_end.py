"""The copy job against the real loopback stand-in: one copy per request, whatever the network
does. Each job run is one DWS call (bot/copier.py); the test runs the job again at once where
the queue would after its backoff, until the copy is made (or refused)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.domain import CopyRequest, NewRequest, State
from bot.dws.client import DwsClient, RetryPolicy
from bot.dws.errors import DwsError, DwsTransportError
from bot.dws.regional import RegionalDws
from bot.dws.standin import DwsStandIn, Fault
from bot.dws_jobs import Copier, copy_job
from bot.store import Store
from bot.work.workers import Done, Retry

from .conftest import POLICY
from .fakes import AK, PROJECT, SK, FakeClock

NAME = "keep-before-restore"
MOST_RUNS = 10


@pytest.fixture
def source_id(standin: DwsStandIn) -> str:
    standin.seed_demo()
    return standin.add_snapshot("dws-prod-20240601020000").id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "snapcopy.db")
    yield store
    store.close()


@pytest.fixture
def copier(store: Store, live_http: httpx.Client) -> Copier:
    jobs = DwsClient(live_http, PROJECT, retry=RetryPolicy(attempts=1))
    return Copier(store, RegionalDws({"": jobs}), poll_seconds=1.0, follow_seconds=60)


def copy_until_made(store: Store, copier: Copier, source_id: str) -> tuple[CopyRequest, list]:
    """Approve a request, run its copy job until it is done; returns it and the job's results."""
    new = NewRequest(
        source_snapshot_id=source_id, backup_name=NAME, requested_by="U0R", channel_id="C0"
    )
    request = store.create(
        new, state=State.APPROVED, expires_at=None, actor="U0R", work=[copy_job()]
    )
    results: list[Done | Retry] = []
    for _ in range(MOST_RUNS):
        job = store.claim("dws", "test", 60)
        assert job is not None and job.kind == "copy"
        result = copier(job)
        results.append(result)
        if isinstance(result, Done):
            store.finish(job, result.outcome, work=result.then)
            return store.require(request.id), results
        store.retry(job, after=0, error=result.error, problem=result.problem)
    raise AssertionError(f"still not copied after {MOST_RUNS} runs: {results}")


def copies_named(standin: DwsStandIn, name: str) -> int:
    return sum(s.name.lower() == name.lower() for s in standin.snapshots)


def calls(standin: DwsStandIn) -> list[tuple[str, str]]:
    """(method, last path segment) of every request the stand-in received."""
    return [(r.method, r.path.rsplit("/", 1)[-1]) for r in standin.requests]


def adopted(store: Store, request: CopyRequest) -> bool:
    return any(e["kind"] == "copied" and e["details"]["adopted"] for e in store.events(request.id))


def test_a_lost_response_leaves_exactly_one_copy(
    standin: DwsStandIn, store: Store, copier: Copier, source_id: str
) -> None:
    standin.inject(Fault("drop_after_store", path="linked-copy"))

    request, _ = copy_until_made(store, copier, source_id)

    assert adopted(store, request)
    assert standin.copy_calls == 1 and copies_named(standin, NAME) == 1
    assert [s.id for s in standin.snapshots if s.name == NAME] == [request.new_snapshot_id]
    # The name check, the copy whose answer was lost, the lookup that found it.
    assert calls(standin) == [("GET", "snapshots"), ("POST", "linked-copy"), ("GET", "snapshots")]


def test_a_503_before_anything_was_made_leaves_exactly_one_copy(
    standin: DwsStandIn, store: Store, copier: Copier, source_id: str
) -> None:
    standin.inject(Fault("status", path="linked-copy", status=503, error_code="DWS.0005"))

    request, _ = copy_until_made(store, copier, source_id)

    assert not adopted(store, request)
    assert standin.copy_calls == 1 and copies_named(standin, NAME) == 1
    assert calls(standin) == [
        ("GET", "snapshots"),
        ("POST", "linked-copy"),
        ("GET", "snapshots"),  # looked up before sending again: not there
        ("POST", "linked-copy"),
    ]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("reset", path="linked-copy"),
        Fault("html", path="linked-copy", status=502),
        # Stored, but the answer comes after the client's 0.3 s read timeout.
        Fault("delay", path="linked-copy", seconds=1.0),
    ],
    ids=["reset", "gateway-page", "late-answer"],
)
def test_an_ambiguous_failure_ends_with_exactly_one_copy(
    standin: DwsStandIn, store: Store, copier: Copier, source_id: str, fault: Fault
) -> None:
    standin.inject(fault)

    request, _ = copy_until_made(store, copier, source_id)

    assert request.state == State.COPYING and request.new_snapshot_id
    assert standin.copy_calls == 1 and copies_named(standin, NAME) == 1


def test_throttling_honours_retry_after(
    standin: DwsStandIn, store: Store, copier: Copier, source_id: str
) -> None:
    standin.inject(
        Fault(
            "status",
            path="linked-copy",
            status=429,
            error_code="APIG.0308",
            error_msg="The throttling threshold has been reached.",
            retry_after="3",
        )
    )

    _, results = copy_until_made(store, copier, source_id)

    assert isinstance(results[0], Retry) and results[0].after == 3.0
    assert standin.copy_calls == 1


def test_a_busy_cluster_is_tried_again(
    standin: DwsStandIn, store: Store, copier: Copier, source_id: str
) -> None:
    for _ in range(2):
        standin.inject(
            Fault(
                "status",
                path="linked-copy",
                status=409,
                error_code="DWS.0011",
                error_msg="Another operation is running on the cluster.",
            )
        )

    _, results = copy_until_made(store, copier, source_id)

    assert [type(result) for result in results] == [Retry, Retry, Done]
    assert standin.copy_calls == 1


def test_a_bad_request_fails_the_request_without_a_retry(
    standin: DwsStandIn, store: Store, copier: Copier, source_id: str
) -> None:
    standin.inject(
        Fault(
            "status",
            path="linked-copy",
            status=400,
            error_code="DWS.0001",
            error_msg="Invalid parameter.",
        )
    )

    request, results = copy_until_made(store, copier, source_id)

    assert len(results) == 1
    assert (request.state, request.error_code) == (State.FAILED, "DWS.0001")
    assert request.dws_request_ids, "the refusal's request id is kept"
    assert standin.copy_calls == 0


def test_get_retries_are_bounded(standin: DwsStandIn, live_client: DwsClient) -> None:
    for _ in range(POLICY.attempts + 2):
        standin.inject(Fault("status", method="GET", status=503, error_code="DWS.0005"))
    with pytest.raises(DwsError) as caught:
        live_client.list_snapshots()
    assert caught.value.status == 503
    assert len(standin.requests) == POLICY.attempts


def test_unreachable_service_is_a_transport_error_that_was_not_sent(
    live_http: httpx.Client, standin: DwsStandIn, clock: FakeClock
) -> None:
    standin.stop()  # nothing listens on the port any more: connections are refused
    client = DwsClient(live_http, PROJECT, retry=RetryPolicy(attempts=1))
    with pytest.raises(DwsTransportError) as caught:
        client.copy_once("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", NAME)
    assert caught.value.sent is False
    assert SK not in str(caught.value) and AK not in str(caught.value)
