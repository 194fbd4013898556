"""Serving: the WSGI routes, HTTP mode behind the buffering front end, and the Socket Mode loop.

HTTP mode is one process: uvicorn reads every connection on its event loop and hands whole
requests to the WSGI app here on a few threads (bot/front.py says why). The Runtime (database
connections, workers, HTTP clients) starts with the server and closes after its last response.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from slack_bolt.adapter.wsgi import SlackRequestHandler

import bot
from bot.app import Runtime, build_runtime
from bot.clock import age_seconds
from bot.errors import StoreUnavailable
from bot.front import BufferedWsgi, serve
from bot.front import server as front_server
from bot.metrics import CONTENT_TYPE, System
from bot.replays import Replays, guarded
from bot.store.replays import Answer
from bot.work.queue import Queue

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

    from bot.policy import Policy
    from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
LIVE_PATH = "/livez"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

SIGNATURE_MAX_AGE_SECONDS = 5 * 60  # Slack's own replay window, which Bolt also uses
# /healthz reads the work owed only if a connection of the pool is free about at once.
HEALTH_WAIT_SECONDS = 0.2

# What Bolt answers to a request that fails signature verification; ours looks the same.
_BOLT_401 = {"error": "invalid request"}
_JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8")]


# --- WSGI --------------------------------------------------------------------------------------


def make_wsgi_app(
    runtime: Runtime, *, events: bool = True, health: bool = True, metrics: bool | None = None
) -> WSGIApplication:
    """The routes, each where asked for: `POST /slack/events` goes to Bolt once Slack's
    signature is checked; `GET /livez` says the process serves; `GET /healthz` whether it can
    do its job; `GET /metrics` is Prometheus's (not here when SNAPCOPY_METRICS_PORT gives it a
    port of its own, unless `metrics` says). Everything else is a JSON 404."""
    slack = SlackRequestHandler(runtime.bolt, path=EVENTS_PATH)
    secret = runtime.settings.slack_signing_secret
    signing_secret = secret.get_secret_value().encode() if secret else None
    replays = Replays(runtime.store)
    runtime.on_close(replays.close)
    if metrics is None:
        metrics = runtime.settings.snapcopy_metrics_port is None
    readers = {LIVE_PATH: _live, HEALTH_PATH: _health} if health else {}
    if metrics:
        readers[METRICS_PATH] = _metrics

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == EVENTS_PATH and events:
            if method == "POST":
                return _events(runtime, slack, signing_secret, replays, environ, start_response)
            return _json(
                start_response,
                405,
                {"ok": False, "error": "method_not_allowed"},
                [("Allow", "POST")],
            )
        reader = readers.get(path)
        if reader is not None:
            if method == "GET":
                return reader(runtime, start_response)
            return _json(
                start_response,
                405,
                {"ok": False, "error": "method_not_allowed"},
                [("Allow", "GET")],
            )
        return _json(start_response, 404, {"ok": False, "error": "not_found"})

    return app


def _events(
    runtime: Runtime,
    slack: SlackRequestHandler,
    signing_secret: bytes | None,
    replays: Replays,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> Iterable[bytes]:
    """A signed command or interaction is answered once; its replays get the same answer
    (bot/replays.py). Everything else goes to Bolt as it comes."""
    # Keep the raw body: should Bolt fail on it, the signature decides what to answer.
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    refused = _refusal(signing_secret, body, environ)
    if refused is not None:
        # One line of our own, never the body: it holds a response_url anyone could post to.
        log.warning(
            "refused a request to %s: %s",
            EVENTS_PATH,
            _REFUSALS[refused],
            extra={"reason": refused, "remote": environ.get("REMOTE_ADDR"), "bytes": len(body)},
        )
        runtime.metrics.rejected.labels(refused).inc()
        return _json(start_response, 401, _BOLT_401)
    content_type = environ.get("CONTENT_TYPE", "")
    if guarded(content_type, body):
        status, kind, payload = replays.answer(
            environ["HTTP_X_SLACK_SIGNATURE"],
            environ["HTTP_X_SLACK_REQUEST_TIMESTAMP"],
            lambda: _captured(slack, signing_secret, body, environ),
        )
        headers = [("Content-Type", kind), ("Content-Length", str(len(payload)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [payload]
    return _bolt(slack, signing_secret, body, environ, start_response)


def _captured(
    slack: SlackRequestHandler, signing_secret: bytes | None, body: bytes, environ: WSGIEnvironment
) -> Answer:
    """Bolt's answer as (status, content type, body)."""
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, headers
        return lambda data: None

    payload = b"".join(_bolt(slack, signing_secret, body, environ, start_response))
    kinds = [v for k, v in started.get("headers", []) if k.lower() == "content-type"]
    status = int(str(started.get("status", "500")).split(" ", 1)[0])
    return status, kinds[0] if kinds else "text/plain; charset=utf-8", payload


def _bolt(
    slack: SlackRequestHandler,
    signing_secret: bytes | None,
    body: bytes,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> Iterable[bytes]:
    try:
        return slack(environ, start_response)
    except (ValueError, LookupError, TypeError, AttributeError) as error:
        # Bolt parses the body and reads ids out of it before it checks the signature, and its
        # matchers index payloads without checking: a body that is not shaped like anything
        # Slack sends raises. Unsigned, it is refused like any unsigned request; signed, it is
        # the sender's mistake: 400. The body itself is never logged.
        exc_info = sys.exc_info()
        if not _signed_by_slack(signing_secret, body, environ):
            return _json(start_response, 401, _BOLT_401, exc_info=exc_info)
        unreadable = isinstance(error, ValueError)
        # A traceback for the shape errors, in case one is ours after all.
        log.warning("%s on %s", type(error).__name__, EVENTS_PATH, exc_info=not unreadable)
        reason = "unreadable_body" if unreadable else "malformed_payload"
        return _json(start_response, 400, {"ok": False, "error": reason}, exc_info=exc_info)
    except Exception:
        log.exception("request to %s failed", EVENTS_PATH)
        return _json(
            start_response, 500, {"ok": False, "error": "internal_error"}, exc_info=sys.exc_info()
        )


# Why a request to the events URL was refused: the `reason` of the log line and the metric.
_REFUSALS = {
    "missing_headers": "no X-Slack-Signature or X-Slack-Request-Timestamp header",
    "bad_timestamp": "the X-Slack-Request-Timestamp header is not a time",
    "stale_timestamp": "signed more than five minutes from now (a replay, or a clock off)",
    "bad_signature": "the signature does not match the signing secret and the body",
}


def _refusal(secret: bytes | None, body: bytes, environ: WSGIEnvironment) -> str | None:
    """Why this is not a request Slack signed (a key of _REFUSALS), or None when it is:
    Slack's v0 signature, checked on raw bytes (slack_sdk's verifier wants UTF-8 text)."""
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
    if not timestamp or not signature:
        return "missing_headers"
    if not timestamp.isdigit():
        return "bad_timestamp"
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        return "stale_timestamp"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret or b"", base, hashlib.sha256).hexdigest()
    if secret is None or not hmac.compare_digest(expected, signature):
        return "bad_signature"
    return None


def _signed_by_slack(secret: bytes | None, body: bytes, environ: WSGIEnvironment) -> bool:
    return _refusal(secret, body, environ) is None


def _live(runtime: Runtime, start_response: StartResponse) -> Iterable[bytes]:
    """Liveness: the process serves. Nothing it depends on is asked, so a liveness probe never
    restarts a bot because Slack or the database is in trouble (that is /healthz's to say)."""
    return _json(start_response, 200, {"ok": True, "version": bot.__version__})


def _health(runtime: Runtime, start_response: StartResponse) -> Iterable[bytes]:
    """Whether this process can do its job: the audit log takes a write (bot/store/health.py),
    and Slack messages are not stuck; with the last call to Slack and to DWS, and the work
    still owed. Never waits behind the app's threads for the database."""
    trouble = runtime.store.health()
    database = trouble is None
    body: dict[str, Any] = {
        "ok": database,
        "version": bot.__version__,
        "database": database,
        "database_engine": runtime.store.engine,
        "sandbox": runtime.sandbox,
    }
    if trouble is not None:
        body["database_problem"] = trouble.reason
        log.warning(
            "health: the database cannot take a write",
            extra={"reason": trouble.reason, "error": trouble.detail},
        )
    for system in System:
        last = runtime.metrics.last(system)
        body[system] = last.as_health() if last else None
    if database:
        _owed(runtime, body)
    return _json(start_response, 200 if body["ok"] else 503, body)


def _owed(runtime: Runtime, body: dict[str, Any]) -> None:
    """The work still owed, if a connection is free at once; whether messages are stuck."""
    try:
        owed = runtime.store.owed(wait=HEALTH_WAIT_SECONDS)
    except StoreUnavailable:
        return
    stuck_after = runtime.settings.snapcopy_outbox_stuck_minutes * 60
    for queue, name in ((Queue.SLACK, "outbox"), (Queue.DWS, "jobs")):
        pending, since = owed[queue]
        oldest = round(age_seconds(since), 1) if since else None
        body[name] = {"pending": pending, "oldest_seconds": oldest}
    oldest_message = body["outbox"]["oldest_seconds"]
    if oldest_message is not None and oldest_message > stuck_after:
        body["ok"] = False
        body["outbox"]["stuck"] = True


def _metrics(runtime: Runtime, start_response: StartResponse) -> Iterable[bytes]:
    payload = runtime.metrics.render()
    headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(payload)))]
    start_response("200 OK", headers)
    return [payload]


def _json(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]] | None = None,
    *,
    exc_info: OptExcInfo | None = None,
) -> Iterable[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [*_JSON_HEADERS, ("Content-Length", str(len(payload))), *(headers or [])],
        exc_info,
    )
    return [payload]


# --- HTTP mode ----------------------------------------------------------------------------------


def run_http(
    settings: Settings,
    policy: Policy,
    *,
    host: str,
    port: int,
    sandbox: bool,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT: requests in flight finish, then the Runtime closes."""
    runtime = build_runtime(settings, policy, socket=False, sandbox=sandbox)
    reload_on_hangup(runtime)
    app = BufferedWsgi(
        make_wsgi_app(runtime),
        on_startup=runtime.start_background,
        on_shutdown=runtime.close,
        own_thread=(HEALTH_PATH,),
    )
    asides = _metrics_aside(runtime, host)
    try:
        serve(app, host=host, port=port, sockets=sockets)
    finally:
        for aside in asides:
            aside.stop()


class SideServer:
    """A few read-only routes served on a port of their own, from a thread: Socket Mode's
    /livez, /healthz and /metrics on PORT, and /metrics on SNAPCOPY_METRICS_PORT."""

    def __init__(self, app: WSGIApplication, *, host: str, port: int, what: str) -> None:
        self.host, self.port, self.what = host, port, what
        self._server = front_server(BufferedWsgi(app), host=host, port=port)
        self._thread: threading.Thread | None = None

    def start(self) -> SideServer | None:
        """Serving, or None (and an error logged) when the port cannot be had: the bot goes
        on without these routes rather than not at all."""
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listening.bind((self.host, self.port))
        except OSError as error:
            listening.close()
            log.error("cannot serve %s on port %s: %s", self.what, self.port, error)
            return None
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listening]}, daemon=True
        )
        self._thread.start()
        log.info("serving %s", self.what, extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(5.0)
            self._thread = None


def _metrics_aside(runtime: Runtime, host: str) -> list[SideServer]:
    """/metrics on SNAPCOPY_METRICS_PORT, when it is set."""
    port = runtime.settings.snapcopy_metrics_port
    if port is None:
        return []
    app = make_wsgi_app(runtime, events=False, health=False, metrics=True)
    started = SideServer(app, host=host, port=port, what=METRICS_PATH).start()
    return [started] if started else []


def reload_on_hangup(runtime: Runtime) -> None:
    """SIGHUP re-reads the policy file (`Runtime.reload_policy`), on a thread of its own rather
    than inside the signal handler."""

    def hangup(signum: int, frame: object) -> None:
        log.info("SIGHUP: reading the policy file again")
        threading.Thread(
            target=runtime.reload_policy, name="snapcopy-policy-reload", daemon=True
        ).start()

    signal.signal(signal.SIGHUP, hangup)


# --- Socket Mode ---------------------------------------------------------------------------------


def run_socket_mode(
    settings: Settings, policy: Policy, *, sandbox: bool, host: str = "0.0.0.0"
) -> int:
    """Hold a Socket Mode connection until SIGTERM/SIGINT, then close it and the Runtime;
    meanwhile /livez, /healthz and /metrics are served on PORT (no events URL: Socket Mode's
    requests are not signed, so none may come over HTTP).

    Returns the exit status: 0 after a signal, 1 when Slack refuses the connection.
    """
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    assert settings.slack_app_token is not None  # load_all(socket=True) checked it
    runtime = build_runtime(settings, policy, socket=True, sandbox=sandbox)
    handler = SocketModeHandler(runtime.bolt, settings.slack_app_token.get_secret_value())
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    reload_on_hangup(runtime)
    health = SideServer(
        make_wsgi_app(runtime, events=False),
        host=host,
        port=settings.port,
        what=f"{LIVE_PATH}, {HEALTH_PATH} and {METRICS_PATH}",
    )
    asides = [*filter(None, [health.start()]), *_metrics_aside(runtime, host)]
    try:
        runtime.start_background()
        try:
            handler.connect()  # type: ignore[no-untyped-call]
        except SlackApiError as error:
            log.error(
                "Slack refused the Socket Mode connection (%s): SLACK_APP_TOKEN must be an "
                "app-level token with the connections:write scope, and the app must have "
                "Socket Mode enabled",
                error.response.get("error"),
            )
            return 1
        except OSError as error:
            log.error("cannot reach Slack for Socket Mode: %s", error)
            return 1
        log.info("connected to Slack in Socket Mode")
        # A bounded wait, so the signal handler always gets a chance to run.
        while not stop.wait(1.0):
            pass
        return 0
    finally:
        _wake_receiver(handler)
        handler.close()  # type: ignore[no-untyped-call]
        for aside in asides:
            aside.stop()
        runtime.close()


def _wake_receiver(handler: Any) -> None:
    """Shut the WebSocket down so the receiving thread's recv() returns now.

    slack_sdk's built-in client closes only after that thread's 3 s receive timeout; this keeps
    a SIGTERM under a second. It reaches into the client, so it does nothing if that changes.
    """
    sock = getattr(getattr(handler.client, "current_session", None), "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # Already closed.
