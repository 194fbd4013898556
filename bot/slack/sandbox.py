"""Sandbox mode's promise: every message snapcopy posts says "sandbox".

Marking happens in one place, the Web API client, so no message can forget it; answers sent
through a response URL (slash commands) are marked with `mark()` where they are sent.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

MARK = "[sandbox]"
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update"})


def mark(text: str) -> str:
    return text if text.startswith(MARK) else f"{MARK} {text}"


class SandboxWebClient(WebClient):
    def api_call(
        self, api_method: str, *, json: dict[str, Any] | None = None, **kwargs: Any
    ) -> SlackResponse:
        if api_method in MESSAGE_METHODS and json and isinstance(json.get("text"), str):
            json = {**json, "text": mark(json["text"])}
        return super().api_call(api_method, json=json, **kwargs)


def is_sandboxed(client: WebClient) -> bool:
    return isinstance(client, SandboxWebClient)
