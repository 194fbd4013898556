"""How the copy lifecycle tells people what happened, without knowing who listens.

The Slack layer implements `Notifier`; the lifecycle only says which `News` it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.domain import CopyRequest


class News(StrEnum):
    """What the lifecycle tells people about; the notifier decides how."""

    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    COPY_STARTED = "copy_started"
    COPIED = "copied"
    STATUS = "status"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FOLLOW_STOPPED = "follow_stopped"


@dataclass(frozen=True)
class Posted:
    """Where the approval request was posted: its message is the thread root."""

    channel_id: str
    message_ts: str
    thread_ts: str


class Notifier(Protocol):
    def announce(self, request: CopyRequest) -> Posted:
        """Post the approval request (or, with no approval needed, the request) to its channel."""

    def tell(self, request: CopyRequest, news: News) -> None:
        """Let the request's thread know; must not raise."""
