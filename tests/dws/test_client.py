"""The client over httpx.MockTransport: what it sends, and what it does with each failure."""

import logging
from typing import Any

import httpx
import pytest

from bot.dws.client import DwsClient, RetryPolicy, build_http_client
from bot.dws.errors import (
    CopyOutcomeUnknown,
    DwsError,
    DwsTimeout,
    DwsTransportError,
    MalformedResponse,
    SnapshotFailed,
    WaitTimedOut,
)
from bot.dws.models import CopiedSnapshot, Snapshot
from bot.dws.regions import endpoint_for
from bot.dws.signer import AkSkAuth
from bot.dws.validation import InvalidInput

from .conftest import POLICY
from .fakes import (
    AK,
    NEW_ID,
    PROJECT,
    SK,
    SOURCE_ID,
    FakeClock,
    FakeDws,
    body_of,
    copied,
    dws_error,
    listing,
    one,
    snapshot_json,
)

COPY = ("POST", f"/snapshots/{SOURCE_ID}/linked-copy")
LIST = ("GET", "/snapshots")
NAME = "nightly-copy"


# -- copy: the happy path and input checks ------------------------------------------------


def test_copy_posts_the_documented_request(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(copied(request_id="rid-42"))

    result = client.copy_snapshot(SOURCE_ID.upper(), f"  {NAME} ", "before the restore")

    assert result == CopiedSnapshot(NEW_ID, "rid-42", adopted=False)
    assert fake.calls == [COPY]
    request = fake.requests[0]
    assert body_of(request) == {"backup_name": NAME, "description": "before the restore"}
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"  # as the SDK
    assert request.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")
    assert request.headers["X-Project-Id"] == PROJECT


@pytest.mark.parametrize(
    ("snapshot_id", "name", "description", "field"),
    [
        ("../../secrets", NAME, "", "snapshot_id"),
        (SOURCE_ID, "1st-copy", "", "backup_name"),
        (SOURCE_ID, "abc", "", "backup_name"),
        (SOURCE_ID, NAME, "<script>", "description"),
    ],
)
def test_copy_checks_input_before_any_request(
    client: DwsClient, fake: FakeDws, snapshot_id: str, name: str, description: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.copy_snapshot(snapshot_id, name, description)
    assert caught.value.field == field
    assert fake.requests == []


# -- copy: failures that prove nothing was created -----------------------------------------


def test_throttled_copy_waits_as_long_as_retry_after_says(
    client: DwsClient, fake: FakeDws, clock: FakeClock
) -> None:
    fake.queue(
        dws_error(429, "APIG.0308", "Throttled", headers={"Retry-After": "7"}),
        copied(),
    )
    assert client.copy_snapshot(SOURCE_ID, NAME).adopted is False
    assert clock.sleeps == [7.0]
    assert fake.calls == [COPY, COPY]  # no lookup: a 429 proves nothing was made


def test_busy_cluster_copy_is_retried_with_backoff(
    client: DwsClient, fake: FakeDws, clock: FakeClock
) -> None:
    busy = dws_error(409, "DWS.0011", "Another operation is running on the cluster.")
    fake.queue(busy, busy, copied())
    client.copy_snapshot(SOURCE_ID, NAME)
    assert clock.sleeps == [0.5, 1.0]  # base_delay * 2**n, at the jitter's upper bound
    assert fake.calls == [COPY, COPY, COPY]


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout])
def test_copy_that_never_connected_is_sent_again_without_lookup(
    client: DwsClient, fake: FakeDws, failure: type[httpx.TransportError]
) -> None:
    fake.queue(failure, copied())
    assert client.copy_snapshot(SOURCE_ID, NAME).snapshot_id == NEW_ID
    assert fake.calls == [COPY, COPY]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
@pytest.mark.parametrize(
    "answer_body",
    [
        {"error_code": "DWS.0001", "error_msg": "Invalid parameter."},
        {"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information"},
        None,  # an empty body
        "<html><head><title>Denied</title></head></html>",
    ],
)
def test_refusals_are_not_retried(
    client: DwsClient, fake: FakeDws, clock: FakeClock, status: int, answer_body: object
) -> None:
    headers = {"X-Request-Id": "rid-refused"}
    if isinstance(answer_body, dict):
        fake.queue(httpx.Response(status, json=answer_body, headers=headers))
    else:
        fake.queue(httpx.Response(status, text=str(answer_body or ""), headers=headers))

    with pytest.raises(DwsError) as caught:
        client.copy_snapshot(SOURCE_ID, NAME)

    assert caught.value.status == status
    assert caught.value.request_id == "rid-refused"
    assert "Request id rid-refused." in str(caught.value)
    assert fake.calls == [COPY]
    assert clock.sleeps == []


# -- copy: ambiguous failures, where the name decides -------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        dws_error(500, "DWS.0005", "Server failure", request_id="rid-500"),
        dws_error(503, None, "Service unavailable", request_id="rid-503"),
        httpx.Response(502, text="<html><title>502 Bad Gateway</title></html>"),
        httpx.ReadTimeout,
        httpx.RemoteProtocolError,
        httpx.ReadError,
    ],
)
def test_ambiguous_failure_with_the_copy_present_adopts_it(
    client: DwsClient, fake: FakeDws, failure: object
) -> None:
    # DWS compares names case-insensitively, and so must the lookup.
    fake.queue(failure, listing(snapshot_json(name="Nightly-Copy")))  # type: ignore[arg-type]

    result = client.copy_snapshot(SOURCE_ID, NAME)

    assert result.adopted is True
    assert result.snapshot_id == NEW_ID
    expected_rid = (
        failure.headers.get("X-Request-Id") if isinstance(failure, httpx.Response) else None
    )
    assert result.request_id == expected_rid
    assert fake.calls == [COPY, LIST]


def test_ambiguous_failure_with_the_copy_absent_sends_it_again(
    client: DwsClient, fake: FakeDws
) -> None:
    fake.queue(dws_error(503, "DWS.0005", "busy"), listing(), copied(request_id="rid-2"))
    assert client.copy_snapshot(SOURCE_ID, NAME) == CopiedSnapshot(NEW_ID, "rid-2", False)
    assert fake.calls == [COPY, LIST, COPY]


def test_copy_made_late_by_a_lost_attempt_is_adopted_when_the_name_is_taken(
    client: DwsClient, fake: FakeDws
) -> None:
    # The first attempt timed out and its copy appeared only after the lookup; the second
    # attempt is refused for the duplicate name. That refusal must not hide the copy.
    fake.queue(
        httpx.ReadTimeout,
        listing(),
        dws_error(400, "DWS.0001", f"A snapshot named {NAME} already exists."),
        listing(snapshot_json(name=NAME)),
    )
    result = client.copy_snapshot(SOURCE_ID, NAME)
    assert (result.snapshot_id, result.adopted) == (NEW_ID, True)
    assert fake.calls == [COPY, LIST, COPY, LIST]


def test_lookup_failing_after_an_ambiguous_copy_reports_an_unknown_outcome(
    client: DwsClient, fake: FakeDws
) -> None:
    fake.queue(
        dws_error(500, "DWS.0005", "Server failure", request_id="rid-copy"),
        dws_error(403, "DWS.0015", "No permission", request_id="rid-list"),
    )
    with pytest.raises(CopyOutcomeUnknown) as caught:
        client.copy_snapshot(SOURCE_ID, NAME)
    error = caught.value
    assert (error.status, error.error_code, error.request_id) == (500, "DWS.0005", "rid-copy")
    assert isinstance(error.__cause__, DwsError) and error.__cause__.request_id == "rid-list"
    assert error.retryable is False
    assert NAME in str(error) and "before trying again" in str(error)
    assert fake.calls == [COPY, LIST]  # never a second POST when absence is unproven


def test_copy_attempts_are_bounded_and_the_last_error_is_raised(
    client: DwsClient, fake: FakeDws
) -> None:
    for attempt in range(POLICY.attempts):
        fake.queue(dws_error(503, "DWS.0005", "busy", request_id=f"rid-{attempt}"), listing())
    with pytest.raises(DwsError) as caught:
        client.copy_snapshot(SOURCE_ID, NAME)
    assert (caught.value.status, caught.value.request_id) == (503, f"rid-{POLICY.attempts - 1}")
    assert fake.calls.count(COPY) == POLICY.attempts
    assert fake.unused == 0


def test_copy_gives_up_when_retry_after_exceeds_the_budget(
    client: DwsClient, fake: FakeDws, clock: FakeClock
) -> None:
    fake.queue(dws_error(429, "APIG.0308", "Throttled", headers={"Retry-After": "3600"}))
    with pytest.raises(DwsError) as caught:
        client.copy_snapshot(SOURCE_ID, NAME)
    assert caught.value.retry_after == 3600.0
    assert clock.sleeps == []
    assert fake.calls == [COPY]


def test_connect_failures_stop_within_the_time_budget(fake: FakeDws, http: httpx.Client) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=100, base_delay=1.0, max_delay=4.0, total_budget=10.0)
    client = DwsClient(
        http,
        PROJECT,
        retry=policy,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        uniform=lambda low, high: high,
    )
    fake.queue(*[httpx.ConnectError] * 100)
    with pytest.raises(DwsTransportError) as caught:
        client.copy_snapshot(SOURCE_ID, NAME)
    assert caught.value.sent is False
    assert sum(clock.sleeps) <= policy.total_budget
    assert clock.sleeps == [1.0, 2.0, 4.0]  # a fourth sleep would pass the 10 s budget
    assert len(fake.requests) == 4


def test_unreadable_success_answer_adopts_the_copy_by_name(
    client: DwsClient, fake: FakeDws
) -> None:
    fake.queue(httpx.Response(200, json={"id": "?"}), listing(snapshot_json(name=NAME)))
    assert client.copy_snapshot(SOURCE_ID, NAME).adopted is True
    assert fake.calls == [COPY, LIST]


def test_unreadable_success_answer_without_the_copy_is_a_malformed_response(
    client: DwsClient, fake: FakeDws
) -> None:
    fake.queue(httpx.Response(200, text="OK", headers={"X-Request-Id": "rid-odd"}), listing())
    with pytest.raises(MalformedResponse) as caught:
        client.copy_snapshot(SOURCE_ID, NAME)
    assert caught.value.request_id == "rid-odd"
    assert "CopyResponse" in str(caught.value)


# -- reads ----------------------------------------------------------------------------------


def test_get_snapshot_reads_the_envelope(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(one(snapshot_json(status="CREATING", description=None, extra_field=1)))
    snapshot = client.get_snapshot(NEW_ID)
    assert (snapshot.id, snapshot.status, snapshot.description) == (NEW_ID, "CREATING", "")
    assert fake.calls == [("GET", f"/snapshots/{NEW_ID}")]


def test_get_snapshot_refuses_an_id_that_is_not_a_uuid(client: DwsClient, fake: FakeDws) -> None:
    with pytest.raises(InvalidInput):
        client.get_snapshot("../snapshots")
    assert fake.requests == []


@pytest.mark.parametrize(
    ("answer", "where"),
    [
        (httpx.Response(200, json={"snapshot": {"name": "x"}}), "snapshot.id"),
        (httpx.Response(200, json={"snapshots": []}), "snapshot"),
        (httpx.Response(200, text="<html>maintenance</html>"), "body"),
    ],
)
def test_malformed_success_answer_is_a_clear_error(
    client: DwsClient, fake: FakeDws, answer: httpx.Response, where: str
) -> None:
    fake.queue(answer)
    with pytest.raises(MalformedResponse) as caught:
        client.get_snapshot(NEW_ID)
    assert f"SnapshotEnvelope answer, {where}:" in str(caught.value)
    assert str(caught.value).startswith("DWS sent an answer snapcopy cannot read")
    assert len(fake.requests) == 1  # not retried: asking again gets the same answer


def test_reads_are_retried_with_backoff_then_succeed(
    client: DwsClient, fake: FakeDws, clock: FakeClock
) -> None:
    fake.queue(
        dws_error(503, None, "busy"),
        httpx.ReadTimeout,
        dws_error(429, "APIG.0308", "slow down", headers={"Retry-After": "2"}),
        listing(snapshot_json()),
    )
    assert [s.id for s in client.list_snapshots()] == [NEW_ID]
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_read_retries_are_bounded(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(*[dws_error(503, None, "busy", request_id=f"rid-{n}") for n in range(10)])
    with pytest.raises(DwsError) as caught:
        client.list_snapshots()
    assert len(fake.requests) == POLICY.attempts
    assert caught.value.request_id == f"rid-{POLICY.attempts - 1}"


def test_read_refusal_is_not_retried(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(dws_error(404, "DWS.5149", "Invalid snapshot id."))
    with pytest.raises(DwsError) as caught:
        client.get_snapshot(NEW_ID)
    assert (caught.value.status, caught.value.error_code) == (404, "DWS.5149")
    assert len(fake.requests) == 1


def test_find_snapshot_by_name_ignores_case(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(listing(snapshot_json(name="Keep-Me")), listing(snapshot_json(name="other")))
    found = client.find_snapshot_by_name("KEEP-me")
    assert found is not None and found.name == "Keep-Me"
    assert client.find_snapshot_by_name("keep-me") is None


# -- waiting for a copy ---------------------------------------------------------------------


def test_wait_reports_each_status_change_once(
    client: DwsClient, fake: FakeDws, clock: FakeClock
) -> None:
    fake.queue(
        one(snapshot_json(status="CREATING")),
        one(snapshot_json(status="CREATING")),
        one(snapshot_json(status="AVAILABLE")),
    )
    seen: list[str] = []
    result = client.wait_until_available(NEW_ID, 5, 600, on_status=lambda s: seen.append(s.status))
    assert result.status == "AVAILABLE"
    assert seen == ["CREATING", "AVAILABLE"]
    assert clock.sleeps == [5, 5]


def test_wait_raises_when_the_copy_fails(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(one(snapshot_json(status="CREATING")), one(snapshot_json(status="UNAVAILABLE")))
    with pytest.raises(SnapshotFailed) as caught:
        client.wait_until_available(NEW_ID, 1, 60)
    assert caught.value.snapshot_status == "UNAVAILABLE"
    assert NEW_ID in str(caught.value)


def test_wait_gives_up_at_the_timeout(client: DwsClient, fake: FakeDws, clock: FakeClock) -> None:
    fake.queue(*[one(snapshot_json(status="CREATING")) for _ in range(4)])
    with pytest.raises(WaitTimedOut) as caught:
        client.wait_until_available(NEW_ID, 4, 10)
    assert clock.sleeps == [4, 4, 2]  # the last sleep is cut to the time left
    assert caught.value.snapshot_status == "CREATING"
    assert "still CREATING after 10 seconds" in str(caught.value)


# -- construction, logging, secrets ---------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "endpoint", "expected"),
    [
        ("cn-north-4", None, "https://dws.cn-north-4.myhuaweicloud.com"),
        (" ap-southeast-1 ", "", "https://dws.ap-southeast-1.myhuaweicloud.com"),
        ("cn-north-4", "https://dws.example.internal/", "https://dws.example.internal"),
        (None, "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_endpoint_for(region: str | None, endpoint: str | None, expected: str) -> None:
    assert endpoint_for(region, endpoint) == expected


def test_endpoint_for_needs_a_region_or_an_endpoint() -> None:
    with pytest.raises(ValueError, match="Set DWS_REGION .* or DWS_ENDPOINT"):
        endpoint_for(None, " ")


def test_http_client_has_explicit_timeouts() -> None:
    with build_http_client("http://127.0.0.1:9", AkSkAuth(AK, SK, PROJECT), 2.0, 9.0) as http:
        assert (http.timeout.connect, http.timeout.read) == (2.0, 9.0)
        assert str(http.base_url) == "http://127.0.0.1:9"


@pytest.mark.parametrize("project", ["", "a/b", "../x", "p?q"])
def test_project_id_must_be_safe_in_a_path(http: httpx.Client, project: str) -> None:
    with pytest.raises(ValueError, match="project id"):
        DwsClient(http, project)


def test_log_records_carry_request_facts_and_no_secrets(
    client: DwsClient, fake: FakeDws, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.queue(
        dws_error(401, "APIG.0301", "Incorrect IAM authentication information", request_id="rid-9")
    )
    with pytest.raises(DwsError) as caught:
        client.list_snapshots()

    record = next(r for r in caplog.records if r.name == "bot.dws.client")
    assert record.dws_method == "GET"  # type: ignore[attr-defined]
    assert record.dws_path == f"/v1.0/{PROJECT}/snapshots"  # type: ignore[attr-defined]
    assert record.dws_status == 401  # type: ignore[attr-defined]
    assert record.dws_request_id == "rid-9"  # type: ignore[attr-defined]
    assert isinstance(record.dws_elapsed_ms, int)  # type: ignore[attr-defined]
    signature = fake.requests[0].headers["Authorization"].rsplit("=", 1)[1]
    for text in [str(caught.value), repr(caught.value), caplog.text] + [
        repr(vars(r)) for r in caplog.records
    ]:
        assert SK not in text
        assert signature not in text
        assert "Authorization" not in text


def test_timeouts_surface_as_dws_timeout(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(*[httpx.ConnectTimeout] * POLICY.attempts)
    with pytest.raises(DwsTimeout) as caught:
        client.get_snapshot(NEW_ID)
    assert caught.value.sent is False
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)


def test_snapshot_type_decides_whether_it_is_automated() -> None:
    assert Snapshot.model_validate(snapshot_json(type="AUTO")).is_automated
    assert Snapshot.model_validate(snapshot_json(type="automated")).is_automated
    assert not Snapshot.model_validate(snapshot_json(type="MANUAL")).is_automated


# -- lists as real DWS sends them -------------------------------------------------------------


def test_one_odd_snapshot_does_not_break_the_list(
    client: DwsClient, fake: FakeDws, caplog: pytest.LogCaptureFixture
) -> None:
    # Real lists hold items with null fields; the SDK's models require none of them.
    nulls = {
        **snapshot_json(name="nulls", snapshot_id="3f0e1c52-7b1d-4a0f-9a77-1c2d3e4f5a6b"),
        "name": None,
        "type": None,
        "size": None,
        "description": None,
        "started": None,
    }
    unreadable = {"name": "no-id", "status": "AVAILABLE"}
    fake.queue(listing(snapshot_json(name="kept"), nulls, unreadable, snapshot_json(name="last")))
    caplog.set_level(logging.WARNING, logger="bot.dws.client")

    snapshots = client.list_snapshots()

    assert [s.name for s in snapshots] == ["kept", "", "last"]
    odd = snapshots[1]
    assert (odd.type, odd.size, odd.description, odd.started, odd.is_automated) == (
        "", None, "", None, False
    )
    skipped = [r for r in caplog.records if "unreadable snapshot" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].__dict__["position"] == 2


def test_a_name_is_found_past_an_odd_snapshot(client: DwsClient, fake: FakeDws) -> None:
    fake.queue(listing({"name": None, "status": None}, snapshot_json(name="Wanted-Copy")))

    found = client.find_snapshot_by_name("wanted-copy")

    assert found is not None and found.name == "Wanted-Copy"


def test_a_list_without_its_snapshots_key_is_empty(
    client: DwsClient, fake: FakeDws, caplog: pytest.LogCaptureFixture
) -> None:
    fake.queue(httpx.Response(200, json={"count": 0}))
    caplog.set_level(logging.WARNING, logger="bot.dws.client")

    assert client.list_snapshots() == []
    assert any("no 'snapshots' key" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "answer", [{"snapshots": "all of them"}, ["not", "an", "object"], {"snapshots": {"a": 1}}]
)
def test_an_answer_that_is_no_snapshot_list_is_an_error(
    client: DwsClient, fake: FakeDws, answer: Any
) -> None:
    fake.queue(httpx.Response(200, json=answer))

    with pytest.raises(MalformedResponse):
        client.list_snapshots()


def test_the_copy_has_its_own_longer_read_timeout(fake: FakeDws, http: httpx.Client) -> None:
    client = DwsClient(http, PROJECT, retry=RetryPolicy(attempts=1), copy_timeout=60.0)
    fake.queue(listing(), copied())

    client.list_snapshots()
    client.copy_once(SOURCE_ID, "timed-copy")

    list_request, copy_request = fake.requests
    assert list_request.extensions["timeout"]["read"] == http.timeout.read
    assert copy_request.extensions["timeout"]["read"] == 60.0
    assert copy_request.extensions["timeout"]["connect"] == http.timeout.connect
