-- A database as the previous release (main at e2628e7, schema version 11) left it: built through
-- that release's Store, then dumped with sqlite3's iterdump. tests/store/test_previous_release.py
-- loads it and opens it with this release.
BEGIN TRANSACTION;
CREATE TABLE approvals (
        request_id INTEGER NOT NULL REFERENCES requests (id),
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, user_id)
    );
INSERT INTO "approvals" VALUES(1,'U0APPROVE','2026-12-05T22:14:03.832Z');
CREATE TABLE delete_approvals (
        request_id INTEGER NOT NULL REFERENCES requests (id),
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, user_id)
    );
CREATE TABLE deliveries (
        event_id TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );
INSERT INTO "deliveries" VALUES('Ev0123','2026-12-05T22:14:03.835Z');
CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id INTEGER REFERENCES requests (id),
        kind TEXT NOT NULL,
        actor TEXT,
        at TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    );
INSERT INTO "events" VALUES(1,1,'requested','U0REQUEST','2026-12-05T22:14:03.831Z','{"allow_self_approval": false, "approvals_needed": 2, "approvers": ["U0APPROVE", "U0OTHER"], "backup_name": "waiting-for-two", "break_glass": false, "channel_id": "C0INCIDENT", "cluster_id": null, "cluster_name": null, "delete_requires_approval": true, "description": "", "escalate_at": null, "escalate_to": [], "keep_until": null, "max_keep_days": null, "notify": [], "reason": null, "region": null, "remind_at": null, "requested_by": "U0REQUEST", "review_due_at": null, "rule": null, "source_name": null, "source_size": null, "source_snapshot_id": "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "source_started": null, "thread_ts": null, "warn_at": null, "warn_before_days": null}');
INSERT INTO "events" VALUES(2,1,'approval','U0APPROVE','2026-12-05T22:14:03.832Z','{"count": 1}');
INSERT INTO "events" VALUES(3,2,'requested','U0REQUEST','2026-12-05T22:14:03.833Z','{"allow_self_approval": false, "approvals_needed": 2, "approvers": ["U0APPROVE", "U0OTHER"], "backup_name": "being-copied", "break_glass": false, "channel_id": "C0INCIDENT", "cluster_id": null, "cluster_name": null, "delete_requires_approval": true, "description": "", "escalate_at": null, "escalate_to": [], "keep_until": null, "max_keep_days": null, "notify": [], "reason": null, "region": null, "remind_at": null, "requested_by": "U0REQUEST", "review_due_at": null, "rule": null, "source_name": null, "source_size": null, "source_snapshot_id": "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "source_started": null, "thread_ts": null, "warn_at": null, "warn_before_days": null}');
INSERT INTO "events" VALUES(4,2,'copy_started',NULL,'2026-12-05T22:14:03.834Z','{}');
INSERT INTO "events" VALUES(5,3,'requested','U0REQUEST','2026-12-05T22:14:03.834Z','{"allow_self_approval": false, "approvals_needed": 2, "approvers": ["U0APPROVE", "U0OTHER"], "backup_name": "done", "break_glass": false, "channel_id": "C0INCIDENT", "cluster_id": null, "cluster_name": null, "delete_requires_approval": true, "description": "", "escalate_at": null, "escalate_to": [], "keep_until": null, "max_keep_days": null, "notify": [], "reason": null, "region": null, "remind_at": null, "requested_by": "U0REQUEST", "review_due_at": null, "rule": null, "source_name": null, "source_size": null, "source_snapshot_id": "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "source_started": null, "thread_ts": null, "warn_at": null, "warn_before_days": null}');
INSERT INTO "events" VALUES(6,3,'available',NULL,'2026-12-05T22:14:03.835Z','{}');
CREATE TABLE replays (
        signature TEXT PRIMARY KEY,
        expires_at TEXT NOT NULL,
        status INTEGER,
        content_type TEXT,
        body BLOB
    );
INSERT INTO "replays" VALUES('v0=abc','2026-12-05T23:00:00.000Z',200,'application/json',X'7B226F6B223A747275657D');
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
    , reason TEXT, cluster_id TEXT, cluster_name TEXT, source_name TEXT, source_started TEXT, source_size REAL, approvals_needed INTEGER NOT NULL DEFAULT 1, approvers TEXT NOT NULL DEFAULT '[]', notify TEXT NOT NULL DEFAULT '[]', allow_self_approval INTEGER NOT NULL DEFAULT 0, rule INTEGER, remind_at TEXT, region TEXT, keep_until TEXT, warn_at TEXT, max_keep_days REAL, warn_before_days REAL, delete_requires_approval INTEGER NOT NULL DEFAULT 1, deletion TEXT, delete_asked_by TEXT, delete_approved_by TEXT, source_expires_at TEXT, storage_used REAL, storage_free REAL, storage_paid REAL, cluster_status TEXT, cluster_task TEXT, stakes_at TEXT, escalate_at TEXT, escalate_to TEXT NOT NULL DEFAULT '[]', escalated_at TEXT, break_glass INTEGER NOT NULL DEFAULT 0, review_due_at TEXT, reviewed_by TEXT, reviewed_at TEXT, review_verdict TEXT, review_late INTEGER NOT NULL DEFAULT 0, token TEXT NOT NULL DEFAULT '');
INSERT INTO "requests" VALUES(1,'pending_approval','4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90','waiting-for-two','','U0REQUEST',NULL,NULL,NULL,'C0INCIDENT',NULL,NULL,NULL,NULL,NULL,NULL,'[]','2026-12-05T22:14:03.831Z','2026-12-05T22:14:03.832Z','2026-12-31T00:00:00.000Z',NULL,NULL,NULL,NULL,NULL,NULL,2,'["U0APPROVE", "U0OTHER"]','[]',0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,1,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'[]',NULL,0,NULL,NULL,NULL,NULL,0,'b41a4a4fcf45d264d56ebfdbdd39dae5');
INSERT INTO "requests" VALUES(2,'copying','4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90','being-copied','','U0REQUEST',NULL,NULL,NULL,'C0INCIDENT',NULL,NULL,NULL,NULL,NULL,NULL,'["dws-req-1"]','2026-12-05T22:14:03.833Z','2026-12-05T22:14:03.834Z',NULL,NULL,NULL,NULL,NULL,NULL,NULL,2,'["U0APPROVE", "U0OTHER"]','[]',0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,1,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'[]',NULL,0,NULL,NULL,NULL,NULL,0,'2a78f67559e553ee82f394f3adf70be3');
INSERT INTO "requests" VALUES(3,'succeeded','4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90','done','','U0REQUEST',NULL,NULL,NULL,'C0INCIDENT',NULL,NULL,'9d8c7b6a-1111-2222-3333-444455556666',NULL,NULL,NULL,'[]','2026-12-05T22:14:03.834Z','2026-12-05T22:14:03.835Z',NULL,NULL,NULL,NULL,NULL,NULL,NULL,2,'["U0APPROVE", "U0OTHER"]','[]',0,NULL,NULL,NULL,'2027-01-01T00:00:00.000Z',NULL,NULL,NULL,1,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'[]',NULL,0,NULL,NULL,NULL,NULL,0,'dabd804411e059d89762e66b71a20eb5');
CREATE TABLE work (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        request_id INTEGER NOT NULL REFERENCES requests (id),
        kind TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        due_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        problem TEXT,
        last_error TEXT,
        claimed_by TEXT,
        lease_until TEXT,
        created_at TEXT NOT NULL,
        done_at TEXT,
        outcome TEXT
    , lease_token TEXT, beats INTEGER NOT NULL DEFAULT 0, scheduled_at TEXT);
INSERT INTO "work" VALUES(1,'slack',1,'announce','{}','2026-12-05T22:14:03.832Z',0,NULL,NULL,NULL,NULL,'2026-12-05T22:14:03.831Z',NULL,NULL,NULL,0,'2026-12-05T22:14:03.832Z');
INSERT INTO "work" VALUES(2,'dws',2,'copy','{}','2026-12-05T22:14:03.834Z',0,NULL,NULL,NULL,NULL,'2026-12-05T22:14:03.833Z',NULL,NULL,NULL,0,'2026-12-05T22:14:03.834Z');
CREATE INDEX requests_state ON requests (state);
CREATE INDEX requests_requested_by ON requests (requested_by, id);
CREATE UNIQUE INDEX requests_live_name ON requests (lower(backup_name))
        WHERE state IN ('pending_approval', 'approved', 'copying');
CREATE INDEX events_request_id ON events (request_id, id);
CREATE INDEX work_open ON work (queue, request_id, id) WHERE done_at IS NULL;
CREATE INDEX work_due ON work (queue, due_at) WHERE done_at IS NULL;
CREATE UNIQUE INDEX work_one_dws_job ON work (request_id)
        WHERE queue = 'dws' AND done_at IS NULL;
CREATE INDEX requests_remind_at ON requests (remind_at) WHERE remind_at IS NOT NULL;
CREATE INDEX requests_keep_until ON requests (keep_until) WHERE keep_until IS NOT NULL;
CREATE INDEX requests_warn_at ON requests (warn_at) WHERE warn_at IS NOT NULL;
CREATE INDEX requests_escalate_at ON requests (escalate_at) WHERE escalate_at IS NOT NULL;
CREATE INDEX requests_review_due_at ON requests (review_due_at)
        WHERE review_due_at IS NOT NULL;
CREATE INDEX events_group_changes ON events (id) WHERE kind = 'group_members_changed';
CREATE UNIQUE INDEX work_lease_token ON work (lease_token) WHERE lease_token IS NOT NULL;
CREATE INDEX replays_expires_at ON replays (expires_at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('requests',3);
INSERT INTO "sqlite_sequence" VALUES('events',6);
INSERT INTO "sqlite_sequence" VALUES('work',2);
COMMIT;
PRAGMA user_version = 11;
