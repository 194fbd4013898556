"""The floor to compare with: a Bolt app whose listeners only acknowledge, served exactly as
`snapcopy serve` serves (snapcopy's own gunicorn class: 1 worker, gthread, the same threads).

    python -m bench.bare_app --port 3100   # SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, SLACK_API_URL

It registers the ids snapcopy answers in these benchmarks, with the App settings snapcopy uses
(`process_before_response=True`, signatures verified, no token check at start-up), so the only
difference left is what snapcopy's listeners and middleware do.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.server import EVENTS_PATH, HEALTH_PATH, SnapcopyServer
from bot.slack.ids import COMMAND, Action, Callback

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from bot.app import Runtime

PROC_NAME = "snapcopy-bare"


def build_bolt(signing_secret: str, token: str, api_url: str) -> App:
    app = App(
        # Bolt asks auth.test once, on the first request, as it does for snapcopy: the same
        # Web API (the stand-in) answers both.
        client=WebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
        process_before_response=True,  # as snapcopy: the answer leaves when ack() is called
        token_verification_enabled=False,
        ignoring_self_events_enabled=True,
    )

    def acknowledge(ack: Ack) -> None:
        ack()

    app.command(COMMAND)(acknowledge)
    app.action(Action.APPROVE)(acknowledge)
    app.action(Action.DENY)(acknowledge)
    app.view(Callback.COPY_MODAL)(acknowledge)
    app.shortcut(Callback.MESSAGE_SHORTCUT)(acknowledge)
    return app


def wsgi(app: App) -> WSGIApplication:
    slack = SlackRequestHandler(app, path=EVENTS_PATH)
    health = json.dumps({"ok": True}).encode()

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(health)))],
            )
            return [health]
        return slack(environ, start_response)

    return serve


class BareServer(SnapcopyServer):
    """snapcopy's gunicorn settings around the bare app; it has no Runtime to start or close."""

    def __init__(self, *, host: str, port: int) -> None:
        super().__init__(_no_runtime, host=host, port=port)
        self.cfg.set("proc_name", PROC_NAME)

    def load(self) -> WSGIApplication:
        # In the worker after the fork, like snapcopy's Runtime.
        return wsgi(
            build_bolt(
                os.environ["SLACK_SIGNING_SECRET"],
                os.environ["SLACK_BOT_TOKEN"],
                os.environ.get("SLACK_API_URL", WebClient.BASE_URL),
            )
        )


def _no_runtime() -> Runtime:
    raise AssertionError("the bare app has no Runtime")


def main() -> None:
    parser = argparse.ArgumentParser(description="A Bolt app that only acknowledges.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    BareServer(host=args.host, port=args.port).run()


if __name__ == "__main__":
    main()
