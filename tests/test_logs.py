"""bot.logs: JSON lines, and no secret ever reaches them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.logs import REDACTED, configure_logging

BOT_TOKEN = "xoxb-1111111111-2222222222-AbCdEfGhIjKlMnOpQrStUvWx"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
AK = "HPUAZ1ACCESSKEYVALUE"
SK = "sK9/secret+Key=value\"with'quotes"
CONFIGURED = (BOT_TOKEN, SIGNING_SECRET, AK, SK)


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """configure_logging writing to a buffer; the root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = configure_logging("DEBUG", secrets=CONFIGURED, stream=stream)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.handlers[:] = handlers
        root.setLevel(level)


def test_each_record_is_one_json_object_with_extra_fields(captured: Captured) -> None:
    logging.getLogger("bot.lifecycle").info(
        "request %s approved", "#12", extra={"request_id": 12, "actor": "U0APPROVE"}
    )

    (record,) = captured.records()
    assert record["level"] == "INFO"
    assert record["logger"] == "bot.lifecycle"
    assert record["message"] == "request #12 approved"
    assert record["request_id"] == 12
    assert record["actor"] == "U0APPROVE"
    assert record["time"].endswith("+00:00")


def test_multi_line_messages_stay_on_one_line(captured: Captured) -> None:
    logging.getLogger("x").warning("first\nsecond")

    assert len(captured.text.splitlines()) == 1
    assert captured.records()[0]["message"] == "first\nsecond"


@pytest.mark.parametrize(
    "token",
    [
        "xoxb-1234567890-0987654321-abcdefABCDEF",
        "xoxp-1234-5678-9012-abcdef0123456789",
        "xoxa-2-1234-abcdef",
        "xoxr-1234-abcdef",
        "xapp-1-A0SNAPCOPY-1234567890-0123456789abcdef",
        "xoxe.xoxp-1-abc".split(".")[1],
    ],
)
def test_slack_tokens_are_redacted_even_when_not_configured(captured: Captured, token: str) -> None:
    logging.getLogger("x").error("calling Slack with %s", token)

    assert token not in captured.text
    assert REDACTED in captured.records()[0]["message"]


def test_configured_secrets_are_redacted_wherever_they_appear(captured: Captured) -> None:
    log = logging.getLogger("bot.dws")
    log.info("signing with %s and %s", AK, SK)
    log.info("secret in an extra field", extra={"headers": {"X-Key": SIGNING_SECRET}})
    log.info(f"already formatted {SIGNING_SECRET}")

    for secret in CONFIGURED:
        assert secret not in captured.text
    assert captured.records()[1]["headers"] == {"X-Key": REDACTED}


def test_exception_text_is_redacted(captured: Captured) -> None:
    try:
        raise RuntimeError(f"request failed with token {BOT_TOKEN} and key {SK}")
    except RuntimeError:
        logging.getLogger("x").exception("copy failed")

    (record,) = captured.records()
    assert "RuntimeError" in record["exception"]
    assert BOT_TOKEN not in captured.text
    assert SK not in captured.text


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("Authorization: Bearer abc.def.ghi", "Authorization: "),
        (
            "{'Authorization': 'SDK-HMAC-SHA256 Access=AKIDX, SignedHeaders=host;x-sdk-date, "
            "Signature=0f1e2d3c'}",
            "'Authorization': '",
        ),
        ("X-Slack-Signature: v0=" + "a" * 64, "X-Slack-Signature: "),
        ("signature=deadbeefcafe&ts=1", "signature="),
        ("X-Security-Token: tokenvalue123", "X-Security-Token: "),
    ],
)
def test_authorization_and_signature_values_are_redacted(
    captured: Captured, line: str, kept: str
) -> None:
    logging.getLogger("x").debug(line)

    message = captured.records()[0]["message"]
    assert kept + REDACTED in message
    for secret in ("abc.def.ghi", "AKIDX", "0f1e2d3c", "a" * 64, "deadbeefcafe", "tokenvalue123"):
        assert secret not in message


def test_bare_slack_request_signature_is_redacted(captured: Captured) -> None:
    signature = "v0=" + "0123456789abcdef" * 4

    logging.getLogger("slack_bolt").info("bad signature %s", signature)

    assert signature not in captured.text


def test_ordinary_text_is_left_alone(captured: Captured) -> None:
    message = "copy of snap-7d3e into keep-before-restore-2026 requested by U0REQUEST"

    logging.getLogger("x").info(message)

    assert captured.records()[0]["message"] == message


def test_level_filters_records() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = configure_logging("WARNING", stream=stream)
    try:
        logging.getLogger("x").info("quiet")
        logging.getLogger("x").warning("loud")
    finally:
        root.removeHandler(handler)
        root.handlers[:] = handlers
        root.setLevel(level)

    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_configuring_twice_does_not_duplicate_lines(captured: Captured) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        logging.getLogger("x").info("once")
    finally:
        root.removeHandler(handler)

    assert stream.getvalue().count("once") == 1
    assert "once" not in captured.text  # the first handler was replaced, not kept


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=6))
def test_any_configured_secret_is_redacted(secret: str) -> None:
    assume(secret.strip())
    template = "before {} after"
    assume(secret not in template.format(REDACTED))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = configure_logging("INFO", secrets=[secret], stream=stream)
    try:
        logging.getLogger("x").info(template.format(secret), extra={"field": secret})
    finally:
        root.removeHandler(handler)
        root.handlers[:] = handlers
        root.setLevel(level)

    record = json.loads(stream.getvalue())
    assert secret not in record["message"]
    assert secret not in record["field"]


def test_a_bad_format_string_is_logged_not_raised(captured: Captured) -> None:
    logging.getLogger("x").info("two %s %s", BOT_TOKEN)

    (record,) = captured.records()
    assert "two %s %s" in record["message"]
    assert BOT_TOKEN not in captured.text
