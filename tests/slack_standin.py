"""A stand-in for Slack's Web API: a real HTTP server on 127.0.0.1 that records every call.

Point the bot's `SLACK_API_URL` at `standin.api_url` (`url + "/api/"`). Every call to
`/api/<method>` is recorded as a `Call` (GET query, form and JSON bodies alike, so tests need not
care how slack_sdk chose to send it) and answered like Slack answers it. `fail_next` injects
errors and rate limits, `delay` and `delays` slow every method or one; `wait_for` blocks until a
call arrives, which is how tests wait for work the bot does after it has acknowledged Slack.
Posts to `standin.response_url(name)` (what Bolt's `respond()` does) are recorded too, as calls
of the method "response_url".

    with SlackStandIn(usergroups={"S0ONCALL": ["U0ONCALL"]}) as slack:
        ...
        call = slack.wait_for("chat.postMessage", lambda c: c.params["channel"] == "C0INCIDENT")
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEAM_ID = "T0SNAPCOPY"
GRANTED_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "app_mentions:read",
    "usergroups:read",
    "users:read",
)
TEAM_DOMAIN = "snapcopy-test"
BOT_USER_ID = "U0SNAPBOT"
BOT_ID = "B0SNAPBOT"
RESPONSE_URL_PATH = "/response_url/"

# Form fields that slack_sdk JSON-encodes; decoded so that tests see the same shape either way.
_JSON_FIELDS = frozenset({"blocks", "attachments", "view", "metadata", "users", "unfurls"})


@dataclass(frozen=True)
class Call:
    """One Web API call as the stand-in received it."""

    method: str
    params: dict[str, Any]
    authorized: bool
    token: str | None = None
    http_method: str = "POST"
    path: str = ""
    at: float = field(default_factory=time.monotonic)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


@dataclass
class _Fault:
    error: str
    status: int
    retry_after: int | None
    times: int


class SlackStandIn:
    """Slack's Web API on a loopback port; thread-safe; use as a context manager or start/stop."""

    def __init__(
        self,
        *,
        usergroups: dict[str, list[str]] | None = None,
        token: str | None = None,
    ) -> None:
        # group id -> member user ids, for usergroups.users.list; tests may change it at will.
        self.usergroups: dict[str, list[str]] = dict(usergroups or {})
        # When set, any other token is answered with invalid_auth.
        self.expected_token = token
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        # Channels archived: posting or updating there answers is_archived.
        self.archived: set[str] = set()
        # Every answer waits this long first: Slack having a slow day.
        self.delay = 0.0
        # Answers of these methods wait this long first (on top of `delay`): one slow method.
        self.delays: dict[str, float] = {}
        # What the token was granted: every answer says so in X-OAuth-Scopes, as Slack's do.
        self.scopes: list[str] = list(GRANTED_SCOPES)
        # users.info answers user_not_found for these (the rest exist).
        self.missing_users: set[str] = set()
        self._rate_limited: tuple[float, frozenset[str]] | None = None
        self._changed = threading.Condition()
        self._ts = itertools.count(1)
        self._view_ids = itertools.count(1)
        self._links: list[_Link] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life --------------------------------------------------------------------------------

    def start(self) -> SlackStandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._changed:
            links, self._links = list(self._links), []
        for link in links:
            link.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`; the Web API lives under `/api/`."""
        assert self._server is not None, "SlackStandIn is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be."""
        return self.url + "/api/"

    def response_url(self, name: str = "default") -> str:
        """A `response_url` to put in a payload; what the bot posts there is recorded as a
        call of the method "response_url" (params: the posted JSON; path: this URL's path)."""
        return f"{self.url}{RESPONSE_URL_PATH}{name}"

    # --- inspection --------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._changed:
            return [call for call in self._calls if method is None or call.method == method]

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] = lambda call: True,
        timeout: float = 5.0,
    ) -> Call:
        """The first recorded call of `method` matching `predicate`, waiting up to `timeout`.

        A predicate that looks for a field the call does not have (KeyError, TypeError,
        IndexError) does not match, so `lambda c: "x" in c["text"]` is safe on any call.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self._calls:
                    if call.method == method and _matches(predicate, call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no matching {method} call within {timeout} s; calls seen:\n"
                        + _describe(self._calls)
                    )
                self._changed.wait(remaining)

    def clear(self) -> None:
        with self._changed:
            self._calls.clear()
            self._faults.clear()

    # --- Socket Mode ---------------------------------------------------------------------------

    def wait_for_socket(self, timeout: float = 5.0) -> None:
        """Wait until a Socket Mode client is connected (it has been sent `hello`)."""
        self.wait_for("socket_mode.connect", timeout=timeout)

    def socket_send(self, message: dict[str, Any]) -> None:
        """Send a Socket Mode message (an envelope, or `disconnect`) to the newest client.

        What the client sends back (acknowledgements) is recorded as "socket_mode.ack" calls.
        """
        with self._changed:
            if not self._links:
                raise AssertionError("no Socket Mode client is connected")
            link = self._links[-1]
        link.send(_TEXT, json.dumps(message).encode())

    def _open_link(self, link: _Link) -> None:
        with self._changed:
            self._links.append(link)
        link.send(_TEXT, json.dumps(_HELLO).encode())
        self._record(Call("socket_mode.connect", {}, authorized=False, http_method="GET"))

    def _close_link(self, link: _Link) -> None:
        with self._changed:
            if link in self._links:
                self._links.remove(link)

    # --- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        error: str = "ratelimited",
        status: int | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`.

        `ratelimited` is answered the way Slack does: HTTP 429 with a Retry-After header.
        """
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._changed:
            self._faults.setdefault(method, []).append(_Fault(error, status, retry_after, times))

    def rate_limit_for(
        self, seconds: float, methods: Iterable[str] = ("chat.postMessage", "chat.update")
    ) -> None:
        """Answer every call of `methods` with 429 for the next `seconds`, with a Retry-After
        that counts down to the end of the window, as Slack does."""
        with self._changed:
            self._rate_limited = (time.monotonic() + seconds, frozenset(methods))

    # --- answering (called from the server's threads) ----------------------------------------

    def _record(self, call: Call) -> _Fault | None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
            if self._rate_limited is not None:
                until, methods = self._rate_limited
                remaining = until - time.monotonic()
                if remaining > 0 and call.method in methods:
                    return _Fault("ratelimited", 429, max(1, math.ceil(remaining)), 1)
            faults = self._faults.get(call.method)
            if not faults:
                return None
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            return fault

    def _next_ts(self) -> str:
        # Increasing, shaped like Slack's: "1764340000.000100", "1764340000.000200", ...
        with self._changed:
            micros = next(self._ts) * 100
        return f"{1764340000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_view_id(self) -> str:
        with self._changed:
            return f"V0{next(self._view_ids):08d}"

    def answer(self, method: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        if method == "apps.connections.open":
            # Only an app-level token opens a Socket Mode connection.
            if not (token or "").startswith("xapp-"):
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": f"ws{self.url.removeprefix('http')}/link/?ticket=standin"}
        handler = _ANSWERS.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(self, params)


# --- answers, one per method --------------------------------------------------------------------


def _message(standin: SlackStandIn, params: dict[str, Any], ts: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": "A0SNAPCOPY",
        "team": TEAM_ID,
        "text": params.get("text", ""),
        "ts": ts,
    }
    for key in ("blocks", "attachments", "thread_ts", "metadata"):
        if key in params:
            message[key] = params[key]
    return message


def _post_message(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("channel"):
        return {"ok": False, "error": "channel_not_found"}
    if params["channel"] in standin.archived:
        return {"ok": False, "error": "is_archived"}
    ts = standin._next_ts()
    return {
        "ok": True,
        "channel": params["channel"],
        "ts": ts,
        "message": _message(standin, params, ts),
    }


def _update(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("channel") or not params.get("ts"):
        return {"ok": False, "error": "message_not_found"}
    if params["channel"] in standin.archived:
        return {"ok": False, "error": "is_archived"}
    return {
        "ok": True,
        "channel": params["channel"],
        "ts": params["ts"],
        "text": params.get("text", ""),
        "message": _message(standin, params, str(params["ts"])),
    }


def _post_ephemeral(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("channel"):
        return {"ok": False, "error": "channel_not_found"}
    if not params.get("user"):
        return {"ok": False, "error": "user_not_in_channel"}
    return {"ok": True, "message_ts": standin._next_ts()}


def _permalink(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    channel, ts = params.get("channel"), params.get("message_ts")
    if not channel or not ts:
        return {"ok": False, "error": "message_not_found"}
    link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{str(ts).replace('.', '')}"
    return {"ok": True, "channel": channel, "permalink": link}


def _view(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    view = params.get("view")
    if isinstance(view, str):
        view = json.loads(view)
    if not isinstance(view, dict) or "type" not in view:
        return {"ok": False, "error": "invalid_arguments"}
    view_id = params.get("view_id") or standin._next_view_id()
    answer = {
        "id": view_id,
        "team_id": TEAM_ID,
        "type": view["type"],
        "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{view_id}",
        "title": view.get("title"),
        "close": view.get("close"),
        "submit": view.get("submit"),
        "root_view_id": view_id,
        "app_id": "A0SNAPCOPY",
        "bot_id": BOT_ID,
    }
    return {"ok": True, "view": answer}


def _open_view(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("trigger_id"):
        return {"ok": False, "error": "invalid_trigger_id"}
    return _view(standin, params)


def _update_view(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("view_id") and not params.get("external_id"):
        return {"ok": False, "error": "not_found"}
    return _view(standin, params)


def _publish_view(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("user_id"):
        return {"ok": False, "error": "invalid_arguments"}
    return _view(standin, params)


def _usergroup_users(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    if "usergroups:read" not in standin.scopes:
        return {"ok": False, "error": "missing_scope", "needed": "usergroups:read"}
    members = standin.usergroups.get(str(params.get("usergroup")))
    if members is None:
        return {"ok": False, "error": "no_such_subteam"}
    return {"ok": True, "users": list(members)}


def _user_info(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    user = str(params.get("user") or "")
    if not user or user in standin.missing_users:
        return {"ok": False, "error": "user_not_found"}
    return {
        "ok": True,
        "user": {
            "id": user,
            "team_id": TEAM_ID,
            "name": user.lower(),
            "real_name": f"Person {user}",
            "deleted": False,
            "is_bot": user == BOT_USER_ID,
            "tz": "Europe/Berlin",
            "tz_offset": 3600,
            "profile": {"display_name": user.lower(), "real_name": f"Person {user}"},
        },
    }


def _conversation_info(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    channel = str(params.get("channel") or "")
    if not channel:
        return {"ok": False, "error": "channel_not_found"}
    return {
        "ok": True,
        "channel": {
            "id": channel,
            "name": f"channel-{channel.lower()}",
            "is_channel": channel.startswith("C"),
            "is_private": channel.startswith("G"),
            "is_im": channel.startswith("D"),
            "is_member": True,
            "is_archived": False,
        },
    }


def _auth_test(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "url": f"https://{TEAM_DOMAIN}.slack.com/",
        "team": "Snapcopy Test",
        "user": "snapcopy",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def _usergroups(standin: SlackStandIn, params: dict[str, Any]) -> dict[str, Any]:
    groups = [
        {"id": group, "handle": group.lower(), "name": f"Group {group}", "user_count": len(users)}
        for group, users in standin.usergroups.items()
    ]
    return {"ok": True, "usergroups": groups}


_ANSWERS: dict[str, Callable[[SlackStandIn, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "chat.getPermalink": _permalink,
    "views.open": _open_view,
    "views.update": _update_view,
    "views.push": _open_view,
    "views.publish": _publish_view,
    "usergroups.users.list": _usergroup_users,
    "usergroups.list": _usergroups,
    "users.info": _user_info,
    "conversations.info": _conversation_info,
}


# --- HTTP ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer
    # Headers and body go out as separate writes; without this, Nagle and delayed ACKs add
    # ~40 ms to every answer on keep-alive connections, which would be billed to the bot.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # The recorded calls are the log.

    def _handle(self) -> None:
        standin: SlackStandIn = self.server.standin  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        if url.path.startswith("/link/") and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket(standin)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path.startswith(RESPONSE_URL_PATH):
            self._response_url(standin, url.path, body)
            return
        if not url.path.startswith("/api/"):
            self._send(404, {"ok": False, "error": "not_found"})
            return
        method = url.path.removeprefix("/api/")
        params = _params(url.query, body, self.headers.get("Content-Type", ""))

        token = None
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
        token = token or params.pop("token", None)
        params.pop("token", None)
        call = Call(
            method=method,
            params=params,
            authorized=bool(authorization.startswith("Bearer ") and token),
            token=token,
            http_method=self.command,
            path=url.path,
        )
        fault = standin._record(call)
        delay = standin.delay + standin.delays.get(method, 0.0)
        if delay:
            time.sleep(delay)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            self._send(fault.status, {"ok": False, "error": fault.error}, headers)
        elif not token:
            self._send(200, {"ok": False, "error": "not_authed"})
        elif standin.expected_token is not None and token != standin.expected_token:
            self._send(200, {"ok": False, "error": "invalid_auth"})
        else:
            self._send(200, standin.answer(method, params, token))

    def _websocket(self, standin: SlackStandIn) -> None:
        """Socket Mode's WebSocket: RFC 6455 handshake, then one JSON message per text frame."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + _WEBSOCKET_GUID).encode()).digest())
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.close_connection = True
        link = _Link(self.connection)
        standin._open_link(link)
        try:
            while (frame := _read_frame(self.rfile)) is not None:
                opcode, data = frame
                if opcode == _PING:
                    link.send(_PONG, data)
                elif opcode == _CLOSE:
                    link.send(_CLOSE, data[:2])
                    break
                elif opcode == _TEXT:
                    message = json.loads(data)
                    standin._record(
                        Call("socket_mode.ack", message, authorized=False, path="/link/")
                    )
        except OSError:
            pass  # The client went away; that is how Socket Mode connections end.
        finally:
            standin._close_link(link)

    def _response_url(self, standin: SlackStandIn, path: str, body: bytes) -> None:
        # Slack's response URLs need no token: the URL itself is the secret.
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            params = {"_raw": body.decode(errors="replace")}
        call = Call("response_url", params, authorized=False, http_method=self.command, path=path)
        fault = standin._record(call)
        if standin.delay:
            time.sleep(standin.delay)
        if fault is not None:
            self._send(fault.status, {"ok": False, "error": fault.error})
        else:
            self._send(200, {"ok": True})

    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        standin: SlackStandIn = self.server.standin  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-OAuth-Scopes", ",".join(standin.scopes))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if body and content_type.startswith("application/json"):
        decoded = json.loads(body)
        if isinstance(decoded, dict):
            params.update(decoded)
    elif body:
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    for key in _JSON_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                params[key] = json.loads(value)
            except ValueError:
                pass  # Keep what was sent: the test may be about a malformed value.
    return params


# --- Socket Mode framing (RFC 6455), just what slack_sdk's built-in client uses ------------------

_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
_HELLO = {
    "type": "hello",
    "num_connections": 1,
    "debug_info": {
        "host": "applink-standin",
        "build_number": 1,
        "approximate_connection_time": 18060,
    },
    "connection_info": {"app_id": "A0SNAPCOPY"},
}


class _Link:
    """One Socket Mode connection; frames from the test thread and the server thread share it."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, opcode: int, data: bytes) -> None:
        size = len(data)
        if size < 126:
            head = bytes([0x80 | opcode, size])
        elif size < 1 << 16:
            head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
        with self._lock:
            self._connection.sendall(head + data)  # Server frames are not masked.

    def shutdown(self) -> None:
        try:
            self._connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # Already closed by the client.


def _read_frame(stream: Any) -> tuple[int, bytes] | None:
    head = stream.read(2)
    if len(head) < 2:
        return None
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(stream.read(2), "big")
    elif size == 127:
        size = int.from_bytes(stream.read(8), "big")
    mask = stream.read(4) if head[1] & 0x80 else b""  # Client frames are masked.
    data = stream.read(size)
    if mask:
        data = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
    return opcode, data


def _matches(predicate: Callable[[Call], bool], call: Call) -> bool:
    try:
        return bool(predicate(call))
    except (KeyError, TypeError, IndexError):
        return False


def _describe(calls: Iterable[Call]) -> str:
    lines = [f"  {call.method} {json.dumps(call.params, default=str)[:300]}" for call in calls]
    return "\n".join(lines) or "  (none)"
