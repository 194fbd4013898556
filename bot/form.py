"""A filled-in copy form: checked against DWS's rules, then against DWS itself, within a budget.

Nothing here decides anything: the lifecycle asks (bot/lifecycle.py), and gets back the form,
validated, and what DWS said about its source, if DWS said it in time.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from bot.domain import NewRequest
from bot.dws import (
    DwsError,
    InvalidInput,
    Listed,
    RegionalDws,
    validate_backup_name,
    validate_description,
    validate_snapshot_id,
)
from bot.errors import BadInput
from bot.policy import ApprovalPolicy

log = logging.getLogger(__name__)

# DWS answers this fast or the modal is accepted and the checks wait for copy time.
PRECHECK_BUDGET_SECONDS = 1.5


@dataclass(frozen=True)
class CopyForm:
    """The three fields a person fills in, validated."""

    source_snapshot_id: str
    backup_name: str
    description: str
    reason: str | None = None


# Free text that DWS never sees (the reason) still ends up in Slack blocks: keep it sane.
REASON_MAX_CHARS = 500


def validate(
    snapshot_id: str, backup_name: str, description: str | None, reason: str | None = None
) -> CopyForm:
    """Check the fields against DWS's rules; BadInput names the field at fault. The reason
    is ours, not DWS's: any characters, a bounded length."""
    try:
        form = CopyForm(
            source_snapshot_id=validate_snapshot_id(snapshot_id or ""),
            backup_name=validate_backup_name(backup_name or ""),
            description=validate_description(description),
            reason=(reason or "").strip() or None,
        )
    except InvalidInput as error:
        raise BadInput(error.field, error.message) from None
    if form.reason and len(form.reason) > REASON_MAX_CHARS:
        raise BadInput(
            "reason", f"Keep the reason under {REASON_MAX_CHARS} characters; link to details."
        )
    return form


class FormChecker:
    """Asks DWS about a form on a small pool, so a slow DWS costs a click its budget only."""

    def __init__(self, dws: RegionalDws) -> None:
        self.dws = dws
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="precheck")

    def precheck(self, form: CopyForm, budget: float = PRECHECK_BUDGET_SECONDS) -> Listed | None:
        """Ask DWS whether the source is copyable and the name free, if it answers in time;
        returns the source snapshot as DWS describes it, or None when DWS did not say.

        A slow or failing DWS does not block the request: the copy checks again anyway. Only
        a policy with per-cluster rules needs the answer (see `_approval_for`).
        """
        future = self._pool.submit(self._precheck, form)
        try:
            return future.result(timeout=budget)
        except FutureTimeout:
            log.info("precheck skipped: DWS is slow", extra={"budget": budget})
        except DwsError as error:
            log.info("precheck skipped: %s", error, extra={"error_code": error.error_code})
        return None

    def _precheck(self, form: CopyForm) -> Listed:
        try:
            found = self.dws.locate(form.source_snapshot_id)
        except DwsError as error:
            if error.status in (403, 404) or error.error_code in ("DWS.5149", "DWS.0015"):
                raise BadInput(
                    "snapshot_id",
                    f"DWS has no snapshot {form.source_snapshot_id} in "
                    + ("any configured region." if self.dws.several else "this project."),
                ) from None
            raise
        source = found.snapshot
        if not source.is_automated:
            raise BadInput(
                "snapshot_id",
                f"Snapshot {source.name} is a {source.type.lower()} snapshot; only automated "
                "snapshots can be copied.",
            )
        if self.dws.client(found.region).find_snapshot_by_name(form.backup_name) is not None:
            raise BadInput(
                "backup_name",
                f"A snapshot named {form.backup_name} already exists; pick another name.",
            )
        return found

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def new_request(
    form: CopyForm,
    found: Listed | None,
    approval: ApprovalPolicy,
    **fields: Any,
) -> NewRequest:
    """The form, what DWS said of its source, and how it is approved, as a new request."""
    source = found.snapshot if found else None
    settings = approval.settings
    return NewRequest(
        source_snapshot_id=form.source_snapshot_id,
        backup_name=form.backup_name,
        description=form.description,
        reason=form.reason,
        region=found.region or None if found else None,
        cluster_id=source.cluster_id if source else None,
        cluster_name=source.cluster_name if source else None,
        source_name=source.name if source else None,
        source_started=source.started if source else None,
        source_size=source.size if source else None,
        approvals_needed=settings.approvals,
        approvers=list(approval.approvers),
        notify=list(approval.notify),
        allow_self_approval=settings.allow_self_approval,
        rule=approval.rule,
        **fields,
    )
