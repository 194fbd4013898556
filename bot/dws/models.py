"""The answers of the DWS snapshot API, as pydantic models, and the result of a copy.

The models ignore fields they do not name: DWS adds fields over time, and a new one must not break
a copy. The official SDK's models require none of their fields, and real answers do hold nulls,
so only the id is required; a null text field reads as empty. A list is read item by item
(`DwsClient.list_snapshots`), so one odd item cannot hide the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class SnapshotStatus(StrEnum):
    """Statuses DWS reports; `Snapshot.status` stays a plain string so a new one is not an error."""

    CREATING = "CREATING"
    AVAILABLE = "AVAILABLE"
    UNAVAILABLE = "UNAVAILABLE"
    RESTORING = "RESTORING"
    FROZEN = "FROZEN"  # the account is in arrears
    POLICE_FROZEN = "POLICE_FROZEN"  # frozen by the provider for a compliance reason


# DWS documents AUTO; some pages and older regions say AUTOMATED.
AUTOMATED_TYPES = frozenset({"AUTO", "AUTOMATED"})


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Snapshot(_Answer):
    id: str
    name: str = ""
    description: str = ""
    started: str | None = None
    finished: str | None = None
    size: float | None = None
    status: str = ""
    type: str = ""
    cluster_id: str | None = None
    cluster_name: str | None = None

    @field_validator("name", "description", "status", "type", mode="before")
    @classmethod
    def _null_text_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @property
    def is_automated(self) -> bool:
        """Only automated snapshots can be copied; the copy itself is MANUAL."""
        return self.type.upper() in AUTOMATED_TYPES


class SnapshotEnvelope(_Answer):
    snapshot: Snapshot


class SnapshotList(_Answer):
    """The list answer before its items are read, one by one."""

    snapshots: list[Any] | None = None
    count: int | None = None


class CopyResponse(_Answer):
    snapshot_id: str


@dataclass(frozen=True)
class CopiedSnapshot:
    """The copy a `copy_once` call made: its id, and the X-Request-Id of DWS's answer."""

    snapshot_id: str
    request_id: str | None
