"""The local DWS stand-in keeps the real service's rules, and checks signatures like its gateway."""

import json
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from huaweicloudsdkdws.v2.model import SnapshotDetail, Snapshots

from bot.dws import standin as standin_module
from bot.dws.client import DwsClient, build_http_client
from bot.dws.errors import DwsError
from bot.dws.models import Snapshot
from bot.dws.signer import AkSkAuth
from bot.dws.standin import SNAPSHOT_FIELDS, DwsStandIn, Fault

from .fakes import AK, PROJECT, SK, FakeClock

# JSON types the SDK's `openapi_types` names stand for; other names are nested models (objects).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
}


def dws_client(url: str, auth: AkSkAuth) -> tuple[httpx.Client, DwsClient]:
    http = build_http_client(url, auth, connect_timeout=1.0, read_timeout=2.0)
    return http, DwsClient(http, PROJECT, sleep=lambda _: None)


def follow(
    client: DwsClient,
    snapshot_id: str,
    poll: float,
    seen: list[str] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    most: int = 200,
) -> Snapshot:
    """Read the snapshot until it is AVAILABLE or UNAVAILABLE, noting each new status."""
    for _ in range(most):
        snapshot = client.get_snapshot(snapshot_id)
        if seen is not None and (not seen or seen[-1] != snapshot.status):
            seen.append(snapshot.status)
        if snapshot.status in ("AVAILABLE", "UNAVAILABLE"):
            return snapshot
        sleep(poll)
    raise AssertionError(f"{snapshot_id} never settled: {seen}")


def raw(standin: DwsStandIn, method: str, path: str, **kwargs: object) -> httpx.Response:
    """A request signed correctly but not checked by our client's validation."""
    with httpx.Client(base_url=standin.url, auth=AkSkAuth(AK, SK, PROJECT)) as http:
        return http.request(method, path, **kwargs)  # type: ignore[arg-type]


def test_it_listens_on_loopback_only(standin: DwsStandIn) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", standin.url)


def test_every_answer_carries_a_request_id(standin: DwsStandIn) -> None:
    ok = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots")
    missing = raw(standin, "GET", f"/v1.0/{PROJECT}/nothing-here")
    assert (ok.status_code, missing.status_code) == (200, 404)
    for response in (ok, missing):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
    assert ok.headers["X-Request-Id"] != missing.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("auth", "why"),
    [
        (AkSkAuth(AK, "the-wrong-secret", PROJECT), "verify aksk signature fail"),
        (AkSkAuth("SOMEONE-ELSE", SK, PROJECT), "access key is unknown"),
        (
            AkSkAuth(AK, SK, PROJECT, clock=lambda: datetime.now(UTC) - timedelta(minutes=20)),
            "15 minutes",
        ),
    ],
)
def test_bad_signatures_are_refused_with_401(standin: DwsStandIn, auth: AkSkAuth, why: str) -> None:
    http, client = dws_client(standin.url, auth)
    with http, pytest.raises(DwsError) as caught:
        client.list_snapshots()
    assert (caught.value.status, caught.value.error_code) == (401, "APIG.0301")
    assert why in caught.value.error_msg
    assert len(standin.requests) == 1  # a refusal is final, not retried


def test_unsigned_request_is_refused(standin: DwsStandIn) -> None:
    response = httpx.get(f"{standin.url}/v1.0/{PROJECT}/snapshots")
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIG.0301"


def test_tampered_body_breaks_the_signature(standin: DwsStandIn) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    request = httpx.Request(
        "POST",
        f"{standin.url}/v1.0/{PROJECT}/snapshots/{source.id}/linked-copy",
        json={"backup_name": "good-name", "description": ""},
    )
    AkSkAuth(AK, SK, PROJECT).sign(request)
    evil = request.content.replace(b"good-name", b"evil-name")  # same length, new meaning
    tampered = httpx.Request("POST", request.url, headers=request.headers, content=evil)
    with httpx.Client() as http:
        response = http.send(tampered)
    assert response.status_code == 401
    assert standin.copy_calls == 0


def test_verification_can_be_switched_off(standin: DwsStandIn) -> None:
    standin.verify_signatures = False
    assert httpx.get(f"{standin.url}/v1.0/{PROJECT}/snapshots").status_code == 200


def test_wrong_project_in_the_path_is_refused(standin: DwsStandIn) -> None:
    response = raw(standin, "GET", "/v1.0/0123456789abcdef0123456789abcdef/snapshots")
    assert response.status_code == 403
    assert response.json()["error_code"] == "DWS.0015"


def test_unknown_and_malformed_snapshot_ids(standin: DwsStandIn) -> None:
    unknown = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots/{'0' * 8}-0000-0000-0000-{'0' * 12}")
    malformed = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots/not-a-uuid")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "DWS.0015")
    assert (malformed.status_code, malformed.json()["error_code"]) == (400, "DWS.5149")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"backup_name": "1abc"}, "must start with a letter"),
        ({"backup_name": "abc"}, "4 to 64 characters"),
        ({"backup_name": "good-name", "description": "a=b"}, "cannot contain '='"),
        ({"backup_name": 7}, "backup_name must be a string"),
        ({}, "backup_name must be a string"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_copy_rules_are_enforced_by_the_service_too(
    standin: DwsStandIn, body: object, message: str
) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    response = raw(standin, "POST", f"/v1.0/{PROJECT}/snapshots/{source.id}/linked-copy", json=body)
    assert response.status_code == 400
    assert response.json()["error_code"] == "DWS.0001"
    assert message in response.json()["error_msg"]
    assert standin.copy_calls == 0


def test_names_are_unique_regardless_of_case(standin: DwsStandIn, live_client: DwsClient) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    live_client.copy_once(source.id, "keep-before-restore")
    with pytest.raises(DwsError) as caught:
        live_client.copy_once(source.id, "KEEP-before-restore")
    assert caught.value.status == 400
    assert "already exists" in str(caught.value)
    assert standin.copy_calls == 1


def test_manual_snapshots_cannot_be_copied(standin: DwsStandIn, live_client: DwsClient) -> None:
    manual = standin.add_snapshot("before-upgrade", type="MANUAL")
    with pytest.raises(DwsError) as caught:
        live_client.copy_once(manual.id, "copy-of-manual")
    assert caught.value.status == 400
    assert "Only automated snapshots can be copied" in caught.value.error_msg
    assert standin.copy_calls == 0


def test_copy_goes_from_creating_to_available(standin: DwsStandIn, live_http: httpx.Client) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000", type="AUTOMATED", size=42.0)
    client = DwsClient(live_http, PROJECT)  # real sleep: the copy needs time to finish
    seen: list[str] = []

    copy = client.copy_once(source.id, "keep-me", "for the incident")
    final = follow(client, copy.snapshot_id, 0.02, seen)

    assert seen == ["CREATING", "AVAILABLE"]
    assert (final.name, final.type, final.size, final.description) == (
        "keep-me",
        "MANUAL",
        42.0,
        "for the incident",
    )
    assert final.cluster_id == source.cluster_id


def test_a_copy_can_be_made_to_fail(standin: DwsStandIn, live_http: httpx.Client) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.fail_next_copy_later()
    client = DwsClient(live_http, PROJECT)
    copy = client.copy_once(source.id, "doomed-copy")
    assert follow(client, copy.snapshot_id, 0.02).status == "UNAVAILABLE"


def test_requests_are_recorded_without_the_authorization_header(
    standin: DwsStandIn, live_client: DwsClient
) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    live_client.copy_once(source.id, "recorded")
    (request,) = standin.requests
    assert (request.method, request.path) == (
        "POST",
        f"/v1.0/{PROJECT}/snapshots/{source.id}/linked-copy",
    )
    assert request.json() == {"backup_name": "recorded", "description": ""}
    assert "authorization" not in request.headers
    assert request.headers["x-project-id"] == PROJECT


def test_faults_apply_once_to_the_matching_request(standin: DwsStandIn) -> None:
    standin.inject(Fault("status", path="linked-copy", status=500))
    standin.inject(
        Fault("status", method="GET", status=429, error_code="APIG.0308", retry_after="1")
    )
    first = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots")
    second = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    assert first.json()["error_code"] == "APIG.0308"
    assert second.status_code == 200  # the linked-copy fault is still waiting for its request


def test_html_fault_answers_a_gateway_page(standin: DwsStandIn) -> None:
    standin.inject(Fault("html", status=502))
    response = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots")
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert "<title>502 Bad Gateway</title>" in response.text


def test_seed_demo_has_automated_and_manual_snapshots(standin: DwsStandIn) -> None:
    seeded = standin.seed_demo()
    assert seeded == standin.snapshots
    assert sum(s.is_automated for s in seeded) >= 3
    assert any(not s.is_automated for s in seeded)
    assert len({s.name.lower() for s in seeded}) == len(seeded)


def test_stop_closes_idle_keep_alive_connections_promptly() -> None:
    standin = DwsStandIn(AK, SK, PROJECT).start()
    with socket.create_connection(("127.0.0.1", int(standin.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET /v1.0/x/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 401"
        started = time.monotonic()
        standin.stop()
        assert time.monotonic() - started < 2.0
    with pytest.raises(RuntimeError, match="not running"):
        _ = standin.url


def test_snapshot_views_serialise_like_the_api(standin: DwsStandIn) -> None:
    snapshot = standin.add_snapshot("dws-prod-20240601020000")
    body = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots/{snapshot.id}").json()
    assert body["snapshot"]["id"] == snapshot.id
    assert json.loads(json.dumps(body))["snapshot"]["type"] == "AUTO"


@pytest.mark.parametrize("verifier", ["official SDK", "own signature_for"])
def test_signatures_are_checked_with_or_without_the_sdk(
    standin: DwsStandIn, monkeypatch: pytest.MonkeyPatch, verifier: str
) -> None:
    # At run time (the sandbox) the SDK is usually absent and our own function verifies.
    if verifier == "own signature_for":
        monkeypatch.setattr(standin_module, "_official_sdk", lambda: None)
    else:
        assert standin_module._official_sdk() is not None
    good = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots?limit=10&offset=0")
    http, client = dws_client(standin.url, AkSkAuth(AK, "the-wrong-secret", PROJECT))
    with http, pytest.raises(DwsError) as caught:
        client.list_snapshots()
    assert good.status_code == 200
    assert caught.value.status == 401


# -- answers as the official SDK models them ------------------------------------------------


def listed(standin: DwsStandIn) -> list[dict[str, Any]]:
    """The items of a list answer, as sent."""
    answer = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots").json()
    items: list[dict[str, Any]] = answer["snapshots"]
    return items


def detail(standin: DwsStandIn, snapshot_id: str) -> dict[str, Any]:
    """The snapshot of a detail answer, as sent."""
    response = raw(standin, "GET", f"/v1.0/{PROJECT}/snapshots/{snapshot_id}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["snapshot"]
    return answer


def copy_of(standin: DwsStandIn, source_id: str, name: str) -> str:
    """Start a linked copy and return its id."""
    response = raw(
        standin,
        "POST",
        f"/v1.0/{PROJECT}/snapshots/{source_id}/linked-copy",
        json={"backup_name": name},
    )
    assert response.status_code == 200, response.text
    copy_id: str = response.json()["snapshot_id"]
    return copy_id


def has_sdk_type(value: object, sdk_type: str) -> bool:
    """Whether a JSON value fits an `openapi_types` type name (null fits any)."""
    if value is None:
        return True
    if sdk_type.startswith("list["):
        return isinstance(value, list)
    if sdk_type == "int" and isinstance(value, bool):
        return False  # bool is an int to Python, not to the SDK
    return isinstance(value, _JSON_TYPES.get(sdk_type, (dict,)))


@pytest.fixture
def standin_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The stand-in's monotonic clock, moved on only by the test."""
    clock = FakeClock()
    monkeypatch.setattr(standin_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def test_the_field_list_is_the_sdks_for_list_items_and_details() -> None:
    assert SNAPSHOT_FIELDS == tuple(Snapshots.attribute_map.values())
    assert SNAPSHOT_FIELDS == tuple(SnapshotDetail.attribute_map.values())


def test_list_and_detail_answers_carry_every_sdk_field(standin: DwsStandIn) -> None:
    standin.seed_demo()
    items = listed(standin)
    one = detail(standin, items[0]["id"])
    assert all(list(item) == list(Snapshots.attribute_map.values()) for item in items)
    assert list(one) == list(SnapshotDetail.attribute_map.values())


@pytest.mark.parametrize("model", [Snapshots, SnapshotDetail], ids=lambda m: m.__name__)
def test_answer_values_have_the_types_the_sdk_declares(standin: DwsStandIn, model: type) -> None:
    snapshot = standin.add_snapshot("dws-prod-20240601020000")
    answer = detail(standin, snapshot.id) if model is SnapshotDetail else listed(standin)[0]
    wrong = {
        attribute: answer[key]
        for attribute, key in model.attribute_map.items()
        if not has_sdk_type(answer[key], model.openapi_types[attribute])
    }
    assert wrong == {}


def test_the_demo_has_no_null_fields(standin: DwsStandIn) -> None:
    standin.seed_demo()
    nulls = {
        (item["name"], key) for item in listed(standin) for key, v in item.items() if v is None
    }
    assert nulls == set()


def test_named_fields_are_answered_as_null_in_list_and_detail(standin: DwsStandIn) -> None:
    gaps = ("name", "type", "size", "description", "started")
    whole = standin.add_snapshot("dws-prod-20240601020000")
    holey = standin.add_snapshot("dws-prod-20240602020000", nulls=gaps)

    items = {item["id"]: item for item in listed(standin)}

    for answer in (items[holey.id], detail(standin, holey.id)):
        assert {key for key, value in answer.items() if value is None} == set(gaps)
        assert (answer["id"], answer["status"]) == (holey.id, "AVAILABLE")
    assert items[whole.id]["name"] == "dws-prod-20240601020000"
    assert holey in standin.snapshots  # the stand-in itself still knows the values


@pytest.mark.parametrize("nulls", [("id",), ("nmae",)])
def test_only_known_fields_other_than_id_can_be_null(
    standin: DwsStandIn, nulls: tuple[str]
) -> None:
    with pytest.raises(ValueError, match=nulls[0]):
        standin.add_snapshot("dws-prod-20240601020000", nulls=nulls)
    assert standin.snapshots == []


def test_a_copy_shows_its_progress_and_shares_its_sources_backup(
    standin: DwsStandIn, standin_clock: FakeClock
) -> None:
    standin.copy_delay = 10.0
    source = standin.add_snapshot("dws-prod-20240601020000")
    copy_id = copy_of(standin, source.id, "keep-me")

    standin_clock.sleep(4.0)
    creating = detail(standin, copy_id)
    standin_clock.sleep(6.0)
    done = detail(standin, copy_id)

    assert (creating["status"], creating["progress"], creating["finished"]) == (
        "CREATING",
        "40%",
        None,
    )
    assert creating["cluster_task_status"] == "SNAPSHOTTING"
    assert (done["status"], done["progress"], done["cluster_task_status"]) == (
        "AVAILABLE",
        "100%",
        "",
    )
    assert done["finished"] is not None
    assert done["backup_key"] == detail(standin, source.id)["backup_key"]


# -- copies that freeze ------------------------------------------------------------------


def test_a_frozen_copy_thaws_after_the_given_time(
    standin: DwsStandIn, standin_clock: FakeClock
) -> None:
    standin.copy_delay = 0.25  # steps of quarters add up exactly in binary floating point
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.freeze_next_copy(thaw_after=1.0)
    copy_id = copy_of(standin, source.id, "keep-me")
    seen = []
    for step in (0.0, 0.25, 0.5, 0.25, 0.25):  # frozen from 0.25 until 1.25
        standin_clock.sleep(step)
        seen.append(detail(standin, copy_id)["status"])
    assert seen == ["CREATING", "FROZEN", "FROZEN", "FROZEN", "AVAILABLE"]


def test_a_copy_frozen_without_a_thaw_time_stays_frozen(
    standin: DwsStandIn, standin_clock: FakeClock
) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.freeze_next_copy(status="POLICE_FROZEN")
    copy_id = copy_of(standin, source.id, "keep-me")
    standin_clock.sleep(10**6)
    assert detail(standin, copy_id)["status"] == "POLICE_FROZEN"
    assert [s.status for s in standin.snapshots if s.id == copy_id] == ["POLICE_FROZEN"]


def test_one_look_after_a_long_wait_sees_a_thawed_copy(
    standin: DwsStandIn, standin_clock: FakeClock
) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.freeze_next_copy(thaw_after=1.0)
    copy_id = copy_of(standin, source.id, "keep-me")
    standin_clock.sleep(60.0)
    assert detail(standin, copy_id)["status"] == "AVAILABLE"


def test_only_the_next_copy_freezes(standin: DwsStandIn, standin_clock: FakeClock) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.freeze_next_copy()
    frozen, plain = copy_of(standin, source.id, "first"), copy_of(standin, source.id, "second")
    standin_clock.sleep(1.0)
    assert [detail(standin, i)["status"] for i in (frozen, plain)] == ["FROZEN", "AVAILABLE"]


def test_the_client_sees_a_copy_freeze_then_thaw(
    standin: DwsStandIn, live_http: httpx.Client, standin_clock: FakeClock
) -> None:
    # The client's sleeps move the stand-in's clock, so every status is seen exactly in order.
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.freeze_next_copy(thaw_after=0.3)
    client = DwsClient(live_http, PROJECT, sleep=standin_clock.sleep)
    seen: list[str] = []
    copy = client.copy_once(source.id, "keep-me")
    follow(client, copy.snapshot_id, 0.05, seen, sleep=standin_clock.sleep)
    assert seen == ["CREATING", "FROZEN", "AVAILABLE"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"status": "UNAVAILABLE"}, "status must be one of"), ({"thaw_after": -1.0}, "negative")],
)
def test_freezing_takes_only_frozen_statuses_and_a_real_delay(
    standin: DwsStandIn, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        standin.freeze_next_copy(**kwargs)


# -- errors --------------------------------------------------------------------------------


def error_answers(standin: DwsStandIn) -> list[httpx.Response]:
    source = standin.add_snapshot("dws-prod-20240601020000")
    manual = standin.add_snapshot("before-upgrade", type="MANUAL")
    snapshots = f"/v1.0/{PROJECT}/snapshots"
    return [
        httpx.get(f"{standin.url}{snapshots}"),
        raw(standin, "GET", f"/v1.0/{PROJECT}/nothing-here"),
        raw(standin, "GET", "/v1.0/0123456789abcdef0123456789abcdef/snapshots"),
        raw(standin, "GET", f"{snapshots}/not-a-uuid"),
        raw(standin, "GET", f"{snapshots}/{'0' * 8}-0000-0000-0000-{'0' * 12}"),
        raw(standin, "POST", f"{snapshots}/{source.id}/linked-copy", json={"backup_name": "1x"}),
        raw(standin, "POST", f"{snapshots}/{manual.id}/linked-copy", json={"backup_name": "abcd"}),
    ]


def test_errors_have_the_documented_shape_and_status(standin: DwsStandIn) -> None:
    answers = [(r.status_code, r.json()["error_code"]) for r in error_answers(standin)]
    assert answers == [
        (401, "APIG.0301"),
        (404, "APIG.0101"),
        (403, "DWS.0015"),
        (400, "DWS.5149"),
        (404, "DWS.0015"),
        (400, "DWS.0001"),
        (400, "DWS.0001"),
    ]
    for response in error_answers(standin):
        assert response.headers["Content-Type"].startswith("application/json")
        assert set(response.json()) == {"error_code", "error_msg"}
        assert response.json()["error_msg"]


def test_a_403_from_iam_can_carry_an_encoded_authorization_message(
    standin: DwsStandIn, live_client: DwsClient
) -> None:
    denial = {
        "error_code": "DWS.0015",
        "error_msg": "You have no permission to perform dws:snapshot:copy.",
        "encoded_authorization_message": "cG9saWN5IGRlbmllZA==",
    }
    source = standin.add_snapshot("dws-prod-20240601020000")
    standin.inject(
        Fault(
            "status",
            path="linked-copy",
            status=403,
            error_code=denial["error_code"],
            error_msg=denial["error_msg"],
            body_extra={"encoded_authorization_message": denial["encoded_authorization_message"]},
        )
    )
    body = raw(standin, "POST", f"/v1.0/{PROJECT}/snapshots/{source.id}/linked-copy", json={})
    standin.inject(Fault("status", status=403, error_code="DWS.0015", body_extra={"x": "y"}))
    with pytest.raises(DwsError) as caught:
        live_client.copy_once(source.id, "denied-copy")
    assert (body.status_code, body.json()) == (403, denial)
    assert (caught.value.status, caught.value.error_code) == (403, "DWS.0015")
    assert standin.copy_calls == 0
