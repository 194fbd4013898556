"""The client over httpx.MockTransport: what it sends, and what it does with each failure."""

import logging
from typing import Any

import httpx
import pytest

from bot.dws.client import DwsClient, RetryPolicy, build_http_client
from bot.dws.errors import (
    DwsError,
    DwsTimeout,
    MalformedResponse,
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

    result = client.copy_once(SOURCE_ID.upper(), f"  {NAME} ", "before the restore")

    assert result == CopiedSnapshot(NEW_ID, "rid-42")
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
        client.copy_once(snapshot_id, name, description)
    assert caught.value.field == field
    assert fake.requests == []


# -- copy: one call; retries, lookups and adoption are the copy job's (tests/dws/test_copier.py)


def test_a_copy_answered_with_an_unreadable_success_is_a_malformed_response(
    client: DwsClient, fake: FakeDws
) -> None:
    # DWS said yes: the copy job looks the name up to find its id.
    fake.queue(httpx.Response(200, text="<html>ok</html>"))

    with pytest.raises(MalformedResponse):
        client.copy_once(SOURCE_ID, NAME)
    assert fake.calls == [COPY]


def test_a_refused_copy_raises_the_refusal_and_asks_nothing_else(
    client: DwsClient, fake: FakeDws
) -> None:
    fake.queue(dws_error(400, "DWS.0001", "bad name", request_id="rid-400"))

    with pytest.raises(DwsError) as caught:
        client.copy_once(SOURCE_ID, NAME)
    assert (caught.value.status, caught.value.error_code, caught.value.request_id) == (
        400,
        "DWS.0001",
        "rid-400",
    )
    assert fake.calls == [COPY]


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
        "",
        None,
        "",
        None,
        False,
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
