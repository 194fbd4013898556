"""Several regions in one bot (DWS_REGIONS): each region a DWS stand-in of its own project.

The picker lists both regions' snapshots with the region shown, a pasted ID is found in
whichever region holds it and copied there, the audit row keeps the region, and a region that
does not answer degrades the picker with a note without blocking the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.domain import State
from bot.dws.standin import DwsStandIn
from bot.slack.ids import Action
from tests import slackreq
from tests.conftest import StartServer
from tests.flow import ask_for_copy, click, timed, wait_state
from tests.harness import APPROVER, DWS_AK, DWS_SK, REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

SINGAPORE, BEIJING = "ap-southeast-1", "cn-north-4"
BEIJING_PROJECT = "5e4d3c2b1a0918273645546372819000"


@pytest.fixture
def beijing() -> Iterator[DwsStandIn]:
    standin = DwsStandIn(DWS_AK, DWS_SK, BEIJING_PROJECT, copy_delay=0.3).start()
    standin.add_snapshot("bj-prod-nightly", "AUTO", "1a2b3c4d-0000-4000-8000-00000000beef")
    try:
        yield standin
    finally:
        standin.stop()


def regions_env(bot_env: dict[str, str], dws: Any, beijing_url: str) -> dict[str, str | None]:
    singapore = f"{SINGAPORE}={bot_env['HUAWEICLOUD_SDK_PROJECT_ID']}@{dws.url}"
    return {
        "DWS_REGIONS": f"{singapore},{BEIJING}={BEIJING_PROJECT}@{beijing_url}",
        "DWS_ENDPOINT": None,
        "HUAWEICLOUD_SDK_PROJECT_ID": None,  # each region names its own project
    }


def suggest(server: BotServer, value: str = "") -> list[dict[str, Any]]:
    answer = timed(
        server.interact, slackreq.block_suggestion(REQUESTER, Action.PICK_SNAPSHOT, value)
    )
    options: list[dict[str, Any]] = answer.json()["options"]
    return options


def test_the_picker_lists_every_region_with_the_region_shown(
    start_server: StartServer, bot_env: dict[str, str], dws: Any, beijing: DwsStandIn
) -> None:
    server = start_server(env_overrides=regions_env(bot_env, dws, beijing.url))

    texts = [option["text"]["text"] for option in suggest(server)]

    assert any(text.startswith(f"bj-prod-nightly · {BEIJING} ·") for text in texts)
    assert any(f" · {SINGAPORE} · dws-prod" in text for text in texts)


def test_a_pasted_id_is_copied_in_the_region_that_holds_it(
    start_server: StartServer,
    bot_env: dict[str, str],
    slack: SlackStandIn,
    dws: Any,
    beijing: DwsStandIn,
) -> None:
    server = start_server(env_overrides=regions_env(bot_env, dws, beijing.url))
    source = next(s for s in beijing.snapshots if s.name == "bj-prod-nightly")

    request = ask_for_copy(server, slack, REQUESTER, source.id, "bj-keep")
    assert request.region == BEIJING
    click(server, APPROVER, Action.APPROVE, request)
    done = wait_state(server, request, State.SUCCEEDED)

    assert (beijing.copy_calls, dws.copy_calls) == (1, 0)
    assert [s.id for s in beijing.snapshots if s.name == "bj-keep"] == [done.new_snapshot_id]
    followed = [r for r in beijing.requests if r.method == "GET" and done.new_snapshot_id in r.path]
    assert followed, "the copy is followed in its own region"


def test_a_region_that_does_not_answer_degrades_the_picker_with_a_note(
    start_server: StartServer, bot_env: dict[str, str], dws: Any
) -> None:
    server = start_server(env_overrides=regions_env(bot_env, dws, "http://127.0.0.1:9"))

    options = suggest(server)

    assert any(f" · {SINGAPORE} · " in option["text"]["text"] for option in options)
    note = options[-1]
    assert BEIJING in note["text"]["text"] and "did not answer" in note["text"]["text"]


def test_the_single_region_settings_keep_working(
    start_server: StartServer, bot_env: dict[str, str], slack: SlackStandIn, dws: Any
) -> None:
    server = start_server()
    source = next(s for s in dws.snapshots if s.is_automated)

    request = ask_for_copy(server, slack, REQUESTER, source.id, "one-region")

    assert request.region is None
    texts = [option["text"]["text"] for option in suggest(server)]
    assert not any(SINGAPORE in text for text in texts), "one region: no region column"
