"""A moment as people type it: a date (2026-11-01), a time (2026-11-01T08:00, UTC unless it
says), or a duration (30m, 12h, 7d, 2w) before or after now. Standard library only: the read-only
`snapcopy audit` uses it too."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SYNTAX = "a date (2026-11-01, 2026-11-01T08:00) or a duration (30m, 12h, 7d, 2w)"


def parse_when(text: str, now: datetime, *, ahead: bool, day_end: bool = False) -> datetime:
    """`text` as a UTC moment; a duration counts `ahead` of now or back from it. A bare date
    is its first moment, or its last with `day_end`. ValueError names the accepted forms."""
    value = text.strip()
    duration = _DURATION.fullmatch(value.lower())
    if duration:
        delta = timedelta(seconds=float(duration[1]) * _UNITS[duration[2]])
        return now + delta if ahead else now - delta
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is neither {SYNTAX}") from None
    if day_end and len(value) == 10:  # a date alone: all of that day
        when += timedelta(days=1, microseconds=-1)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def minutes_text(minutes: float) -> str:
    """240 → "4 hours", 90 → "90 minutes"."""
    if minutes >= 120 and minutes % 60 == 0:
        return f"{int(minutes // 60)} hours"
    return f"{minutes:g} minutes"
