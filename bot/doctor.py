"""`snapcopy doctor`: is this deployment able to work? One line per check, ✓ or ✗ with the fix.

Everything here only reads (the database check takes the write lock for an instant and writes
nothing), so it is safe to run beside a live bot, with the same environment.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app import dws_clients, slack_proxy
from bot.database import BadUrl, PostgresUrl
from bot.dws import DwsError
from bot.errors import ConfigError, StoreUnavailable
from bot.policy import Policy, load_policy
from bot.settings import Settings, read_settings
from bot.slack.scopes import NEEDED_SCOPES
from bot.slack.startup import TokenRefused, check_token
from bot.store.status import status

OK, FAILED = "✓", "✗"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"{OK if self.ok else FAILED} {self.name}: {self.detail}"
        return line + (f"\n    fix: {self.fix}" if self.fix and not self.ok else "")


def run(*, socket: bool = False) -> list[Check]:
    settings, malformed = read_settings()
    checks = [_settings(settings, malformed, socket)]
    client = _slack_client(settings)
    checks += _slack(client)
    checks.append(_database(settings))
    policy, policy_check = _policy(settings)
    checks.append(policy_check)
    if policy is not None and client is not None:
        checks.append(_policy_ids(client, policy))
        checks.append(_approvals(client, policy))
    checks += _dws(settings)
    return checks


def _settings(settings: Settings, malformed: list[str], socket: bool) -> Check:
    problems = [
        *malformed,
        *[p for p in settings.problems_for(socket=socket) if not p.startswith("SNAPCOPY_DB")],
    ]
    mode = "Socket Mode (SLACK_APP_TOKEN)" if socket else "HTTP mode (SLACK_SIGNING_SECRET)"
    if problems:
        return Check("settings", False, "; ".join(problems), "set them, then run doctor again")
    return Check("settings", True, f"everything {mode} needs is set")


def _slack_client(settings: Settings) -> WebClient | None:
    if settings.slack_bot_token is None:
        return None

    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url.rstrip("/") + "/",
        timeout=10,
    )
    client.proxy = slack_proxy(settings.slack_api_url)
    return client


def _slack(client: WebClient | None) -> list[Check]:
    if client is None:
        return [Check("Slack token", False, "SLACK_BOT_TOKEN is not set", "set it")]
    try:
        token = check_token(client)
    except TokenRefused as refused:
        return [Check("Slack token", False, f"refused ({refused.code})", str(refused))]
    if not token.ok:
        return [
            Check(
                "Slack token",
                False,
                f"Slack could not be asked ({token.detail})",
                "check SLACK_API_URL, the network and HTTPS_PROXY, then run doctor again",
            )
        ]
    missing = [scope for scope in NEEDED_SCOPES if scope not in token.scopes]
    scopes = (
        Check("Slack scopes", True, ", ".join(NEEDED_SCOPES))
        if not missing
        else Check(
            "Slack scopes",
            False,
            "missing " + ", ".join(f"{scope} ({NEEDED_SCOPES[scope]})" for scope in missing),
            "add them under OAuth & Permissions (or from manifest.yaml) and reinstall the app",
        )
    )
    return [Check("Slack token", True, f"accepted, as {token.detail}"), scopes]


def _database(settings: Settings) -> Check:
    problems = settings.database_problems()
    if problems:
        return Check("database", False, "; ".join(problems), "fix SNAPCOPY_DB or the volume")
    database = settings.database
    if isinstance(database, PostgresUrl):
        return _postgres(database)
    path = database.path
    if not path.exists():
        return Check("database", True, f"{path} will be created at the first start")
    try:
        with closing(sqlite3.connect(path, timeout=5, isolation_level=None)) as db:
            # The write lock for an instant: writable, and nothing written.
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
    except sqlite3.Error as error:
        return Check("database", False, f"{path}: {error}", "fix SNAPCOPY_DB or the volume")
    return Check("database", True, f"{path} is writable")


def _postgres(database: PostgresUrl) -> Check:
    """Reachable, its version, migrations current, and the privileges snapcopy needs."""
    fix = "check SNAPCOPY_DB (or DATABASE_URL), the server and the network to it"
    try:
        found = status(database)
    except StoreUnavailable as trouble:
        return Check("database", False, f"{database.shown} {trouble.what} ({trouble.detail})", fix)
    except BadUrl as error:
        return Check("database", False, str(error), fix)
    if found.too_new:
        return Check("database", False, found.lines()[-1], "run the newer snapcopy release")
    if found.missing_privileges:
        missing = ", ".join(found.missing_privileges)
        grant = f"GRANT them to {database.user or 'its user'}"
        return Check("database", False, f"{database.shown}: missing {missing}", grant)
    pending = f"; {found.pending} migrations apply at the next start" if found.pending else ""
    detail = f"{found.server} at {database.shown}, schema version {found.version}{pending}"
    return Check("database", True, detail)


def _policy(settings: Settings) -> tuple[Policy | None, Check]:
    try:
        policy = load_policy(settings.snapcopy_policy)
    except ConfigError as error:
        return None, Check(
            "policy file", False, "; ".join(error.problems), "see snapcopy.example.toml"
        )
    warnings = policy.warnings()
    if warnings:
        return policy, Check(
            "policy file", False, " ".join(warnings), "name approvers or admins of this workspace"
        )
    rules = f", {len(policy.rules)} rule(s)" if policy.rules else ""
    return policy, Check("policy file", True, f"{settings.snapcopy_policy} is valid{rules}")


def _policy_ids(client: WebClient, policy: Policy) -> Check:
    ids = sorted(policy.ids())
    users = [item for item in ids if not item.startswith("S")]
    groups = [item for item in ids if item.startswith("S")]
    unknown: list[str] = []
    try:
        for user in users:
            try:
                client.users_info(user=user)
            except SlackApiError as error:
                if (error.response or {}).get("error") != "user_not_found":
                    raise
                unknown.append(user)
        if groups:
            listed = client.usergroups_list(include_disabled=False).get("usergroups") or []
            known = {group.get("id") for group in listed}
            unknown += [group for group in groups if group not in known]
    except SlackApiError as error:
        code = (error.response or {}).get("error")
        return Check(
            "policy IDs",
            False,
            f"Slack would not say ({code})",
            "grant users:read and usergroups:read, then run doctor again",
        )
    if unknown:
        return Check(
            "policy IDs",
            False,
            "not in this workspace: " + ", ".join(unknown),
            "copy the IDs from the people's profiles (⋮ → Copy member ID) or the groups' pages",
        )
    return Check("policy IDs", True, f"{len(users)} user(s) and {len(groups)} group(s) exist")


def _approvals(client: WebClient, policy: Policy) -> Check:
    """Whether each table can get the approvals it needs, user groups' members counted."""

    def members(group: str) -> frozenset[str]:
        return frozenset(client.usergroups_users_list(usergroup=group).get("users") or [])

    try:
        short = policy.short_of_approvers(members)
    except SlackApiError as error:
        code = (error.response or {}).get("error")
        return Check(
            "policy approvals",
            False,
            f"Slack would not list a group's members ({code})",
            "grant usergroups:read and check the groups' IDs, then run doctor again",
        )
    if short:
        return Check(
            "policy approvals",
            False,
            " ".join(short),
            "lower `approvals`, or name more approvers (or admins)",
        )
    return Check("policy approvals", True, "every table can get the approvals it needs")


def _dws(settings: Settings) -> list[Check]:
    if not (settings.huaweicloud_sdk_ak and settings.huaweicloud_sdk_sk):
        return [Check("DWS", False, "no credentials", "set HUAWEICLOUD_SDK_AK and _SK")]
    try:
        targets = settings.dws_targets()
    except ValueError as error:
        return [Check("DWS", False, str(error), "fix DWS_REGION, DWS_REGIONS or DWS_ENDPOINT")]

    closers: list[Callable[[], None]] = []
    request_ids: list[str | None] = []
    quick, _ = dws_clients(
        settings,
        threading.Event(),
        sandbox=False,
        transport=None,
        closers=closers,
        observer=lambda call, outcome, ok, request_id: request_ids.append(request_id),
    )
    checks = []
    try:
        for target in targets:
            name = f"DWS {target.region or 'endpoint'}".rstrip()
            try:
                found = quick.client(target.region).list_snapshots()
            except DwsError as error:
                checks.append(Check(name, False, f"{target.endpoint}: {error}", _dws_fix(error)))
                continue
            request_id = request_ids[-1] if request_ids else None
            checks.append(
                Check(
                    name,
                    True,
                    f"{target.endpoint} lists {len(found)} snapshot(s) (request id {request_id})",
                )
            )
    finally:
        for close in reversed(closers):
            close()
    return checks


def _dws_fix(error: DwsError) -> str:
    if error.status in (401, 403):
        return (
            "check HUAWEICLOUD_SDK_AK/_SK and the project ID, and that the key may use DWS "
            "(IAM: DWS permissions for the project)"
        )
    return "check DWS_REGION/DWS_ENDPOINT, the network and HTTPS_PROXY"


def render(checks: Iterable[Check]) -> str:
    return "\n".join(check.render() for check in checks)
