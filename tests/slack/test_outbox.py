"""The Slack outbox, one row at a time (bot/slack/outbox.py): what each row posts, and what
Slack's refusals and rate limits do to it. A real store, a real WebClient pointed at the Slack
stand-in, no Bolt app and no workers: each test claims and runs rows itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.domain import CopyRequest, NewRequest, State
from bot.notifier import News, announce, tell
from bot.policy import parse_policy
from bot.roles import RoleResolver
from bot.slack.outbox import SlackOutbox
from bot.store import Store
from bot.work.queue import Claimed, Queue
from bot.work.workers import Done, Retry
from tests.slack_standin import Call, SlackStandIn

# The promises hold on both engines: each test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.engines

REQUESTER, APPROVER, ADMIN = "U0REQ", "U0APP", "U0ADMIN"
POLICY = f"""
[roles]
requester = ["{REQUESTER}"]
approver = ["{APPROVER}", "S0DBA"]
admin = ["{ADMIN}"]
"""


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(usergroups={}) as standin:
        yield standin


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    store = Store(database)
    yield store
    store.close()


@pytest.fixture
def outbox(slack: SlackStandIn, store: Store) -> Iterator[SlackOutbox]:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    roles = RoleResolver(parse_policy(POLICY), lambda group: frozenset())
    yield SlackOutbox(client, store, roles, give_up_after=3600)
    roles.close()


def requested(store: Store) -> CopyRequest:
    new = NewRequest(
        source_snapshot_id="4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        backup_name="keep-me",
        requested_by=REQUESTER,
        channel_id="C0INCIDENT",
    )
    return store.create(
        new, state=State.PENDING_APPROVAL, expires_at=None, actor=REQUESTER, work=[announce()]
    )


def run_one(store: Store, outbox: SlackOutbox) -> tuple[Claimed, Done | Retry]:
    claimed = store.claim(Queue.SLACK, "test-worker", 60)
    assert claimed is not None, "nothing was due"
    result = outbox(claimed)
    if isinstance(result, Done):
        store.finish(claimed, result.outcome, work=result.then)
    else:
        store.retry(claimed, after=0, error=result.error, problem=result.problem)
    return claimed, result


def test_the_announcement_is_the_thread_root(
    store: Store, outbox: SlackOutbox, slack: SlackStandIn
) -> None:
    request = requested(store)
    _, result = run_one(store, outbox)
    assert result == Done("posted")
    [post] = slack.calls("chat.postMessage")
    assert post.params["channel"] == "C0INCIDENT"
    assert "keep-me" in post.params["text"]
    posted = store.require(request.id)
    assert posted.message_ts is not None and posted.thread_ts == posted.message_ts


def _actions(call: Call) -> list[dict[str, object]]:
    return [block for block in call.params.get("blocks") or [] if block["type"] == "actions"]


def test_a_request_posted_again_after_a_crash_leaves_one_set_of_live_buttons(
    store: Store, outbox: SlackOutbox, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a crash after Slack accepted the request message but before its ts was
    recorded made the retry post a second message, and both had live buttons; the first one's
    text was never updated again."""
    request = requested(store)
    real_update = store.update

    def crash(*args: object, **kwargs: object) -> object:
        raise SystemExit("killed between Slack's answer and the record")

    monkeypatch.setattr(store, "update", crash)
    claimed = store.claim(Queue.SLACK, "crashed", 60)
    assert claimed is not None
    with pytest.raises(SystemExit):
        outbox(claimed)
    store.release("crashed")  # as for a holder that is gone
    monkeypatch.setattr(store, "update", real_update)

    run_one(store, outbox)  # posted again
    run_one(store, outbox)  # its update

    posts = slack.calls("chat.postMessage")
    assert len(posts) == 2 and not any(_actions(post) for post in posts)
    live = store.require(request.id).message_ts
    [update] = slack.calls("chat.update")
    assert update.params["ts"] == live and _actions(update), "buttons only on the one recorded"
    assert live == posts[-1].params.get("ts", live)


def test_news_goes_to_the_thread_and_the_root_is_brought_up_to_date(
    store: Store, outbox: SlackOutbox, slack: SlackStandIn
) -> None:
    request = requested(store)
    run_one(store, outbox)
    store.transition(
        request.id,
        allowed_from=[State.PENDING_APPROVAL],
        to=State.DENIED,
        event="denied",
        actor=APPROVER,
        denied_by=APPROVER,
        work=tell(News.DENIED),
    )
    assert run_one(store, outbox)[1] == Done("updated")
    assert run_one(store, outbox)[1] == Done("replied")
    root = store.require(request.id).message_ts
    [update] = slack.calls("chat.update")
    assert update.params["ts"] == root
    reply = slack.calls("chat.postMessage")[-1]
    assert reply.params["thread_ts"] == root and "denied" in reply.params["text"]


def test_a_rate_limit_puts_the_row_back_and_holds_every_delivery(
    store: Store, outbox: SlackOutbox, slack: SlackStandIn
) -> None:
    requested(store)
    slack.fail_next("chat.postMessage", retry_after=7)
    claimed, result = run_one(store, outbox)
    assert isinstance(result, Retry) and result.after == 7 and result.problem == "ratelimited"
    assert 6 < outbox.hold_off() <= 7
    assert store.open_work(claimed.request_id)[0]["last_error"] == "ratelimited"


def test_an_archived_channel_sends_the_request_to_its_people_by_dm(
    store: Store, outbox: SlackOutbox, slack: SlackStandIn
) -> None:
    request = requested(store)
    slack.fail_next("chat.postMessage", error="is_archived")
    assert run_one(store, outbox)[1] == Done("refused: is_archived")
    dms = {call.params["channel"] for call in slack.calls("chat.postMessage")[1:]}
    # The requester hears why; the approvers named by user ID get the buttons (never a group,
    # never the requester as an approver).
    assert dms == {REQUESTER, APPROVER, ADMIN}
    kinds = [event["kind"] for event in store.events(request.id)]
    assert kinds[-2:] == ["announce_failed", "announce_dm"]


def test_a_message_older_than_the_give_up_time_is_dropped_with_an_event(
    store: Store, slack: SlackStandIn
) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    roles = RoleResolver(parse_policy(POLICY), lambda group: frozenset())
    impatient = SlackOutbox(client, store, roles, give_up_after=0)
    request = requested(store)
    slack.fail_next("chat.postMessage", error="internal_error", status=500)
    assert run_one(store, impatient)[1] == Done("gave up: internal_error")
    assert store.events(request.id)[-1]["kind"] == "slack_gave_up"
    roles.close()
