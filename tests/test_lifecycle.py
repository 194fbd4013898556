"""The request lifecycle, called directly (bot/lifecycle.py): who may decide, N-of-M, races,
and the work each decision leaves for the DWS jobs and the outbox. A real store; roles from a
real policy with group lookups answered by a dict; no Slack, no HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.domain import CopyRequest, NewRequest, Role, State
from bot.dws import AkSkAuth, DwsClient, RegionalDws, RetryPolicy, build_http_client
from bot.errors import (
    AlreadyApproved,
    AlreadyHandled,
    GroupsUnanswered,
    NotAllowed,
    RequestExpired,
    SelfApproval,
)
from bot.lifecycle import CopyService
from bot.policy import parse_policy
from bot.roles import RoleResolver
from bot.store import Store
from bot.work.queue import Queue
from tests.dws.fakes import AK, BASE_URL, PROJECT, SK, FakeDws

REQUESTER, APPROVER, SECOND, ADMIN, OUTSIDER = "U0REQ", "U0APP", "U0APP2", "U0ADMIN", "U0OUT"
DBA_GROUP, DBA = "S0DBA", "U0DBA"

POLICY = f"""
[roles]
requester = ["{REQUESTER}"]
approver = ["{APPROVER}", "{SECOND}", "{DBA_GROUP}"]
admin = ["{ADMIN}"]
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "snapcopy.db")
    yield store
    store.close()


@pytest.fixture
def groups() -> dict[str, frozenset[str]]:
    """Group members as Slack would answer; a group missing from it makes the lookup fail."""
    return {DBA_GROUP: frozenset({DBA})}


@pytest.fixture
def copies(store: Store, groups: dict[str, frozenset[str]]) -> Iterator[CopyService]:
    policy = parse_policy(POLICY)
    roles = RoleResolver(policy, lambda group: groups[group])
    with build_http_client(
        BASE_URL, AkSkAuth(AK, SK, PROJECT), transport=httpx.MockTransport(FakeDws())
    ) as http:
        dws = RegionalDws({"": DwsClient(http, PROJECT, retry=RetryPolicy(attempts=1))})
        service = CopyService(store, dws, policy, roles)
        yield service
        service.close()
        roles.close()


def waiting(
    store: Store, *, needed: int = 1, name: str = "keep-me", **fields: object
) -> CopyRequest:
    new = NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name=name,
        requested_by=REQUESTER,
        channel_id="C0INCIDENT",
        approvals_needed=needed,
        **fields,  # type: ignore[arg-type]
    )
    return store.create(new, state=State.PENDING_APPROVAL, expires_at=None, actor=REQUESTER)


def open_work(store: Store, request: CopyRequest) -> list[tuple[str, str, str | None]]:
    return [
        (row["queue"], row["kind"], json.loads(row["payload"]).get("news"))
        for row in store.open_work(request.id)
    ]


def test_one_approval_of_one_approves_and_starts_the_copy(
    store: Store, copies: CopyService
) -> None:
    approved = copies.approve(waiting(store).ref, APPROVER)
    assert approved.state == State.APPROVED
    assert approved.approvals == [APPROVER]
    assert (Queue.DWS, "copy", None) in open_work(store, approved)
    assert (Queue.SLACK, "news", "approved") in open_work(store, approved)
    assert [e["kind"] for e in store.events(approved.id)] == ["requested", "approved"]


def test_two_of_two_waits_for_the_second_approver(store: Store, copies: CopyService) -> None:
    request = waiting(store, needed=2)
    first = copies.approve(request.ref, APPROVER)
    assert first.state == State.PENDING_APPROVAL
    assert [kind for queue, kind, _ in open_work(store, first) if queue == Queue.DWS] == []
    news = [row for row in store.open_work(request.id) if row["kind"] == "news"]
    assert '"by": "U0APP"' in news[-1]["payload"] and '"count": 1' in news[-1]["payload"]
    second = copies.approve(request.ref, SECOND)
    assert second.state == State.APPROVED
    assert second.approvals == [APPROVER, SECOND]
    assert (Queue.DWS, "copy", None) in open_work(store, second)


def test_the_same_approver_counts_once(store: Store, copies: CopyService) -> None:
    request = waiting(store, needed=2)
    copies.approve(request.ref, APPROVER)
    with pytest.raises(AlreadyApproved):
        copies.approve(request.ref, APPROVER)
    assert store.require(request.id).approvals == [APPROVER]


def test_a_requester_cannot_approve_their_own_request(store: Store, copies: CopyService) -> None:
    request = waiting(store, approvers=[REQUESTER, APPROVER], rule=1)
    with pytest.raises(SelfApproval):
        copies.approve(request.ref, REQUESTER)
    assert store.require(request.id).state == State.PENDING_APPROVAL
    assert store.events(request.id)[-1]["kind"] == "refused"


def test_someone_without_the_role_is_refused_and_audited(store: Store, copies: CopyService) -> None:
    request = waiting(store)
    with pytest.raises(NotAllowed) as refused:
        copies.approve(request.ref, OUTSIDER)
    assert "approver role" in refused.value.message
    assert store.events(request.id)[-1] | {"at": None, "id": None} == {
        "id": None,
        "at": None,
        "request_id": request.id,
        "kind": "refused",
        "actor": OUTSIDER,
        "details": {"action": "approve", "needed": "approver"},
    }


def test_a_rules_approvers_replace_the_approver_role(store: Store, copies: CopyService) -> None:
    request = waiting(store, approvers=[SECOND], rule=1)
    with pytest.raises(NotAllowed):
        copies.approve(request.ref, APPROVER)
    assert copies.approve(request.ref, ADMIN).state == State.APPROVED  # admins always may


def test_a_group_member_may_decide(store: Store, copies: CopyService) -> None:
    assert copies.approve(waiting(store).ref, DBA).state == State.APPROVED


def test_a_group_slack_cannot_answer_for_is_said_plainly(
    store: Store, copies: CopyService, groups: dict[str, frozenset[str]]
) -> None:
    del groups[DBA_GROUP]  # the lookup fails
    with pytest.raises(GroupsUnanswered):
        copies.approve(waiting(store).ref, DBA)


def test_the_first_decision_wins(store: Store, copies: CopyService) -> None:
    request = waiting(store)
    copies.deny(request.ref, APPROVER, "not now")
    with pytest.raises(AlreadyHandled):
        copies.approve(request.ref, SECOND)
    denied = store.require(request.id)
    assert (denied.state, denied.denied_by, denied.deny_reason) == (
        State.DENIED,
        APPROVER,
        "not now",
    )
    assert not [row for row in store.open_work(request.id) if row["queue"] == Queue.DWS]


def test_an_expired_request_cannot_be_approved(store: Store, copies: CopyService) -> None:
    request = waiting(store)
    with store.connection() as db:
        db.execute("UPDATE requests SET expires_at = '2000-01-01T00:00:00.000Z'")
    with pytest.raises(RequestExpired):
        copies.approve(request.ref, APPROVER)
    assert store.require(request.id).state == State.EXPIRED


def test_racing_approvals_of_two_of_two_start_one_copy(store: Store, copies: CopyService) -> None:
    """Eight approvers click at once on a 2-of-2 request: exactly two approvals count, the
    request is approved once, and one copy job exists."""
    approvers = [f"U0RACE{index}" for index in range(8)]
    request = waiting(store, needed=2, approvers=approvers, rule=1)
    barrier = threading.Barrier(len(approvers))
    outcomes: list[str] = []

    def click(user: str) -> None:
        barrier.wait()
        try:
            outcomes.append(copies.approve(request.ref, user).state.value)
        except AlreadyHandled:
            outcomes.append("handled")

    threads = [threading.Thread(target=click, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Two clicks counted (what each saw depends on timing), six were told it was handled.
    assert outcomes.count("handled") == 6
    assert len(store.require(request.id).approvals) == 2
    copy_jobs = [row for row in store.work_rows(request.id) if row["queue"] == Queue.DWS]
    assert len(copy_jobs) == 1
    assert [e["kind"] for e in store.events(request.id)].count("approved") == 1


def test_only_the_requester_or_an_admin_may_cancel(store: Store, copies: CopyService) -> None:
    request = waiting(store)
    with pytest.raises(NotAllowed):
        copies.cancel(request.id, APPROVER)
    assert copies.cancel(request.id, ADMIN).state == State.CANCELLED


def test_deciders_are_the_requests_approvers_then_the_admins_once_each(
    store: Store, copies: CopyService
) -> None:
    roles = copies.roles
    named = waiting(store, name="named", approvers=[SECOND, ADMIN], rule=1)
    assert roles.deciders(named) == (SECOND, ADMIN)
    unnamed = waiting(store, name="unnamed")
    assert roles.deciders(unnamed) == (*roles.holders(Role.APPROVER), ADMIN)
