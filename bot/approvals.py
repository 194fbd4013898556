"""N-of-M: what one more approval does, for a copy and for the deletion of its copy alike.

The store counts each person once (bot/store/sqlite.py, `count_approval`); this says what the
count means: the N-th of N approvals decides (`done_fields`, `done_work`), an earlier one is
only counted and told (`more`). Messages about an approval say whose it was and how many there
are now, whenever they are delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.notifier import News, tell
from bot.store import Counted
from bot.work.queue import Work


def counted(
    user_id: str,
    users: list[str],
    needed: int,
    *,
    column: str,
    events: tuple[str, str],
    done_fields: dict[str, Any],
    done_work: Sequence[Work],
    news: tuple[News, News],
) -> Counted:
    """`users`: everyone who approved so far, `user_id` last; `column` records them; `events`
    and `news` are (when done, when counted)."""
    done = len(users) >= needed
    said = {"by": user_id, "count": len(users)}
    fields: dict[str, Any] = {column: ",".join(users), **(done_fields if done else {})}
    return Counted(
        event=events[0] if done else events[1],
        details={"approvals": users, "needed": needed},
        fields=fields,
        work=(*done_work, *tell(news[0], **said)) if done else tell(news[1], **said),
    )
