"""Who holds which role: the policy's user IDs directly, user-group IDs through Slack.

A role check runs inside Slack's 3 s acknowledgement, so it waits on Slack for `budget` (1 s)
at most, and usually not at all:

- **One lookup per group at a time.** Concurrent checks that need a group wait for the same
  lookup (Slack's `usergroups.users.list`), each within its own budget; a lookup outlives the
  checks that gave up on it and its answer is cached for the next ones.
- **Only what the decision needs.** `holding(role)` and `deciders(request)` name the entries that
  can grant it; a group already known to hold the user ends the check.
- **Ahead of the click.** `prefetch()` looks groups up in the background: those that may decide
  a new request, and the policy's at start. A membership used late in its life is refreshed in
  the background before it expires.
- **Kept fresh by Slack's events.** `learn()` takes what `subteam_members_changed` and
  `subteam_updated` say. Changes go through a log shared by every process on the database
  (bot/group_changes.py) and are read back before each check, so a removal takes effect at once
  wherever the next click lands. Once events are known to arrive, a membership is trusted for
  `trusted_ttl` (10 min) instead of `ttl` (1 min), the time a removal took to be noticed without
  them.
- **Stale but safe.** While Slack is slow or down, a membership confirmed within `stale_for`
  (5 min) still answers, with every removal learnt since applied to it. A group never looked up
  grants nothing, and `Check.unanswered` names it, so a refusal can say that Slack could not be
  asked instead of blaming the person's role. A failed lookup is not tried again for a check
  within `failure_ttl`, so an outage does not cost every click a wait.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.domain import EVERYONE, ROLE_IMPLIES, CopyRequest, Role
from bot.group_changes import ChangeLog, GroupChange, MemoryChangeLog
from bot.policy import Policy

log = logging.getLogger(__name__)

GroupMembers = Callable[[str], frozenset[str]]
# Metrics hooks: (why, outcome) of each lookup, and where each answer about a group came from.
LookupObserver = Callable[[str, str], None]
AnswerObserver = Callable[[str], None]

# A membership used after this share of its life is refreshed in the background.
REFRESH_AT = 0.75


def is_group(entry: str) -> bool:
    """User-group IDs start with S; user IDs with U or W."""
    return entry.startswith("S")


@dataclass(frozen=True)
class Grant:
    """One reason somebody holds a role: listed directly, or through a user group."""

    role: Role
    via: str | None = None  # the user-group ID, or None when listed by user ID


@dataclass(frozen=True)
class Check:
    """Whether a user is among some entries; when not, the groups Slack could not tell about."""

    held: bool
    unanswered: tuple[str, ...] = ()


@dataclass
class _Flight:
    """One lookup in progress; checks that need the group wait on `done`."""

    started: float
    why: str  # "check", "prefetch" or "refresh"
    done: threading.Event = field(default_factory=threading.Event)
    # Changes learnt while Slack was answering: its answer may predate them.
    changes: list[GroupChange] = field(default_factory=list)

    @property
    def background(self) -> bool:
        return self.why != "check"


@dataclass
class _Group:
    members: frozenset[str] | None = None  # None until Slack (or a whole-membership event) said
    seen_at: float = -math.inf  # when that membership was known true
    ahead: bool = False  # it came from a lookup nobody waited for (a prefetch or refresh)
    failed_at: float = -math.inf
    updated: float = 0.0  # Slack's date_update of the newest change applied
    flight: _Flight | None = None


@dataclass
class _Answer:
    members: frozenset[str] | None
    source: str  # cache, prefetch, lookup, stale or none: what /metrics counts


class RoleResolver:
    def __init__(
        self,
        policy: Policy,
        group_members: GroupMembers,
        *,
        ttl: float = 60.0,
        trusted_ttl: float = 600.0,
        stale_for: float = 300.0,
        failure_ttl: float = 15.0,
        budget: float = 1.0,
        changes: ChangeLog | None = None,
        on_lookup: LookupObserver = lambda why, outcome: None,
        on_answer: AnswerObserver = lambda source: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._group_members = group_members
        self._ttl = ttl
        self._trusted_ttl = trusted_ttl
        self._stale_for = stale_for
        self._failure_ttl = failure_ttl
        self._budget = budget
        self._changes: ChangeLog = changes if changes is not None else MemoryChangeLog()
        self._on_lookup = on_lookup
        self._on_answer = on_answer
        self._clock = clock
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        # Read before any lookup starts, so no change recorded after it can be missed.
        self._cursor = self._changes.latest()
        # A change on record means the app is subscribed to Slack's group events.
        self._events_arrive = self._cursor > 0
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="group-lookup")

    def use(self, policy: Policy) -> None:
        """Answer from `policy` from now on (the policy file was reloaded)."""
        self._policy = policy

    # --- who is named where ------------------------------------------------------------------

    def holders(self, role: Role) -> tuple[str, ...]:
        """The policy's entries for exactly this role."""
        return self._policy.roles.holders(role)

    def admins(self) -> tuple[str, ...]:
        """The policy's admin entries (users and groups): who can grant roles."""
        return self._policy.roles.admin

    def holding(self, role: Role) -> tuple[str, ...]:
        """Every entry that gives `role`, roles nesting: an admin is an approver too."""
        entries = [h for held in Role if role in ROLE_IMPLIES[held] for h in self.holders(held)]
        return tuple(dict.fromkeys(entries))

    def deciders(self, request: CopyRequest) -> tuple[str, ...]:
        """Who may approve or deny this request (user and group IDs), once each: the approvers
        it names (a rule's, fixed when it was made), or the approver role where it names none,
        those it was escalated to, once it was, and the admins, who always may."""
        named = request.approvers or self.holders(Role.APPROVER)
        escalated = request.escalate_to if request.escalated_at else []
        return tuple(dict.fromkeys([*named, *escalated, *self.admins()]))

    def policy_groups(self) -> tuple[str, ...]:
        """Every user group the policy lets decide or ask: roles, rules' approvers, those
        requests are escalated to, and those allowed to break the glass."""
        policy = self._policy
        entries = [h for role in Role for h in self.holders(role)]
        entries += policy.approval.escalate_to
        for rule in policy.rules:
            entries += [*(rule.approvers or ()), *(rule.escalate_to or ())]
        entries += policy.break_glass.allowed if policy.break_glass else ()
        return tuple(dict.fromkeys(e for e in entries if is_group(e)))

    # --- checks ------------------------------------------------------------------------------

    def check(self, user_id: str, entries: Iterable[str]) -> Check:
        """Whether the user is one of `entries` (user IDs) or in one of them (group IDs)."""
        listed = list(dict.fromkeys(entries))
        if user_id in listed or EVERYONE in listed:
            return Check(True)
        groups = [entry for entry in listed if is_group(entry)]
        if not groups:
            return Check(False)
        answers = self._answers(groups, looking_for=user_id)
        if _holds(answers.values(), user_id):
            return Check(True)
        return Check(False, tuple(g for g, a in answers.items() if a.members is None))

    def has(self, user_id: str, role: Role) -> bool:
        return self.check(user_id, self.holding(role)).held

    def is_among(self, user_id: str, entries: Iterable[str]) -> bool:
        return self.check(user_id, entries).held

    def grants(self, user_id: str) -> list[Grant]:
        """Every reason the user holds a role; this one asks about every group with a role."""
        groups = [e for role in Role for e in self.holders(role) if is_group(e)]
        answers = self._answers(list(dict.fromkeys(groups))) if groups else {}
        found = []
        for role in Role:
            for entry in self.holders(role):
                if entry == user_id:
                    found.append(Grant(role))
                elif entry == EVERYONE:  # the sandbox's own policy
                    found.append(Grant(role, via=EVERYONE))
                elif is_group(entry):
                    members = answers[entry].members
                    if members is not None and user_id in members:
                        found.append(Grant(role, via=entry))
        return found

    def roles_of(self, user_id: str) -> frozenset[Role]:
        roles: set[Role] = set()
        for grant in self.grants(user_id):
            roles |= ROLE_IMPLIES[grant.role]
        return frozenset(roles)

    def unanswered(self, user_id: str, entries: Iterable[str]) -> list[str]:
        """The groups among `entries` whose members are not known now, fresh or stale (the
        user is not listed directly)."""
        listed = list(entries)
        if user_id in listed:
            return []
        with self._lock:
            now = self._clock()
            return [
                entry
                for entry in dict.fromkeys(listed)
                if is_group(entry) and self._usable(self._groups.get(entry), now) is None
            ]

    # --- ahead of the clicks -----------------------------------------------------------------

    def prefetch(self, entries: Iterable[str]) -> None:
        """Look the groups among `entries` up in the background, unless they are fresh or
        being looked up; returns at once. A recent failure does not stop it: nobody waits on
        a prefetch, and somebody will soon need the answer."""
        with self._lock:
            now = self._clock()
            for group in dict.fromkeys(e for e in entries if is_group(e)):
                state = self._groups.setdefault(group, _Group())
                if state.flight is None and not self._fresh_for_long(state, now):
                    self._take_off(group, state, now, "prefetch")

    def learn(self, change: GroupChange) -> None:
        """What one of Slack's events says about a group: kept for every process, in force for
        the next check here. Groups that give no role are not our business."""
        with self._lock:
            ours = change.group in self._groups or change.group in self.policy_groups()
        if ours:
            self._changes.record(change)
            self._sync()

    # --- inside ------------------------------------------------------------------------------

    def _answers(self, groups: Sequence[str], looking_for: str | None = None) -> dict[str, _Answer]:
        """The members of each group, from what is known or from Slack within the budget; stop
        early once a group holds `looking_for`, asking Slack about no more groups."""
        self._sync()
        deadline = time.monotonic() + self._budget
        answers: dict[str, _Answer] = {}
        flights: dict[str, _Flight | None] = {}
        with self._lock:
            now = self._clock()
            unknown = []
            for group in groups:
                state = self._groups.setdefault(group, _Group())
                if self._fresh(state, now):
                    answers[group] = _Answer(state.members, "prefetch" if state.ahead else "cache")
                    self._refresh_if_old(group, state, now)
                else:
                    unknown.append(group)
            if not _holds(answers.values(), looking_for):
                flights = {g: self._flight_for(g, self._groups[g], now) for g in unknown}
        for group, flight in flights.items():
            answers[group] = self._wait(group, flight, deadline)
            if _holds([answers[group]], looking_for):
                break
        for answer in answers.values():
            self._on_answer(answer.source)
        return answers

    def _flight_for(self, group: str, state: _Group, now: float) -> _Flight | None:
        """The lookup a check should wait for: the one in progress, or a new one; None when it
        should not wait (a failure moments ago, or Slack slow with a stale answer at hand)."""
        flight = state.flight
        if flight is not None:
            slow = now - flight.started > self._budget
            return None if slow and self._usable(state, now) is not None else flight
        if now - state.failed_at < self._failure_ttl:
            return None
        return self._take_off(group, state, now, "check")

    def _wait(self, group: str, flight: _Flight | None, deadline: float) -> _Answer:
        if flight is not None and flight.done.wait(max(0.0, deadline - time.monotonic())):
            with self._lock:
                state = self._groups[group]
                landed = state.members is not None and state.failed_at < flight.started
                members = state.members
            if landed:
                return _Answer(members, "prefetch" if flight.background else "lookup")
        with self._lock:
            # Slack slow or down: what was known, if recent enough; removals applied since.
            members = self._usable(self._groups.get(group), self._clock())
        return _Answer(members, "stale" if members is not None else "none")

    def _take_off(self, group: str, state: _Group, now: float, why: str) -> _Flight:
        """Start a lookup (the caller holds the lock and checked that none is in progress)."""
        flight = _Flight(started=now, why=why)
        state.flight = flight
        try:
            self._lookups.submit(self._look_up, group, flight)
        except RuntimeError:  # closed: shutting down
            state.flight = None
            flight.done.set()
        return flight

    def _look_up(self, group: str, flight: _Flight) -> None:
        started = time.monotonic()
        try:
            members: frozenset[str] | None = self._group_members(group)
        except Exception:
            # Fail closed; the failure is remembered briefly, then Slack is asked again.
            log.warning(
                "user group lookup failed",
                extra={"group_id": group, "why": flight.why},
                exc_info=True,
            )
            members = None
        seconds = time.monotonic() - started
        if seconds > self._budget:
            log.warning(
                "user group lookup is slow",
                extra={"group_id": group, "why": flight.why, "seconds": round(seconds, 2)},
            )
        try:
            self._land(group, flight, members)
        finally:
            flight.done.set()
            self._on_lookup(flight.why, "failed" if members is None else "ok")

    def _land(self, group: str, flight: _Flight, members: frozenset[str] | None) -> None:
        with self._lock:
            state = self._groups[group]
            state.flight = None
            if members is None:
                state.failed_at = self._clock()
                return
            for change in flight.changes:
                members = change.applied_to(members)
            state.members, state.seen_at = members, flight.started
            state.ahead = flight.background
            state.failed_at = -math.inf

    def _sync(self) -> None:
        """Apply the changes recorded since the last check, by this process or another."""
        with self._sync_lock:
            fresh = self._changes.since(self._cursor)
            if not fresh:
                return
            with self._lock:
                self._events_arrive = True
                for _, change in fresh:
                    self._apply(change)
                self._cursor = fresh[-1][0]

    def _apply(self, change: GroupChange) -> None:
        state = self._groups.get(change.group)
        if state is None:
            return  # never asked about: nothing known to correct
        if change.updated and change.updated < state.updated:
            change = change.removals_only()  # arrived after a newer one
        state.updated = max(state.updated, change.updated)
        now = self._clock()
        if state.flight is not None:
            state.flight.changes.append(change)
        if change.says_nothing:
            if state.flight is None:
                self._take_off(change.group, state, now, "refresh")
            return
        if state.members is not None or change.members is not None:
            state.members = change.applied_to(state.members or frozenset())
        if change.members is not None:
            state.seen_at, state.ahead = now, True

    # --- ages --------------------------------------------------------------------------------

    def _life(self) -> float:
        return self._trusted_ttl if self._events_arrive else self._ttl

    def _fresh(self, state: _Group, now: float) -> bool:
        return state.members is not None and now - state.seen_at < self._life()

    def _fresh_for_long(self, state: _Group, now: float) -> bool:
        return state.members is not None and now - state.seen_at < self._life() * REFRESH_AT

    def _usable(self, state: _Group | None, now: float) -> frozenset[str] | None:
        """The membership while Slack cannot say: fresh, or seen within `stale_for`."""
        if state is None or state.members is None:
            return None
        if now - state.seen_at < max(self._life(), self._stale_for):
            return state.members
        return None

    def _refresh_if_old(self, group: str, state: _Group, now: float) -> None:
        """Late in its life, a membership that is still used is looked up again in the
        background, so the click that would have found it expired does not wait."""
        if (
            state.flight is None
            and not self._fresh_for_long(state, now)
            and now - state.failed_at >= self._failure_ttl
        ):
            self._take_off(group, state, now, "refresh")

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)


def _holds(answers: Iterable[_Answer], user_id: str | None) -> bool:
    return user_id is not None and any(user_id in (a.members or ()) for a in answers)
