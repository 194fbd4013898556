"""The dispatch tier: the bot's whole listener path in this process, with no HTTP server.

`DispatchBot.start()` builds the same Runtime that `snapcopy serve` builds (settings from the
test's environment, the policy file, a real store, the workers, the stand-ins for Slack and
DWS) and hands each signed request straight to `App.dispatch(BoltRequest(...))`, as
bolt-python's own scenario tests do. Signatures are still checked: the request carries the
headers Slack would send. `get()` calls the WSGI routes (`/healthz`, `/metrics`) in-process.

It is a `BotServer` like the HTTP servers of tests/harness.py, so a test reads the same either
way; tests about serving itself (the front end, hostile bodies, signals) use those instead.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from slack_bolt.request import BoltRequest

from bot.app import Runtime
from bot.server import EVENTS_PATH, make_wsgi_app
from tests import slackreq
from tests.harness import InProcessBot


class DispatchBot(InProcessBot):
    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(runtime, port=0, **kwargs)
        self._wsgi = make_wsgi_app(runtime)
        self._running = True

    @classmethod
    def start(
        cls,
        env: Mapping[str, str | None],
        *,
        cwd: Path,
        args: Sequence[str] = (),
        log_path: Path | None = None,
        **unused: Any,
    ) -> DispatchBot:
        runtime, log_path, handler, log_file = cls.build(
            env, cwd=cwd, args=args, log_path=log_path, unused=unused
        )
        bot = cls(runtime, env=env, log_path=log_path)
        bot._log_handler, bot._log_file = handler, log_file
        runtime.start_background()
        return bot

    def stop(self) -> int | None:
        """Close the Runtime as serving's shutdown does. Safe to call twice."""
        if not self._running:
            return 0
        self._running = False
        self.http.close()
        self.runtime.close()
        self.close_store()
        self.close_log()
        return 0

    def post(
        self,
        body: bytes | str,
        content_type: str,
        *,
        sign: bool = True,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
        path: str = EVENTS_PATH,
    ) -> httpx.Response:
        """Dispatch a raw body, signed with the bot's signing secret unless told otherwise."""
        raw = body.encode() if isinstance(body, str) else body
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers |= slackreq.sign(raw, secret or self.signing_secret, timestamp=timestamp)
        all_headers |= dict(headers or {})
        if path != EVENTS_PATH:
            return self._call_wsgi("POST", path, raw, all_headers)
        lowered = {name.lower(): value for name, value in all_headers.items()}
        answer = self.runtime.bolt.dispatch(BoltRequest(body=raw.decode(), headers=lowered))
        return httpx.Response(
            answer.status,
            headers=[(name, value) for name, values in answer.headers.items() for value in values],
            content=(answer.body or "").encode(),
        )

    def get(self, path: str) -> httpx.Response:
        return self._call_wsgi("GET", path, b"", {})

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.get("/healthz").json()
        return answer

    def _call_wsgi(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> httpx.Response:
        """One request through the WSGI routes, as the front end would hand it over."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
        started: dict[str, Any] = {}

        def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
            started.update(status=int(status.split()[0]), headers=response_headers)

        content = b"".join(self._wsgi(environ, start_response))
        return httpx.Response(started["status"], headers=started["headers"], content=content)
