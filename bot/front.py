"""The open door: uvicorn in front of the WSGI app, buffering whole requests before dispatch.

Anyone can reach `POST /slack/events` before a signature is checked, so what an unauthenticated
client can hold must be small and brief. A threaded WSGI server hands each connection to one of
a few threads while it reads it, so ten clients trickling one byte a second starve Slack's own
requests, and a huge body is read into memory before anything looks at it. Here:

- uvicorn's event loop reads every connection; a slow or idle one costs a coroutine, never one
  of the threads that run the app;
- a request whose headers take longer than `header_seconds`, or whose body takes longer than
  `body_seconds`, is dropped (408 for the body);
- a body over `max_body_bytes` is refused with 413 from `Content-Length` before any of it is
  read (and, without a length, as soon as it passes the limit), and the connection is closed;
- only a whole request reaches the WSGI app (Bolt's adapter, the health and metrics routes), on
  a pool of `threads` threads.

Slack's largest payloads (a view submission with many blocks) are well under 1 MB.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
HEADER_SECONDS = 10.0
BODY_SECONDS = 10.0
THREADS = 8

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = MAX_BODY_BYTES
    header_seconds: float = HEADER_SECONDS
    body_seconds: float = BODY_SECONDS
    threads: int = THREADS


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
        loop = asyncio.get_running_loop()
        status, headers, payload = await loop.run_in_executor(
            self._pool, _run_wsgi, self.wsgi, _environ(scope, body)
        )
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


async def _refuse(send: Send, status: int, error: str) -> None:
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
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
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
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif name != "CONTENT_LENGTH":
            key = f"HTTP_{name}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _run_wsgi(
    app: WSGIApplication, environ: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, headers
        return lambda data: None  # nothing here writes through the legacy write()

    result: Iterable[bytes] = app(environ, start_response)
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


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with a deadline for a request's headers.

    uvicorn times out idle keep-alive connections but not a request whose headers never end
    (slowloris); such a connection is closed after `header_seconds`.
    """

    header_seconds = HEADER_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_header_timer", None) is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_seconds, self._headers_too_slow
        )

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request headers did not arrive in time")
            self.transport.close()


def serve(app: BufferedWsgi, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; uvicorn finishes requests in flight, then the app's
    shutdown closes the Runtime."""
    server(app, host=host, port=port).run()


def server(app: BufferedWsgi, *, host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    """The uvicorn server for `app`, not started (tests run it on a thread of their own)."""
    protocol = type("Guarded", (GuardedProtocol,), {"header_seconds": app.limits.header_seconds})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        lifespan="on",
        log_config=None,  # our JSON logging, configured already
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        # Beyond this many connections at once, new requests get 503 rather than memory.
        limit_concurrency=1000,
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
