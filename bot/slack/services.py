"""What the listeners call into, handed to every `register()`; nothing Slack-specific inside."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import SnapshotCatalog
from bot.incident import Incident
from bot.lifecycle import CopyService
from bot.retention import Retention
from bot.roles import RoleResolver
from bot.slack.deferred import AfterAck
from bot.store import Store


@dataclass(frozen=True)
class Services:
    copies: CopyService
    retention: Retention
    incident: Incident
    store: Store
    roles: RoleResolver
    catalog: SnapshotCatalog
    after_ack: AfterAck
    sandbox: bool = False
