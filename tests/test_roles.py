"""Role resolution: direct listings, user groups through Slack (cached briefly), nesting."""

from __future__ import annotations

import threading
import time

import pytest

from bot.domain import Role
from bot.policy import parse_policy
from bot.roles import RoleResolver

POLICY = parse_policy(
    """
[roles]
requester = ["U0REQUEST", "S0ONCALL"]
approver = ["U0APPROVE", "S0DBA"]
admin = ["U0ADMIN"]
"""
)


class Groups:
    """usergroups.users.list as a callable that counts its calls."""

    def __init__(self, members: dict[str, set[str]]) -> None:
        self.members = members
        self.calls: list[str] = []
        self.failing = False

    def __call__(self, group_id: str) -> frozenset[str]:
        self.calls.append(group_id)
        if self.failing:
            raise ConnectionError("slack is down")
        return frozenset(self.members.get(group_id, set()))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("user", "roles"),
    [
        ("U0REQUEST", {Role.REQUESTER}),
        ("U0APPROVE", {Role.REQUESTER, Role.APPROVER}),
        ("U0ADMIN", {Role.REQUESTER, Role.APPROVER, Role.ADMIN}),
        ("U0ONCALL", {Role.REQUESTER}),
        ("U0DBA", {Role.REQUESTER, Role.APPROVER}),
        ("U0NOBODY", set()),
    ],
)
def test_roles_nest_and_come_from_ids_or_groups(user: str, roles: set[Role]) -> None:
    resolver = RoleResolver(POLICY, Groups({"S0ONCALL": {"U0ONCALL"}, "S0DBA": {"U0DBA"}}))
    assert resolver.roles_of(user) == roles
    for role in Role:
        assert resolver.has(user, role) == (role in roles)


def test_a_directly_listed_user_needs_no_group_lookup() -> None:
    groups = Groups({})
    resolver = RoleResolver(POLICY, groups)
    assert resolver.has("U0ADMIN", Role.APPROVER)
    assert groups.calls == []


def test_group_members_are_cached_for_the_ttl_only() -> None:
    groups, clock = Groups({"S0ONCALL": {"U0ONCALL"}}), Clock()
    resolver = RoleResolver(POLICY, groups, ttl=60, clock=clock)
    for _ in range(5):
        assert resolver.has("U0ONCALL", Role.REQUESTER)
    assert groups.calls.count("S0ONCALL") == 1
    groups.members["S0ONCALL"] = set()  # removed from the group
    clock.now = 61
    assert not resolver.has("U0ONCALL", Role.REQUESTER)


def test_a_failed_group_lookup_grants_nothing_and_is_retried_after_a_pause() -> None:
    groups = Groups({"S0ONCALL": {"U0ONCALL"}})
    groups.failing = True
    clock = Clock()
    resolver = RoleResolver(POLICY, groups, clock=clock, failure_ttl=15.0)
    assert not resolver.has("U0ONCALL", Role.REQUESTER)
    assert resolver.unanswered("U0ONCALL", ["S0ONCALL"]) == ["S0ONCALL"]
    asked = len(groups.calls)
    groups.failing = False
    # During an outage every click would wait for Slack again: a failure is remembered briefly.
    assert not resolver.has("U0ONCALL", Role.REQUESTER)
    assert len(groups.calls) == asked
    clock.now += 16
    assert resolver.has("U0ONCALL", Role.REQUESTER)
    assert resolver.unanswered("U0ONCALL", ["S0ONCALL"]) == []


def test_a_group_lookup_that_hangs_is_given_up_within_the_budget() -> None:
    release = threading.Event()

    def hanging(group_id: str) -> frozenset[str]:
        release.wait(5)
        return frozenset({"U0ONCALL"})

    resolver = RoleResolver(POLICY, hanging, budget=0.2)
    started = time.monotonic()
    try:
        assert not resolver.has("U0ONCALL", Role.REQUESTER)
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        resolver.close()


def test_grants_say_where_a_role_comes_from() -> None:
    resolver = RoleResolver(POLICY, Groups({"S0ONCALL": {"U0APPROVE"}}))
    grants = {(g.role, g.via) for g in resolver.grants("U0APPROVE")}
    assert grants == {(Role.REQUESTER, "S0ONCALL"), (Role.APPROVER, None)}
