"""The bot token's scopes snapcopy needs, and why; manifest.yaml asks for exactly these. And
whether it may read user groups now (`GroupAccess`)."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

GROUPS_SCOPE = "usergroups:read"

NEEDED_SCOPES: dict[str, str] = {
    "commands": "the /snapcopy command and the message shortcut",
    "chat:write": "approval requests, thread updates and DMs",
    "chat:write.public": "posting in channels the bot was not invited to",
    "app_mentions:read": "@snapcopy in a thread",
    "usergroups:read": "roles and approvers given to a user group",
    "users:read": "`snapcopy doctor` checking that the policy's user IDs exist",
}


class GroupAccess:
    """Whether the bot token may read user groups: known from `auth.test` at start (its
    X-OAuth-Scopes), and from every group lookup since (Slack answers `missing_scope`), so a
    reinstall with the scope is noticed without a restart."""

    def __init__(self, client: WebClient, scopes: frozenset[str] = frozenset()) -> None:
        self.client = client
        # No scopes known (Slack was down at start): assume the token may, until Slack says.
        self.readable = not scopes or GROUPS_SCOPE in scopes

    def is_readable(self) -> bool:
        return self.readable

    def members(self, group_id: str) -> frozenset[str]:
        """`usergroups.users.list`, noting whether Slack let us ask."""
        try:
            response = self.client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as error:
            if (error.response or {}).get("error") == "missing_scope":
                self.readable = False
            raise
        self.readable = True
        return frozenset(response.get("users") or [])
