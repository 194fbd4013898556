"""mrkdwn text: user text escaped, people mentioned, times and sizes as Slack shows them.
Shared by every Block Kit module of bot/slack/."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain import EVERYONE


def escape(text: str) -> str:
    """Slack's three control characters; after this, user text cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_or_group: str) -> str:
    if user_or_group == EVERYONE:
        return "anyone"  # the sandbox's policy: nobody to ping
    if user_or_group.startswith("S"):
        return f"<!subteam^{user_or_group}>"
    return f"<@{user_or_group}>"


def mentions(ids: tuple[str, ...] | list[str]) -> str:
    return ", ".join(mention(item) for item in ids) or "nobody yet"


def slack_date(stamp: str | None) -> str:
    """A time Slack shows in each reader's own time zone (`<!date^…>`), with the UTC text as
    the fallback for clients that cannot."""
    if not stamp:
        return "unknown"
    moment = _parse_time(stamp)
    if moment is None:
        return escape(stamp)
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _parse_time(stamp: str) -> datetime | None:
    text = stamp.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def size_text(size: float | None) -> str:
    """DWS reports sizes in GB."""
    if size is None:
        return "unknown"
    return f"{size:,.1f} GB" if size < 1024 else f"{size / 1024:,.2f} TB"
