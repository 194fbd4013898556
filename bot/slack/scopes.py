"""The bot token's scopes snapcopy needs, and why; manifest.yaml asks for exactly these."""

from __future__ import annotations

NEEDED_SCOPES: dict[str, str] = {
    "commands": "the /snapcopy command and the message shortcut",
    "chat:write": "approval requests, thread updates and DMs",
    "chat:write.public": "posting in channels the bot was not invited to",
    "app_mentions:read": "@snapcopy in a thread",
    "usergroups:read": "roles and approvers given to a user group",
    "users:read": "`snapcopy doctor` checking that the policy's user IDs exist",
}
