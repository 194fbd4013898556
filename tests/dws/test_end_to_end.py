"""The client against the real loopback stand-in: one copy per call, whatever the network does."""

import httpx
import pytest

from bot.dws.client import DwsClient
from bot.dws.errors import DwsError, DwsTransportError
from bot.dws.standin import DwsStandIn, Fault

from .conftest import POLICY
from .fakes import AK, PROJECT, SK, FakeClock

NAME = "keep-before-restore"


@pytest.fixture
def source_id(standin: DwsStandIn) -> str:
    standin.seed_demo()
    return standin.add_snapshot("dws-prod-20240601020000").id


def copies_named(standin: DwsStandIn, name: str) -> int:
    return sum(s.name.lower() == name.lower() for s in standin.snapshots)


def calls(standin: DwsStandIn) -> list[tuple[str, str]]:
    """(method, last path segment) of every request the stand-in received."""
    return [(r.method, r.path.rsplit("/", 1)[-1]) for r in standin.requests]


def test_lost_response_leaves_exactly_one_copy(
    standin: DwsStandIn, live_client: DwsClient, source_id: str
) -> None:
    standin.inject(Fault("drop_after_store", path="linked-copy"))

    result = live_client.copy_snapshot(source_id, NAME)

    assert result.adopted is True
    assert standin.copy_calls == 1
    assert copies_named(standin, NAME) == 1
    assert [s.id for s in standin.snapshots if s.name == NAME] == [result.snapshot_id]
    assert calls(standin) == [("POST", "linked-copy"), ("GET", "snapshots")]


def test_503_before_anything_was_made_leaves_exactly_one_copy(
    standin: DwsStandIn, live_client: DwsClient, source_id: str
) -> None:
    standin.inject(Fault("status", path="linked-copy", status=503, error_code="DWS.0005"))

    result = live_client.copy_snapshot(source_id, NAME)

    assert result.adopted is False
    assert standin.copy_calls == 1
    assert copies_named(standin, NAME) == 1
    assert calls(standin) == [
        ("POST", "linked-copy"),
        ("GET", "snapshots"),
        ("POST", "linked-copy"),
    ]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("reset", path="linked-copy"),
        Fault("html", path="linked-copy", status=502),
    ],
)
def test_ambiguous_failure_without_a_copy_is_retried_once_looked_up(
    standin: DwsStandIn, live_client: DwsClient, source_id: str, fault: Fault
) -> None:
    standin.inject(fault)
    result = live_client.copy_snapshot(source_id, NAME)
    assert result.adopted is False
    assert standin.copy_calls == 1
    assert copies_named(standin, NAME) == 1


def test_read_timeout_then_adopt(
    standin: DwsStandIn, live_client: DwsClient, source_id: str
) -> None:
    # The copy is stored, but the answer comes after the client's 0.3 s read timeout.
    standin.inject(Fault("delay", path="linked-copy", seconds=1.0))

    result = live_client.copy_snapshot(source_id, NAME)

    assert result.adopted is True
    assert result.request_id is None  # the answer that would have carried it never came
    assert standin.copy_calls == 1
    assert copies_named(standin, NAME) == 1


def test_throttling_honours_retry_after(
    standin: DwsStandIn, live_client: DwsClient, source_id: str, clock: FakeClock
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
    result = live_client.copy_snapshot(source_id, NAME)
    assert result.adopted is False
    assert clock.sleeps == [3.0]
    assert calls(standin) == [("POST", "linked-copy"), ("POST", "linked-copy")]
    assert standin.copy_calls == 1


def test_busy_cluster_is_retried(
    standin: DwsStandIn, live_client: DwsClient, source_id: str, clock: FakeClock
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
    live_client.copy_snapshot(source_id, NAME)
    assert clock.sleeps == [0.5, 1.0]
    assert standin.copy_calls == 1


def test_bad_request_is_not_retried(
    standin: DwsStandIn, live_client: DwsClient, source_id: str
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
    with pytest.raises(DwsError) as caught:
        live_client.copy_snapshot(source_id, NAME)
    assert (caught.value.status, caught.value.error_code) == (400, "DWS.0001")
    assert caught.value.request_id
    assert len(standin.requests) == 1
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
    client = DwsClient(
        live_http, PROJECT, sleep=clock.sleep, monotonic=clock.monotonic, retry=POLICY
    )
    with pytest.raises(DwsTransportError) as caught:
        client.copy_snapshot("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", NAME)
    assert caught.value.sent is False
    assert len(clock.sleeps) == POLICY.attempts - 1
    assert SK not in str(caught.value) and AK not in str(caught.value)
