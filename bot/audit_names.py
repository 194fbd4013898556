"""`snapcopy audit --names`: Slack user IDs shown as names, and each request's thread as a link.

Standard library only, like `snapcopy audit`: a POST per Slack Web API call with the bot token
(SLACK_BOT_TOKEN, from the environment or `.env`). Each user ID is asked of `users.info` once
per run and remembered; `auth.test`, asked once, gives the workspace's URL for the links. A
person Slack cannot find keeps their ID.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

SLACK_API_DEFAULT = "https://slack.com/api/"
# Columns that hold Slack user IDs (approved_by: several, comma-separated).
PEOPLE_COLUMNS = ("requested_by", "approved_by", "denied_by", "cancelled_by")


class NamesUnavailable(Exception):
    """Slack would not answer for the token as a whole; the message says why."""


class SlackNames:
    def __init__(self, token: str, api_url: str = SLACK_API_DEFAULT, timeout: float = 10.0) -> None:
        self._token = token
        self._api = api_url if api_url.endswith("/") else api_url + "/"
        self._timeout = timeout
        self._names: dict[str, str] = {}
        self._workspace: str | None = None

    def _call(self, method: str, **params: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self._api + method,
            data=urllib.parse.urlencode(params).encode(),
            headers={"Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise NamesUnavailable(f"Slack could not be asked ({error}).") from None
        return answer

    def workspace(self) -> str:
        """The workspace's URL (`https://example.slack.com/`), from auth.test."""
        if self._workspace is None:
            answer = self._call("auth.test")
            if not answer.get("ok"):
                raise NamesUnavailable(
                    f"Slack refused SLACK_BOT_TOKEN ({answer.get('error')}); names need the "
                    "bot token of the running snapcopy."
                )
            self._workspace = str(answer.get("url") or "https://slack.com/")
        return self._workspace

    def name(self, user_id: str) -> str:
        if user_id not in self._names:
            answer = self._call("users.info", user=user_id)
            user = answer.get("user") or {}
            profile = user.get("profile") or {}
            found = profile.get("display_name") or user.get("real_name") or user.get("name")
            self._names[user_id] = f"@{found}" if answer.get("ok") and found else user_id
        return self._names[user_id]

    def people(self, cell: Any) -> Any:
        """A cell of user IDs ("U1" or "U1,U2") as names; anything else as it is."""
        if not isinstance(cell, str) or not cell:
            return cell
        return ", ".join(self.name(user) for user in cell.split(",") if user)

    def thread_link(self, row: dict[str, Any]) -> str | None:
        channel, ts = row.get("channel_id"), row.get("thread_ts") or row.get("message_ts")
        if not channel or not ts:
            return None
        return f"{self.workspace()}archives/{channel}/p{str(ts).replace('.', '')}"

    def apply(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows with names for IDs and a `thread` link, ready for the table."""
        self.workspace()  # a refused token is said once, up front
        return [
            row
            | {column: self.people(row.get(column)) for column in PEOPLE_COLUMNS}
            | {"thread": self.thread_link(row)}
            for row in rows
        ]
