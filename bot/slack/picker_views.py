"""Block Kit of the modal's snapshot picker: one option per automated snapshot, and a note for
the regions that did not answer."""

from __future__ import annotations

from typing import Any

from bot.dws import Listed


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def snapshot_option(listed: Listed, *, show_region: bool = False) -> dict[str, Any]:
    """One picker entry: name, cluster, date and size (and the region, when there are
    several) in the 75 characters Slack allows."""
    snapshot = listed.snapshot
    cluster = snapshot.cluster_name or (snapshot.cluster_id or "")[:8]
    started = (snapshot.started or "")[:16].replace("T", " ")
    size = f"{snapshot.size:g} GB" if snapshot.size is not None else "size ?"
    text = f"{snapshot.name} · {cluster} · {started} · {size}"
    if show_region:
        text = f"{snapshot.name} · {listed.region} · {cluster} · {started} · {size}"
    return {"text": _plain(text[:75]), "value": snapshot.id}


UNAVAILABLE_VALUE = "unavailable"


def unavailable_regions_option(regions: list[str]) -> dict[str, Any]:
    """A note at the end of the picker: whose snapshots are missing, and why."""
    text = f"⚠ {', '.join(regions)} did not answer: its snapshots are not listed"
    return {"text": _plain(text[:75]), "value": UNAVAILABLE_VALUE}
