"""The store: requests, their audit trail, approvals and the work still owed, in one database."""

from bot.store.store import Counted, NameInUse, Store

__all__ = ["Counted", "NameInUse", "Store"]
