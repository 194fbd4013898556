"""Who holds which role: the policy's user IDs directly, user-group IDs through Slack.

Group membership is looked up through an injected callable (Slack's `usergroups.users.list`
in production) and cached briefly, so a burst of clicks costs one lookup, while somebody
removed from a group loses the role within a minute. A failed lookup grants nothing, and is
remembered for a few seconds so an outage does not cost every click a wait. A lookup gets a
second at most: role checks run inside Slack's 3 s acknowledgement. `unanswered()` says which
groups could not be asked, so a refusal can say so instead of blaming the person's role.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from bot.domain import ROLE_IMPLIES, CopyRequest, Role
from bot.policy import Policy

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
        failure_ttl: float = 15.0,
        budget: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._group_members = group_members
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._budget = budget
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="group-lookup")

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

    def holders(self, role: Role) -> tuple[str, ...]:
        return self._policy.roles.holders(role)

    def deciders(self, request: CopyRequest) -> tuple[str, ...]:
        """Who may approve or deny this request (user and group IDs), once each: the approvers
        it names (a rule's, fixed when it was made), or the approver role where it names none,
        those it was escalated to, once it was, and the admins, who always may."""
        named = request.approvers or self.holders(Role.APPROVER)
        escalated = request.escalate_to if request.escalated_at else []
        return tuple(dict.fromkeys([*named, *escalated, *self.admins()]))

    def admins(self) -> tuple[str, ...]:
        """The policy's admin entries (users and groups): who can grant roles."""
        return self._policy.roles.admin

    def unanswered(self, user_id: str, holders: Iterable[str]) -> list[str]:
        """The groups among `holders` whose members Slack could not tell us just now (the
        user is not listed directly)."""
        listed = list(holders)
        if user_id in listed:
            return []
        now = self._clock()
        with self._lock:
            return [
                group
                for group in listed
                if group.startswith("S")
                and now - self._failed.get(group, -1e18) < self._failure_ttl
                and group not in self._fresh(now)
            ]

    def _fresh(self, now: float) -> set[str]:
        return {group for group, (at, _) in self._cache.items() if now - at < self._ttl}

    def _members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(group_id)
            if cached and now - cached[0] < self._ttl:
                return cached[1]
            failed_at = self._failed.get(group_id)
            if failed_at is not None and now - failed_at < self._failure_ttl:
                return frozenset()  # asked a moment ago and failed: do not wait again
        future = self._lookups.submit(self._look_up, group_id)
        try:
            return future.result(timeout=self._budget)
        except FutureTimeout:
            log.warning("user group lookup is slow", extra={"group_id": group_id})
        except Exception:
            # Fail closed; the failure is remembered briefly, then Slack is asked again.
            log.warning("user group lookup failed", extra={"group_id": group_id}, exc_info=True)
        with self._lock:
            self._failed[group_id] = self._clock()
        return frozenset()

    def _look_up(self, group_id: str) -> frozenset[str]:
        members = self._group_members(group_id)
        with self._lock:
            self._cache[group_id] = (self._clock(), members)
            self._failed.pop(group_id, None)
        return members

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)
