"""bot.config: settings from the environment and `.env`, and the policy file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.database import SqliteFile
from bot.domain import ROLE_IMPLIES, Role
from bot.errors import ConfigError
from bot.policy import Policy, load_policy, parse_policy
from bot.settings import SLACK_API_DEFAULT, Settings, load_all, load_settings
from tests.harness import POLICY_TOML, write_policy

REPO_ROOT = Path(__file__).resolve().parent.parent

HTTP_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-1-2-botTokenValue",
    "SLACK_SIGNING_SECRET": "signingSecretValue0123",
    "HUAWEICLOUD_SDK_AK": "AKVALUE0123",
    "HUAWEICLOUD_SDK_SK": "skValue0123456789",
    "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef",
    "DWS_REGION": "ap-southeast-1",
}
SECRETS = ("xoxb-1-2-botTokenValue", "signingSecretValue0123", "skValue0123456789")


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def problems(**kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    return caught.value.problems


# --- settings ------------------------------------------------------------------------------------


def test_complete_http_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, HTTP_ENV)

    settings = load_settings()

    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == HTTP_ENV["SLACK_BOT_TOKEN"]
    assert settings.dws_region == "ap-southeast-1"


def test_defaults_match_the_contract() -> None:
    settings = Settings()

    assert settings.slack_api_url == SLACK_API_DEFAULT == "https://slack.com/api/"
    assert settings.database == SqliteFile(Path("./snapcopy.db"))
    assert settings.snapcopy_policy == Path("./snapcopy.toml")
    assert settings.port == 3000
    assert settings.snapcopy_log_level == "INFO"


@pytest.mark.parametrize(
    ("mode", "needed", "not_needed"),
    [
        (
            {},
            ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "HUAWEICLOUD_SDK_AK", "DWS_REGION"],
            ["SLACK_APP_TOKEN"],
        ),
        ({"socket": True}, ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"], ["SLACK_SIGNING_SECRET"]),
        (
            {"sandbox": True},
            ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"],
            ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "DWS_REGION"],
        ),
    ],
    ids=["http", "socket", "sandbox"],
)
def test_each_mode_asks_for_what_it_needs(
    mode: dict[str, bool], needed: list[str], not_needed: list[str]
) -> None:
    text = "\n".join(problems(**mode))

    for name in needed:
        assert name in text
    for name in not_needed:
        assert name not in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SLACK_BOT_TOKEN": "xoxp-1-2-userToken"}, "SLACK_BOT_TOKEN does not start with 'xoxb-'"),
        ({"DWS_REGION": "eu_west_101"}, "DWS_REGION 'eu_west_101'"),
        ({"DWS_ENDPOINT": "dws.example.com"}, "DWS_ENDPOINT must be a URL"),
        ({"SLACK_API_URL": "slack.example.com/api/"}, "SLACK_API_URL must be an http(s) URL"),
        ({"PORT": "0"}, "PORT"),
        ({"PORT": "http"}, "PORT"),
        ({"SNAPCOPY_POLL_SECONDS": "0"}, "SNAPCOPY_POLL_SECONDS"),
        ({"DWS_READ_TIMEOUT": "soon"}, "DWS_READ_TIMEOUT"),
        ({"SNAPCOPY_LOG_LEVEL": "LOUD"}, "SNAPCOPY_LOG_LEVEL"),
    ],
)
def test_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, str], expected: str
) -> None:
    set_env(monkeypatch, HTTP_ENV | change)

    found = problems()

    assert len(found) == 1
    assert expected in found[0]


def test_one_bad_value_does_not_hide_the_missing_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "abc")
    monkeypatch.setenv("SNAPCOPY_POLL_SECONDS", "-1")

    found = "\n".join(problems())

    for named in ("PORT", "SNAPCOPY_POLL_SECONDS", "SLACK_BOT_TOKEN", "HUAWEICLOUD_SDK_AK"):
        assert named in found, found


@pytest.mark.parametrize("level", ["debug", "Warning", " error "])
def test_the_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    set_env(monkeypatch, HTTP_ENV | {"SNAPCOPY_LOG_LEVEL": level})

    assert load_settings().snapcopy_log_level == level.strip().upper()


def test_the_policy_named_in_dotenv_is_read_even_when_settings_are_missing(
    isolated: Path,
) -> None:
    elsewhere = write_policy(isolated / "team-policy.toml", '[roles]\nrequestor = ["U0A"]\n')
    (isolated / ".env").write_text(f"SNAPCOPY_POLICY={elsewhere}\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_all()

    found = "\n".join(caught.value.problems)
    assert "team-policy.toml: unknown key 'roles.requestor'" in found
    assert "snapcopy.toml does not exist" not in found


def test_a_missing_cloud_setting_points_at_the_sandbox() -> None:
    with pytest.raises(ConfigError) as caught:
        load_all()

    assert "snapcopy serve --sandbox" in caught.value.render()


def test_explicit_endpoint_replaces_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in HTTP_ENV.items() if k != "DWS_REGION"}
    set_env(monkeypatch, env | {"DWS_ENDPOINT": "https://dws.example.com"})

    assert load_settings().dws_endpoint == "https://dws.example.com"


def test_problems_never_contain_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, HTTP_ENV | {"SLACK_BOT_TOKEN": "xoxp-9-9-leakedUserToken", "PORT": "x"})

    with pytest.raises(ConfigError) as caught:
        load_settings()

    rendered = caught.value.render()
    for secret in (*SECRETS, "xoxp-9-9-leakedUserToken"):
        assert secret not in rendered
    assert rendered.startswith("snapcopy cannot start:\n  - ")


def test_dotenv_in_the_working_directory_is_read(isolated: Path) -> None:
    lines = [f"{name}={value}" for name, value in HTTP_ENV.items()]
    (isolated / ".env").write_text("\n".join(lines) + "\n")

    settings = load_settings()

    assert settings.huaweicloud_sdk_project_id == HTTP_ENV["HUAWEICLOUD_SDK_PROJECT_ID"]


def test_environment_wins_over_dotenv(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated / ".env").write_text("DWS_REGION=cn-north-4\n")
    monkeypatch.setenv("DWS_REGION", "ap-southeast-3")

    assert Settings().dws_region == "ap-southeast-3"


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, HTTP_ENV | {"PORT": "not-a-port"})

    assert load_settings(port=8080).port == 8080


# --- policy --------------------------------------------------------------------------------------


def test_default_test_policy_parses() -> None:
    policy = parse_policy(POLICY_TOML)

    assert policy.roles.requester == ("U0REQUEST", "S0ONCALL")
    assert policy.roles.approver == ("U0APPROVE",)
    assert policy.roles.admin == ("U0ADMIN",)
    assert policy.approval.required is True
    assert policy.approval.allow_self_approval is False


def test_empty_policy_gets_the_safe_defaults() -> None:
    policy = parse_policy("")

    assert policy == Policy()
    assert policy.approval.required is True
    assert policy.approval.allow_self_approval is False
    assert policy.approval.expires_after_minutes == 240
    assert policy.roles.holders(Role.APPROVER) == ()


def test_example_policy_file_parses() -> None:
    example = REPO_ROOT / "snapcopy.example.toml"

    policy = load_policy(example)

    assert policy.roles.holders(Role.REQUESTER)
    assert policy.roles.holders(Role.APPROVER)
    assert policy.roles.holders(Role.ADMIN)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[roles\n", "is not valid TOML"),
        ('[roles]\nrequestor = ["U0A"]\n', "unknown key 'roles.requestor'"),
        ('[rolez]\nrequester = ["U0A"]\n', "unknown key 'rolez'"),
        ('[roles]\nrequester = ["alice"]\n', "'alice' is not a Slack user ID"),
        ('[roles]\napprover = ["u0lowercase"]\n', "'u0lowercase'"),
        ('[roles]\nadmin = ["U0ADMIN", 7]\n', "'roles.admin'"),
        ('[approval]\nrequired = "yes"\n', "'approval.required'"),
        ("[approval]\nallow_self_approval = 1\n", "'approval.allow_self_approval'"),
        ("[approval]\nexpires_after_minutes = -5\n", "'approval.expires_after_minutes'"),
        ("[approval]\nexpires_after_minutes = 1e10\n", "'approval.expires_after_minutes'"),
        ("[approval]\napprovals = 0\n", "'approval.approvals'"),
        ("[approval]\napprovals = 1.5\n", "'approval.approvals'"),
        ("[approval]\nremind_after_minutes = nan\n", "'approval.remind_after_minutes'"),
        ('[approval]\nnotify = ["bob"]\n', "'bob' is not a Slack user ID"),
        ("[[rules]]\napprovals = 2\n", "[[rules]] #1 (line 1) 'clusters'"),
        ("[[rules]]\nclusters = []\n", "[[rules]] #1 (line 1) 'clusters'"),
        ('[[rules]]\nclusters = ["prod-[a"]\n', "'prod-[a' is not a cluster name glob"),
        ('[[rules]]\nclusters = ["prod *"]\n', "is not a cluster name glob"),
        ('\n[[rules]]\nclusters = ["x"]\ncluster = ["y"]\n', "#1 (line 2) unknown key 'cluster'"),
        (
            '[[rules]]\nclusters = ["*"]\n\n[[rules]]\nclusters = ["prod-*"]\n',
            "[[rules]] #2 (line 4) can never match: rule 1 before it matches every cluster",
        ),
        (
            '[[rules]]\nclusters = ["prod-*", "dev"]\n[[rules]]  # again\nclusters = ["dev"]\n',
            "[[rules]] #2 (line 3) can never match: earlier rules already match",
        ),
    ],
)
def test_malformed_policy_is_explained(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, source="policy.toml")

    message = "\n".join(caught.value.problems)
    assert message.startswith("policy.toml")
    assert expected in message


def test_a_single_id_where_a_list_is_expected_is_a_list_of_one() -> None:
    policy = parse_policy('[roles]\nadmin = "U0ADMIN"\n[approval]\nnotify = "S0DBA"\n')

    assert policy.roles.admin == ("U0ADMIN",)
    assert policy.approval.notify == ("S0DBA",)


RULES = """\
[roles]
approver = ["U0APPROVE"]
admin = ["U0ADMIN"]

[approval]
expires_after_minutes = 240
notify = ["S0DBA"]

[[rules]]
clusters = ["prod-*", "0b7e4c1d-8f2a-4e6b-a3d5-9c8b7a6f5e4d"]
approvers = ["S0PRODDBA"]
approvals = 2
remind_after_minutes = 30

[[rules]]
clusters = ["dev-?"]
required = false
"""


@pytest.mark.parametrize(
    ("cluster_id", "cluster_name", "rule", "approvals", "approvers", "required"),
    [
        (None, "prod-east", 1, 2, ("S0PRODDBA",), True),
        (None, "PROD-west", 1, 2, ("S0PRODDBA",), True),
        ("0B7E4C1D-8F2A-4E6B-A3D5-9C8B7A6F5E4D", "analytics", 1, 2, ("S0PRODDBA",), True),
        (None, "dev-1", 2, 1, ("U0APPROVE",), False),
        (None, "dev-10", None, 1, ("U0APPROVE",), True),
        (None, None, None, 1, ("U0APPROVE",), True),
    ],
)
def test_the_first_rule_matching_the_cluster_decides_how_it_is_approved(
    cluster_id: str | None,
    cluster_name: str | None,
    rule: int | None,
    approvals: int,
    approvers: tuple[str, ...],
    required: bool,
) -> None:
    chosen = parse_policy(RULES).for_cluster(cluster_id, cluster_name)

    assert chosen.rule == rule
    assert chosen.settings.approvals == approvals
    assert chosen.approvers == approvers
    assert chosen.settings.required is required
    # Keys a rule does not set come from [approval].
    assert chosen.settings.expires_after_minutes == 240
    assert chosen.notify == ("S0DBA",)


def test_notify_defaults_to_the_approvers_of_the_request() -> None:
    policy = parse_policy(RULES.replace('notify = ["S0DBA"]\n', ""))

    assert policy.for_cluster(None, "prod-1").notify == ("S0PRODDBA",)
    assert policy.for_cluster(None, "other").notify == ("U0APPROVE",)


@pytest.mark.parametrize("slack_id", ["U01ALICE", "W0123ABC", "S0DWSONCALL"])
def test_user_and_group_ids_are_accepted(slack_id: str) -> None:
    policy = parse_policy(f'[roles]\nrequester = ["{slack_id}"]\n')

    assert policy.roles.requester == (slack_id,)


def test_missing_policy_file_tells_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "absent.toml")

    assert "snapcopy.example.toml" in caught.value.problems[0]


@pytest.mark.parametrize(
    ("role", "implied"),
    [
        (Role.ADMIN, {Role.ADMIN, Role.APPROVER, Role.REQUESTER}),
        (Role.APPROVER, {Role.APPROVER, Role.REQUESTER}),
        (Role.REQUESTER, {Role.REQUESTER}),
    ],
)
def test_roles_nest(role: Role, implied: set[Role]) -> None:
    assert ROLE_IMPLIES[role] == implied


def test_every_role_implies_itself_and_nothing_above_it() -> None:
    order = [Role.REQUESTER, Role.APPROVER, Role.ADMIN]
    for rank, role in enumerate(order):
        assert ROLE_IMPLIES[role] == set(order[: rank + 1])


# --- both together -------------------------------------------------------------------------------


def test_load_all_reports_settings_and_policy_problems_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_env(monkeypatch, HTTP_ENV | {"DWS_REGION": "Nowhere"})
    write_policy(tmp_path / "snapcopy.toml", '[roles]\nrequester = ["alice"]\n')

    with pytest.raises(ConfigError) as caught:
        load_all()

    assert len(caught.value.problems) == 2
    assert "DWS_REGION" in caught.value.problems[0]
    assert "'alice'" in caught.value.problems[1]


def test_load_all_finds_the_policy_through_the_environment_even_when_settings_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "elsewhere.toml", "[roles\n")
    monkeypatch.setenv("SNAPCOPY_POLICY", str(policy))

    with pytest.raises(ConfigError) as caught:
        load_all()

    assert any("elsewhere.toml is not valid TOML" in line for line in caught.value.problems)


def test_load_all_returns_settings_and_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_env(monkeypatch, HTTP_ENV)
    write_policy(tmp_path / "snapcopy.toml", POLICY_TOML)

    settings, policy = load_all()

    assert settings.port == 3000
    assert policy.roles.approver == ("U0APPROVE",)
