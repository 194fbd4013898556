"""Corporate networks reach the cloud through a proxy: DWS and Slack calls honour HTTPS_PROXY /
HTTP_PROXY and NO_PROXY. Here the proxy is a recording forwarder on loopback, in front of the
loopback stand-ins (which are http://, so HTTP_PROXY is the variable that applies)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.app import slack_proxy
from bot.domain import State
from bot.slack.ids import Action
from tests.conftest import StartServer
from tests.flow import ask_for_copy, automated, click, wait_state
from tests.harness import APPROVER, REQUESTER
from tests.slack_standin import SlackStandIn


class _Forward(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        target = urlsplit(self.path)  # a proxy is sent the absolute URL
        assert target.hostname == "127.0.0.1", "the test proxy only forwards to loopback"
        self.server.seen.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream.request(
            self.command,
            target.path + (f"?{target.query}" if target.query else ""),
            body=body,
            headers=headers,
        )
        answer = upstream.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()


@pytest.fixture
def proxy() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_dws_and_slack_calls_go_through_the_proxy(
    proxy: ThreadingHTTPServer,
    start_server: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = start_server()

    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "via-proxy")
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED)

    seen: list[str] = proxy.seen  # type: ignore[attr-defined]
    assert any(line.startswith(f"POST {dws.url}/v1.0/") and "linked-copy" in line for line in seen)
    assert any(line.startswith(f"POST {slack.api_url}chat.postMessage") for line in seen)
    assert dws.copy_calls == 1, "the proxy passed the AK/SK signature through intact"


def test_no_proxy_sends_calls_direct(
    proxy: ThreadingHTTPServer,
    start_server: StartServer,
    slack: SlackStandIn,
    dws: Any,
    dws_snapshots: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = start_server()

    request = ask_for_copy(server, slack, REQUESTER, automated(dws_snapshots).id, "direct")
    click(server, APPROVER, Action.APPROVE, request)
    wait_state(server, request, State.SUCCEEDED)

    assert proxy.seen == []  # type: ignore[attr-defined]


def test_slack_proxy_follows_https_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", "slack-gateway.corp.example")

    assert slack_proxy("https://slack.com/api/") == "http://proxy.corp.example:3128"
    assert slack_proxy("https://slack-gateway.corp.example/api/") is None
