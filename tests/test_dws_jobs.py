"""The DWS jobs one run at a time (bot/dws_jobs.py), against a scripted DWS and a real store:
what each answer does to the request, and when the job is due again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bot.clock import iso, utcnow
from bot.domain import CopyRequest, NewRequest, State
from bot.dws.client import DwsClient, RetryPolicy, build_http_client
from bot.dws.regional import RegionalDws
from bot.dws.signer import AkSkAuth
from bot.dws_jobs import FOLLOW, Copier, copy_job
from bot.store import Store
from bot.work.backoff import Backoff
from bot.work.queue import Claimed, Queue, Work
from bot.work.workers import Done, Retry
from tests.dws.fakes import (
    AK,
    BASE_URL,
    NEW_ID,
    PROJECT,
    SK,
    SOURCE_ID,
    FakeDws,
    copied,
    dws_error,
    listing,
    one,
    snapshot_json,
)

POLL = 15.0


@pytest.fixture
def fake() -> FakeDws:
    return FakeDws()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "snapcopy.db")
    yield store
    store.close()


@pytest.fixture
def copier(store: Store, fake: FakeDws) -> Iterator[Copier]:
    auth = AkSkAuth(AK, SK, PROJECT)
    with build_http_client(BASE_URL, auth, transport=httpx.MockTransport(fake)) as http:
        dws = RegionalDws({"": DwsClient(http, PROJECT, retry=RetryPolicy(attempts=1))})
        # The upper bound of each backoff: exact figures.
        yield Copier(store, dws, poll_seconds=POLL, follow_seconds=3600, backoff=Backoff(base=2.0))


def approved(store: Store, work: Work | None = None) -> CopyRequest:
    new = NewRequest(
        source_snapshot_id=SOURCE_ID,
        backup_name="keep-me",
        requested_by="U0REQUEST",
        channel_id="C0INCIDENT",
    )
    return store.create(
        new, state=State.APPROVED, expires_at=None, actor="U0REQUEST", work=[work or copy_job()]
    )


def claim(store: Store) -> Claimed:
    claimed = store.claim("dws", "test-worker", 60)
    assert claimed is not None
    return claimed


def run(store: Store, copier: Copier) -> Done | Retry:
    job = claim(store)
    result = copier(job)
    if isinstance(result, Done):
        store.finish(job, result.outcome, work=result.then)
    else:
        store.retry(job, after=0, error=result.error, problem=result.problem, fresh=result.fresh)
    return result


def kinds(store: Store, request: CopyRequest) -> list[str]:
    return [event["kind"] for event in store.events(request.id)]


def test_a_free_name_is_copied_and_then_followed(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    fake.queue(listing(), copied(NEW_ID))

    result = run(store, copier)

    assert isinstance(result, Done) and [w.kind for w in result.then] == ["follow"]
    now = store.require(request.id)
    assert (now.state, now.new_snapshot_id, now.snapshot_status) == (
        State.COPYING,
        NEW_ID,
        "CREATING",
    )
    assert kinds(store, request)[-2:] == ["copy_started", "copied"]


def test_a_name_taken_by_a_snapshot_not_ours_fails_without_copying(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    fake.queue(listing(snapshot_json(name="KEEP-ME")))

    assert isinstance(run(store, copier), Done)

    assert store.require(request.id).state == State.FAILED
    assert fake.calls == [("GET", "/snapshots")]


def test_an_ambiguous_copy_is_looked_up_before_it_is_sent_again(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    fake.queue(listing(), dws_error(503, "DWS.0005"))
    first = run(store, copier)
    assert isinstance(first, Retry) and first.problem == "DWS.0005"
    assert "dws_retrying" in kinds(store, request)

    # The copy was made after all: found by name, adopted, not sent again.
    fake.queue(listing(snapshot_json(name="keep-me", snapshot_id=NEW_ID, status="CREATING")))
    second = run(store, copier)

    assert isinstance(second, Done)
    assert store.require(request.id).new_snapshot_id == NEW_ID
    assert [call for call in fake.calls if call[0] == "POST"] == [
        ("POST", f"/snapshots/{SOURCE_ID}/linked-copy")
    ]


def test_throttling_waits_for_retry_after_and_says_so_once(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    throttled = dws_error(429, "APIG.0308", headers={"Retry-After": "7"})
    fake.queue(listing(), throttled)
    first = run(store, copier)
    assert isinstance(first, Retry) and first.after == 7.0 and first.problem == "APIG.0308"
    fake.queue(listing(), dws_error(429, "APIG.0308", headers={"Retry-After": "7"}))
    again = run(store, copier)

    assert isinstance(again, Retry) and again.after == 7.0
    assert kinds(store, request).count("dws_retrying") == 1, "once per problem"


def test_a_definite_refusal_fails_the_request(store: Store, copier: Copier, fake: FakeDws) -> None:
    request = approved(store)
    fake.queue(listing(), dws_error(400, "DWS.0001", "bad name"))

    assert isinstance(run(store, copier), Done)

    failed = store.require(request.id)
    assert (failed.state, failed.error_code) == (State.FAILED, "DWS.0001")


def following(store: Store, status: str = "CREATING", *, minutes: float = 0.0) -> CopyRequest:
    """A request whose copy is being made, followed for `minutes` so far."""
    since = iso(utcnow() - timedelta(minutes=minutes))
    request = approved(store, Work(Queue.DWS, FOLLOW, {"since": since}))
    store.transition(
        request.id,
        allowed_from=[State.APPROVED],
        to=State.COPYING,
        event="copy_started",
        actor=None,
        new_snapshot_id=NEW_ID,
        snapshot_status=status,
    )
    return store.require(request.id)


@pytest.mark.parametrize(
    ("status", "after", "state", "news"),
    [
        ("CREATING", POLL, State.COPYING, None),
        ("FROZEN", 4 * POLL, State.COPYING, "frozen"),
        ("POLICE_FROZEN", 4 * POLL, State.COPYING, "frozen"),
        ("AVAILABLE", None, State.SUCCEEDED, "succeeded"),
        ("UNAVAILABLE", None, State.FAILED, "failed"),
    ],
)
def test_each_status_decides_what_following_does(
    store: Store,
    copier: Copier,
    fake: FakeDws,
    status: str,
    after: float | None,
    state: State,
    news: str | None,
) -> None:
    request = following(store)
    fake.queue(one(snapshot_json(snapshot_id=NEW_ID, status=status)))

    result = run(store, copier)

    if after is None:
        assert isinstance(result, Done)
    else:
        assert isinstance(result, Retry) and result.after == after and result.fresh
    assert store.require(request.id).state == state
    told = [row["payload"] for row in store.work_rows(request.id) if row["kind"] == "news"]
    if news is not None:
        assert any(f'"news": "{news}"' in payload for payload in told), told


def test_a_new_id_dws_no_longer_knows_is_found_by_name(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = following(store)
    moved = "0b7e4c1d-8f2a-4e6b-a3d5-9c8b7a6f5e4d"
    fake.queue(
        dws_error(404, "DWS.0015"),
        listing(snapshot_json(name="keep-me", snapshot_id=moved, status="CREATING")),
    )

    assert isinstance(run(store, copier), Retry)

    assert store.require(request.id).new_snapshot_id == moved
    assert "adopted" in kinds(store, request)


# --- a name already taken: adopted, never failed (regression: a stale holder's or a lost
# call's copy made the next call answer "already exists", and the request failed although its
# copy existed) -------------------------------------------------------------------------------


def test_an_already_exists_answer_adopts_the_snapshot_the_name_finds(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    exists = dws_error(400, "DWS.0001", "A snapshot named keep-me already exists.")
    made = listing(snapshot_json(name="keep-me", snapshot_id=NEW_ID, status="CREATING"))
    fake.queue(listing(), exists, made)

    result = run(store, copier)

    assert isinstance(result, Done) and [w.kind for w in result.then] == ["follow"]
    now = store.require(request.id)
    assert (now.state, now.new_snapshot_id) == (State.COPYING, NEW_ID)
    copied = [e for e in store.events(request.id) if e["kind"] == "copied"]
    assert copied[-1]["details"]["adopted"] is True


def test_an_already_exists_answer_keeps_the_copy_the_request_knows(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    store.transition(
        request.id,
        allowed_from=[State.APPROVED],
        to=State.COPYING,
        event="copy_started",
        actor=None,
    )
    fake.queue(listing())  # the resumed job looks the name up: not there yet

    def known_meanwhile(http_request: object) -> object:
        # Another worker recorded the copy while this call was on its way.
        store.update(request.id, new_snapshot_id=NEW_ID, snapshot_status="CREATING")
        return dws_error(400, "DWS.0001", "A snapshot named keep-me already exists.")

    fake.queue(known_meanwhile)  # type: ignore[arg-type]
    result = run(store, copier)

    assert isinstance(result, Done) and result.outcome == "copied"
    assert store.require(request.id).state == State.COPYING
    assert store.require(request.id).new_snapshot_id == NEW_ID


def test_an_already_exists_answer_without_such_a_snapshot_is_tried_again(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    request = approved(store)
    fake.queue(listing(), dws_error(400, "DWS.0001", "A snapshot named keep-me already exists."))
    fake.queue(listing())

    assert isinstance(run(store, copier), Retry)
    assert store.require(request.id).state == State.COPYING


# --- a copy deleted outside snapcopy while it is followed -----------------------------------


@pytest.mark.parametrize(
    ("minutes", "state"),
    [(1, State.COPYING), (11, State.FAILED)],
    ids=["new-copy-looked-for-again", "followed-a-while-fails-plainly"],
)
def test_a_copy_dws_knows_by_neither_id_nor_name(
    store: Store, copier: Copier, fake: FakeDws, minutes: float, state: State
) -> None:
    """Right after the copy call DWS may not show the new snapshot yet; ten minutes on, a
    snapshot it knows by neither id nor name was deleted outside snapcopy."""
    request = following(store, minutes=minutes)
    fake.queue(dws_error(404, "DWS.0015"), listing())

    result = run(store, copier)

    after = store.require(request.id)
    assert after.state == state
    if state == State.COPYING:
        assert isinstance(result, Retry)
        return
    assert isinstance(result, Done)
    assert after.error is not None and "no longer exists in DWS" in after.error
    assert NEW_ID in after.error and "keep-me" in after.error
    told = [row["payload"] for row in store.work_rows(request.id) if row["kind"] == "news"]
    assert any('"news": "failed"' in payload for payload in told), told


def test_a_vanished_copy_is_not_failed_while_the_list_cannot_be_read(
    store: Store, copier: Copier, fake: FakeDws
) -> None:
    """Only an answer that lists no such snapshot counts: DWS unavailable is retried."""
    request = following(store, minutes=11)
    fake.queue(dws_error(404, "DWS.0015"), dws_error(503, "DWS.0047", "Service unavailable."))

    assert isinstance(run(store, copier), Retry)

    assert store.require(request.id).state == State.COPYING
    assert "copy_failed" not in kinds(store, request)
