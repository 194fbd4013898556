"""What can go wrong when talking to DWS, as a small exception tree.

    DwsError                  DWS or its gateway answered with an error, or gave no usable answer
    ├── DwsTransportError     no HTTP answer at all: connection refused, reset, response lost
    │   └── DwsTimeout        the connect or read timeout ran out
    └── MalformedResponse     a success status whose body is not what the API documents

Every error keeps what support needs to trace it (HTTP status, DWS or gateway error code, the
`X-Request-Id` of the answer) and `str(error)` is one sentence a person can act on. `retryable`
says whether sending the same request again may succeed; it does not say whether doing so is
safe, which for the non-idempotent linked-copy the copy job decides (bot/dws_retry.py).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

THROTTLED_CODE = "APIG.0308"
CLUSTER_BUSY_CODE = "DWS.0011"
_RETRYABLE_CODES = frozenset({THROTTLED_CODE, CLUSTER_BUSY_CODE})
_RETRYABLE_STATUSES = frozenset({409, 429})
_MAX_MESSAGE_CHARS = 200
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class DwsError(Exception):
    """DWS, or the API gateway in front of it, did not do what was asked."""

    def __init__(
        self,
        error_msg: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        encoded_authorization_message: str | None = None,
    ) -> None:
        super().__init__(error_msg)
        self.error_msg = error_msg
        self.status = status
        self.error_code = error_code
        self.request_id = request_id
        self.retry_after = retry_after
        # IAM's encrypted explanation of a 403, for the audit log and support (decoded with
        # IAM's own tool); never shown in Slack.
        self.encoded_authorization_message = encoded_authorization_message

    @classmethod
    def from_response(cls, response: httpx.Response) -> DwsError:
        """Read an error answer in any of the shapes DWS and its gateway use, or none at all.

        Like the official SDK, an answer that names no error code gets its HTTP status as one.
        """
        code, message, encoded = _parse_error_body(response)
        return cls(
            message or response.reason_phrase or "no error message",
            status=response.status_code,
            error_code=code or str(response.status_code),
            request_id=response.headers.get("X-Request-Id") or None,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            encoded_authorization_message=encoded,
        )

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later: throttling, a busy cluster, 5xx."""
        if self.error_code in _RETRYABLE_CODES or self.status in _RETRYABLE_STATUSES:
            return True
        return self.status is not None and self.status >= 500

    def summary(self) -> str:
        return f"{self._lead()} ({self._detail()}).{self._request_id_sentence()}"

    def __str__(self) -> str:
        return self.summary()

    def _lead(self) -> str:
        if self.status is not None and self.status >= 500:
            return "DWS failed to handle the request"
        if self.status == 429 or self.error_code == THROTTLED_CODE:
            return "DWS is throttling requests"
        return "DWS refused the request"

    def _detail(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.error_code) if part is not None)
        message = self.error_msg.rstrip(". ")  # the summary adds its own full stop
        return f"{head}: {message}" if head else message

    def _request_id_sentence(self) -> str:
        return f" Request id {self.request_id}." if self.request_id else ""


class DwsTransportError(DwsError):
    """No HTTP answer came back.

    `sent` says whether the request can have reached DWS: False when the connection was never
    made (nothing can have happened), None when it is unknown (a reset or a lost response after
    the request went out), which for a copy means it may exist.
    """

    def __init__(self, error_msg: str, *, sent: bool | None) -> None:
        super().__init__(error_msg)
        self.sent = sent

    @property
    def retryable(self) -> bool:
        return True

    def summary(self) -> str:
        if self.sent is False:
            outcome = "the request was not sent"
        else:
            outcome = "the request may have reached DWS"
        return f"Could not get an answer from DWS ({self.error_msg}; {outcome})."


class DwsTimeout(DwsTransportError):
    """The connect or read timeout ran out before DWS answered."""


class MalformedResponse(DwsError):
    """A success status with a body that does not match the documented answer."""

    @property
    def retryable(self) -> bool:
        return False

    def summary(self) -> str:
        return (
            f"DWS sent an answer snapcopy cannot read ({self.error_msg})."
            f"{self._request_id_sentence()}"
        )


def transport_error(exc: httpx.TransportError) -> DwsTransportError:
    """Translate an httpx transport failure, deciding whether the request can have been sent."""
    message = _describe_transport_error(exc)
    sent: bool | None
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        sent = False  # no connection was made or handed out: DWS saw nothing
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError):
        sent = False
    else:
        sent = None  # read/write timeouts, resets, lost responses: DWS may have acted
    if isinstance(exc, httpx.TimeoutException):
        return DwsTimeout(message, sent=sent)
    return DwsTransportError(message, sent=sent)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, given as seconds or as an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


_ERROR_KEYS = (
    ("error_code", "error_msg"),  # DWS and APIG
    ("errorCode", "errorMsg"),
    ("code", "message"),  # IAM
)


def _parse_error_body(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """(code, message, IAM's encoded authorization message) from an error answer."""
    try:
        body: Any = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return None, _text_summary(response), None
    if isinstance(body, dict):
        found = _find_error(body)
        if found is not None:
            code, message = (found.get(key) for key in _error_keys(found))
            encoded = found.get("encoded_authorization_message") or body.get(
                "encoded_authorization_message"
            )
            return (
                str(code) if code is not None else None,
                _clip(str(message)) if message is not None else "",
                str(encoded) if encoded else None,
            )
    return None, _text_summary(response), None


def _find_error(body: dict[str, Any], depth: int = 0) -> dict[str, Any] | None:
    """The object holding the error: the body itself, or one nested in it under any key, as
    the official SDK reads them (IAM wraps its error in {"error": {...}})."""
    if any(code in body or message in body for code, message in _ERROR_KEYS):
        return body
    if depth >= 2:
        return None
    for value in body.values():
        if isinstance(value, dict):
            found = _find_error(value, depth + 1)
            if found is not None:
                return found
    return None


def _error_keys(body: dict[str, Any]) -> tuple[str, str]:
    return next((code, message) for code, message in _ERROR_KEYS if code in body or message in body)


def _text_summary(response: httpx.Response) -> str:
    """A short description of a body that is not a JSON error, such as a gateway's HTML page."""
    text = response.content.decode("utf-8", errors="replace")
    title = _TITLE_RE.search(text)
    if title:
        return _clip("an HTML page titled " + repr(" ".join(title.group(1).split())))
    words = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return _clip(words) if words else ""


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) <= _MAX_MESSAGE_CHARS:
        return text
    return text[: _MAX_MESSAGE_CHARS - 1].rstrip() + "…"


def _describe_transport_error(exc: httpx.TransportError) -> str:
    kinds: tuple[tuple[type[httpx.TransportError], str], ...] = (
        (httpx.ConnectTimeout, "connecting timed out"),
        (httpx.ReadTimeout, "no answer within the read timeout"),
        (httpx.WriteTimeout, "sending the request timed out"),
        (httpx.PoolTimeout, "no free connection"),
        (httpx.ConnectError, "could not connect"),
        (httpx.RemoteProtocolError, "the connection closed before a full answer arrived"),
        (httpx.ReadError, "the connection broke while reading the answer"),
        (httpx.WriteError, "the connection broke while sending the request"),
    )
    description = next((text for kind, text in kinds if isinstance(exc, kind)), type(exc).__name__)
    detail = _clip(str(exc)).rstrip(". ")  # "[Errno 111] Connection refused"; never headers
    return f"{description}: {detail}" if detail else description
