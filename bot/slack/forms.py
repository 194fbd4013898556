"""Slack payloads parsed once into typed objects; listeners work with these, not raw dicts."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from bot.domain import RequestRef, parse_request_id
from bot.slack.ids import Action, Block


class ModalMetadata(BaseModel):
    """`private_metadata` of the copy modal: ids only, never anything we trust for identity."""

    model_config = ConfigDict(extra="ignore")

    channel_id: str | None = None
    thread_ts: str | None = None
    request_id: int | None = None
    token: str | None = None  # the request's, beside its id (the deny modal)
    from_home: bool = False

    @field_validator("request_id", mode="before")
    @classmethod
    def _an_id_of_ours(cls, value: object) -> int | None:
        return parse_request_id(value) if value is not None else None

    def ref(self) -> RequestRef | None:
        """The request this form is about, as its buttons name it; None when it names none."""
        if self.request_id is None:
            return None
        return RequestRef(self.request_id, self.token or None)

    @classmethod
    def parse(cls, raw: str | None) -> ModalMetadata:
        try:
            return cls.model_validate(json.loads(raw or "{}"))
        except (ValueError, ValidationError):
            return cls()


class CopyModalInput(BaseModel):
    """What a person typed or picked in the copy modal, before validation."""

    snapshot_id: str = ""
    backup_name: str = ""
    description: str | None = None
    reason: str | None = None
    channel_id: str | None = None
    keep_until: date | None = None
    break_glass: bool = False

    @field_validator("keep_until", mode="before")
    @classmethod
    def _a_day_or_none(cls, value: object) -> date | None:
        try:
            return date.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None  # not what Slack's date picker sends: as if none was picked

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> CopyModalInput:
        values = view.get("state", {}).get("values", {})

        def element(block: Block, action: Action) -> dict[str, Any]:
            found: dict[str, Any] = values.get(block, {}).get(action) or {}
            return found

        typed = element(Block.SNAPSHOT_ID, Action.SNAPSHOT_ID).get("value") or ""
        picked = element(Block.PICK_SNAPSHOT, Action.PICK_SNAPSHOT).get("selected_option") or {}
        return cls(
            # A typed id wins over the picker: it is the more deliberate of the two.
            snapshot_id=typed.strip() or str(picked.get("value") or ""),
            backup_name=element(Block.BACKUP_NAME, Action.BACKUP_NAME).get("value") or "",
            description=element(Block.DESCRIPTION, Action.DESCRIPTION).get("value"),
            reason=element(Block.REASON, Action.REASON).get("value"),
            channel_id=element(Block.CHANNEL, Action.CHANNEL).get("selected_conversation"),
            keep_until=element(Block.KEEP_UNTIL, Action.KEEP_UNTIL).get("selected_date"),
            break_glass=bool(
                element(Block.BREAK_GLASS, Action.BREAK_GLASS).get("selected_options")
            ),
        )


def field_block(field: str) -> str:
    """The modal block to attach an error to, for a field name of the domain."""
    return {
        "snapshot_id": Block.SNAPSHOT_ID,
        "source_snapshot_id": Block.SNAPSHOT_ID,
        "backup_name": Block.BACKUP_NAME,
        "description": Block.DESCRIPTION,
        "reason": Block.REASON,
        "channel": Block.CHANNEL,
        "keep_until": Block.KEEP_UNTIL,
    }.get(field, Block.BACKUP_NAME)


def action_ref(body: dict[str, Any], *, on_root: bool = True) -> RequestRef | None:
    """The request a button names (`<id>.<token>`, or a bare id from before tokens), and, for
    a button that sits on the request's own message (`on_root`: Approve, Deny, Retry), the
    message it was clicked on; None when it names none."""
    try:
        value = str(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError):
        return None
    number, _, token = value.partition(".")
    request_id = parse_request_id(number)
    if request_id is None:
        return None
    container = body.get("container") or {}
    if container.get("type") != "message" or not on_root:
        return RequestRef(request_id, token or None)  # App Home: no message to check
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    message_ts = (body.get("message") or {}).get("ts") or container.get("message_ts")
    return RequestRef(request_id, token or None, channel, message_ts)
