"""The open door: uvicorn in front of the WSGI app, buffering whole requests before dispatch.

Anyone can reach `POST /slack/events` before a signature is checked, so what an unauthenticated
client can hold must be small and brief. A threaded WSGI server hands each connection to one of
a few threads while it reads it, so ten clients trickling one byte a second starve Slack's own
requests, and a huge body is read into memory before anything looks at it. Here:

- uvicorn's event loop reads every connection; a slow or idle one costs a coroutine, never one
  of the threads that run the app;
- a request whose headers take longer than `header_seconds`, or whose body takes longer than
  `body_seconds`, is dropped (408 for the body);
- a request head (request line and headers) over `max_header_bytes`, or with more than
  `max_headers` headers, is answered 431 while it is being parsed: the parser never sees more
  than `max_header_bytes` of it, so 200,000 repeated headers cost what 101 do;
- a body over `max_body_bytes` is refused with 413 from `Content-Length` before any of it is
  read (and, without a length, as soon as it passes the limit), and the connection is closed;
- only a whole request reaches the WSGI app (Bolt's adapter, the health and metrics routes), on
  a pool of `threads` threads; at most `max_requests` whole requests wait for or run on them,
  and past that a request is answered 503 at once. This is the only concurrency limit on
  requests: idle connections take no part of it, so they cannot lock Slack out.

Connections themselves are capped per client address and in total (`Door`), from the budget of
open files (`RLIMIT_NOFILE`, see `FileBudget`). At a cap, the connection idle the longest (one
with no whole request in the app) is closed to make room, so a flood of silent sockets recycles
its own sockets rather than shutting out the next client.

Slack's largest payloads (a view submission with many blocks) are well under 1 MB, and its
requests carry about fifteen headers in under 2 KiB.
"""

from __future__ import annotations

import asyncio
import io
import logging
import resource
import signal
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
HEADER_SECONDS = 10.0
BODY_SECONDS = 10.0
THREADS = 8
# Slack sends about fifteen headers; these leave room for any proxy in between.
MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024
# Whole requests waiting for or running on the threads. A help command takes a few ms of one
# thread, so this many queued still answer well inside Slack's 3 s.
MAX_REQUESTS = 128
RETRY_AFTER_SECONDS = 1

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

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = MAX_BODY_BYTES
    header_seconds: float = HEADER_SECONDS
    body_seconds: float = BODY_SECONDS
    threads: int = THREADS
    max_headers: int = MAX_HEADERS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_requests: int = MAX_REQUESTS
    # None: derived from the open-files budget (FileBudget).
    max_connections: int | None = None
    max_connections_per_client: int | None = None


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


def file_budget(limits: Limits) -> FileBudget:
    """The connection caps: explicit in `limits`, or what the soft limit leaves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft - RESERVED_FILES
    connections = limits.max_connections or max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, usable))
    per_client = limits.max_connections_per_client or max(
        MIN_CONNECTIONS, connections // CLIENT_SHARE
    )
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


# --- the app: whole requests to the WSGI threads -------------------------------------------------


class _TooLarge(Exception):
    pass


class BufferedWsgi:
    """An ASGI app that reads each request whole, then runs the WSGI app on a thread."""

    def __init__(
        self,
        wsgi: WSGIApplication,
        limits: Limits = Limits(),
        *,
        on_startup: Callable[[], None] = lambda: None,
        on_shutdown: Callable[[], None] = lambda: None,
    ) -> None:
        self.wsgi = wsgi
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="http")
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        # Requests handed to the pool and not yet answered; only the event loop touches it.
        self.in_app = 0
        self._refused = Tally("requests refused", lambda: {"requests_in_app": self.in_app})

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await loop.run_in_executor(None, self._on_startup)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Calls in flight end first: the Runtime closes after the last response.
                await loop.run_in_executor(None, self._pool.shutdown)
                await loop.run_in_executor(None, self._on_shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        declared = _content_length(scope)
        if declared is not None and declared > self.limits.max_body_bytes:
            await _refuse(send, 413, "payload_too_large")
            return
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                body = await self._read_body(receive)
        except TimeoutError:
            await _refuse(send, 408, "request_timeout")
            return
        except _TooLarge:
            await _refuse(send, 413, "payload_too_large")
            return
        if body is None:
            return  # the client went away
        if self.in_app >= self.limits.max_requests:
            # Queued any deeper, it would be answered after Slack has given up on it.
            self._refused.note("busy")
            await _refuse(send, 503, "busy", [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)])
            return
        await self._dispatch(scope, body, send)

    async def _dispatch(self, scope: dict[str, Any], body: bytes, send: Send) -> None:
        loop = asyncio.get_running_loop()
        self.in_app += 1
        try:
            status, headers, payload = await loop.run_in_executor(
                self._pool, _run_wsgi, self.wsgi, scope, body
            )
        finally:
            self.in_app -= 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(
    send: Send, status: int, error: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = ('{"ok": false, "error": "%s"}' % error).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                # Whatever is left of the body is not read: end the connection.
                (b"connection", b"close"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The WSGI environ, built on an app thread in time linear in the headers (a repeated
    header's values are collected, then joined once)."""
    server = scope.get("server") or ("127.0.0.1", 0)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        values.setdefault(name, []).append(raw_value.decode("latin-1"))
    for name, seen in values.items():
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = seen[-1]
        elif name != "CONTENT_LENGTH":
            environ[f"HTTP_{name}"] = ",".join(seen)
    return environ


def _run_wsgi(
    app: WSGIApplication, scope: dict[str, Any], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, headers
        return lambda data: None  # nothing here writes through the legacy write()

    result: Iterable[bytes] = app(_environ(scope, body), start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status = int(str(started.get("status", "500")).split(" ", 1)[0])
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in started.get("headers", [])
    ]
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(payload)).encode()))
    return status, headers, payload


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


# --- serving -------------------------------------------------------------------------------------


def serve(app: BufferedWsgi, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; uvicorn finishes requests in flight, then the app's
    shutdown closes the Runtime."""
    raise_open_files_limit()
    server(app, host=host, port=port).run()


def server(app: BufferedWsgi, *, host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    """The uvicorn server for `app`, not started (tests run it on a thread of their own)."""
    limits = app.limits
    budget = file_budget(limits)
    if budget.soft < budget.connections + RESERVED_FILES:
        log.warning(
            "the open-files limit leaves little beside the connections: raise `ulimit -n`",
            extra=budget.as_log(),
        )
    log.info(
        "door limits",
        extra={
            **budget.as_log(),
            "max_requests_in_app": limits.max_requests,
            "max_headers": limits.max_headers,
            "max_header_bytes": limits.max_header_bytes,
            "max_body_bytes": limits.max_body_bytes,
        },
    )
    protocol = type(
        "Guarded",
        (GuardedProtocol,),
        {
            "header_seconds": limits.header_seconds,
            "max_headers": limits.max_headers,
            "max_header_bytes": limits.max_header_bytes,
            "door": Door(budget),
        },
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ws="none",  # nothing here speaks WebSocket: an upgrade is refused, not handed on
        lifespan="on",
        log_config=None,  # our JSON logging, configured already
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        # No limit_concurrency: uvicorn counts open connections in it, idle ones included, so
        # silent sockets would get Slack a 503. The Door caps connections, and BufferedWsgi
        # the requests in the app.
        limit_concurrency=None,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn's server, for which SIGTERM is a normal stop (exit status 0): platforms send it
    at every deploy. uvicorn itself re-raises the signal after its graceful shutdown."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
