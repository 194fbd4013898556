"""Is a click, or a submitted form, about the request it names? Its buttons carry the request's
number and token (bot.domain.RequestRef): a button of a request from a lost database, whose
number a new request has now, names nothing here. The refusal is one audit event.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.domain import CopyRequest, RequestRef
from bot.errors import WrongRequest
from bot.store import Store

log = logging.getLogger(__name__)


def named(store: Store, ref: RequestRef, user_id: str, *, action: str) -> CopyRequest:
    """The request `ref` names, if it is that request (its token, and the message the click
    was made on where that is checked); WrongRequest otherwise, not yet audited."""
    request = store.get(ref.id)
    why = "unknown" if request is None else ref.mismatch(request)
    if request is not None and why is None:
        return request
    log.warning(
        "refused a click naming another request",
        extra={"request_id": ref.id, "actor": user_id, "action": action, "why": why},
    )
    raise WrongRequest(
        ref.id, known=request is not None, why=why or "", actor=user_id, action=action
    )


def audit_wrong(store: Store, refusal: WrongRequest) -> None:
    """The `wrong_request` event: on the request of that number, if there is one."""
    details: dict[str, Any] = {"action": refusal.action, "why": refusal.why}
    if not refusal.known:
        details["named"] = refusal.request_id
    request_id = refusal.request_id if refusal.known else None
    store.record_event(request_id, "wrong_request", refusal.actor, details)
