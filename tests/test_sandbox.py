"""`snapcopy serve --sandbox`: the whole flow against the in-process DWS stand-in, with no cloud
credentials, and every message it posts says "sandbox"."""

from __future__ import annotations

import json
from typing import Any

from bot.domain import State
from bot.slack.ids import Action, Block, Callback
from bot.slack.sandbox import MARK
from tests import slackreq
from tests.flow import click, request_named, submit_modal, wait_for_reply, wait_state
from tests.harness import APPROVER, OUTSIDER, REQUESTER
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
