"""`snapcopy audit`: the audit log, read-only, for an auditor.

It opens the database read-only (no writes, no write lock, no tables created, a read-only mount
is fine) and needs none of the bot's settings: just where the database is (`--db`, else
SNAPCOPY_DB, else DATABASE_URL, from the environment or `.env`, else ./snapcopy.db). On SQLite
it uses the standard library alone, so it starts in a few tens of milliseconds; PostgreSQL is
read in a read-only transaction (bot/audit_postgres.py, imported only for a PostgreSQL URL),
with the same statements.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bot.audit_names import NamesUnavailable, SlackNames
from bot.database import PostgresUrl, configured, dotenv_value, parse
from bot.durations import parse_when

EXIT_USAGE = 2

# The request states (bot.domain.State; a test keeps them equal).
STATES = (
    "pending_approval",
    "approved",
    "copying",
    "succeeded",
    "failed",
    "denied",
    "expired",
    "cancelled",
    "deleted",
)
LIST_COLUMNS = ("dws_request_ids", "approvers", "notify", "escalate_to")
# The contract's fields come first in csv and json; the rest follow in the database's order.
CONTRACT_FIELDS = (
    "id",
    "state",
    "source_snapshot_id",
    "backup_name",
    "description",
    "requested_by",
    "approved_by",
    "channel_id",
    "thread_ts",
    "new_snapshot_id",
    "error",
    "created_at",
    "updated_at",
)
BOOLEAN_COLUMNS = ("allow_self_approval",)
# Never printed: a request's token is what its buttons carry, for snapcopy alone to check.
HIDDEN_COLUMNS = ("token",)
EVENT_FIELDS = ("id", "request_id", "kind", "actor", "at", "details")
# The table shows what fits on a screen; json and csv carry every field.
TABLE_REQUEST_FIELDS = (
    "id",
    "state",
    "backup_name",
    "cluster_name",
    "requested_by",
    "approved_by",
    "denied_by",
    "cancelled_by",
    "new_snapshot_id",
    "created_at",
    "reason",
    "error",
)
# Not a column of `requests`: who cancelled a request is the actor of its `cancelled` event.
CANCELLED_BY = (
    "(SELECT actor FROM events WHERE events.request_id = requests.id AND kind = 'cancelled'"
    " ORDER BY id DESC LIMIT 1) AS cancelled_by"
)
# Cells that are never cut short in the table: a link must stay whole.
WHOLE_CELLS = ("thread",)
TABLE_CELL_WIDTH = 40


class AuditError(Exception):
    """Something the person must fix; the message says what."""


def add_arguments(audit: argparse.ArgumentParser) -> None:
    audit.add_argument(
        "--format",
        choices=("json", "csv", "table"),
        default="table",
        help="json and csv carry every field; table (default) the main ones",
    )
    audit.add_argument("--limit", type=positive, metavar="N", help="at most N requests, newest")
    audit.add_argument(
        "--state",
        type=state,
        action="append",
        help="only requests in this state (repeatable): " + ", ".join(STATES),
    )
    audit.add_argument(
        "--since", type=moment, metavar="WHEN", help="made at or after (2026-11-01, 7d, 12h)"
    )
    audit.add_argument(
        "--until", type=moment, metavar="WHEN", help="made before (a date or a duration ago)"
    )
    audit.add_argument(
        "--expiring",
        type=expiring,
        metavar="WHEN",
        help="only copies still kept whose keep-until comes before this (7d, 2026-12-31)",
    )
    audit.add_argument(
        "--break-glass",
        action="store_true",
        help="only emergency copies (with who reviewed them, when, the verdict, and if late)",
    )
    audit.add_argument("--requester", metavar="USER", help="asked for by this Slack user ID")
    audit.add_argument("--approver", metavar="USER", help="approved by this Slack user ID")
    audit.add_argument("--cluster", metavar="NAME", help="of this cluster (name or ID)")
    audit.add_argument(
        "--events",
        action="store_true",
        help="the event trail of the selected requests, in the same order, instead",
    )
    audit.add_argument("--request", type=positive, metavar="ID", help="only this request")
    audit.add_argument(
        "--db",
        metavar="PATH_OR_URL",
        help="audit log to read: an SQLite file's PATH or a postgresql:// URL (default: "
        "$SNAPCOPY_DB, else $DATABASE_URL, from the environment or .env, else ./snapcopy.db)",
    )
    audit.add_argument(
        "--names",
        action="store_true",
        help="table only: people's names instead of their Slack IDs, and a link to each "
        "request's thread (asks Slack, once per person, with SLACK_BOT_TOKEN)",
    )


def positive(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return int(text)


def state(text: str) -> str:
    value = text.strip().lower()
    if value not in STATES:
        raise argparse.ArgumentTypeError(f"unknown state '{text}' (known: {', '.join(STATES)})")
    return value


def moment(text: str, now: datetime | None = None, *, ahead: bool = False) -> str:
    """A date, a time or a duration ago (or `ahead`), as the audit log's UTC timestamps."""
    try:
        when = parse_when(text, now or datetime.now(UTC), ahead=ahead, day_end=ahead)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def expiring(text: str) -> str:
    """A date or a duration from now: copies whose keep-until comes before it."""
    return moment(text, ahead=True)


def run(args: argparse.Namespace) -> int:
    try:
        with _open(args.db) as db:
            requests = _requests(db, args)
            fields: tuple[str, ...]
            table: tuple[str, ...]
            if args.events:
                rows, fields, table = _events(db, requests), EVENT_FIELDS, EVENT_FIELDS
            else:
                columns = [*db.columns("requests"), "cancelled_by"]
                rest = (c for c in columns if c not in CONTRACT_FIELDS + HIDDEN_COLUMNS)
                fields = (*CONTRACT_FIELDS, *rest)
                rows = [{field: row.get(field) for field in fields} for row in requests]
                table = TABLE_REQUEST_FIELDS
        if args.names and args.format == "table" and not args.events:
            rows, table = _with_names(rows), (*TABLE_REQUEST_FIELDS, *WHOLE_CELLS)
    except AuditError as error:
        print(f"snapcopy audit: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "csv":
        sys.stdout.write(render_csv(rows, fields))
    else:
        sys.stdout.write(render_table(rows, table))
    return 0


def _with_names(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    token = os.environ.get("SLACK_BOT_TOKEN") or dotenv_value(Path(".env"), "SLACK_BOT_TOKEN")
    if not token:
        raise AuditError("--names asks Slack: set SLACK_BOT_TOKEN (the environment or .env).")
    api = os.environ.get("SLACK_API_URL") or dotenv_value(Path(".env"), "SLACK_API_URL")
    try:
        return SlackNames(token, api or "https://slack.com/api/").apply(rows)
    except NamesUnavailable as error:
        raise AuditError(f"--names: {error}") from None


class Reader(Protocol):
    """A database opened read-only; statements are written in SQLite's spelling."""

    def tables(self) -> set[str]: ...

    def columns(self, table: str) -> list[str]: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]: ...


def _open(given: str | None) -> AbstractContextManager[Reader]:
    """The database named by --db, else as `snapcopy serve` would choose it, read-only."""
    try:
        database = parse(given, "--db") if given else configured()
    except ValueError as error:
        raise AuditError(str(error)) from None
    if isinstance(database, PostgresUrl):
        from bot.audit_postgres import open_read_only

        return open_read_only(database, AuditError)
    return _open_read_only(database.path)


class _open_read_only:
    """The database opened read-only; immutable when even its journal files cannot be
    created (a read-only mount)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise AuditError(
                f"no audit log at {path} (set SNAPCOPY_DB to the database that `snapcopy serve` "
                "writes)."
            )
        self.path = path
        self.db: sqlite3.Connection | None = None

    def __enter__(self) -> SqliteReader:
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        except sqlite3.DatabaseError:
            raise AuditError(
                f"{self.path} is not an SQLite database, so not an audit log."
            ) from None
        db.row_factory = sqlite3.Row
        try:
            if "requests" not in SqliteReader(db).tables():
                raise AuditError(f"{self.path} holds no snapcopy audit log (no requests table).")
        except sqlite3.DatabaseError:
            db.close()
            raise AuditError(
                f"{self.path} is not an SQLite database, so not an audit log."
            ) from None
        self.db = db
        return SqliteReader(db)

    def __exit__(self, *exc_info: object) -> None:
        if self.db is not None:
            self.db.close()


class SqliteReader:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def tables(self) -> set[str]:
        listed = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in listed}

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.db.execute(f"PRAGMA table_info({table})")]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        return (dict(row) for row in self.db.execute(sql, params))


def _requests(db: Reader, args: argparse.Namespace) -> list[dict[str, Any]]:
    columns = set(db.columns("requests"))
    where: list[str] = []
    params: list[Any] = []
    if args.request:
        where.append("id = ?")
        params.append(args.request)
    if args.state:
        where.append(f"state IN ({', '.join('?' for _ in args.state)})")
        params += args.state
    if args.since:
        where.append("created_at >= ?")
        params.append(args.since)
    if args.until:
        where.append("created_at < ?")
        params.append(args.until)
    if args.expiring:
        if "keep_until" not in columns:
            raise AuditError("this audit log records no keep-until dates (it is older).")
        where.append("state = 'succeeded' AND keep_until IS NOT NULL AND keep_until <= ?")
        params.append(args.expiring)
    if args.break_glass:
        if "break_glass" not in columns:
            raise AuditError("this audit log records no emergency copies (it is older).")
        where.append("break_glass = 1")
    if args.requester:
        where.append("requested_by = ?")
        params.append(args.requester)
    if args.approver:
        where.append("(',' || coalesce(approved_by, '') || ',') LIKE ?")
        params.append(f"%,{args.approver},%")
    if args.cluster:
        if "cluster_name" not in columns:
            raise AuditError("this audit log records no clusters (it is older than that field).")
        where.append("(lower(cluster_name) = lower(?) OR lower(cluster_id) = lower(?))")
        params += [args.cluster, args.cluster]
    sql = f"SELECT *, {CANCELLED_BY} FROM requests"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if args.limit:
        sql += " LIMIT ?"
        params.append(args.limit)
    return [_decode(row) for row in db.rows(sql, params)]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for column in LIST_COLUMNS:
        if column in row:
            row[column] = json.loads(row[column] or "[]")
    for column in BOOLEAN_COLUMNS:
        if column in row and row[column] is not None:
            row[column] = bool(row[column])
    return row


def _events(db: Reader, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trail of each selected request, in the requests' order (newest request first), each
    request's events oldest first."""
    rows: list[dict[str, Any]] = []
    for request in requests:
        for row in db.rows(
            "SELECT * FROM events WHERE request_id = ? ORDER BY id", [request["id"]]
        ):
            rows.append(row | {"details": json.loads(row["details"] or "{}")})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def render_csv(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_cell(row.get(field)) for field in fields])
    return out.getvalue()


def render_table(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    """Columns as wide as their widest cell, capped; long cells end in an ellipsis."""
    if not rows:
        return "(no records)\n"

    def fit(value: Any, field: str) -> str:
        text = " ".join(_cell(value).split()) or "-"
        if len(text) <= TABLE_CELL_WIDTH or field in WHOLE_CELLS:
            return text
        return text[: TABLE_CELL_WIDTH - 1] + "…"

    cells = [[fit(row.get(field), field) for field in fields] for row in rows]
    widths = [max(len(field), *(len(line[i]) for line in cells)) for i, field in enumerate(fields)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.ljust(width) for value, width in zip(values, widths, strict=True)
        ).rstrip()

    out = [line(fields), line(["-" * width for width in widths])]
    out += [line(values) for values in cells]
    return "\n".join(out) + "\n"
