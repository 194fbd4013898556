"""Timestamps as the database keeps them: UTC text that sorts as it reads.

Every time snapcopy stores or compares (due times, expiries, the audit log) goes through here,
so there is one format and one idea of "now" (`utcnow`, which a test may step to see what a
clock jump does). Lease expiry does not trust this clock at all (bot/work/leases.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(moment: datetime) -> str:
    """UTC timestamps that sort as text: 2026-11-28T15:04:05.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def utcnow() -> datetime:
    """The wall clock, in UTC: it can jump either way (NTP, a VM resumed, an operator)."""
    return datetime.now(UTC)


def now_iso() -> str:
    return iso(utcnow())


def iso_in(seconds: float) -> str:
    """The iso() timestamp `seconds` from now (negative: ago)."""
    return iso(utcnow() + timedelta(seconds=seconds))


def parse_iso(text: str) -> datetime:
    """The inverse of iso()."""
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)


def age_seconds(stamp: str) -> float:
    """How long ago an iso() timestamp was."""
    return (utcnow() - parse_iso(stamp)).total_seconds()
