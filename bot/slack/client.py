"""snapcopy's Web API client: slack-sdk's, with every call's outcome reported to an observer
(metrics and /healthz), and in the sandbox every message marked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.slack.sandbox import MESSAGE_METHODS, mark

# (method, outcome: "ok" or Slack's error code or the exception's name, ok?)
Observer = Callable[[str, str, bool], None]


class ObservedWebClient(WebClient):
    def __init__(self, *args: Any, observer: Observer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer = observer

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            code = str((error.response or {}).get("error") or "error")
            self._observe(api_method, code, False)
            raise
        except Exception as error:
            self._observe(api_method, type(error).__name__, False)
            raise
        self._observe(api_method, "ok", True)
        return response

    def _observe(self, method: str, outcome: str, ok: bool) -> None:
        if self.observer is not None:
            self.observer(method, outcome, ok)


class SandboxWebClient(ObservedWebClient):
    """Marks every message it sends: the sandbox's promise (and, on the sandbox's own policy,
    who may do what)."""

    def __init__(self, *args: Any, open_policy: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_policy = open_policy

    def api_call(
        self, api_method: str, *, json: dict[str, Any] | None = None, **kwargs: Any
    ) -> SlackResponse:
        if api_method in MESSAGE_METHODS and json and isinstance(json.get("text"), str):
            json = {**json, "text": mark(json["text"], open_policy=self.open_policy)}
        return super().api_call(api_method, json=json, **kwargs)


def marked(client: WebClient, text: str) -> str:
    """`text` as `client` would post it: marked in the sandbox."""
    if isinstance(client, SandboxWebClient):
        return mark(text, open_policy=client.open_policy)
    return text
