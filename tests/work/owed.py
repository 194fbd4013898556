"""A request that owes work, as the queue's tests need one."""

from __future__ import annotations

from bot.domain import NewRequest, State
from bot.store import Store
from bot.work.queue import Work


def request_with(store: Store, *work: Work, name: str = "keep-me") -> int:
    """A new approved request that owes `work`; its id."""
    new = NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name=name,
        requested_by="U0REQ",
        channel_id="C0INCIDENT",
    )
    return store.create(new, state=State.APPROVED, expires_at=None, actor="U0REQ", work=work).id
