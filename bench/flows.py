"""The copy flow as people take it in Slack: submit the copy modal, wait for the request message,
click Approve, wait for the thread reply that carries the new snapshot id.

Flows run on threads of the benchmark process (each with its own keep-alive client) because
they wait on the stand-ins, which live here too. Every step is signed just before it is sent.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench import payloads
from bench.dbread import Reader
from bench.standins import WatchedSlack
from bot.server import EVENTS_PATH
from tests.harness import APPROVER, REQUESTER
from tests.slack_standin import Call
from tests.slackreq import SlackRequest

STEP_TIMEOUT = 30.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class FlowFailed(Exception):
    pass


@dataclass
class Flow:
    """One complete flow's timings (seconds)."""

    name: str
    acks: list[float] = field(default_factory=list)
    approve_to_reply: float = 0.0
    total: float = 0.0
    request_id: int = 0
    button: str = ""  # what its buttons carry: the id and the request's token
    message_ts: str = ""  # its request message, where its buttons are clicked


class FlowDriver:
    def __init__(self, bot_url: str, database: str, slack: WatchedSlack, source_id: str) -> None:
        self.bot_url = bot_url
        self.database = database  # an SQLite file's path or a PostgreSQL URL
        self.reader = Reader(database)
        self.slack = slack
        self.source_id = source_id
        self._local = threading.local()

    # --- per-thread resources ----------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "http", None)
        if client is None:
            client = httpx.Client(base_url=self.bot_url, timeout=STEP_TIMEOUT, trust_env=False)
            self._local.http = client
        return client

    def close_thread(self) -> None:
        client = getattr(self._local, "http", None)
        if client is not None:
            client.close()
            self._local.http = None
        self.reader.close_thread()

    # --- steps -------------------------------------------------------------------------------

    def post(self, request: SlackRequest) -> tuple[httpx.Response, float]:
        headers = payloads.signed_headers(request)
        started = time.perf_counter()
        response = self.http.post(EVENTS_PATH, content=request.body, headers=headers)
        return response, time.perf_counter() - started

    def request_copy(self, flow: Flow) -> None:
        """Submit the modal; returns once the request message is posted, recorded and given
        its buttons (they come with its first update, once its ts is recorded)."""
        name = flow.name
        posted = self.slack.expect(
            "chat.update",
            lambda call: name in call["text"] and payloads.approve_button_value(call) is not None,
        )
        try:
            answer, ack = self.post(payloads.copy_submission(REQUESTER, self.source_id, name))
            flow.acks.append(ack)
            if answer.status_code != 200 or answer.content:
                raise FlowFailed(f"{name}: the modal answered {answer.status_code} {answer.text}")
            call = posted.wait(STEP_TIMEOUT)
        finally:
            self.slack.forget(posted)
        button = payloads.approve_button_value(call)
        assert button is not None
        flow.button, flow.message_ts = button, str(call["ts"])
        flow.request_id = int(button.split(".", 1)[0])
        self._wait_announced(flow.request_id)

    def _wait_announced(self, request_id: int) -> None:
        # A click before the bot has stored the message's ts would approve a request whose
        # thread it cannot find yet; people never click that fast.
        deadline = time.monotonic() + STEP_TIMEOUT
        query = "SELECT message_ts FROM requests WHERE id = ?"
        while time.monotonic() < deadline:
            row = self.reader.one(query, [request_id])
            if row and row[0]:
                return
            time.sleep(0.002)
        raise FlowFailed(f"request #{request_id} was not announced within {STEP_TIMEOUT} s")

    def approve(self, flow: Flow, serial: int) -> Call:
        """Click Approve as the approver; returns the thread reply with the new snapshot id."""
        reply = self.slack.expect("chat.postMessage", self._copied_reply(flow.name))
        try:
            click = payloads.approve_click(
                self.slack, APPROVER, flow.button, flow.message_ts, serial
            )
            clicked = time.monotonic()
            answer, ack = self.post(click)
            flow.acks.append(ack)
            if answer.status_code != 200:
                raise FlowFailed(f"{flow.name}: the click answered {answer.status_code}")
            call = reply.wait(STEP_TIMEOUT)
        finally:
            self.slack.forget(reply)
        # Call.at is time.monotonic() taken by the stand-in in this process when it got the call.
        flow.approve_to_reply = call.at - clicked
        return call

    def _copied_reply(self, name: str) -> Callable[[Call], bool]:
        # A thread reply about this request naming a snapshot id other than the source's: the
        # new snapshot's id. Matched on meaning, not wording, so rephrasing does not break it.
        def matches(call: Call) -> bool:
            if not call.get("thread_ts") or name not in call["text"]:
                return False
            return any(found != self.source_id for found in _UUID.findall(call["text"]))

        return matches

    def full_flow(self, name: str, serial: int) -> Flow:
        flow = Flow(name)
        started = time.monotonic()
        self.request_copy(flow)
        self.approve(flow, serial)
        flow.total = time.monotonic() - started
        return flow
