"""Sandbox mode's promise: every message snapcopy posts says "sandbox".

Marking happens in the Web API client (every listener is handed snapcopy's own client, see
bot/app.py) and in `respond()` (answers through a response URL), so no message can forget it.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.context.respond import Respond

MARK = "[sandbox]"
# Said on every message while the sandbox runs on its own policy (bot.policy.sandbox_policy).
OPEN_POLICY = "(no policy file: anyone may request, anyone else may approve)"
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update"})


def mark(text: str, *, open_policy: bool = False) -> str:
    if text.startswith(MARK):
        return text
    return f"{MARK} {OPEN_POLICY} {text}" if open_policy else f"{MARK} {text}"


class SandboxRespond(Respond):
    """Bolt's `respond()`, marking the text it sends."""

    def __init__(self, *, open_policy: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.open_policy = open_policy

    def __call__(self, text: str | dict[str, Any] = "", **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(text, str):
            text = mark(text, open_policy=self.open_policy) if text else text
        return super().__call__(text, **kwargs)
