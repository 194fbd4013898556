"""Delivers the Slack outbox: the request message, its updates and the thread replies.

The lifecycle writes what it owes people as rows (bot/notifier.py); this is the handler of the
Slack queue (bot/work/queue.py). One Web API call per run, never a sleep:

- Rate limited: the row is due again after Slack's `Retry-After`, and this process holds off
  every Slack delivery until then (Slack's limits are per method and workspace, not per row).
- Slack's 5xx, network trouble, token problems: backoff, until the row is `give_up_after`
  seconds old; then it is dropped with a `slack_gave_up` audit event.
- A permanent refusal (archived channel, bot not in it, …): the words go to the requester by DM
  instead (and, for a request waiting for approval, to the approvers, with the buttons). A
  refused DM is recorded and dropped, never retried.

Messages render the request as it is when they are sent, so a request decided before its
message could be posted is shown in its final state, and a root update is never stale.
Delivery is at least once: a crash after Slack accepted a message but before the row was marked
done sends it again after the restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.clock import age_seconds
from bot.domain import EVERYONE, CopyRequest, State
from bot.notifier import News, Say, update_root
from bot.roles import RoleResolver
from bot.slack import replies, views
from bot.slack.news import notice_for, reply_for
from bot.store import Store
from bot.work.backoff import Backoff
from bot.work.queue import Claimed
from bot.work.workers import Done, Result, Retry

log = logging.getLogger(__name__)

GIVE_UP_SECONDS = 24 * 3600.0
# Shown on a request message until its buttons arrive with the first update (_announce).
POSTING = ":hourglass_flowing_sand: _Posting this request…_"
SLACK_BACKOFF = Backoff(base=1.0, cap=300.0)

# Slack errors that no retry will fix: the message has to go somewhere else, or nowhere.
SLACK_PERMANENT = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "thread_not_found",
        "message_not_found",
        "cant_update_message",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "messages_tab_disabled",
    }
)
# Not listed, so retried until the outbox gives up: rate limits, Slack's 5xx and network trouble,
# and the token's own problems (invalid_auth, token_revoked, missing_scope), which an operator
# fixes for every message at once.


class _Refused(Exception):
    """Slack said no for good; `code` is its error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SlackOutbox:
    """The handler of the Slack queue."""

    def __init__(
        self,
        client: WebClient,
        store: Store,
        roles: RoleResolver,
        *,
        sandbox: bool = False,
        give_up_after: float = GIVE_UP_SECONDS,
        backoff: Backoff = SLACK_BACKOFF,
    ) -> None:
        self.client = client
        self.store = store
        self.roles = roles
        self.sandbox = sandbox
        self.give_up_after = give_up_after
        self.backoff = backoff
        self._held_until = 0.0
        self._lock = threading.Lock()

    def hold_off(self) -> float:
        """Seconds until Slack lets us send again (0 when it does)."""
        with self._lock:
            return max(0.0, self._held_until - time.monotonic())

    def __call__(self, row: Claimed) -> Result:
        request = self.store.require(row.request_id)
        try:
            if row.kind == Say.ANNOUNCE:
                return self._announce(row, request)
            if row.kind == Say.ROOT:
                return self._update_root(request)
            if row.kind == Say.NEWS:
                return self._news(row, request)
            if row.kind == Say.NOTIFY:
                return self._notify(row, request)
        except SlackApiError as error:
            return self._trouble(row, request, _code(error), _retry_after(error))
        except OSError as error:  # network trouble reaching Slack
            return self._trouble(row, request, type(error).__name__, None)
        log.error("unknown outbox row", extra={"work_id": row.id, "kind": row.kind})
        return Done("unknown kind")

    # --- the three kinds -------------------------------------------------------------------

    def _announce(self, row: Claimed, request: CopyRequest) -> Result:
        """Post the request message. Its buttons come with the first update, once its ts is
        recorded: a crash between Slack's answer and that record makes the post go out again,
        and leaves behind a copy without buttons, never a second set of live ones."""
        if request.message_ts is not None:
            return Done("already posted")
        blocks = views.request_blocks(request, sandbox=self.sandbox)
        unarmed = [block for block in blocks if block.get("type") != "actions"]
        buttons_later = len(unarmed) != len(blocks)
        if buttons_later:
            unarmed.append({"type": "context", "elements": [_mrkdwn(POSTING)]})
        try:
            response = self._post(
                channel=request.channel_id or "",
                thread_ts=request.thread_ts,
                # Inside an incident thread, shown in the channel too: approvers seldom open
                # the incident's thread.
                reply_broadcast=bool(request.thread_ts),
                text=views.request_text(request),
                blocks=unarmed,
            )
        except _Refused as refused:
            self._announce_elsewhere(request, refused.code)
            return Done(f"refused: {refused.code}")
        ts = str(response["ts"])
        channel = str(response["channel"])
        posted = self.store.update(
            request.id,
            channel_id=channel,
            message_ts=ts,
            thread_ts=request.thread_ts or ts,
            event="announced",
            details={"channel_id": channel, "message_ts": ts},
            work=[update_root()] if buttons_later else [],
        )
        if posted.state != request.state:
            # Decided while the message was on its way: show the decision now.
            self.store.add_work(request.id, [update_root()])
        return Done("posted")

    def _update_root(self, request: CopyRequest) -> Result:
        if request.message_ts is None:
            return Done("not posted")  # the announcement will show the current state
        try:
            self.client.chat_update(
                channel=request.channel_id or "",
                ts=request.message_ts,
                text=views.request_text(request),
                blocks=views.request_blocks(request, sandbox=self.sandbox),
            )
        except SlackApiError as error:
            if _code(error) in SLACK_PERMANENT:
                self._record(request, "slack_failed", method="chat.update", error=_code(error))
                return Done(f"refused: {_code(error)}")
            raise
        return Done("updated")

    def _news(self, row: Claimed, request: CopyRequest) -> Result:
        reply = reply_for(News(row.payload["news"]), request, row.payload)
        if reply is None:
            return Done("nothing to say")
        text, blocks = reply
        if request.message_ts is None:
            self._direct(request.requested_by, request, text, blocks=blocks)
            return Done("sent by DM: never posted")
        try:
            self._post(
                channel=request.channel_id or "",
                thread_ts=request.thread_ts or request.message_ts,
                text=text,
                blocks=blocks,
            )
        except _Refused as refused:
            self._record(request, "slack_failed", method="chat.postMessage", error=refused.code)
            where = f"I could not post in <#{request.channel_id}> ({refused.code}), so here: "
            self._direct(request.requested_by, request, where + text)
            return Done(f"sent by DM: {refused.code}")
        return Done("replied")

    def _notify(self, row: Claimed, request: CopyRequest) -> Result:
        """News for people (by DM) or channels outside the thread; a group has no inbox."""
        text, blocks = notice_for(News(row.payload["news"]), request)
        targets = [t for t in row.payload.get("to") or [] if not str(t).startswith("S")]
        for target in targets:
            self._direct(str(target), request, text, blocks=blocks)
        return Done(f"notified {len(targets)}")

    # --- where it cannot go ------------------------------------------------------------------

    def _announce_elsewhere(self, request: CopyRequest, code: str) -> None:
        """The channel will not take the request: tell the requester once, and let the
        approvers decide from their DMs while it waits."""
        self._record(request, "announce_failed", error=code)
        if any(e["kind"] == "announce_dm" for e in self.store.events(request.id)):
            return  # said once; the sweep keeps trying the channel
        self._record(request, "announce_dm", error=code)
        self._direct(request.requested_by, request, replies.unposted_dm(request, code))
        if request.state == State.PENDING_APPROVAL:
            blocks = views.request_blocks(request, sandbox=self.sandbox)
            for approver in self._approver_users(request):
                self._direct(approver, request, views.request_text(request), blocks=blocks)

    def _approver_users(self, request: CopyRequest) -> list[str]:
        """Who may decide this request, where named by user ID (a group cannot be sent a DM):
        its own approvers (or the approver role) and the admins."""
        return [
            user
            for user in self.roles.deciders(request)
            if not user.startswith("S")
            and user != EVERYONE
            and (request.allow_self_approval or user != request.requested_by)
        ]

    def _direct(
        self, user: str, request: CopyRequest, text: str, blocks: list[Any] | None = None
    ) -> None:
        """A DM; a refusal is recorded and dropped, never retried."""
        try:
            self._post(channel=user, text=text, blocks=blocks)
        except _Refused as refused:
            self._record(request, "slack_dropped", to=user, error=refused.code)

    # --- Slack's answers ---------------------------------------------------------------------

    def _post(self, **fields: Any) -> Any:
        try:
            return self.client.chat_postMessage(unfurl_links=False, **fields)
        except SlackApiError as error:
            if _code(error) in SLACK_PERMANENT:
                raise _Refused(_code(error)) from error
            raise

    def _trouble(
        self, row: Claimed, request: CopyRequest, code: str, retry_after: float | None
    ) -> Result:
        if retry_after is not None:
            with self._lock:
                self._held_until = max(self._held_until, time.monotonic() + retry_after)
        if age_seconds(row.created_at) > self.give_up_after:
            self._record(request, "slack_gave_up", message=row.kind, error=code)
            log.error(
                "gave up on a Slack message", extra={"request_id": request.id, "slack_error": code}
            )
            return Done(f"gave up: {code}")
        delay = self.backoff.delay(row.attempts, retry_after)
        log.warning(
            "Slack call failed, retrying",
            extra={"request_id": request.id, "slack_error": code, "retry_in": round(delay, 1)},
        )
        return Retry(after=delay, error=code, problem=code)

    def _record(self, request: CopyRequest, kind: str, **details: Any) -> None:
        self.store.record_event(request.id, kind, None, details)


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _code(error: SlackApiError) -> str:
    response = error.response
    return str((response.get("error") if response is not None else None) or "unknown_error")


def _retry_after(error: SlackApiError) -> float | None:
    response = error.response
    if response is None or getattr(response, "status_code", None) != 429:
        return None
    value = (response.headers or {}).get("Retry-After") or (response.headers or {}).get(
        "retry-after"
    )
    try:
        return float(value) if value is not None else 1.0
    except ValueError:
        return 1.0
