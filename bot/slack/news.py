"""What a thread reply about each piece of `News` says, and the buttons it carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.domain import CopyRequest, State
from bot.notifier import News
from bot.slack import incident_views as incident
from bot.slack import replies, views
from bot.slack import retention_views as retention

REPLIES: dict[News, Callable[[CopyRequest], str]] = {
    News.APPROVED: replies.approved_reply,
    News.REMINDER: replies.reminder_reply,
    News.RETRIED: replies.retried_reply,
    News.COPIED: replies.copied_reply,
    News.SUCCEEDED: replies.succeeded_reply,
    News.FAILED: replies.failed_reply,
    News.DENIED: replies.denied_reply,
    News.EXPIRED: replies.expired_reply,
    News.CANCELLED: replies.cancelled_reply,
    News.FOLLOW_STOPPED: replies.follow_stopped_reply,
    News.KEEP_WARNING: retention.keep_warning_text,
    News.DELETE_REQUESTED: retention.delete_request_text,
    News.DELETE_STARTED: retention.delete_started_reply,
    News.DELETED: retention.deleted_reply,
    News.ESCALATED: incident.escalated_reply,
    News.BREAK_GLASS: incident.break_glass_reply,
    News.REVIEWED: incident.reviewed_reply,
}
# Replies that carry buttons: the words above, in a section, with these blocks.
BLOCKS: dict[News, Callable[[CopyRequest], list[dict[str, Any]]]] = {
    News.KEEP_WARNING: retention.keep_warning_blocks,
    News.DELETE_REQUESTED: retention.delete_request_blocks,
    News.BREAK_GLASS: incident.break_glass_blocks,
}


def reply_for(
    news: News, request: CopyRequest, payload: dict[str, Any]
) -> tuple[str, list[dict[str, Any]] | None] | None:
    """The words (and blocks) of a reply about `news`; None when nothing is to be said."""
    text = _text(news, request, payload)
    if text is None:
        return None
    blocks = BLOCKS.get(news)
    # Buttons of a deleted copy, or of a review already given, would only confuse.
    live = request.state == State.SUCCEEDED or (
        news == News.BREAK_GLASS and not request.reviewed_by
    )
    return text, blocks(request) if blocks is not None and live else None


def notice_for(news: News, request: CopyRequest) -> tuple[str, list[dict[str, Any]] | None]:
    """What people or channels outside the thread are sent about `news` (Say.NOTIFY)."""
    if news == News.BREAK_GLASS:
        return incident.break_glass_notice(request), None
    if news == News.REVIEW_OVERDUE:
        return incident.review_overdue_reply(request, ()), incident.break_glass_blocks(request)
    return views.request_text(request), views.request_blocks(request)


def _text(news: News, request: CopyRequest, payload: dict[str, Any]) -> str | None:
    if news == News.REMINDER and request.state != State.PENDING_APPROVAL:
        return None  # decided since: nobody needs reminding
    if news == News.FROZEN:
        return replies.frozen_reply(request, payload.get("status") or "FROZEN")
    if news == News.APPROVAL:
        return replies.approval_reply(request, by=payload["by"], count=payload["count"])
    if news == News.DWS_RETRYING:
        return replies.dws_retrying_reply(next_in=payload["next_in_seconds"])
    if news == News.KEEP_EXTENDED:
        return retention.keep_extended_reply(request, by=payload.get("by") or "")
    if news == News.DELETE_APPROVAL:
        return retention.delete_approval_reply(request, by=payload["by"], count=payload["count"])
    if news == News.REVIEW_OVERDUE:
        return incident.review_overdue_reply(request, tuple(payload.get("admins") or ()))
    if news == News.CLUSTER_BUSY:
        return incident.cluster_busy_reply(request, str(payload.get("task") or "busy"))
    if news == News.DELETE_FAILED:
        return retention.delete_failed_reply(request, str(payload.get("error") or ""))
    reply = REPLIES.get(news)
    return reply(request) if reply is not None else None
