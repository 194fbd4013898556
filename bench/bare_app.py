"""The floor to compare with: a Bolt app whose listeners only acknowledge, served exactly as
`snapcopy serve` serves (the same front end, bot/front.py: uvicorn buffering whole requests for
a pool of threads), or, with `--server gunicorn`, as snapcopy was served before that front end
(gunicorn, 1 worker, gthread, 8 threads) for the door benchmark (bench/door.py).

    python -m bench.bare_app --port 3100   # SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, SLACK_API_URL

It registers the ids snapcopy answers in these benchmarks, with the App settings snapcopy uses
(`process_before_response=True`, signatures verified, no token check at start-up), so the only
difference left is what snapcopy's listeners and middleware do.

`--server gunicorn --typical` is the Bolt app most teams run (issue #22's yardstick): gunicorn's
threads, Bolt's defaults, and a command listener that acknowledges and then calls `views.open`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.front import BufferedWsgi, serve
from bot.server import EVENTS_PATH, HEALTH_PATH
from bot.slack.ids import COMMAND, Action, Callback

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

PROC_NAME = "snapcopy-bare"
TYPICAL_ENV = "SNAPCOPY_BARE_TYPICAL"


def build_bolt(signing_secret: str, token: str, api_url: str, *, typical: bool = False) -> App:
    """The bare app; `typical`: as most Bolt apps are written, the command's listener
    acknowledges and then opens a modal itself, and Bolt runs it with its defaults
    (`process_before_response` off: the listener runs on Bolt's threads and the answer leaves
    once it has acknowledged)."""
    app = App(
        # Bolt asks auth.test once, on the first request, as it does for snapcopy: the same
        # Web API (the stand-in) answers both.
        client=WebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
        # As snapcopy: the answer leaves when the listener returns, right after ack().
        process_before_response=not typical,
        token_verification_enabled=False,
        ignoring_self_events_enabled=True,
    )

    def acknowledge(ack: Ack) -> None:
        ack()

    def acknowledge_then_open(ack: Ack, body: dict[str, object], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=str(body["trigger_id"]), view=_MODAL)

    app.command(COMMAND)(acknowledge_then_open if typical else acknowledge)
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


_MODAL = {
    "type": "modal",
    "title": {"type": "plain_text", "text": "Copy a snapshot"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "A bare modal."}}],
}


def bare_wsgi() -> WSGIApplication:
    return wsgi(
        build_bolt(
            os.environ["SLACK_SIGNING_SECRET"],
            os.environ["SLACK_BOT_TOKEN"],
            os.environ.get("SLACK_API_URL", WebClient.BASE_URL),
            typical=os.environ.get(TYPICAL_ENV) == "1",
        )
    )


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """How snapcopy served before its front end: one gthread worker with eight threads."""

    def __init__(self, *, host: str, port: int) -> None:
        self._options = {
            "bind": [f"{host}:{port}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": 8,
            "graceful_timeout": 5,
            "proc_name": PROC_NAME,
            "accesslog": None,
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            if name in self.cfg.settings:  # older gunicorn releases lack some settings
                self.cfg.set(name, value)

    def load(self) -> WSGIApplication:
        return bare_wsgi()  # in the worker, after the fork


def main() -> None:
    parser = argparse.ArgumentParser(description="A Bolt app that only acknowledges.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=("front", "gunicorn"), default="front")
    parser.add_argument(
        "--typical",
        action="store_true",
        help="the command's listener opens a modal after acknowledging, with Bolt's defaults",
    )
    args = parser.parse_args()
    if args.typical:
        os.environ[TYPICAL_ENV] = "1"  # read in gunicorn's worker, after the fork
    if args.server == "gunicorn":
        GunicornServer(host=args.host, port=args.port).run()
    else:
        serve(BufferedWsgi(bare_wsgi()), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
