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

Connections themselves are capped per client address and in total (`Door`, bot/door.py), from
the budget of open files (`RLIMIT_NOFILE`, `FileBudget` there). At a cap, the connection idle
the longest (one with no whole request in the app) is closed to make room, so a flood of silent
sockets recycles its own sockets rather than shutting out the next client.

Slack's largest payloads (a view submission with many blocks) are well under 1 MB, and its
requests carry about fifteen headers in under 2 KiB.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

from bot.door import (
    HEADER_SECONDS,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    RESERVED_FILES,
    Door,
    GuardedProtocol,
    Tally,
    file_budget,
    raise_open_files_limit,
)

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
BODY_SECONDS = 10.0
THREADS = 8
# Whole requests waiting for or running on the threads. A help command takes a few ms of one
# thread, so this many queued still answer well inside Slack's 3 s.
MAX_REQUESTS = 128
RETRY_AFTER_SECONDS = 1

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
    # None: derived from the open-files budget (bot.door.FileBudget).
    max_connections: int | None = None
    max_connections_per_client: int | None = None


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
        own_thread: Collection[str] = (),
    ) -> None:
        self.wsgi = wsgi
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="http")
        # Paths answered on a thread of their own (health checks): never queued behind the
        # app's requests, however long those wait.
        self._own_thread = frozenset(own_thread)
        self._quick = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-quick")
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
                await loop.run_in_executor(None, self._quick.shutdown)
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
        if self.in_app >= self.limits.max_requests and scope["path"] not in self._own_thread:
            # Queued any deeper, it would be answered after Slack has given up on it.
            self._refused.note("busy")
            await _refuse(send, 503, "busy", [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)])
            return
        await self._dispatch(scope, body, send)

    async def _dispatch(self, scope: dict[str, Any], body: bytes, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if scope["path"] in self._own_thread:
            status, headers, payload = await loop.run_in_executor(
                self._quick, _run_wsgi, self.wsgi, scope, body
            )
        else:
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


# --- serving -------------------------------------------------------------------------------------


def serve(
    app: BufferedWsgi, *, host: str, port: int, sockets: list[socket.socket] | None = None
) -> None:
    """Serve until SIGTERM/SIGINT; uvicorn finishes requests in flight, then the app's
    shutdown closes the Runtime. `sockets`: listening already (`serve --workers`)."""
    raise_open_files_limit()
    server(app, host=host, port=port).run(sockets=sockets)


def server(app: BufferedWsgi, *, host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    """The uvicorn server for `app`, not started (tests run it on a thread of their own)."""
    limits = app.limits
    budget = file_budget(limits.max_connections, limits.max_connections_per_client)
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
