"""Role resolution: direct listings, user groups through Slack (cached briefly), nesting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.domain import CopyRequest, Role, State
from bot.group_changes import GroupChange, MemoryChangeLog, StoredChangeLog
from bot.policy import parse_policy
from bot.roles import Check, RoleResolver
from bot.store import Store

POLICY = parse_policy(
    """
[roles]
requester = ["U0REQUEST", "S0ONCALL"]
approver = ["U0APPROVE", "S0DBA"]
admin = ["U0ADMIN"]
"""
)


class Groups:
    """usergroups.users.list as a callable that counts its calls; `hold()` makes the next
    lookups wait until `release()` (Slack slow), `failing` makes them fail (Slack down)."""

    def __init__(self, members: dict[str, set[str]]) -> None:
        self.members = members
        self.calls: list[str] = []
        self.failing = False
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __call__(self, group_id: str) -> frozenset[str]:
        self.calls.append(group_id)
        self._open.wait(10)
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


# --- lookups that never keep a click waiting (issue 18) ------------------------------------------

DBA = "U0DBA"


class Seen:
    """The resolver's metrics hooks: every lookup's (why, outcome) and every answer's source."""

    def __init__(self) -> None:
        self.lookups: list[tuple[str, str]] = []
        self.answers: list[str] = []
        self._changed = threading.Condition()

    def lookup(self, why: str, outcome: str) -> None:
        with self._changed:
            self.lookups.append((why, outcome))
            self._changed.notify_all()

    def answer(self, source: str) -> None:
        self.answers.append(source)

    def wait_lookups(self, count: int, timeout: float = 5.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.lookups) >= count, timeout), self.lookups


def resolver_for(groups: Groups, seen: Seen | None = None, **options: Any) -> RoleResolver:
    seen = seen or Seen()
    return RoleResolver(POLICY, groups, on_lookup=seen.lookup, on_answer=seen.answer, **options)


def request_for(approvers: list[str]) -> CopyRequest:
    now = "2026-11-28T15:04:05.000Z"
    return CopyRequest(
        id=1,
        state=State.PENDING_APPROVAL,
        source_snapshot_id="s",
        backup_name="b",
        requested_by="U0REQUEST",
        approvers=approvers,
        created_at=now,
        updated_at=now,
    )


def in_threads(count: int, work: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: work(), range(count)))


def test_concurrent_checks_share_one_lookup_per_group() -> None:
    # Regression: ten clicks on a cold cache made about twenty lookups, and most timed out.
    groups = Groups({"S0DBA": {DBA}})
    groups.hold()
    resolver = resolver_for(groups, budget=5.0)
    try:
        with ThreadPoolExecutor(10) as pool:
            clicks = [pool.submit(resolver.has, DBA, Role.APPROVER) for _ in range(10)]
            time.sleep(0.3)  # every click is waiting by now
            groups.release()
            assert [click.result() for click in clicks] == [True] * 10
        assert groups.calls == ["S0DBA"]
    finally:
        resolver.close()


def test_a_late_waiter_gets_its_own_budget_and_the_lookup_outlives_both() -> None:
    groups, seen = Groups({"S0DBA": {DBA}}), Seen()
    groups.hold()
    resolver = resolver_for(groups, seen, budget=0.4)
    try:
        first = threading.Thread(target=resolver.has, args=(DBA, Role.APPROVER))
        first.start()
        time.sleep(0.2)
        started = time.monotonic()
        assert not resolver.has(DBA, Role.APPROVER)  # Slack slower than the budget
        waited = time.monotonic() - started
        first.join()
        assert 0.3 < waited < 1.5, "waited its own budget, not what was left of the first's"
        groups.release()
        seen.wait_lookups(1)
        assert resolver.has(DBA, Role.APPROVER), "the answer that came late is kept"
        assert groups.calls == ["S0DBA"]
    finally:
        groups.release()
        resolver.close()


def test_a_check_asks_only_the_groups_that_can_grant_what_it_needs() -> None:
    groups = Groups({"S0ONCALL": {"U0ONCALL"}, "S0DBA": {DBA}, "S0PROD": {"U0PROD"}})
    resolver = resolver_for(groups)
    assert not resolver.has("U0ONCALL", Role.APPROVER)
    assert groups.calls == ["S0DBA"], "the requester group cannot make anyone an approver"
    assert resolver.check("U0PROD", resolver.deciders(request_for(["S0PROD"]))).held
    assert groups.calls == ["S0DBA", "S0PROD"]
    # A group known to hold the user ends the check: S0ONCALL is never asked about.
    assert resolver.has(DBA, Role.REQUESTER)
    assert "S0ONCALL" not in groups.calls


def test_deciders_are_the_requests_approvers_or_the_approver_role_then_the_admins() -> None:
    resolver = RoleResolver(POLICY, Groups({}))
    assert resolver.deciders(request_for(["S0PROD"])) == ("S0PROD", "U0ADMIN")
    assert resolver.deciders(request_for([])) == ("U0APPROVE", "S0DBA", "U0ADMIN")


def test_a_prefetch_returns_at_once_and_answers_the_click() -> None:
    groups, seen = Groups({"S0DBA": {DBA}}), Seen()
    groups.hold()
    resolver = resolver_for(groups, seen)
    started = time.monotonic()
    resolver.prefetch(["S0DBA", "U0APPROVE"])
    assert time.monotonic() - started < 0.2
    groups.release()
    seen.wait_lookups(1)
    assert resolver.has(DBA, Role.APPROVER)
    assert groups.calls == ["S0DBA"]
    assert seen.lookups == [("prefetch", "ok")] and seen.answers == ["prefetch"]
    resolver.prefetch(["S0DBA"])  # fresh: nothing to do
    assert groups.calls == ["S0DBA"]


def test_a_prefetch_tries_again_after_a_failure_a_check_does_not() -> None:
    groups, seen, clock = Groups({"S0DBA": {DBA}}), Seen(), Clock()
    groups.failing = True
    resolver = resolver_for(groups, seen, clock=clock)
    assert not resolver.has(DBA, Role.APPROVER)
    groups.failing = False
    assert not resolver.has(DBA, Role.APPROVER), "a check does not wait on Slack again so soon"
    assert len(groups.calls) == 1
    resolver.prefetch(["S0DBA"])  # nobody waits on it: worth another try
    seen.wait_lookups(2)
    assert resolver.has(DBA, Role.APPROVER)


def test_while_slack_is_down_a_recent_membership_answers_then_nothing_does() -> None:
    groups, seen, clock = Groups({"S0DBA": {DBA}}), Seen(), Clock()
    resolver = resolver_for(groups, seen, clock=clock, ttl=60, stale_for=300)
    assert resolver.has(DBA, Role.APPROVER)
    groups.failing = True
    clock.now = 61  # expired, and Slack cannot say
    assert resolver.has(DBA, Role.APPROVER)
    assert seen.answers[-1] == "stale"
    clock.now = 301  # too old to stand in for Slack
    check = resolver.check(DBA, resolver.holding(Role.APPROVER))
    assert not check.held and check.unanswered == ("S0DBA",)
    assert seen.answers[-1] == "none"


def test_while_slack_is_slow_a_recent_membership_answers_without_waiting_again() -> None:
    groups, clock = Groups({"S0DBA": {DBA}}), Clock()
    resolver = resolver_for(groups, clock=clock, ttl=60, budget=0.3)
    try:
        assert resolver.has(DBA, Role.APPROVER)
        groups.hold()
        clock.now = 61
        assert resolver.has(DBA, Role.APPROVER)  # waited the budget, then the stale answer
        clock.now = 62  # the lookup has been running longer than a budget: Slack is slow
        started = time.monotonic()
        assert resolver.has(DBA, Role.APPROVER)
        assert time.monotonic() - started < 0.2
        assert groups.calls == ["S0DBA", "S0DBA"]
    finally:
        groups.release()
        resolver.close()


def test_a_removal_event_takes_effect_at_once_and_is_never_undone_by_staleness() -> None:
    groups, clock = Groups({"S0DBA": {DBA, "U0OTHER"}}), Clock()
    resolver = resolver_for(groups, clock=clock)
    assert resolver.has(DBA, Role.APPROVER)
    clock.now = 1  # cached a second ago, and Slack still lists them
    resolver.learn(GroupChange("S0DBA", removed=frozenset({DBA})))
    check = resolver.check(DBA, resolver.holding(Role.APPROVER))
    assert check == Check(False), "refused for want of the role, not for want of Slack"
    assert groups.calls == ["S0DBA"]
    groups.failing = True
    clock.now = 100  # Slack down: the stale membership answers, without the removed person
    assert not resolver.has(DBA, Role.APPROVER)
    assert resolver.has("U0OTHER", Role.APPROVER)


def test_an_answer_slack_gave_before_a_removal_does_not_bring_the_person_back() -> None:
    groups, seen = Groups({"S0DBA": {DBA}}), Seen()
    resolver = resolver_for(groups, seen)
    assert resolver.has(DBA, Role.APPROVER)  # known, so the group's events are ours
    groups.hold()
    resolver.learn(GroupChange("S0DBA", members=None))  # "look again": a refresh starts
    resolver.learn(GroupChange("S0DBA", removed=frozenset({DBA})))  # while Slack answers
    groups.release()  # with the membership it read before the removal
    seen.wait_lookups(2)
    assert not resolver.has(DBA, Role.APPROVER)


def test_a_late_event_cannot_undo_a_newer_removal() -> None:
    resolver = resolver_for(Groups({"S0DBA": {DBA}}))
    assert resolver.has(DBA, Role.APPROVER)
    resolver.learn(GroupChange("S0DBA", removed=frozenset({DBA}), updated=200))
    resolver.learn(GroupChange("S0DBA", added=frozenset({DBA}), updated=100))
    assert not resolver.has(DBA, Role.APPROVER)


def test_a_whole_membership_from_an_event_replaces_the_cached_one() -> None:
    groups = Groups({"S0DBA": {DBA}})
    resolver = resolver_for(groups)
    assert resolver.has(DBA, Role.APPROVER)
    resolver.learn(GroupChange("S0DBA", members=frozenset({"U0NEW"})))
    assert resolver.has("U0NEW", Role.APPROVER) and not resolver.has(DBA, Role.APPROVER)
    assert groups.calls == ["S0DBA"]


def test_events_of_groups_that_give_no_role_are_not_kept() -> None:
    changes = MemoryChangeLog()
    resolver = resolver_for(Groups({}), changes=changes)
    resolver.learn(GroupChange("S0ELSEWHERE", removed=frozenset({DBA})))
    assert changes.latest() == 0


def test_with_events_arriving_a_membership_is_trusted_longer_and_refreshed_before_it_expires() -> (
    None
):
    groups, seen, clock = Groups({"S0DBA": {DBA}}), Seen(), Clock()
    resolver = resolver_for(groups, seen, clock=clock, ttl=60, trusted_ttl=600)
    resolver.learn(GroupChange("S0DBA", added=frozenset({"U0NEW"})))  # events arrive
    assert resolver.has(DBA, Role.APPROVER)
    clock.now = 300
    assert resolver.has(DBA, Role.APPROVER)
    assert groups.calls == ["S0DBA"], "trusted for 10 minutes"
    clock.now = 500  # late in its life: answered at once, and looked up again behind the click
    assert resolver.has(DBA, Role.APPROVER)
    seen.wait_lookups(2)
    assert seen.lookups[-1] == ("refresh", "ok")
    clock.now = 1000  # 500 s after the refresh: still fresh
    assert resolver.has(DBA, Role.APPROVER)
    assert len(groups.calls) == 2


def test_without_events_the_ttl_stays_a_minute() -> None:
    groups, clock = Groups({"S0DBA": {DBA}}), Clock()
    resolver = resolver_for(groups, clock=clock, ttl=60, trusted_ttl=600)
    assert resolver.has(DBA, Role.APPROVER)
    clock.now = 61
    assert resolver.has(DBA, Role.APPROVER)
    assert groups.calls == ["S0DBA", "S0DBA"]


def test_a_removal_learnt_by_one_process_is_in_force_in_another(tmp_path: Path) -> None:
    store = Store(tmp_path / "snapcopy.db")
    try:
        here = resolver_for(Groups({"S0DBA": {DBA}}), changes=StoredChangeLog(store))
        there = resolver_for(Groups({"S0DBA": {DBA}}), changes=StoredChangeLog(store))
        assert here.has(DBA, Role.APPROVER) and there.has(DBA, Role.APPROVER)
        here.learn(GroupChange("S0DBA", removed=frozenset({DBA})))  # Slack told this one only
        assert not there.has(DBA, Role.APPROVER)
        assert [e["kind"] for e in store.events()] == ["group_members_changed"]
        # A process started later knows that events arrive: it trusts memberships longer.
        later = resolver_for(Groups({"S0DBA": {DBA}}), changes=StoredChangeLog(store))
        assert later._life() == 600.0
    finally:
        store.close()


def test_the_groups_looked_up_at_start_are_every_group_that_may_decide_or_ask() -> None:
    policy = parse_policy(
        """
[roles]
requester = ["S0ONCALL"]
approver = ["U0APPROVE", "S0DBA"]

[approval]
escalate_after_minutes = 30
escalate_to = ["S0LEADS"]

[break_glass]
allowed = ["S0SRE"]

[[rules]]
clusters = ["prod-*"]
approvers = ["S0PROD"]
escalate_to = ["S0DIRECTORS"]
"""
    )
    resolver = RoleResolver(policy, Groups({}))
    assert set(resolver.policy_groups()) == {
        "S0ONCALL",
        "S0DBA",
        "S0LEADS",
        "S0SRE",
        "S0PROD",
        "S0DIRECTORS",
    }
