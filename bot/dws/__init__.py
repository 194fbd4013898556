"""The GaussDB(DWS) snapshot API: signing, a careful client, its models and errors.

Nothing here knows about Slack. `standin` is a local DWS for tests and the sandbox; import it
from `bot.dws.standin` directly so the bot does not load it unless asked.
"""

from bot.dws.client import DwsClient, RetryPolicy, build_http_client
from bot.dws.errors import (
    DwsError,
    DwsTimeout,
    DwsTransportError,
    MalformedResponse,
)
from bot.dws.models import (
    Cluster,
    CopiedSnapshot,
    CopyResponse,
    Job,
    JobStatus,
    Snapshot,
    SnapshotEnvelope,
    SnapshotList,
    SnapshotPolicy,
    SnapshotStatistics,
    SnapshotStatus,
)
from bot.dws.regional import Listed, RegionalDws
from bot.dws.regions import ENDPOINTS, DwsTarget, UnknownRegion, endpoint_for, parse_regions
from bot.dws.signer import AkSkAuth
from bot.dws.validation import (
    InvalidInput,
    find_snapshot_id,
    validate_backup_name,
    validate_description,
    validate_snapshot_id,
)

__all__ = [
    "AkSkAuth",
    "Cluster",
    "CopiedSnapshot",
    "CopyResponse",
    "DwsClient",
    "DwsError",
    "DwsTarget",
    "DwsTimeout",
    "DwsTransportError",
    "ENDPOINTS",
    "InvalidInput",
    "Job",
    "JobStatus",
    "Listed",
    "MalformedResponse",
    "RegionalDws",
    "RetryPolicy",
    "Snapshot",
    "SnapshotEnvelope",
    "SnapshotList",
    "SnapshotPolicy",
    "SnapshotStatistics",
    "SnapshotStatus",
    "UnknownRegion",
    "build_http_client",
    "endpoint_for",
    "find_snapshot_id",
    "parse_regions",
    "validate_backup_name",
    "validate_description",
    "validate_snapshot_id",
]
