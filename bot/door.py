"""The door's side of each connection: the caps on connections, the limits of a request's
head, and the open-files budget the caps come from (bot/front.py says why each exists).

- `GuardedProtocol` is uvicorn's HTTP protocol with a deadline for a request's head, a size
  limit on it enforced while it is parsed (431), and its place at the `Door`.
- `Door` holds the open connections, in total and by client address, in the order each last
  became idle; at a cap the first idle one is closed to make room.
- `FileBudget` is what RLIMIT_NOFILE allows, and the caps derived from it.

Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HEADER_SECONDS = 10.0
# Slack sends about fifteen headers; these leave room for any proxy in between.
MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024

# Open files the process needs besides client connections: SQLite (database, WAL and
# shared-memory files per thread), clients to Slack and DWS, the log, the event loop's own.
RESERVED_FILES = 128
# More connections than this is an attack, not Slack: each costs memory and event-loop work.
MAX_CONNECTIONS = 4096
MIN_CONNECTIONS = 32
# What one client address may hold, as a share of the total. Behind a proxy every connection
# has the proxy's address: the oldest idle one is closed first, so that still works.
CLIENT_SHARE = 4
# After a 431 the connection lingers this long, reading and dropping, so the client can read the
# answer instead of a reset; then it is closed.
REFUSED_LINGER_SECONDS = 1.0
# Closed and refused connections are logged as counts, once per this many seconds at most: an
# attacker must not be able to turn each socket into a log line.
REPORT_SECONDS = 10.0


# --- the open-files budget -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileBudget:
    """What RLIMIT_NOFILE allows: every connection is an open file, and so is every database
    and client connection the app holds; when they run out, accept() fails for everyone."""

    soft: int
    hard: int
    connections: int
    per_client: int

    def as_log(self) -> dict[str, int]:
        return {
            "open_files_soft": self.soft,
            "open_files_hard": self.hard,
            "open_files_reserved": RESERVED_FILES,
            "max_connections": self.connections,
            "max_connections_per_client": self.per_client,
        }


def raise_open_files_limit(wanted: int = MAX_CONNECTIONS + RESERVED_FILES) -> None:
    """Raise the soft RLIMIT_NOFILE toward `wanted`, never past the hard limit (which only
    root may raise) and never down. Platforms often start processes at a soft 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        log.warning("could not raise the open-files limit: %s", error)


def file_budget(
    max_connections: int | None = None, max_per_client: int | None = None
) -> FileBudget:
    """The connection caps: those given, or what the soft limit leaves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft - RESERVED_FILES
    connections = max_connections or max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, usable))
    per_client = max_per_client or max(MIN_CONNECTIONS, connections // CLIENT_SHARE)
    return FileBudget(soft, hard, connections, min(per_client, connections))


class Tally:
    """Counts of what was refused or closed, logged together at most once per REPORT_SECONDS:
    an attacker must not be able to turn each of its sockets into a log line."""

    def __init__(self, message: str, context: Callable[[], dict[str, Any]]) -> None:
        self._message = message
        self._context = context
        self._counts: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    def note(self, event: str) -> None:
        """Count `event`; on the event loop only."""
        self._counts[event] += 1
        if self._report is None:
            loop = asyncio.get_running_loop()
            self._report = loop.call_later(REPORT_SECONDS, self._log)

    def _log(self) -> None:
        self._report = None
        counts, self._counts = dict(self._counts), Counter()
        log.info(self._message, extra={"counts": counts, **self._context()})


# --- connections ---------------------------------------------------------------------------------


class Door:
    """The open connections, in total and by client address, each in the order it last became
    idle (connected, or answered): the first idle one in that order is the one to close.

    Only the event loop touches it. Closing scans past busy connections (those with a whole
    request in the app), of which there are at most a few hundred.
    """

    def __init__(self, budget: FileBudget) -> None:
        self.budget = budget
        self._all: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._by_client: dict[str, OrderedDict[GuardedProtocol, None]] = {}
        self.tally = Tally(
            "connections closed or refused at the door",
            lambda: {"connections": len(self._all), **self.budget.as_log()},
        )

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, connection: GuardedProtocol) -> bool:
        """Make room for `connection`, closing the oldest idle one at a cap; False when every
        connection at the cap is busy (then the newcomer is the one to close)."""
        peers = self._by_client.setdefault(connection.host, OrderedDict())
        if len(peers) >= self.budget.per_client and not self._close_oldest_idle(peers):
            self.tally.note("refused_client_cap")
            return False
        if len(self._all) >= self.budget.connections and not self._close_oldest_idle(self._all):
            self.tally.note("refused_total_cap")
            return False
        peers[connection] = None
        self._all[connection] = None
        return True

    def idle_again(self, connection: GuardedProtocol) -> None:
        """`connection` answered a request: it is now the most recently idle."""
        if connection in self._all:
            self._all.move_to_end(connection)
            self._by_client[connection.host].move_to_end(connection)

    def leave(self, connection: GuardedProtocol) -> None:
        self._all.pop(connection, None)
        peers = self._by_client.get(connection.host)
        if peers is not None:
            peers.pop(connection, None)
            if not peers:
                del self._by_client[connection.host]

    def _close_oldest_idle(self, order: OrderedDict[GuardedProtocol, None]) -> bool:
        oldest = next((each for each in order if each.idle()), None)
        if oldest is None:
            return False
        self.leave(oldest)
        oldest.transport.close()
        self.tally.note("closed_oldest_idle")
        return True


class _HeadTooLarge(Exception):
    pass


def _canned(status: bytes, error: bytes) -> bytes:
    """A whole answer, written by the protocol itself: no request reached the app."""
    body = b'{"ok": false, "error": "%s"}' % error
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json; charset=utf-8\r\n" % status
    return head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body


_HEAD_TOO_LARGE = _canned(b"431 Request Header Fields Too Large", b"request_header_too_large")


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with a deadline and a size limit for a request's head, and its
    place at the `Door`.

    uvicorn times out idle keep-alive connections but not a request whose headers never end
    (slowloris); such a connection is closed after `header_seconds`. uvicorn does not limit a
    head's size either, and its parser (httptools) joins a header's pieces as they come: here
    the parser is fed at most `max_header_bytes` of a head, and `on_header` stops it at the
    header past `max_headers`.
    """

    header_seconds = HEADER_SECONDS
    max_headers = MAX_HEADERS
    max_header_bytes = MAX_HEADER_BYTES
    door: Door  # set on the subclass server() makes, one per server

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._headers_seen = 0
        # Bytes of the current head fed to the parser; None while a body is being read.
        self._head_bytes: int | None = 0
        self._refused = False
        self.host = self.client[0] if self.client else ""
        if not self.door.admit(self):
            self._refused = True
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.leave(self)
        self._disarm_header_timer()
        super().connection_lost(exc)

    def idle(self) -> bool:
        """Whether closing this connection loses no whole request: it has none in the app or
        waiting behind one, and owes no answer."""
        cycle = self.cycle
        busy = cycle is not None and not cycle.more_body and not cycle.response_complete
        return not busy and not self.pipeline

    # --- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head's limits: what the parser raises is handled as there."""
        if self._refused:
            return  # the rest of a refused request is dropped until the connection closes
        self._unset_keepalive_if_required()
        try:
            self._feed(memoryview(data))
        except _HeadTooLarge:
            self._refuse_head()
        except httptools.HttpParserCallbackError:
            if self._headers_seen > self.max_headers:
                self._refuse_head()
            else:
                self._invalid_request()
        except httptools.HttpParserError:
            self._invalid_request()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _feed(self, data: memoryview) -> None:
        """Feed the parser, at most `max_header_bytes` of any one head."""
        if self._head_bytes is None:  # a body: BufferedWsgi's limits apply
            self.parser.feed_data(data)
            return
        room = self.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self.parser.feed_data(data)
            return
        self._head_bytes = self.max_header_bytes
        self.parser.feed_data(data[:room])
        if self._head_bytes == self.max_header_bytes:
            raise _HeadTooLarge  # the head did not end within its budget
        # The head ended within its budget: the rest is its body, or a next request. (Bytes a
        # next request's head has in the same read are not counted: one read at most.)
        self._feed(data[room:])

    def _invalid_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm_header_timer()
        self.door.tally.note("refused_header_too_large")
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer to an earlier request is still owed: no 431
            return
        self.transport.write(_HEAD_TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REFUSED_LINGER_SECONDS, self.transport.close)

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_seen = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers_seen += 1
        if self._headers_seen > self.max_headers:
            raise _HeadTooLarge  # the parser stops here and raises HttpParserCallbackError
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # whatever comes next begins a head
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.door.idle_again(self)

    # --- the head's deadline ---------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.door.tally.note("closed_headers_too_slow")
            self.transport.close()
