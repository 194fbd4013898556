"""Who holds which role: the policy's user IDs directly, user-group IDs through Slack.

Group membership is looked up through an injected callable (Slack's `usergroups.users.list`
in production) and cached briefly, so a burst of clicks costs one lookup, while somebody
removed from a group loses the role within a minute. A failed lookup grants nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.config import ROLE_IMPLIES, Policy, Role

log = logging.getLogger(__name__)

GroupMembers = Callable[[str], frozenset[str]]


@dataclass(frozen=True)
class Grant:
    """One reason somebody holds a role: listed directly, or through a user group."""

    role: Role
    via: str | None = None  # the user-group ID, or None when listed by user ID


class RoleResolver:
    def __init__(
        self,
        policy: Policy,
        group_members: GroupMembers,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._group_members = group_members
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self._policy

    def grants(self, user_id: str) -> list[Grant]:
        found = []
        for role in Role:
            for holder in self._policy.roles.holders(role):
                if holder == user_id:
                    found.append(Grant(role))
                elif holder.startswith("S") and user_id in self._members(holder):
                    found.append(Grant(role, via=holder))
        return found

    def roles_of(self, user_id: str) -> frozenset[Role]:
        roles: set[Role] = set()
        for grant in self.grants(user_id):
            roles |= ROLE_IMPLIES[grant.role]
        return frozenset(roles)

    def has(self, user_id: str, role: Role) -> bool:
        # Direct listings first: most checks never need a Slack call.
        for held in Role:
            if role in ROLE_IMPLIES[held] and user_id in self._policy.roles.holders(held):
                return True
        return role in self.roles_of(user_id)

    def is_among(self, user_id: str, holders: Iterable[str]) -> bool:
        """Whether the user is one of `holders` (user IDs), or in one of them (group IDs)."""
        listed = list(holders)
        if user_id in listed:
            return True
        return any(holder.startswith("S") and user_id in self._members(holder) for holder in listed)

    def admins(self) -> tuple[str, ...]:
        """The policy's admin entries (users and groups): who can grant roles."""
        return self._policy.roles.admin

    def _members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(group_id)
            if cached and now - cached[0] < self._ttl:
                return cached[1]
        try:
            members = self._group_members(group_id)
        except Exception:
            # Fail closed, and do not cache: the next check asks again.
            log.warning("user group lookup failed", extra={"group_id": group_id}, exc_info=True)
            return frozenset()
        with self._lock:
            self._cache[group_id] = (now, members)
        return members
