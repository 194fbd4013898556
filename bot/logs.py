"""Logging: one JSON object per line on stderr, with secrets removed before anything is written.

Log lines end up in places with weaker access control than the secrets themselves (a platform's
log drain, a ticket someone pastes them into), so redaction happens here, once, for every logger:
Slack tokens, `Authorization` and signature values, and the exact secret values of the running
configuration. The formatter redacts each value once more as it builds the line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

REDACTED = "[redacted]"

# Slack tokens: bot (xoxb), user (xoxp), app-level (xapp), legacy and refresh kinds.
_SLACK_TOKEN = re.compile(r"\b(?:xox[a-z]|xapp)-[A-Za-z0-9-]+")
# `Authorization: Bearer …`, `"authorization": "SDK-HMAC-SHA256 Access=…, Signature=…"`: the
# whole value, up to the end of the quoted string or the line.
_AUTHORIZATION = re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+")
# `X-Slack-Signature: v0=…`, `Signature=…`, `X-Security-Token: …`, `sig=…`: one word.
_SIGNATURE = re.compile(
    r"(?i)(\b(?:x-slack-signature|signature|x-security-token|security_token|sig)"
    r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
)
# A Slack request signature on its own, wherever it appears.
_SLACK_SIGNATURE = re.compile(r"\bv0=[0-9a-fA-F]{64}\b")

# Extra fields never written: uvicorn's copy of its message with ANSI colour codes.
_DROPPED = frozenset({"color_message"})

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


class Redactor:
    """Replaces known secret values and anything shaped like a credential with `[redacted]`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is removed whole.
        values = sorted({value for value in secrets if value and value.strip()}, key=len)
        self._secrets = tuple(reversed(values))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _SLACK_TOKEN.sub(REDACTED, text)
        text = _SLACK_SIGNATURE.sub(REDACTED, text)
        text = _AUTHORIZATION.sub(lambda match: match.group(1) + REDACTED, text)
        return _SIGNATURE.sub(lambda match: match.group(1) + REDACTED, text)

    def value(self, value: Any) -> Any:
        """Redact strings inside the JSON-like structures that `extra=` fields carry."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites each record in place: message, arguments, exception text and `extra=` fields."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        # Format the message first: a secret may be in the arguments rather than the template.
        try:
            message = record.getMessage()
        except Exception:  # A bad format string must not turn logging into a crash.
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES:
                setattr(record, key, self.redact.value(value))
        return True


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields, "exception"?}` on one line."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and key not in _DROPPED:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # Values only: redacting the finished line could cut through keys and quoting.
        return json.dumps(self.redact.value(entry), default=str, ensure_ascii=False)


class _SnapcopyHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(
    level: str | int = "INFO", *, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> logging.Handler:
    """Send every logger's records to stderr (or `stream`) as redacted JSON lines.

    `secrets` are the configuration's secret values (tokens, signing secret, AK/SK): they are
    removed verbatim, whatever their shape.
    """
    redactor = Redactor(secrets)
    handler = _SnapcopyHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(redactor))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SnapcopyHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Each DWS call is logged once, by bot.dws.client; httpx's own line would repeat it.
    logging.getLogger("httpx").setLevel(
        logging.NOTSET if root.getEffectiveLevel() <= logging.DEBUG else logging.WARNING
    )
    return handler
