"""Builds a running snapcopy: the Bolt app, the audit log, the DWS client and the copy service.

Nothing here runs at import time; `build_runtime` is called once per process (in the gunicorn
worker after the fork, or by Socket Mode), so threads and connections belong to that process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from slack_bolt import App
from slack_sdk import WebClient

from bot.config import Policy, Settings
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one process serves with; `close()` releases it."""

    bolt: App
    store: Store
    settings: Settings
    policy: Policy
    sandbox: bool = False
    _closers: list[object] = field(default_factory=list)

    def start_background(self) -> None:
        """Work that outlives a request: reconciling after a crash, expiring old requests."""

    def close(self) -> None:
        """Stop background work; safe to call twice."""


def build_runtime(
    settings: Settings, policy: Policy, *, socket: bool = False, sandbox: bool = False
) -> Runtime:
    store = Store(settings.snapcopy_db)
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    )
    client = WebClient(token=token, base_url=settings.slack_api_url)
    bolt = App(
        client=client,
        signing_secret=secret,
        # Acknowledge first, then do the work in lazy listeners: the HTTP answer goes back as
        # soon as ack() is called instead of after Bolt's 10 ms ack polling.
        process_before_response=not socket,
        # Socket Mode requests are not signed: the app-level token authenticates the socket.
        request_verification_enabled=not socket,
        token_verification_enabled=False,
    )
    return Runtime(
        bolt=bolt, store=store, settings=settings, policy=policy, sandbox=mode == "sandbox"
    )
