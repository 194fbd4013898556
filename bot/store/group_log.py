"""Changes to user groups' members, as Slack's events told them: audit events of one kind,
which every process on the database reads back (bot/roles.py keeps its memberships by them).

The kind is spelled out in the SQL, not passed as a parameter, so SQLite uses the partial index
that the schema keeps for these events alone.
"""

from __future__ import annotations

import json
from typing import Any

from bot.store.store import Store

GROUP_CHANGED = "group_members_changed"


class GroupLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, details: dict[str, Any]) -> None:
        self.store.record_event(None, GROUP_CHANGED, None, details)

    def latest(self) -> int:
        """The event id of the newest group change, 0 when there is none."""
        with self.store.connection() as db:
            row = db.execute(
                "SELECT max(id) FROM events WHERE kind = 'group_members_changed'"
            ).fetchone()
        return int(row[0] or 0)

    def since(self, after: int) -> list[tuple[int, dict[str, Any]]]:
        """Group changes with an event id above `after`, oldest first."""
        with self.store.connection() as db:
            rows = db.execute(
                "SELECT id, details FROM events WHERE kind = 'group_members_changed' AND id > ?"
                " ORDER BY id",
                [after],
            ).fetchall()
        return [(int(row[0]), json.loads(row[1])) for row in rows]
