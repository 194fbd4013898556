"""Each step of a request's life as one structured log line, so that whoever reads the logs (a
SIEM, a log drain) follows every request without the database: requested, approved (and each
approval of several), denied, cancelled, expired, copy started, available, failed, retried; and
then kept longer, deletion asked for and approved, deleted (or not), reviewed.

The audit log in the database stays the record; these lines repeat what it says, after it is
committed.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.domain import CopyRequest

log = logging.getLogger("snapcopy.requests")


def step(event: str, request: CopyRequest | None, actor: str | None = None, **details: Any) -> None:
    """One line for `event` of `request` (None: the change was lost to another process, which
    says so itself), with who did it and the people and cluster concerned. No state: the row
    may have moved on since; the event says what happened."""
    if request is None:
        return
    log.info(
        "request %s %s",
        request.label,
        event.replace("_", " "),
        extra={
            "event": event,
            "request_id": request.id,
            "actor": actor,
            "requested_by": request.requested_by,
            "approved_by": request.approvals,
            "denied_by": request.denied_by,
            "cluster": request.cluster_name,
            "cluster_id": request.cluster_id,
            "region": request.region,
            "source_snapshot_id": request.source_snapshot_id,
            "backup_name": request.backup_name,
            "new_snapshot_id": request.new_snapshot_id,
            **details,
        },
    )


def step_new(request: CopyRequest, *, required: bool, break_glass: bool) -> None:
    """A request just made, and approved with it where it needs no approval."""
    step("requested", request, request.requested_by, reason=request.reason, break_glass=break_glass)
    if not required:
        step("approved", request, None, reason="break glass" if break_glass else "not required")
