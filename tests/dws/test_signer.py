import json
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.dws.signer import (
    AkSkAuth,
    Authorization,
    canonical_uri,
    parse_authorization,
    signature_for,
)

from .fakes import AK, PROJECT, SK

official = pytest.importorskip("huaweicloudsdkcore.signer.signer")
sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")

FIXED = datetime(2024, 6, 1, 2, 3, 4, tzinfo=UTC)
TOKEN = "temporary-security-token-value"


def fixed_clock() -> datetime:
    return FIXED


def signed(auth: AkSkAuth, request: httpx.Request) -> httpx.Request:
    """Run the auth flow the way httpx does: one request out, no I/O, nothing more."""
    flow = auth.auth_flow(request)
    out = next(flow)
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    return out


def official_authorization(
    request: httpx.Request,
    path: str,
    params: list[tuple[str, str]],
    signed_headers: tuple[str, ...],
    sk: str,
) -> str:
    """What Huawei Cloud's own SDK computes for the same request and the same headers."""
    sdk = sdk_request.SdkRequest(
        method=request.method,
        schema="https",
        host=request.headers["host"],
        resource_path=path,
        query_params=list(params),
        header_params={name: request.headers[name] for name in signed_headers},
        body=request.content,
    )
    official.Signer(SimpleNamespace(ak=AK, sk=sk)).sign(sdk)
    value: str = sdk.header_params["Authorization"]
    return value


# Path segments with spaces, unicode, '~', reserved characters and literal %-escapes; "." and
# ".." are left out because httpx (like any client) resolves them before sending.
_segment_piece = st.one_of(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="/?#%"),
        min_size=1,
        max_size=6,
    ),
    st.from_regex(r"%[0-9A-Fa-f]{2}", fullmatch=True),
    st.sampled_from(["~", " ", "%zz", "é", "雪"]),
)
_segment = (
    st.lists(_segment_piece, min_size=1, max_size=3)
    .map("".join)
    .filter(lambda s: s.strip() not in {".", ".."})
)
paths = st.lists(_segment, min_size=0, max_size=5).map(lambda parts: "/" + "/".join(parts))
_query_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6)
queries = st.lists(st.tuples(_query_text, _query_text), max_size=4).flatmap(
    # Repeat some keys so that sorting by key, then value, is exercised.
    lambda pairs: st.just(pairs + [(k, v + "2") for k, v in pairs[:1]])
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
bodies = st.one_of(st.none(), _json.map(lambda value: json.dumps(value, ensure_ascii=False)))
_header_name = st.from_regex(r"X-[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True).filter(
    lambda name: name.lower() not in {"x-sdk-date", "x-project-id", "x-security-token"}
)
extra_headers = st.dictionaries(
    _header_name, st.from_regex(r"[ -~]{0,12}", fullmatch=True), max_size=3
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    port=st.sampled_from(["", ":443", ":8443"]),
    path=paths,
    params=queries,
    body=bodies,
    headers=extra_headers,
    token=st.sampled_from([None, TOKEN]),
    content_type=st.booleans(),
)
def test_signature_matches_the_official_signer(
    method: str,
    port: str,
    path: str,
    params: list[tuple[str, str]],
    body: str | None,
    headers: dict[str, str],
    token: str | None,
    content_type: bool,
) -> None:
    url = httpx.URL(f"https://127.0.0.1{port}").copy_with(path=path)
    if body is not None or content_type:
        headers = {**headers, "Content-Type": "application/json;charset=UTF-8"}
    request = httpx.Request(
        method,
        url,
        params=tuple(params),
        headers=headers,
        content=body.encode() if body else None,
    )
    auth = AkSkAuth(AK, SK, PROJECT, security_token=token, clock=fixed_clock)

    ours = signed(auth, request).headers["Authorization"]

    parsed = parse_authorization(ours)
    assert parsed is not None
    expected_names = {"host", "x-project-id", "x-sdk-date"}
    if token:
        expected_names.add("x-security-token")
    if body:
        expected_names.add("content-type")
    assert parsed.signed_headers == tuple(sorted(expected_names))
    assert ours == official_authorization(request, path, params, parsed.signed_headers, SK)


def test_request_gets_date_project_and_authorization_headers() -> None:
    request = httpx.Request("GET", f"https://127.0.0.1/v1.0/{PROJECT}/snapshots")
    out = signed(AkSkAuth(AK, SK, PROJECT, clock=fixed_clock), request)
    assert out.headers["X-Sdk-Date"] == "20240601T020304Z"
    assert out.headers["X-Project-Id"] == PROJECT
    assert "X-Security-Token" not in out.headers
    assert out.headers["Authorization"].startswith(
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-project-id;x-sdk-date, Signature="
    )


def test_a_clock_in_another_zone_is_turned_into_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    auth = AkSkAuth(AK, SK, PROJECT, clock=lambda: FIXED.astimezone(beijing))
    out = signed(auth, httpx.Request("GET", "https://127.0.0.1/"))
    assert out.headers["X-Sdk-Date"] == "20240601T020304Z"


def test_headers_added_after_signing_do_not_matter() -> None:
    # Only headers we set are signed, so a proxy adding one cannot break the signature.
    auth = AkSkAuth(AK, SK, PROJECT, clock=fixed_clock)
    plain = signed(auth, httpx.Request("GET", "https://127.0.0.1/a"))
    noisy = signed(auth, httpx.Request("GET", "https://127.0.0.1/a", headers={"X-Trace": "1"}))
    assert plain.headers["Authorization"] == noisy.headers["Authorization"]


def test_signature_for_verifies_what_the_auth_signed() -> None:
    auth = AkSkAuth(AK, SK, PROJECT, clock=fixed_clock)
    request = signed(auth, httpx.Request("POST", "https://127.0.0.1/x y", json={"a": "b"}))
    parsed = parse_authorization(request.headers["Authorization"])
    assert parsed is not None
    target = request.url.raw_path.decode()
    assert (
        signature_for(
            "POST",
            target,
            request.headers,
            request.content,
            SK,
            signed_headers=parsed.signed_headers,
        )
        == parsed.signature
    )
    assert (
        signature_for(
            "POST",
            target,
            request.headers,
            request.content,
            "other-sk",
            signed_headers=parsed.signed_headers,
        )
        != parsed.signature
    )
    assert (
        signature_for(
            "POST", target, request.headers, b'{"a": "c"}', SK, signed_headers=parsed.signed_headers
        )
        != parsed.signature
    )


def test_missing_signed_header_is_named_without_values() -> None:
    with pytest.raises(ValueError) as caught:
        signature_for(
            "GET", "/", {"host": "127.0.0.1"}, b"", SK, signed_headers=["host", "x-sdk-date"]
        )
    assert "x-sdk-date" in str(caught.value)
    assert SK not in str(caught.value)


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/v1.0/p/snapshots", "/v1.0/p/snapshots/"),
        ("/a%20b/%41/~x/", "/a%20b/A/~x/"),
        ("/%C3%A9", "/%C3%A9/"),
    ],
)
def test_canonical_uri(path: str, canonical: str) -> None:
    assert canonical_uri(path) == canonical


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=abc",
            Authorization("AK", ("host", "x-sdk-date"), "abc"),
        ),
        ("Bearer token", None),
        ("SDK-HMAC-SHA256 Access=AK, Signature=abc", None),
        ("SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=abc", None),
        ("SDK-HMAC-SHA256 garbage", None),
        ("", None),
    ],
)
def test_parse_authorization(value: str, expected: Authorization | None) -> None:
    assert parse_authorization(value) == expected


@pytest.mark.parametrize("sk", [SK, SecretStr(SK)])
def test_secrets_never_show_in_repr(sk: Any) -> None:
    auth = AkSkAuth(AK, sk, PROJECT, security_token=TOKEN)
    assert SK not in repr(auth)
    assert TOKEN not in repr(auth)
    assert SK not in repr(vars(auth))
    assert TOKEN not in repr(vars(auth))
    assert AK in repr(auth)


@pytest.mark.parametrize(
    ("ak", "sk", "project", "message"),
    [
        ("", SK, PROJECT, "The access key (AK) is empty."),
        (AK, "", PROJECT, "The secret key (SK) is empty."),
        (AK, SK, "", "The project id is empty."),
    ],
)
def test_missing_credentials_are_refused_without_echoing_them(
    ak: str, sk: str, project: str, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        AkSkAuth(ak, sk, project)
    assert str(caught.value) == message
    assert SK not in str(caught.value)


def test_security_token_is_sent_and_signed() -> None:
    auth = AkSkAuth(AK, SK, PROJECT, security_token=SecretStr(TOKEN), clock=fixed_clock)
    out = signed(auth, httpx.Request("GET", "https://127.0.0.1/"))
    assert out.headers["X-Security-Token"] == TOKEN
    assert "x-security-token" in out.headers["Authorization"]
