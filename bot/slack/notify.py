"""Tells Slack what the copy lifecycle did: the request message and its thread.

The request message (the thread root) always shows the current state; news that people must
not miss also gets a reply in the thread. A failing Slack call is logged and audited but never
stops the lifecycle: the database stays the truth and the next update repairs the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import CopyRequest
from bot.errors import AnnounceFailed
from bot.notifier import News, Posted
from bot.slack import views
from bot.store import Store

log = logging.getLogger(__name__)

REPLIES: dict[News, Callable[[CopyRequest], str]] = {
    News.APPROVED: views.approved_reply,
    News.COPIED: views.copied_reply,
    News.SUCCEEDED: views.succeeded_reply,
    News.FAILED: views.failed_reply,
    News.DENIED: views.denied_reply,
    News.EXPIRED: views.expired_reply,
    News.CANCELLED: views.cancelled_reply,
    News.FOLLOW_STOPPED: views.follow_stopped_reply,
}


class SlackNotifier:
    def __init__(self, client: WebClient, store: Store, *, sandbox: bool = False) -> None:
        self.client = client
        self.store = store
        self.sandbox = sandbox

    def announce(self, request: CopyRequest) -> Posted:
        """Post the request message; AnnounceFailed says why Slack would not take it."""
        try:
            response = self.client.chat_postMessage(
                channel=request.channel_id or "",
                thread_ts=request.thread_ts,
                text=views.request_text(request),
                blocks=views.request_blocks(request, sandbox=self.sandbox),
                unfurl_links=False,
            )
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            raise AnnounceFailed(request.id, str(code or "unknown_error")) from error
        except OSError as error:  # network trouble reaching Slack
            raise AnnounceFailed(request.id, type(error).__name__) from error
        ts = str(response["ts"])
        return Posted(
            channel_id=str(response["channel"]),
            message_ts=ts,
            thread_ts=request.thread_ts or ts,
        )

    def tell(self, request: CopyRequest, news: News) -> None:
        if request.channel_id is None or request.message_ts is None:
            return  # not announced yet: announce() will show the current state
        self._call(request, "chat.update", self._update_root, request)
        reply = REPLIES.get(news)
        if reply is not None:
            self._call(request, "chat.postMessage", self._reply, request, reply(request))

    def _update_root(self, request: CopyRequest) -> None:
        self.client.chat_update(
            channel=request.channel_id or "",
            ts=request.message_ts or "",
            text=views.request_text(request),
            blocks=views.request_blocks(request, sandbox=self.sandbox),
        )

    def _reply(self, request: CopyRequest, text: str) -> None:
        self.client.chat_postMessage(
            channel=request.channel_id or "",
            thread_ts=request.thread_ts or request.message_ts,
            text=text,
            unfurl_links=False,
        )

    def _call(
        self, request: CopyRequest, method: str, call: Callable[..., None], *args: object
    ) -> None:
        try:
            call(*args)
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            log.warning(
                "slack call failed",
                extra={"request_id": request.id, "method": method, "slack_error": code},
            )
            self.store.record_event(
                request.id, "slack_failed", None, {"method": method, "error": code}
            )
        except Exception as error:  # network trouble: same treatment, never stop the copy
            log.warning(
                "slack call failed",
                extra={"request_id": request.id, "method": method},
                exc_info=True,
            )
            self.store.record_event(
                request.id, "slack_failed", None, {"method": method, "error": type(error).__name__}
            )
