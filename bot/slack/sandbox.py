"""Sandbox mode's promise: every message snapcopy posts says "sandbox".

Marking happens in the Web API client (every listener is handed snapcopy's own client, see
bot/app.py) and in `respond()` (answers through a response URL), so no message can forget it.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.context.respond import Respond

MARK = "[sandbox]"
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update"})


def mark(text: str) -> str:
    return text if text.startswith(MARK) else f"{MARK} {text}"


class SandboxRespond(Respond):
    """Bolt's `respond()`, marking the text it sends."""

    def __call__(self, text: str | dict[str, Any] = "", **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(text, str):
            text = mark(text) if text else text
        return super().__call__(text, **kwargs)
