"""Timestamps as the database keeps them: UTC text that sorts as it reads.

Every time snapcopy stores or compares (due times, leases, expiries, the audit log) goes through
here, so there is one format and one idea of "now".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(moment: datetime) -> str:
    """UTC timestamps that sort as text: 2026-11-28T15:04:05.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso_in(seconds: float) -> str:
    """The iso() timestamp `seconds` from now (negative: ago)."""
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def parse_iso(text: str) -> datetime:
    """The inverse of iso()."""
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)


def age_seconds(stamp: str) -> float:
    """How long ago an iso() timestamp was."""
    return (datetime.now(UTC) - parse_iso(stamp)).total_seconds()
