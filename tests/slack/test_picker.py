"""The copy modal's snapshot picker (an external_select): while somebody types, the bot answers
with the project's automated snapshots that match, and never offers a manual one. A snapshot
picked there is what the request copies."""

from __future__ import annotations

from typing import Any

import pytest

from bot.dws.models import Snapshot
from bot.slack.ids import Action, Block
from tests import slackreq
from tests.flow import automated, manual, modal_values, request_named, submit_modal, timed
from tests.harness import REQUESTER, BotServer
from tests.slack_standin import SlackStandIn

OPTION_TEXT_LIMIT = 75  # Slack refuses longer option texts
PROD, ANALYTICS = "6f1c2b9e", "0b7e4c1d"  # how the seeded clusters' ids begin


def suggest(server: BotServer, value: str, user: str = REQUESTER) -> list[dict[str, Any]]:
    answer = timed(server.interact, slackreq.block_suggestion(user, Action.PICK_SNAPSHOT, value))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    options: list[dict[str, Any]] = answer.json()["options"]
    return options


def automated_of(snapshots: list[Snapshot], cluster: str | None = None) -> list[Snapshot]:
    return [
        snapshot
        for snapshot in snapshots
        if snapshot.is_automated and (cluster is None or snapshot.name.startswith(cluster))
    ]


def newest_first(snapshots: list[Snapshot]) -> list[str]:
    return [s.id for s in sorted(snapshots, key=lambda s: s.started or "", reverse=True)]


def values(options: list[dict[str, Any]]) -> list[str]:
    return [option["value"] for option in options]


def test_an_empty_query_lists_every_automated_snapshot_newest_first(
    server: BotServer, dws_snapshots: list[Snapshot]
) -> None:
    options = suggest(server, "")
    assert values(options) == newest_first(automated_of(dws_snapshots))
    assert len(options) == 6
    manual_ids = {s.id for s in dws_snapshots if not s.is_automated}
    assert manual_ids and not manual_ids & set(values(options))


@pytest.mark.parametrize(
    ("query", "cluster"),
    [
        ("dws-analytics", "dws-analytics"),
        ("DWS-PROD", "dws-prod"),
        ("  dws-prod ", "dws-prod"),
        (ANALYTICS, "dws-analytics"),
        ("dws-", None),
    ],
    ids=["cluster-name", "upper-case", "spaces-around", "cluster-id", "both"],
)
def test_typing_part_of_a_name_or_cluster_narrows_the_options(
    server: BotServer, dws_snapshots: list[Snapshot], query: str, cluster: str | None
) -> None:
    options = suggest(server, query)
    assert values(options) == newest_first(automated_of(dws_snapshots, cluster))


@pytest.mark.parametrize(
    "query",
    ["before-upgrade", "q3-close", "kept by hand", "no-such-cluster"],
    ids=["manual-name", "other-manual-name", "manual-description", "nothing-matches"],
)
def test_manual_snapshots_are_never_offered(
    server: BotServer, dws_snapshots: list[Snapshot], query: str
) -> None:
    assert suggest(server, query) == []


def test_a_manual_snapshot_named_like_the_query_is_left_out(
    server: BotServer, dws: Any, dws_snapshots: list[Snapshot]
) -> None:
    kept = dws.add_snapshot("dws-prod-kept-by-hand", "MANUAL")
    options = suggest(server, "dws-prod")
    assert values(options) == newest_first(automated_of(dws_snapshots, "dws-prod"))
    assert kept.id not in values(suggest(server, "kept-by-hand"))


def test_typing_part_of_a_snapshot_id_finds_that_snapshot(
    server: BotServer, dws_snapshots: list[Snapshot]
) -> None:
    wanted = automated(dws_snapshots)
    assert values(suggest(server, wanted.id.upper())) == [wanted.id]
    assert values(suggest(server, manual(dws_snapshots).id)) == []


def test_each_option_shows_name_cluster_date_and_size_and_carries_the_id(
    server: BotServer, dws_snapshots: list[Snapshot]
) -> None:
    by_id = {snapshot.id: snapshot for snapshot in dws_snapshots}
    options = suggest(server, "")
    assert options
    for option in options:
        snapshot = by_id[option["value"]]
        assert set(option) == {"text", "value"}
        assert option["text"]["type"] == "plain_text"
        text = option["text"]["text"]
        assert len(text) <= OPTION_TEXT_LIMIT
        # The cluster's name, as real DWS gives it in every list item.
        cluster = "dws-prod" if snapshot.name.startswith("dws-prod") else "dws-analytics"
        started = (snapshot.started or "")[:16].replace("T", " ")
        size = "180.4 GB" if cluster == "dws-prod" else "37.9 GB"
        assert text == f"{snapshot.name} · {cluster} · {started} · {size}"


def test_a_long_option_text_is_cut_to_what_slack_accepts(
    server: BotServer, dws: Any, dws_snapshots: list[Snapshot]
) -> None:
    long_name = "nightly-" + "x" * 56  # 64 characters, the longest name DWS allows
    added = dws.add_snapshot(long_name, "AUTOMATED", size=1234.5)  # the older type spelling
    options = [option for option in suggest(server, "nightly-") if option["value"] == added.id]
    assert len(options) == 1
    text = options[0]["text"]["text"]
    assert len(text) == OPTION_TEXT_LIMIT
    assert text.startswith(long_name + " · ")


def test_the_picker_answers_with_nothing_while_dws_refuses_and_recovers_after(
    server: BotServer, dws: Any, dws_snapshots: list[Snapshot]
) -> None:
    from bot.dws.standin import Fault

    refused = Fault("status", method="GET", path="snapshots", status=403, error_code="DWS.0015")
    dws.inject(refused)
    assert suggest(server, "") == []
    assert len(dws.requests) == 1, "a refusal is not retried"
    assert values(suggest(server, "")) == newest_first(automated_of(dws_snapshots))


# --- a modal submitted with a picked snapshot ----------------------------------------------------


def picked(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    return {
        Block.PICK_SNAPSHOT: {
            Action.PICK_SNAPSHOT: {
                "type": "external_select",
                "selected_option": {
                    "value": snapshot.id,
                    "text": {"type": "plain_text", "text": snapshot.name, "emoji": True},
                },
            }
        }
    }


def test_a_picked_snapshot_is_the_one_the_request_copies(
    server: BotServer, slack: SlackStandIn, dws: Any, dws_snapshots: list[Snapshot]
) -> None:
    offered = suggest(server, "dws-analytics")[0]["value"]
    snapshot = next(s for s in dws_snapshots if s.id == offered)
    form = modal_values("", "picked-copy", "from the picker") | picked(snapshot)

    answer = submit_modal(server, REQUESTER, form)

    assert answer.status_code == 200 and answer.text == "", answer.text
    request = request_named(server, "picked-copy")
    assert request.source_snapshot_id == snapshot.id
    root = slack.wait_for("chat.postMessage", lambda c: f"#{request.id}" in c["text"])
    assert snapshot.id in root["text"]
    assert dws.copy_calls == 0, "picking asks for approval like typing does"


def test_a_typed_id_wins_over_the_picked_one(
    server: BotServer, slack: SlackStandIn, dws_snapshots: list[Snapshot]
) -> None:
    prod, analytics = automated_of(dws_snapshots, "dws-prod")[0], automated_of(dws_snapshots)[-1]
    assert prod.id != analytics.id
    form = modal_values(f" {prod.id} ", "typed-wins") | picked(analytics)
    answer = submit_modal(server, REQUESTER, form)
    assert answer.text == "", answer.text
    assert request_named(server, "typed-wins").source_snapshot_id == prod.id


def test_a_manual_snapshot_smuggled_into_the_picker_is_refused_at_the_field(
    server: BotServer, dws_snapshots: list[Snapshot]
) -> None:
    form = modal_values("", "smuggled") | picked(manual(dws_snapshots))
    body = submit_modal(server, REQUESTER, form).json()
    assert body["response_action"] == "errors"
    assert "only automated" in body["errors"][Block.SNAPSHOT_ID]
    assert server.requests() == []
