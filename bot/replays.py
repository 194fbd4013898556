"""Replays of signed requests: each is answered once, and a replay gets that same answer.

Slack signs a request over its timestamp and body, and a signature is good for five minutes:
within them, anybody who saw a request could send it again and it would verify. Clicks and
decisions are compare-and-set, so a replay decides nothing twice, but it would still run again:
a second ephemeral for every replayed click, a new request from a replayed modal submission.

So every signed command and interaction (not the snapshot picker's option lists, which only
read) is remembered by its signature until its window has passed, with the answer it got:

- in this process, in memory: replays arriving while the first is still running wait for its
  answer instead of running;
- across processes, in the store (`replays` table): the first process to insert the signature
  runs the request; another one that meets it waits for the recorded answer. Rows are dropped
  by the sweeper once Slack's signature check would refuse the request by its timestamp.

If the store cannot be asked (it is full or held), the request runs; what it changes is then
refused honestly by the store itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from bot.clock import iso
from bot.errors import StoreUnavailable
from bot.store import Store
from bot.store.replays import Answer

log = logging.getLogger(__name__)

WINDOW_SECONDS = 5 * 60  # Slack's, which Bolt's signature check enforces
# How long a replay waits for the first request's answer (Slack waits 3 s for any answer).
WAIT_SECONDS = 2.5
# How long the store is given to say whether a signature is new.
STORE_WAIT_SECONDS = 0.25
# Interactions that only read: answered afresh every time.
_READS = frozenset({"block_suggestion"})
# How each read's type appears in a form body: as it is (letters and `_` are never escaped).
_READ_MARKS = tuple(read.encode() for read in _READS)
# What a replay gets when the first request's answer is not known (it is still running
# elsewhere, or its process died): a refusal that changes nothing.
UNKNOWN: Answer = (409, "application/json", b'{"ok": false, "error": "replayed_request"}')


@dataclass
class _Seen:
    expires: float  # time.monotonic()
    ready: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None


@dataclass
class Replays:
    store: Store
    monotonic: Callable[[], float] = time.monotonic
    _seen: OrderedDict[str, _Seen] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="replays")
    )

    def answer(self, signature: str, timestamp: str, run: Callable[[], Answer]) -> Answer:
        """`run()`'s answer for the first request with this signature; the same answer, without
        running again, for every replay of it."""
        seen, first = self._mine(signature)
        if not first:
            seen.ready.wait(WAIT_SECONDS)
            return seen.answer or UNKNOWN
        try:
            seen.answer = self._answer(signature, timestamp, run)
        finally:
            seen.ready.set()
        return seen.answer or UNKNOWN

    def _mine(self, signature: str) -> tuple[_Seen, bool]:
        now = self.monotonic()
        with self._lock:
            while self._seen and next(iter(self._seen.values())).expires < now:
                self._seen.popitem(last=False)
            seen = self._seen.get(signature)
            if seen is not None:
                return seen, False
            seen = self._seen[signature] = _Seen(expires=now + WINDOW_SECONDS + 60)
            return seen, True

    def _answer(self, signature: str, timestamp: str, run: Callable[[], Answer]) -> Answer:
        try:
            first = self.store.first_sight(signature, _expiry(timestamp), wait=STORE_WAIT_SECONDS)
        except StoreUnavailable as error:
            log.warning(
                "cannot tell a replay from the first: running it", extra={"error": str(error)}
            )
            return run()
        if not first:
            log.info("a replayed request: answered as the first one was")
            return self._recorded(signature)
        answer = run()
        # Written after the answer has left: replays here are answered from memory meanwhile,
        # and one sent to another process waits for the row.
        self._writer.submit(self._remember, signature, answer)
        return answer

    def _remember(self, signature: str, answer: Answer) -> None:
        try:
            self.store.remember_answer(signature, answer, wait=STORE_WAIT_SECONDS * 4)
        except StoreUnavailable as error:
            log.warning("could not remember a request's answer", extra={"error": str(error)})

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    def _recorded(self, signature: str) -> Answer:
        deadline = self.monotonic() + WAIT_SECONDS
        while True:
            answer = self.store.answer_for(signature)
            if answer is not None or self.monotonic() > deadline:
                return answer or UNKNOWN
            time.sleep(0.05)


def guarded(content_type: str, body: bytes) -> bool:
    """Whether a request is one that acts (a command, a click, a submission, a shortcut)."""
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return False  # Events API deliveries: JSON, deduplicated by event id
    if not any(mark in body for mark in _READ_MARKS):
        # A body that names no read acts: it need not be decoded here as well as in Bolt.
        return True
    form = parse_qs(body.decode("utf-8", "replace"))
    if "command" in form:
        return True
    try:
        payload = json.loads(form.get("payload", ["{}"])[0])
    except ValueError:
        return False  # Bolt refuses it
    return isinstance(payload, dict) and payload.get("type") not in _READS


def _expiry(timestamp: str) -> str:
    """When Slack's window for a request of this timestamp has passed, with a minute to spare."""
    sent = datetime.fromtimestamp(int(timestamp), UTC)
    return iso(sent + timedelta(seconds=WINDOW_SECONDS + 60))
