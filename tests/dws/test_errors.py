from datetime import UTC, datetime

import httpx
import pytest

from bot.dws.errors import (
    DwsError,
    DwsTimeout,
    DwsTransportError,
    parse_retry_after,
    transport_error,
)

GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


def response(status: int, content: bytes | str = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ('{"error_code": "DWS.0015", "error_msg": "No permission."}', "DWS.0015", "No permission."),
        (
            '{"error_code": "APIG.0308", "error_msg": "The throttling threshold has been reached"}',
            "APIG.0308",
            "The throttling threshold has been reached",
        ),
        ('{"errorCode": "APIGW.0101", "errorMsg": "API not found"}', "APIGW.0101", "API not found"),
        ('{"code": "DWS.0005", "message": "Server failure"}', "DWS.0005", "Server failure"),
        ('{"error": {"code": 401, "message": "token expired"}}', "401", "token expired"),
        # Nested under any key, as the official SDK reads them.
        (
            '{"result": {"error_code": "DWS.0001", "error_msg": "Bad name"}}',
            "DWS.0001",
            "Bad name",
        ),
        # No code in the body: the HTTP status stands in, as in the SDK.
        (GATEWAY_PAGE, "502", "an HTML page titled '502 Bad Gateway'"),
        ("upstream connect error", "502", "upstream connect error"),
        ('["not", "an", "object"]', "502", '["not", "an", "object"]'),
    ],
)
def test_error_bodies_of_every_shape_are_read(body: str, code: str | None, message: str) -> None:
    error = DwsError.from_response(response(502, body, **{"X-Request-Id": "rid-1"}))
    assert (error.status, error.error_code, error.error_msg) == (502, code, message)
    assert error.request_id == "rid-1"


def test_empty_body_falls_back_to_the_reason_phrase() -> None:
    error = DwsError.from_response(response(503))
    assert (error.error_code, error.error_msg, error.request_id) == (
        "503",
        "Service Unavailable",
        None,
    )


def test_iams_encoded_authorization_message_is_kept_but_not_said() -> None:
    body = (
        '{"error_code": "DWS.0015", "error_msg": "No permission.",'
        ' "encoded_authorization_message": "vH3pQ-opaque"}'
    )
    error = DwsError.from_response(response(403, body))

    assert error.encoded_authorization_message == "vH3pQ-opaque"
    assert "vH3pQ" not in str(error), "for the audit log, not for people"


def test_huge_bodies_are_clipped() -> None:
    error = DwsError.from_response(response(500, "x " * 5000))
    assert len(error.error_msg) <= 200


def test_summary_is_one_sentence_with_code_and_request_id() -> None:
    error = DwsError.from_response(
        response(
            403,
            '{"error_code": "DWS.0015", "error_msg": "Snapshot not found or no permission."}',
            **{"X-Request-Id": "abc"},
        )
    )
    assert str(error) == (
        "DWS refused the request (403 DWS.0015: Snapshot not found or no permission). "
        "Request id abc."
    )


@pytest.mark.parametrize(
    ("status", "code", "lead"),
    [
        (429, "APIG.0308", "DWS is throttling requests"),
        (503, None, "DWS failed to handle the request"),
        (400, "DWS.0001", "DWS refused the request"),
    ],
)
def test_summary_lead_fits_the_failure(status: int, code: str | None, lead: str) -> None:
    error = DwsError("boom", status=status, error_code=code)
    assert error.summary() == f"{lead} ({status}{' ' + code if code else ''}: boom)."


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "DWS.0001", False),
        (401, "APIG.0301", False),
        (403, "DWS.0015", False),
        (404, "DWS.5149", False),
        (409, "DWS.0011", True),
        (429, "APIG.0308", True),
        (400, "APIG.0308", True),  # throttling, whatever status a gateway puts on it
        (500, "DWS.0005", True),
        (502, None, True),
        (503, None, True),
    ],
)
def test_retryable_follows_status_and_code(status: int, code: str | None, retryable: bool) -> None:
    assert DwsError("x", status=status, error_code=code).retryable is retryable


def test_retry_after_header_is_kept() -> None:
    error = DwsError.from_response(
        response(
            429, '{"error_code": "APIG.0308", "error_msg": "slow down"}', **{"Retry-After": "3"}
        )
    )
    assert error.retry_after == 3.0


NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Sat, 01 Jun 2024 12:00:30 GMT", 30.0),
        ("Sat, 01 Jun 2024 11:00:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("exc_type", "timeout", "sent"),
    [
        (httpx.ConnectError, False, False),
        (httpx.ConnectTimeout, True, False),
        (httpx.PoolTimeout, True, False),
        (httpx.ReadTimeout, True, None),
        (httpx.WriteTimeout, True, None),
        (httpx.RemoteProtocolError, False, None),
        (httpx.ReadError, False, None),
        (httpx.WriteError, False, None),
    ],
)
def test_transport_errors_say_whether_the_request_was_sent(
    exc_type: type[httpx.TransportError], timeout: bool, sent: bool | None
) -> None:
    error = transport_error(exc_type("boom"))
    assert isinstance(error, DwsTransportError)
    assert isinstance(error, DwsTimeout) is timeout
    assert error.sent is sent
    assert error.retryable
    assert error.status is None


def test_transport_error_summary_tells_the_reader_what_it_means() -> None:
    refused = transport_error(httpx.ConnectError("[Errno 111] Connection refused"))
    lost = transport_error(httpx.ReadTimeout("timed out"))
    assert str(refused) == (
        "Could not get an answer from DWS (could not connect: [Errno 111] Connection refused; "
        "the request was not sent)."
    )
    assert str(lost) == (
        "Could not get an answer from DWS (no answer within the read timeout: timed out; "
        "the request may have reached DWS)."
    )
