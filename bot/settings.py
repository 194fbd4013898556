"""Settings from the environment (and `.env`), and the policy file with them, checked at start-up.

Everything an operator can get wrong is reported together, in one message, so a broken deploy
is fixed in one round trip instead of one restart per typo. Secrets are `SecretStr` and are never
echoed back, not even in the problem list.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BeforeValidator,
    Field,
    PositiveFloat,
    SecretStr,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.database import Database, SqliteFile, choose
from bot.dws import DwsTarget, endpoint_for, parse_regions
from bot.errors import ConfigError
from bot.policy import Policy, load_policy, sandbox_policy

SLACK_API_DEFAULT = "https://slack.com/api/"

# Where people find each value; printed next to a missing or malformed setting.
_WHERE = {
    "SLACK_BOT_TOKEN": "the Slack app's 'OAuth & Permissions' page, 'Bot User OAuth Token' "
    "(xoxb-…)",
    "SLACK_SIGNING_SECRET": "the Slack app's 'Basic Information' page, 'App Credentials' → "
    "'Signing Secret'",
    "SLACK_APP_TOKEN": "the Slack app's 'Basic Information' page, 'App-Level Tokens' "
    "(xapp-…, scope connections:write)",
    "HUAWEICLOUD_SDK_AK": "Huawei Cloud console → 'My Credentials' → 'Access Keys'",
    "HUAWEICLOUD_SDK_SK": "the credentials.csv downloaded when the access key was created",
    "HUAWEICLOUD_SDK_PROJECT_ID": "Huawei Cloud console → 'My Credentials' → 'API Credentials' "
    "(the project of the DWS region)",
    "DWS_REGION": "the region of your clusters, e.g. ap-southeast-1 (or set DWS_ENDPOINT)",
}


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Every setting of the contract; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    slack_bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-…).")
    slack_signing_secret: SecretStr | None = Field(
        None, description="Verifies that HTTP requests come from Slack (HTTP mode)."
    )
    slack_app_token: SecretStr | None = Field(
        None, description="App-level token (xapp-…) for Socket Mode."
    )
    slack_api_url: str = Field(SLACK_API_DEFAULT, description="Base URL of Slack's Web API.")
    huaweicloud_sdk_ak: SecretStr | None = Field(None, description="Access key (AK).")
    huaweicloud_sdk_sk: SecretStr | None = Field(None, description="Secret key (SK).")
    huaweicloud_sdk_project_id: str | None = Field(None, description="Project ID of the region.")
    huaweicloud_sdk_security_token: SecretStr | None = Field(
        None, description="Security token of temporary credentials."
    )
    dws_region: str | None = Field(None, description="Region, e.g. ap-southeast-1.")
    dws_endpoint: str | None = Field(None, description="Explicit DWS endpoint; wins over region.")
    dws_regions: str | None = Field(
        None,
        description="Several regions in one bot: region=project_id[@endpoint],… "
        "(wins over DWS_REGION and HUAWEICLOUD_SDK_PROJECT_ID).",
    )
    dws_connect_timeout: PositiveFloat = Field(5.0, description="Seconds to connect to DWS.")
    dws_read_timeout: PositiveFloat = Field(20.0, description="Seconds to wait for a DWS answer.")
    dws_copy_timeout: PositiveFloat = Field(
        60.0, description="Seconds to wait for the answer to a linked-copy call."
    )
    snapcopy_db: str | None = Field(
        None,
        description="Where the audit log and owed work are kept: an SQLite file's path "
        "(default ./snapcopy.db) or a postgresql:// URL.",
    )
    database_url: SecretStr | None = Field(
        None,
        description="A postgresql:// URL, used when SNAPCOPY_DB is unset (platforms that "
        "attach a database set it).",
    )
    snapcopy_policy: Path = Field(Path("./snapcopy.toml"), description="Policy file (TOML).")
    snapcopy_poll_seconds: PositiveFloat = Field(
        15.0, description="How often to check a new copy's status."
    )
    snapcopy_follow_minutes: PositiveFloat = Field(
        180.0, description="How long to follow a copy before giving up on it."
    )
    snapcopy_retry_seconds: PositiveFloat = Field(
        2.0,
        description="First wait before DWS work that met passing trouble is tried again; it "
        "doubles each time, up to 5 minutes, unless DWS says how long (Retry-After).",
    )
    snapcopy_lease_seconds: float = Field(
        30.0,
        ge=1.0,
        le=3600.0,
        description="How long work (a DWS job, a Slack message) stays its worker's after its "
        "last renewal; a live worker renews it every third of this. After a crash, another "
        "process takes the work over this long after the last renewal.",
    )
    snapcopy_outbox_stuck_minutes: PositiveFloat = Field(
        30.0,
        description="/healthz answers 503 when a Slack message has waited longer than this.",
    )
    snapcopy_slack_give_up_hours: PositiveFloat = Field(
        24.0, description="How long a Slack message is retried before it is dropped (audited)."
    )
    snapcopy_log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)
    ] = Field("INFO", description="Log level (any case).")
    port: int = Field(
        3000,
        ge=1,
        le=65535,
        description="HTTP port of `snapcopy serve` (in Socket Mode: /livez, /healthz, /metrics).",
    )
    snapcopy_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port instead of PORT (off the public Slack port).",
    )

    def secret_values(self) -> list[str]:
        """The secret values themselves, for the log redactor to remove wherever they appear:
        the database's password among them, wherever its URL came from."""
        values = [value.get_secret_value() for _, value in self if isinstance(value, SecretStr)]
        try:
            values += self.database.secrets
        except ValueError:
            pass  # a URL that cannot be read is refused at start, naming no password
        return values

    @property
    def database(self) -> Database:
        """The database SNAPCOPY_DB (else DATABASE_URL) names; ValueError for a bad URL."""
        url = self.database_url.get_secret_value() if self.database_url else None
        return choose(self.snapcopy_db, url)

    def problems_for(self, *, socket: bool = False, sandbox: bool = False) -> list[str]:
        """What is missing for this way of running; empty when start-up can go on.

        HTTP mode verifies Slack's signatures; Socket Mode needs the app-level token instead.
        The sandbox talks to an in-process DWS stand-in, so it needs no cloud credentials.
        """
        needed = ["SLACK_BOT_TOKEN"]
        needed.append("SLACK_APP_TOKEN" if socket else "SLACK_SIGNING_SECRET")
        if not sandbox:
            needed += ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"]
            if not _present(self.dws_regions):
                needed.append("HUAWEICLOUD_SDK_PROJECT_ID")
        problems = [_missing(name) for name in needed if not _present(getattr(self, name.lower()))]
        if not sandbox and not (self.dws_region or self.dws_endpoint or self.dws_regions):
            problems.append(
                "DWS_REGION or DWS_ENDPOINT is not set: set DWS_REGION to the region of your "
                "clusters (e.g. ap-southeast-1), or DWS_ENDPOINT to a full https:// URL "
                "(DWS_REGIONS for several regions)."
            )
        problems += self._shape_problems(socket=socket, sandbox=sandbox)
        problems += self.database_problems()
        if not sandbox and not problems:
            try:
                self.dws_targets()
            except ValueError as error:
                problems.append(str(error))
        return problems

    def dws_targets(self) -> list[DwsTarget]:
        """Every region the bot works in, with its project and endpoint.

        DWS_REGIONS lists several; otherwise DWS_REGION (or DWS_ENDPOINT alone) with
        HUAWEICLOUD_SDK_PROJECT_ID is the one. DWS_ENDPOINT, where set, is where every region
        without an endpoint of its own is called.
        """
        if _present(self.dws_regions):
            return [
                DwsTarget(region, project_id, endpoint_for(region, own or self.dws_endpoint))
                for region, project_id, own in parse_regions(self.dws_regions or "")
            ]
        region = (self.dws_region or "").strip().lower()
        return [
            DwsTarget(
                region,
                self.huaweicloud_sdk_project_id or "",
                endpoint_for(region, self.dws_endpoint),
            )
        ]

    def database_problems(self) -> list[str]:
        """Why the database cannot be used, as far as can be told without opening it."""
        try:
            database = self.database
        except ValueError as error:
            return [str(error)]
        if isinstance(database, SqliteFile):
            return _file_problems(database.path)
        return []

    def _shape_problems(self, *, socket: bool, sandbox: bool = False) -> list[str]:
        checks: list[tuple[str, SecretStr | None, str]] = [
            ("SLACK_BOT_TOKEN", self.slack_bot_token, "xoxb-")
        ]
        if socket:
            checks.append(("SLACK_APP_TOKEN", self.slack_app_token, "xapp-"))
        problems = []
        for name, secret, prefix in checks:
            if _present(secret) and not secret.get_secret_value().startswith(prefix):  # type: ignore[union-attr]
                problems.append(
                    f"{name} does not start with '{prefix}': copy it from {_WHERE[name]}."
                )
        if not re.match(r"https?://", self.slack_api_url):
            problems.append("SLACK_API_URL must be an http(s) URL ending in /api/.")
        if sandbox:
            return problems  # the sandbox reads no DWS setting
        if self.dws_region and not re.fullmatch(r"[a-z]{2}(-[a-z0-9]+)+", self.dws_region):
            problems.append(
                f"DWS_REGION '{self.dws_region}' is not a region name like ap-southeast-1."
            )
        if self.dws_endpoint and not re.match(r"https?://[^/\s]+", self.dws_endpoint):
            problems.append("DWS_ENDPOINT must be a URL such as https://dws.example.com.")
        return problems


def _file_problems(path: Path) -> list[str]:
    """Why the audit log at `path` cannot be written, if it cannot.

    A missing directory is an error, not something to create: it usually means a volume that
    is not mounted, and a fresh, empty audit log would hide every request owed.
    """
    parent = path.parent
    if not parent.exists():
        return [
            f"SNAPCOPY_DB: the directory {parent} does not exist. Create it, or mount the "
            "volume that holds the audit log."
        ]
    if not parent.is_dir():
        return [f"SNAPCOPY_DB: {parent} is not a directory."]
    if path.is_dir():
        return [f"SNAPCOPY_DB: {path} is a directory; name the file, e.g. {path / 'snapcopy.db'}."]
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return [f"SNAPCOPY_DB: {path} is read-only for this user; snapcopy writes its audit log."]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [
            f"SNAPCOPY_DB: the directory {parent} is read-only for this user; snapcopy writes "
            "the audit log and its journal files there."
        ]
    return []


# An unknown variable with our own prefix is a typo; other tools use SLACK_* and DWS_* too, so
# only a near miss of one of ours is flagged there.
_OUR_PREFIX = "SNAPCOPY_"
_SHARED_PREFIXES = ("SLACK_", "DWS_")
# Names people reach for that difflib would not find.
_LIKELY = {
    "DWS_PROJECT_ID": "HUAWEICLOUD_SDK_PROJECT_ID",
    "DWS_AK": "HUAWEICLOUD_SDK_AK",
    "DWS_SK": "HUAWEICLOUD_SDK_SK",
}


def misspelt_variables(names: Iterable[str]) -> list[str]:
    """Start-up warnings for variables that look meant for snapcopy but name no setting, each
    with the closest setting's name (SNAPCOPY_POLL_SECOND → SNAPCOPY_POLL_SECONDS)."""
    known = [name.upper() for name in Settings.model_fields]
    warnings = []
    for name in sorted({name.upper() for name in names}):
        if name in known or not name.startswith((_OUR_PREFIX, *_SHARED_PREFIXES)):
            continue
        ours = name.startswith(_OUR_PREFIX)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6 if ours else 0.8)
        closest = _LIKELY.get(name) or (close[0] if close else None)
        if closest:
            warnings.append(
                f"{name} is not a snapcopy setting and is ignored: did you mean {closest}?"
            )
        elif ours:
            warnings.append(
                f"{name} is not a snapcopy setting and is ignored (see .env.example for the list)."
            )
    return warnings


def variables_set(environ: Mapping[str, str], dotenv: Path = Path(".env")) -> set[str]:
    """The names of the environment's variables and of those in the `.env` file."""
    names = set(environ)
    if dotenv.is_file():
        names |= set(dotenv_values(dotenv))
    return names


def _present(value: SecretStr | str | None) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value().strip())
    return bool(value and value.strip())


def _missing(name: str) -> str:
    where = _WHERE.get(name)
    return f"{name} is not set" + (f": find it in {where}." if where else ".")


def _describe_validation_error(error: ValidationError, *, prefix: str = "") -> list[str]:
    """One line per invalid field; the offending value is never printed (it may be a secret)."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        name = (prefix + location) if prefix else location.upper()
        problems.append(f"{name}: {item['msg']}.")
    return problems


def read_settings(**overrides: Any) -> tuple[Settings, list[str]]:
    """The settings, and the problems of values that did not validate.

    A malformed value (PORT=abc) must not hide the other problems, so its field falls back to
    its default and everything else is still read and checked.
    """
    try:
        return Settings(**overrides), []
    except ValidationError as error:
        fields = Settings.model_fields
        bad = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
        fallback = {name: fields[name].default for name in bad if name in fields}
        try:
            settings = Settings(**{**overrides, **fallback})
        except ValidationError:
            raise ConfigError(_describe_validation_error(error)) from None
        return settings, _describe_validation_error(error)


def load_settings(*, socket: bool = False, sandbox: bool = False, **overrides: Any) -> Settings:
    """Read the environment and `.env`; raise ConfigError listing every problem."""
    settings, problems = read_settings(**overrides)
    problems += settings.problems_for(socket=socket, sandbox=sandbox)
    if problems:
        raise ConfigError(problems)
    return settings


def load_all(
    *, socket: bool = False, sandbox: bool = False, **overrides: Any
) -> tuple[Settings, Policy]:
    """Settings and policy together, so that one message lists the problems of both."""
    settings, problems = read_settings(**overrides)
    problems += settings.problems_for(socket=socket, sandbox=sandbox)
    # Wherever SNAPCOPY_POLICY was set (the environment or .env), even when other settings
    # are missing.
    policy, policy_problems = policy_for(settings, sandbox=sandbox)
    problems += policy_problems
    if problems or policy is None:
        needs = None if sandbox else _sandbox_needs(settings, socket=socket)
        raise ConfigError(problems, sandbox_needs=needs)
    return settings, policy


def policy_for(settings: Settings, *, sandbox: bool) -> tuple[Policy | None, list[str]]:
    """The policy file, or its problems. The sandbox with no file where SNAPCOPY_POLICY's
    default points (and SNAPCOPY_POLICY not set) gets its own policy: anyone may request and
    anyone else approve."""
    path = settings.snapcopy_policy
    if sandbox and "snapcopy_policy" not in settings.model_fields_set and not path.exists():
        return sandbox_policy(), []
    try:
        return load_policy(path), []
    except ConfigError as error:
        return None, error.problems


def _sandbox_needs(settings: Settings, *, socket: bool) -> list[str]:
    """What `snapcopy serve --sandbox` would still lack with these settings."""
    _, policy_problems = policy_for(settings, sandbox=True)
    return settings.problems_for(socket=socket, sandbox=True) + policy_problems
