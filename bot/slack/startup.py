"""Is the bot token good? Asked of Slack (`auth.test`) when snapcopy starts.

A revoked or wrong token stops start-up with one sentence: otherwise the bot would start, say
it is healthy, and every person would meet Bolt's "reinstall this app". Slack being down at
that moment is not the token's fault: start, warn, and keep asking in the background.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

# Slack's answers that mean this token will never work.
TOKEN_REFUSED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "not_allowed_token_type",
        "team_access_not_granted",
    }
)
RECHECK_FIRST_SECONDS = 1.0
RECHECK_LONGEST_SECONDS = 60.0


class TokenRefused(Exception):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(
            f"Slack refused SLACK_BOT_TOKEN ({code}): the app may have been uninstalled or the "
            "token revoked or mistyped. Reinstall the app (OAuth & Permissions → Reinstall) and "
            "set SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-…)."
        )


@dataclass(frozen=True)
class TokenCheck:
    ok: bool
    detail: str  # who we are when ok, what went wrong otherwise
    scopes: frozenset[str] = frozenset()


def check_token(client: WebClient) -> TokenCheck:
    """Ask auth.test; raise TokenRefused when the token is no good, return not-ok when Slack
    could not be asked."""
    try:
        response = client.auth_test()
    except SlackApiError as error:
        code = str((error.response or {}).get("error") or "unknown_error")
        if code in TOKEN_REFUSED:
            raise TokenRefused(code) from None
        return TokenCheck(False, code)
    except OSError as error:
        return TokenCheck(False, type(error).__name__)
    header = (response.headers or {}).get("x-oauth-scopes") or (response.headers or {}).get(
        "X-OAuth-Scopes", ""
    )
    scopes = frozenset(scope.strip() for scope in str(header).split(",") if scope.strip())
    who = f"{response.get('user') or 'bot'} in {response.get('team') or 'the workspace'}"
    return TokenCheck(True, who, scopes)


def keep_checking(client: WebClient, stop: threading.Event) -> None:
    """Ask again with backoff until Slack answers (run on a thread of its own)."""
    wait = RECHECK_FIRST_SECONDS
    while not stop.wait(wait):
        try:
            result = check_token(client)
        except TokenRefused as refused:
            log.error("%s", refused)
            return
        if result.ok:
            log.info("Slack accepts the bot token", extra={"as": result.detail})
            return
        log.warning("Slack still cannot be asked about the token", extra={"error": result.detail})
        wait = min(wait * 2, RECHECK_LONGEST_SECONDS)
