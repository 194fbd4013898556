"""What the lifecycle owes people, as rows of the Slack outbox, without knowing Slack.

A state change adds these rows in its own transaction (`Store.transition(..., work=...)`); the
Slack layer (bot/slack/outbox.py) delivers them in order, per request:

- `announce`: post the request message (the thread root), showing the state at delivery time;
- `root`: bring the request message up to date (coalesced: one waiting root update is enough);
- `news`: a thread reply about one piece of `News`, with `details` the reply needs;
- `notify`: a piece of `News` sent to people or channels outside the thread.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from bot.work.queue import Queue, Work


class News(StrEnum):
    """What the lifecycle tells people about; the Slack layer decides how."""

    APPROVAL = "approval"  # one more approval, more needed
    APPROVED = "approved"
    REMINDER = "reminder"
    RETRIED = "retried"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    COPY_STARTED = "copy_started"
    COPIED = "copied"
    STATUS = "status"
    FROZEN = "frozen"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FOLLOW_STOPPED = "follow_stopped"
    DWS_RETRYING = "dws_retrying"
    # The copy's life after it succeeded (bot/retention.py, bot/deletion_jobs.py).
    KEEP_WARNING = "keep_warning"
    KEEP_EXTENDED = "keep_extended"
    DELETE_REQUESTED = "delete_requested"
    DELETE_APPROVAL = "delete_approval"  # one more approval of a deletion, more needed
    DELETE_STARTED = "delete_started"
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"
    # Approving in an incident.
    ESCALATED = "escalated"
    CLUSTER_BUSY = "cluster_busy"  # an approved copy waits for its cluster
    BREAK_GLASS = "break_glass"  # copied without approval: told, and reviewed afterwards
    REVIEWED = "reviewed"
    REVIEW_OVERDUE = "review_overdue"


class Say(StrEnum):
    ANNOUNCE = "announce"
    ROOT = "root"
    NEWS = "news"
    NOTIFY = "notify"  # `news` told to people or channels outside the thread, by message


def announce() -> Work:
    return Work(Queue.SLACK, Say.ANNOUNCE)


def update_root() -> Work:
    return Work(Queue.SLACK, Say.ROOT, coalesce=True)


def notify(news: News, targets: list[str]) -> tuple[Work, ...]:
    """`news` sent to each of `targets` (user or channel IDs) directly; none when empty."""
    if not targets:
        return ()
    return (Work(Queue.SLACK, Say.NOTIFY, {"news": news.value, "to": targets}),)


def tell(news: News, **details: Any) -> tuple[Work, ...]:
    """The request message brought up to date, and a reply about `news` in its thread."""
    return (update_root(), Work(Queue.SLACK, Say.NEWS, {"news": news.value, **details}))
