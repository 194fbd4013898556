"""`snapcopy serve --sandbox`: the whole flow against the in-process DWS stand-in, with no cloud
credentials, and every message it posts says "sandbox"."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from bot.domain import State
from bot.errors import ConfigError
from bot.policy import EXAMPLE_IDS, load_policy, parse_policy
from bot.settings import load_all
from bot.slack.ids import Action, Block, Callback
from bot.slack.sandbox import MARK, OPEN_POLICY
from tests import slackreq
from tests.flow import click, request_named, submit_modal, wait_for_reply, wait_state
from tests.harness import APPROVER, OUTSIDER, REPO_ROOT, REQUESTER
from tests.slack_standin import SlackStandIn

NO_CLOUD = {
    "HUAWEICLOUD_SDK_AK": None,
    "HUAWEICLOUD_SDK_SK": None,
    "HUAWEICLOUD_SDK_PROJECT_ID": None,
    "DWS_ENDPOINT": None,
}


def test_the_sandbox_copies_with_no_cloud_account_and_marks_every_message(
    start_server: Any, slack: SlackStandIn, slack_only_env: dict[str, str]
) -> None:
    server = start_server(slack_only_env, env_overrides=NO_CLOUD, args=("--sandbox",))
    assert server.health()["sandbox"] is True

    suggested = server.interact(slackreq.block_suggestion(REQUESTER, Action.PICK_SNAPSHOT, ""))
    options = suggested.json()["options"]
    assert options, "the sandbox comes with automated snapshots to pick from"
    picked = options[0]
    values = {
        Block.PICK_SNAPSHOT: {
            Action.PICK_SNAPSHOT: {"type": "external_select", "selected_option": picked}
        },
        Block.SNAPSHOT_ID: {Action.SNAPSHOT_ID: ""},
        Block.BACKUP_NAME: {Action.BACKUP_NAME: "sandbox-try"},
    }
    answer = submit_modal(server, REQUESTER, values)
    assert answer.status_code == 200 and answer.text == "", answer.text
    request = request_named(server, "sandbox-try")
    assert request.source_snapshot_id == picked["value"]
    request = server.wait_for_request(request.id, State.PENDING_APPROVAL)
    slack.wait_for("chat.postMessage", lambda c: "sandbox-try" in c["text"])
    while request.message_ts is None:  # the click comes from the message as posted
        time.sleep(0.02)
        request = server.store.require(request.id)

    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED, timeout=20)
    wait_for_reply(slack, done, "is AVAILABLE")
    helped = server.command(REQUESTER, "help").json()
    assert helped["text"].startswith(MARK)
    server.command(REQUESTER, "roles", response_url=slack.response_url("roles"))
    roles = slack.wait_for("response_url", lambda c: "Your roles" in c["text"])

    posted = [
        call
        for method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
        for call in slack.calls(method)
    ]
    assert len(posted) >= 4
    for call in [*posted, roles]:
        assert call["text"].startswith(MARK), call["text"]

    # Refusals go through Bolt's per-request machinery (a response URL, an ephemeral message):
    # they are marked too.
    server.command(OUTSIDER, "", response_url=slack.response_url("refused"))
    refused = slack.wait_for("response_url", lambda c: "requester role" in c["text"])
    assert refused["text"].startswith(MARK), refused["text"]
    click(server, OUTSIDER, Action.APPROVE, done)
    ephemeral = slack.wait_for(
        "chat.postEphemeral", lambda c: c["user"] == OUTSIDER and "approver role" in c["text"]
    )
    assert ephemeral["text"].startswith(MARK), ephemeral["text"]

    server.command(REQUESTER, "", response_url=slack.response_url("open"))
    opened = slack.wait_for("views.open", lambda c: c["view"]["callback_id"] == Callback.COPY_MODAL)
    assert "sandbox" in json.dumps(opened["view"]), "the form says it is the sandbox too"


# --- the first time: no policy file yet (issue 25) ------------------------------------------------

ANYONE = "U0ANYONE"  # in no policy at all
SOMEONE_ELSE = "U0SOMEONE"


def test_the_sandbox_without_a_policy_file_lets_anyone_ask_and_anyone_else_approve(
    start_server: Any, slack: SlackStandIn, slack_only_env: dict[str, str], isolated: Any
) -> None:
    """Regression: `snapcopy serve --sandbox` with no policy file stopped with "policy file
    ./snapcopy.toml does not exist", so the sandbox never worked the first time."""
    (isolated / "snapcopy.toml").unlink()  # the default path: nothing there
    server = start_server(
        slack_only_env, env_overrides=NO_CLOUD | {"SNAPCOPY_POLICY": None}, args=("--sandbox",)
    )
    said = [r["message"] for r in server.log_records() if r["level"] == "WARNING"]
    assert any("anyone may request a copy and anyone else may approve it" in m for m in said)

    suggested = server.interact(slackreq.block_suggestion(ANYONE, Action.PICK_SNAPSHOT, ""))
    values = {
        Block.PICK_SNAPSHOT: {
            Action.PICK_SNAPSHOT: {
                "type": "external_select",
                "selected_option": suggested.json()["options"][0],
            }
        },
        Block.SNAPSHOT_ID: {Action.SNAPSHOT_ID: ""},
        Block.BACKUP_NAME: {Action.BACKUP_NAME: "first-try"},
    }
    answer = submit_modal(server, ANYONE, values)
    assert answer.status_code == 200 and answer.text == "", answer.text
    request = request_named(server, "first-try")
    slack.wait_for("chat.postMessage", lambda c: "first-try" in c["text"])
    while request.message_ts is None:
        time.sleep(0.02)
        request = server.store.require(request.id)

    click(server, ANYONE, Action.APPROVE, request)  # their own: somebody else must
    slack.wait_for("chat.postEphemeral", lambda c: c["user"] == ANYONE)
    assert server.store.require(request.id).state == State.PENDING_APPROVAL
    click(server, SOMEONE_ELSE, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED, timeout=20)
    wait_for_reply(slack, done, "is AVAILABLE")

    server.command(SOMEONE_ELSE, "roles", response_url=slack.response_url("roles"))
    roles = slack.wait_for("response_url", lambda c: "Your roles" in c["text"])
    assert "the sandbox runs without a policy file" in roles["text"]
    posted = [
        call
        for method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
        for call in slack.calls(method)
    ]
    for call in [*posted, roles]:
        assert call["text"].startswith(f"{MARK} {OPEN_POLICY} "), call["text"]
        assert "<@*>" not in json.dumps(call.params)
    root = next(c for c in slack.calls("chat.postMessage") if "blocks" in c.params)
    assert "anyone but the requester" in json.dumps(root["blocks"])
    assert OPEN_POLICY in json.dumps(root["blocks"])


def test_a_policy_file_named_but_missing_still_stops_the_sandbox(isolated: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_all(
            sandbox=True,
            slack_bot_token="xoxb-1",
            slack_signing_secret="s",
            snapcopy_policy=isolated / "team.toml",
        )
    assert "team.toml does not exist" in caught.value.render()


def test_without_the_sandbox_a_missing_policy_file_still_stops_start_up(isolated: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_all(slack_bot_token="xoxb-1", slack_signing_secret="s")
    assert "snapcopy.toml does not exist" in caught.value.render()


def test_the_hint_says_what_the_sandbox_still_needs() -> None:
    """Regression: the hint said the sandbox "needs only the Slack settings" whatever was
    missing, and a sandbox with no policy file could not start at all."""
    with pytest.raises(ConfigError) as caught:
        load_all()

    hint = caught.value.render().split("No cloud account yet?")[1]
    assert "needs only" not in hint
    assert "it would still need the fixes above to: " in hint
    assert "SLACK_BOT_TOKEN is not set; SLACK_SIGNING_SECRET is not set." in hint
    assert "HUAWEICLOUD_SDK_AK" not in hint and "snapcopy.toml" not in hint


def test_the_hint_says_when_the_sandbox_would_start_now() -> None:
    with pytest.raises(ConfigError) as caught:
        load_all(slack_bot_token="xoxb-1", slack_signing_secret="s")

    rendered = caught.value.render()
    assert "snapcopy.toml does not exist" in rendered  # serving for real needs it
    assert rendered.endswith("with these settings it would start.")


# --- the example policy's made-up IDs ------------------------------------------------------------

EXAMPLE = REPO_ROOT / "snapcopy.example.toml"


def test_the_example_ids_are_the_example_files_and_the_readmes() -> None:
    ids = re.compile(r'"([UWS][A-Z0-9]{2,})"')
    in_example = set(ids.findall(EXAMPLE.read_text(encoding="utf-8")))
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    in_readme = set(ids.findall(readme.split("## The policy file")[1].split("```")[1]))
    assert in_example | in_readme == EXAMPLE_IDS


def test_the_example_policy_copied_as_is_warns_that_nobody_here_can_approve() -> None:
    [warning] = load_policy(EXAMPLE).warnings()

    assert "U02BOB" in warning and "U03CAROL" in warning and "S0PRODDBA" in warning
    assert "made-up IDs" in warning and "nobody in this workspace can approve" in warning


def test_a_policy_with_one_example_id_left_says_so_without_claiming_nobody_can_approve() -> None:
    policy = parse_policy('[roles]\nrequester = ["U01ALICE", "U0REAL"]\napprover = ["U0BOSS"]\n')
    [warning] = policy.warnings()
    assert warning.startswith("U01ALICE are snapcopy.example.toml's made-up IDs")
    assert "nobody" not in warning


def test_start_up_warns_of_the_example_policys_ids(
    start_server: Any, slack_only_env: dict[str, str], dws: Any
) -> None:
    server = start_server(env_overrides={"SNAPCOPY_POLICY": str(EXAMPLE)})

    said = [r["message"] for r in server.log_records() if r["level"] == "WARNING"]
    assert any("made-up IDs" in m and "nobody in this workspace can approve" in m for m in said)
