"""Huawei Cloud AK/SK request signing (SDK-HMAC-SHA256) as an httpx auth.

The scheme, as the API gateway checks it:

    canonical request = METHOD \\n canonical URI \\n canonical query \\n
                        "name:value\\n" for each signed header \\n signed header names \\n
                        sha256 hex of the body
    string to sign    = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n sha256 hex of the canonical request
    Authorization     = SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<a;b>, Signature=<hmac hex>

We sign only headers we set ourselves, so a proxy or httpx adding one cannot break a signature.
The same `signature_for` both signs outgoing requests and verifies incoming ones in the local
stand-in, from the header names an Authorization header lists.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, unquote

import httpx
from pydantic import SecretStr

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


class Authorization(NamedTuple):
    """The parts of an `Authorization: SDK-HMAC-SHA256 ...` header."""

    access: str
    signed_headers: tuple[str, ...]
    signature: str


class AkSkAuth(httpx.Auth):
    """Signs each request with an access key and secret key, as Huawei Cloud APIs expect."""

    requires_request_body = True  # the body's hash is part of the signature

    def __init__(
        self,
        ak: str,
        sk: str | SecretStr,
        project_id: str,
        security_token: str | SecretStr | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        sk = sk if isinstance(sk, SecretStr) else SecretStr(sk)
        if not ak:
            raise ValueError("The access key (AK) is empty.")
        if not sk.get_secret_value():
            raise ValueError("The secret key (SK) is empty.")
        if not project_id:
            raise ValueError("The project id is empty.")
        self.ak = ak
        self.project_id = project_id
        # Kept as SecretStr so that neither repr(), vars() nor a traceback shows them.
        self._sk = sk
        self._security_token = (
            SecretStr(security_token) if isinstance(security_token, str) else security_token
        )
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        token = ", security_token='**********'" if self._security_token else ""
        return f"AkSkAuth(ak={self.ak!r}, sk='**********', project_id={self.project_id!r}{token})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Add the date, project and Authorization headers to `request`, in place."""
        request.headers["X-Sdk-Date"] = self._clock().astimezone(UTC).strftime(DATE_FORMAT)
        request.headers["X-Project-Id"] = self.project_id
        signed = ["host", "x-project-id", "x-sdk-date"]
        if self._security_token is not None:
            request.headers["X-Security-Token"] = self._security_token.get_secret_value()
            signed.append("x-security-token")
        if request.content and "content-type" in request.headers:
            signed.append("content-type")
        signed.sort()
        signature = signature_for(
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers,
            request.content,
            self._sk,
            signed_headers=signed,
        )
        request.headers["Authorization"] = (
            f"{ALGORITHM} Access={self.ak}, SignedHeaders={';'.join(signed)}, Signature={signature}"
        )


def signature_for(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    sk: str | SecretStr,
    *,
    signed_headers: Iterable[str],
) -> str:
    """The hex signature of a request, given its request target as sent ("/path?query").

    Raises ValueError (naming the header, never a value) if a signed header is missing.
    """
    canonical = canonical_request(method, target, headers, body, signed_headers)
    string_to_sign = "\n".join(
        (ALGORITHM, _header(headers, "x-sdk-date"), _sha256_hex(canonical.encode()))
    )
    key = sk.get_secret_value() if isinstance(sk, SecretStr) else sk
    return hmac.new(key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Iterable[str],
) -> str:
    path, _, query = target.partition("?")
    names = [name.lower() for name in signed_headers]
    canonical_headers = "".join(f"{name}:{_header(headers, name).strip()}\n" for name in names)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(names),
            _sha256_hex(body) if body else EMPTY_BODY_SHA256,
        )
    )


def canonical_uri(path: str) -> str:
    """Each segment decoded then encoded again, so "%41", "A" and "é" sign the same either way."""
    encoded = "/".join(_encode(segment) for segment in unquote(path or "/").split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in pairs)


def parse_authorization(value: str) -> Authorization | None:
    """Split an SDK-HMAC-SHA256 Authorization header, or None if it is not one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            return None
        fields[key] = item
    try:
        access, signed, signature = fields["Access"], fields["SignedHeaders"], fields["Signature"]
    except KeyError:
        return None
    if not (access and signed and signature):
        return None
    return Authorization(access, tuple(signed.split(";")), signature)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise ValueError(f"The signed header {name!r} is missing from the request.")


def _encode(text: str) -> str:
    return quote(text, safe="~")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
