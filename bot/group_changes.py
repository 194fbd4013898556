"""What Slack's events say about a user group's members, and the log that keeps it.

Slack delivers an event to one process; the log is the shared database (`StoredChangeLog`, over
bot/store/group_log.py), so every process on it reads each change back (bot/roles.py does before
each check that needs a group). `MemoryChangeLog` serves one process alone: tests, and tools
without a database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from bot.store import Store
from bot.store.group_log import GroupLog


@dataclass(frozen=True)
class GroupChange:
    """What one of Slack's events says about a user group.

    `members` is the whole membership when the event carries all of it; otherwise `added` and
    `removed` are the difference. An event that says neither only asks for a fresh look.
    `updated` is Slack's `date_update` (0 when unknown), to notice events that arrive late.
    """

    group: str
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    members: frozenset[str] | None = None
    updated: float = 0.0

    @property
    def says_nothing(self) -> bool:
        return self.members is None and not self.added and not self.removed

    def applied_to(self, members: frozenset[str]) -> frozenset[str]:
        if self.members is not None:
            return self.members
        return (members | self.added) - self.removed

    def removals_only(self) -> GroupChange:
        """This change as it may be used when newer ones were applied already: a removal is
        always safe to apply late; an addition could undo a newer removal."""
        return GroupChange(self.group, removed=self.removed, updated=self.updated)

    def as_details(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "added": sorted(self.added),
            "removed": sorted(self.removed),
            "members": None if self.members is None else sorted(self.members),
            "updated": self.updated,
        }

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> GroupChange:
        members = details.get("members")
        return cls(
            group=str(details["group"]),
            added=frozenset(details.get("added") or ()),
            removed=frozenset(details.get("removed") or ()),
            members=None if members is None else frozenset(members),
            updated=float(details.get("updated") or 0.0),
        )


class ChangeLog(Protocol):
    """Where learnt group changes are kept, in order, for every resolver to read back."""

    def record(self, change: GroupChange) -> None: ...

    def latest(self) -> int:
        """The position of the newest change (0 when there is none)."""
        ...

    def since(self, after: int) -> list[tuple[int, GroupChange]]:
        """Changes after position `after`, oldest first, with their positions."""
        ...


class MemoryChangeLog:
    """A change log for one process (tests, tools without a database)."""

    def __init__(self) -> None:
        self._changes: list[GroupChange] = []
        self._lock = threading.Lock()

    def record(self, change: GroupChange) -> None:
        with self._lock:
            self._changes.append(change)

    def latest(self) -> int:
        with self._lock:
            return len(self._changes)

    def since(self, after: int) -> list[tuple[int, GroupChange]]:
        with self._lock:
            return list(enumerate(self._changes, start=1))[after:]


class StoredChangeLog:
    """Group changes as audit events in the shared database: an event reaches one process,
    every process on the database reads it back."""

    def __init__(self, store: Store) -> None:
        self._log = GroupLog(store)

    def record(self, change: GroupChange) -> None:
        self._log.record(change.as_details())

    def latest(self) -> int:
        return self._log.latest()

    def since(self, after: int) -> list[tuple[int, GroupChange]]:
        return [
            (position, GroupChange.from_details(details))
            for position, details in self._log.since(after)
        ]
