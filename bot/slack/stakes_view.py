"""What the request message says is at stake, and how an incident's request stands: the
source's expiry, the cluster's snapshot storage and state, escalation and break-glass."""

from __future__ import annotations

from bot.domain import CopyRequest, State
from bot.slack.mrkdwn import escape, mention, mentions, size_text, slack_date


def stakes_lines(request: CopyRequest) -> list[str]:
    """Lines for approvers deciding on `request`; "unknown" where DWS did not say in time."""
    if request.cluster_id is None or request.state != State.PENDING_APPROVAL:
        return []
    if request.stakes_at is None:
        return ["_Asking DWS what is at stake (source expiry, storage, cluster)…_"]
    return [_expiry_line(request), _storage_line(request), _cluster_line(request)]


def _expiry_line(request: CopyRequest) -> str:
    line = f":hourglass: *Source expires* {slack_date(request.source_expires_at)}"
    expires, decided_by = request.source_expires_at, request.expires_at
    if expires and decided_by and expires < decided_by:
        line += " · :warning: *before this request does*: decide before then"
    return line


def _storage_line(request: CopyRequest) -> str:
    line = (
        f":floppy_disk: *Snapshot storage* used {size_text(request.storage_used)}, free "
        f"{size_text(request.storage_free)}, paid {size_text(request.storage_paid)}"
    )
    size, free = request.source_size, request.storage_free
    if size is not None and free is not None and size > free:
        line += " · :warning: *this copy moves into paid storage*"
    return line


def _cluster_line(request: CopyRequest) -> str:
    status = escape(request.cluster_status or "unknown")
    line = f":card_file_box: *Cluster* {status}"
    if request.cluster_task:
        line += f" · busy: {escape(request.cluster_task)} (an approved copy waits for it)"
    return line


def incident_lines(request: CopyRequest) -> list[str]:
    lines = []
    if request.escalated_at and request.escalate_to:
        lines.append(f":rotating_light: Escalated to {mentions(request.escalate_to)}")
    if request.break_glass:
        lines.append(_review_line(request))
    return lines


def _review_line(request: CopyRequest) -> str:
    line = ":rotating_light: *Emergency copy (break-glass)*: copied without approval, "
    if request.reviewed_by:
        verdict = "looks right" if request.review_verdict == "ok" else "*flagged*"
        late = " (late)" if request.review_late else ""
        return line + f"reviewed by {mention(request.reviewed_by)}: {verdict}{late}"
    if request.review_late:
        return line + "*review overdue*"
    return line + f"review due {slack_date(request.review_due_at)}"
