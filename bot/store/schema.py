"""The database's schema, as the migrations that build it (PRAGMA user_version counts them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.store.engine import SchemaTooNew
from bot.work.queue import Queue

if TYPE_CHECKING:
    from bot.store.pool import SqliteDb

# Each entry upgrades the schema by one version (PRAGMA user_version); append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        state TEXT NOT NULL,
        source_snapshot_id TEXT NOT NULL,
        backup_name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        requested_by TEXT NOT NULL,
        approved_by TEXT,
        denied_by TEXT,
        deny_reason TEXT,
        channel_id TEXT,
        thread_ts TEXT,
        message_ts TEXT,
        new_snapshot_id TEXT,
        snapshot_status TEXT,
        error TEXT,
        error_code TEXT,
        dws_request_ids TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        expires_at TEXT
    );
    CREATE INDEX requests_state ON requests (state);
    CREATE INDEX requests_requested_by ON requests (requested_by, id);
    CREATE UNIQUE INDEX requests_live_name ON requests (lower(backup_name))
        WHERE state IN ('pending_approval', 'approved', 'copying');
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id INTEGER REFERENCES requests (id),
        kind TEXT NOT NULL,
        actor TEXT,
        at TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_request_id ON events (request_id, id);
    """,
    """
    CREATE TABLE deliveries (
        event_id TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );
    """,
    f"""
    CREATE TABLE work (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        request_id INTEGER NOT NULL REFERENCES requests (id),
        kind TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{{}}',
        due_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        problem TEXT,
        last_error TEXT,
        claimed_by TEXT,
        lease_until TEXT,
        created_at TEXT NOT NULL,
        done_at TEXT,
        outcome TEXT
    );
    CREATE INDEX work_open ON work (queue, request_id, id) WHERE done_at IS NULL;
    CREATE INDEX work_due ON work (queue, due_at) WHERE done_at IS NULL;
    CREATE UNIQUE INDEX work_one_dws_job ON work (request_id)
        WHERE queue = '{Queue.DWS.value}' AND done_at IS NULL;
    """,
    """
    ALTER TABLE requests ADD COLUMN reason TEXT;
    ALTER TABLE requests ADD COLUMN cluster_id TEXT;
    ALTER TABLE requests ADD COLUMN cluster_name TEXT;
    ALTER TABLE requests ADD COLUMN source_name TEXT;
    ALTER TABLE requests ADD COLUMN source_started TEXT;
    ALTER TABLE requests ADD COLUMN source_size REAL;
    ALTER TABLE requests ADD COLUMN approvals_needed INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE requests ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE requests ADD COLUMN notify TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE requests ADD COLUMN allow_self_approval INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN rule INTEGER;
    ALTER TABLE requests ADD COLUMN remind_at TEXT;
    CREATE INDEX requests_remind_at ON requests (remind_at) WHERE remind_at IS NOT NULL;
    CREATE TABLE approvals (
        request_id INTEGER NOT NULL REFERENCES requests (id),
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, user_id)
    );
    """,
    """
    ALTER TABLE requests ADD COLUMN region TEXT;
    """,
    """
    ALTER TABLE requests ADD COLUMN keep_until TEXT;
    ALTER TABLE requests ADD COLUMN warn_at TEXT;
    ALTER TABLE requests ADD COLUMN max_keep_days REAL;
    ALTER TABLE requests ADD COLUMN warn_before_days REAL;
    ALTER TABLE requests ADD COLUMN delete_requires_approval INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE requests ADD COLUMN deletion TEXT;
    ALTER TABLE requests ADD COLUMN delete_asked_by TEXT;
    ALTER TABLE requests ADD COLUMN delete_approved_by TEXT;
    CREATE INDEX requests_keep_until ON requests (keep_until) WHERE keep_until IS NOT NULL;
    CREATE INDEX requests_warn_at ON requests (warn_at) WHERE warn_at IS NOT NULL;
    CREATE TABLE delete_approvals (
        request_id INTEGER NOT NULL REFERENCES requests (id),
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, user_id)
    );
    """,
    """
    ALTER TABLE requests ADD COLUMN source_expires_at TEXT;
    ALTER TABLE requests ADD COLUMN storage_used REAL;
    ALTER TABLE requests ADD COLUMN storage_free REAL;
    ALTER TABLE requests ADD COLUMN storage_paid REAL;
    ALTER TABLE requests ADD COLUMN cluster_status TEXT;
    ALTER TABLE requests ADD COLUMN cluster_task TEXT;
    ALTER TABLE requests ADD COLUMN stakes_at TEXT;
    ALTER TABLE requests ADD COLUMN escalate_at TEXT;
    ALTER TABLE requests ADD COLUMN escalate_to TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE requests ADD COLUMN escalated_at TEXT;
    ALTER TABLE requests ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN review_due_at TEXT;
    ALTER TABLE requests ADD COLUMN reviewed_by TEXT;
    ALTER TABLE requests ADD COLUMN reviewed_at TEXT;
    ALTER TABLE requests ADD COLUMN review_verdict TEXT;
    ALTER TABLE requests ADD COLUMN review_late INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX requests_escalate_at ON requests (escalate_at) WHERE escalate_at IS NOT NULL;
    CREATE INDEX requests_review_due_at ON requests (review_due_at)
        WHERE review_due_at IS NOT NULL;
    """,
    # Read before every role check that needs a user group (bot/store/group_log.py).
    """
    CREATE INDEX events_group_changes ON events (id) WHERE kind = 'group_members_changed';
    """,
    # Leases with a token (fencing) and a beat count (renewals), and when a row's due time
    # was set (so a clock set back does not hold it up): bot/work/queue.py.
    """
    ALTER TABLE work ADD COLUMN lease_token TEXT;
    ALTER TABLE work ADD COLUMN beats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE work ADD COLUMN scheduled_at TEXT;
    CREATE UNIQUE INDEX work_lease_token ON work (lease_token) WHERE lease_token IS NOT NULL;
    """,
    # Signed requests seen in Slack's replay window, and what they were answered
    # (bot/replays.py).
    """
    CREATE TABLE replays (
        signature TEXT PRIMARY KEY,
        expires_at TEXT NOT NULL,
        status INTEGER,
        content_type TEXT,
        body BLOB
    );
    CREATE INDEX replays_expires_at ON replays (expires_at);
    """,
    # A random token per request, carried by its buttons beside the id: a button of another
    # database's request #1 is not this one's. Requests made before it get one now.
    """
    ALTER TABLE requests ADD COLUMN token TEXT NOT NULL DEFAULT '';
    UPDATE requests SET token = lower(hex(randomblob(16))) WHERE token = '';
    """,
)


def version(db: SqliteDb) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: SqliteDb) -> int:
    """Bring the schema up to date, one migration at a time; returns how many ran."""
    version_now = version(db)
    if version_now > len(MIGRATIONS):
        raise SchemaTooNew(version_now, len(MIGRATIONS))
    for number, script in enumerate(MIGRATIONS[version_now:], start=version_now + 1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS) - version_now
