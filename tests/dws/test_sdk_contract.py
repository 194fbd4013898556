"""Contract tests against Huawei's own SDK (huaweicloudsdkdws), used only here as an oracle.

Three checks, all on loopback:
- answers built from the SDK's models, as they arrive over the wire, parse in snapcopy;
- the SDK's DwsClient, pointed at the stand-in, reads its answers and gets its signatures accepted;
- the SDK and snapcopy send the same linked-copy request, signed the same way.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import (
    ClientRequestException,
    ServerResponseException,
)
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.utils.http_utils import sanitize_for_serialization
from huaweicloudsdkdws.v2 import DwsClient as SdkDwsClient
from huaweicloudsdkdws.v2 import model as sdk_models
from huaweicloudsdkdws.v2.model import (
    CopySnapshotRequest,
    LinkCopyReq,
    ListSnapshotDetailsRequest,
    ListSnapshotDetailsResponse,
    ListSnapshotsRequest,
    ListSnapshotsResponse,
    SnapshotDetail,
    Snapshots,
)

from bot.dws.client import DwsClient, build_http_client
from bot.dws.models import SnapshotEnvelope, SnapshotList
from bot.dws.signer import AkSkAuth, parse_authorization, signature_for
from bot.dws.standin import DwsStandIn, Fault

from .fakes import AK, PROJECT, SK, SOURCE_ID

# The fields snapcopy reads from a snapshot.
READ_FIELDS = ("id", "name", "status", "type", "cluster_id", "cluster_name", "size", "started")
# Sample values for the SDK's primitive type names; strings are the attribute's own name instead,
# so that a field read from the wrong key shows.
_PRIMITIVES: dict[str, Any] = {"int": 1, "float": 1.5, "bool": True}
_AUTHORIZATION = re.compile(
    r"SDK-HMAC-SHA256 Access=(?P<ak>[^,\s]+), SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
# Content-Type values the API gateway takes for a JSON body, written without spaces.
ACCEPTED_JSON_TYPES = {"application/json", "application/json;charset=utf-8"}


# -- answers built from the SDK's own models --------------------------------------------------


def sample(sdk_type: str, attribute: str) -> Any:
    """A value of an `openapi_types` type name: primitives, lists of one, nested models filled."""
    if sdk_type.startswith("list["):
        return [sample(sdk_type[len("list[") : -1], attribute)]
    if sdk_type == "str":
        return attribute
    if sdk_type in _PRIMITIVES:
        return _PRIMITIVES[sdk_type]
    return filled(getattr(sdk_models, sdk_type))


def filled(model: type) -> Any:
    """An instance of an SDK model with every attribute set."""
    return model(**{name: sample(kind, name) for name, kind in model.openapi_types.items()})


def nulled(model: type, **kept: Any) -> Any:
    """An instance of an SDK model with every attribute None but those given."""
    return model(**{name: kept.get(name) for name in model.openapi_types})


def on_the_wire(answer: Any) -> str:
    """The JSON the SDK's serializer makes of a model: keys from attribute_map, nulls left out."""
    return json.dumps(sanitize_for_serialization(answer))


def with_nulls(value: Any) -> Any:
    """Like the SDK's serializer, but keeping None as JSON null, as DWS sends missing values."""
    if isinstance(value, list):
        return [with_nulls(item) for item in value]
    if hasattr(value, "attribute_map"):
        return {key: with_nulls(getattr(value, name)) for name, key in value.attribute_map.items()}
    return value


def listed_by_snapcopy(wire: str) -> list[Any]:
    """What snapcopy's client makes of a list answer (it reads the items one by one)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=wire.encode())

    auth = AkSkAuth(AK, SK, PROJECT)
    transport = httpx.MockTransport(answer)
    with build_http_client("https://dws.example.invalid", auth, transport=transport) as http:
        return DwsClient(http, PROJECT, sleep=lambda _: None).list_snapshots()


def test_a_full_list_answer_parses_with_every_read_field() -> None:
    answer = ListSnapshotsResponse(snapshots=[filled(Snapshots)], count=1)

    assert SnapshotList.model_validate_json(on_the_wire(answer)).count == 1
    (snapshot,) = listed_by_snapcopy(on_the_wire(answer))
    assert [getattr(snapshot, name) for name in READ_FIELDS] == [
        "id",
        "name",
        "status",
        "type",
        "cluster_id",
        "cluster_name",
        1.5,
        "started",
    ]


def test_a_full_detail_answer_parses_with_every_read_field() -> None:
    answer = ListSnapshotDetailsResponse(snapshot=filled(SnapshotDetail))

    parsed = SnapshotEnvelope.model_validate_json(on_the_wire(answer))

    assert {name: getattr(parsed.snapshot, name) for name in READ_FIELDS} == {
        name: getattr(answer.snapshot, name) for name in READ_FIELDS
    }


def test_a_detail_with_nulls_beyond_what_snapcopy_needs_parses() -> None:
    needed = {"id": SOURCE_ID, "name": "keep-me", "status": "AVAILABLE", "type": "AUTO"}
    body = {"snapshot": with_nulls(nulled(SnapshotDetail, **needed))}

    snapshot = SnapshotEnvelope.model_validate_json(json.dumps(body)).snapshot

    assert (snapshot.id, snapshot.name, snapshot.status, snapshot.is_automated) == (
        SOURCE_ID,
        "keep-me",
        "AVAILABLE",
        True,
    )
    assert (snapshot.size, snapshot.started, snapshot.description) == (None, None, "")


@pytest.mark.parametrize(
    "kept",
    [{}, {"status": "AVAILABLE"}],
    ids=["all null but id", "all null but id and status"],
)
def test_a_list_item_with_every_optional_field_null_does_not_lose_the_others(
    kept: dict[str, str],
) -> None:
    whole = filled(Snapshots)
    whole.id = SOURCE_ID
    holey = nulled(Snapshots, id=str(uuid.uuid4()), **kept)
    body = {"snapshots": [with_nulls(holey), with_nulls(whole)], "count": 2}

    snapshots = listed_by_snapcopy(json.dumps(body))

    assert [snapshot.id for snapshot in snapshots] == [holey.id, SOURCE_ID]


# -- the SDK's client against the stand-in ------------------------------------------------------


def sdk_client(url: str, sk: str = SK) -> SdkDwsClient:
    """The official client with the project given, so it never asks IAM for one."""
    config = HttpConfig.get_default_config()
    config.timeout = (2, 5)
    return (
        SdkDwsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(AK, sk, PROJECT))
        .with_endpoints([url])
        .build()
    )


@pytest.fixture
def sdk(standin: DwsStandIn, sdk_home: None) -> Iterator[SdkDwsClient]:
    with closing(sdk_client(standin.url)) as client:
        yield client


def test_the_sdk_reads_every_field_of_the_list(standin: DwsStandIn, sdk: SdkDwsClient) -> None:
    seeded = {snapshot.id: snapshot for snapshot in standin.seed_demo()}

    answer = sdk.list_snapshots(ListSnapshotsRequest())

    assert answer.count == len(seeded) == len(answer.snapshots)
    for item in answer.snapshots:
        assert [getattr(item, name) for name in READ_FIELDS] == [
            getattr(seeded[item.id], name) for name in READ_FIELDS
        ]
        assert [name for name in Snapshots.openapi_types if getattr(item, name) is None] == []
        assert isinstance(item.datastore, sdk_models.Datastore)


def test_the_sdk_reads_one_snapshot(standin: DwsStandIn, sdk: SdkDwsClient) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000", size=42.5, description="nightly")

    answer = sdk.list_snapshot_details(ListSnapshotDetailsRequest(snapshot_id=source.id))

    assert isinstance(answer.snapshot, SnapshotDetail)
    assert (answer.snapshot.name, answer.snapshot.size, answer.snapshot.description) == (
        "dws-prod-20240601020000",
        42.5,
        "nightly",
    )
    assert answer.snapshot.fine_grained_backup_detail.table_list == []


def test_the_sdk_reads_null_fields_as_none(standin: DwsStandIn, sdk: SdkDwsClient) -> None:
    standin.add_snapshot("dws-prod-20240601020000", nulls=("name", "type", "size"))

    (item,) = sdk.list_snapshots(ListSnapshotsRequest()).snapshots

    assert (item.name, item.type, item.size, item.status) == (None, None, None, "AVAILABLE")


def test_the_sdk_copies_through_the_stand_in(standin: DwsStandIn, sdk: SdkDwsClient) -> None:
    source = standin.add_snapshot("dws-prod-20240601020000")
    request = CopySnapshotRequest(
        snapshot_id=source.id, body=LinkCopyReq(backup_name="sdk-copy", description="by the SDK")
    )

    answer = sdk.copy_snapshot(request)

    copies = [s for s in standin.snapshots if s.name == "sdk-copy"]
    assert [c.id for c in copies] == [answer.snapshot_id]
    assert (standin.copy_calls, standin.requests[-1].json()) == (
        1,
        {"backup_name": "sdk-copy", "description": "by the SDK"},
    )


def test_the_sdk_raises_dws_errors_with_their_code_and_message(
    standin: DwsStandIn, sdk: SdkDwsClient
) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ClientRequestException) as caught:
        sdk.list_snapshot_details(ListSnapshotDetailsRequest(snapshot_id=unknown))
    assert (caught.value.status_code, caught.value.error_code) == (404, "DWS.0015")
    assert caught.value.error_msg == f"The snapshot {unknown} does not exist."
    assert re.fullmatch(r"[0-9a-f]{32}", caught.value.request_id)


def test_the_sdk_reads_the_encoded_authorization_message_of_a_403(
    standin: DwsStandIn, sdk: SdkDwsClient
) -> None:
    standin.inject(
        Fault(
            "status",
            status=403,
            error_code="DWS.0015",
            error_msg="You have no permission to perform dws:snapshot:list.",
            body_extra={"encoded_authorization_message": "b3BhcXVl"},
        )
    )
    with pytest.raises(ClientRequestException) as caught:
        sdk.list_snapshots(ListSnapshotsRequest())
    assert (caught.value.status_code, caught.value.error_code) == (403, "DWS.0015")
    assert caught.value.encoded_auth_msg == "b3BhcXVl"


def test_the_sdk_sees_5xx_as_a_server_error(standin: DwsStandIn, sdk: SdkDwsClient) -> None:
    standin.inject(Fault("status", status=503))
    with pytest.raises(ServerResponseException) as caught:
        sdk.list_snapshots(ListSnapshotsRequest())
    assert (caught.value.status_code, caught.value.error_code) == (503, "DWS.0005")


def test_the_stand_in_refuses_the_sdk_signing_with_a_wrong_secret(
    standin: DwsStandIn, sdk_home: None
) -> None:
    with (
        closing(sdk_client(standin.url, sk="the-wrong-secret")) as sdk,
        pytest.raises(ClientRequestException) as caught,
    ):
        sdk.list_snapshots(ListSnapshotsRequest())
    assert (caught.value.status_code, caught.value.error_code) == (401, "APIG.0301")
    assert "verify aksk signature fail" in caught.value.error_msg


# -- the copy request, as each client sends it --------------------------------------------------


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class _CaptureHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    captured: list[Captured]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.captured.append(Captured(self.command, self.path, headers, body))
        answer = json.dumps({"snapshot_id": str(uuid.uuid4())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def capture() -> Iterator[tuple[str, list[Captured]]]:
    """A loopback server that records each request and answers like a successful linked-copy."""
    captured: list[Captured] = []
    handler = type("Handler", (_CaptureHandler,), {"captured": captured})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}", captured
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def both_copies(url: str, captured: list[Captured]) -> tuple[Captured, Captured]:
    """The same copy sent once by the SDK and once by snapcopy, as the server received them."""
    name, description = "keep-before-restore", "for the incident"
    body = LinkCopyReq(backup_name=name, description=description)
    with closing(sdk_client(url)) as sdk:
        sdk.copy_snapshot(CopySnapshotRequest(snapshot_id=SOURCE_ID, body=body))
    with build_http_client(url, AkSkAuth(AK, SK, PROJECT)) as http:
        DwsClient(http, PROJECT).copy_once(SOURCE_ID, name, description)
    sdk_request, ours = captured
    return sdk_request, ours


def test_sdk_and_snapcopy_send_the_same_copy_request(
    capture: tuple[str, list[Captured]], sdk_home: None
) -> None:
    sdk_request, ours = both_copies(*capture)
    assert (ours.method, ours.path) == (sdk_request.method, sdk_request.path)
    assert ours.path == f"/v1.0/{PROJECT}/snapshots/{SOURCE_ID}/linked-copy"
    assert json.loads(ours.body) == json.loads(sdk_request.body)
    assert ours.headers["x-project-id"] == sdk_request.headers["x-project-id"] == PROJECT


def test_sdk_and_snapcopy_sign_the_copy_the_same_way(
    capture: tuple[str, list[Captured]], sdk_home: None
) -> None:
    for request in both_copies(*capture):
        match = _AUTHORIZATION.fullmatch(request.headers["authorization"])
        assert match is not None, request.headers["authorization"]
        signed = match["signed"].split(";")
        assert match["ak"] == AK
        assert {"host", "x-sdk-date"} <= set(signed)
        assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["x-sdk-date"])
        # Each signature checks out under the one scheme, whoever computed it.
        auth = parse_authorization(request.headers["authorization"])
        assert auth is not None
        expected = signature_for(
            request.method, request.path, request.headers, request.body, SK, signed_headers=signed
        )
        assert expected == auth.signature


def test_snapcopy_sends_a_json_content_type_the_gateway_accepts(
    capture: tuple[str, list[Captured]],
    sdk_home: None,
    request: pytest.FixtureRequest,
) -> None:
    sdk_request, ours = both_copies(*capture)
    # Kept with the test's report (junit properties), not compared: they differ in spelling.
    # (record_property would warn under xunit2, which this suite turns into an error.)
    request.node.user_properties.extend(
        [
            ("sdk_content_type", sdk_request.headers.get("content-type")),
            ("sdk_user_agent", sdk_request.headers.get("user-agent")),
            ("snapcopy_content_type", ours.headers.get("content-type")),
        ]
    )
    for sent in (sdk_request, ours):
        spelled = sent.headers["content-type"].replace(" ", "").lower()
        assert spelled in ACCEPTED_JSON_TYPES
