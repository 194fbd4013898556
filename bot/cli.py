"""The `snapcopy` command: `serve` runs the bot, `audit` prints the audit log.

Imports of the serving stack (Bolt, uvicorn) wait until `serve` has a valid configuration, so
`audit` and configuration errors answer fast and never depend on Slack or the cloud.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

import bot
from bot.config import ConfigError, Settings, load_all
from bot.domain import CopyRequest, State

EXIT_USAGE = 2

REQUEST_FIELDS = tuple(CopyRequest.model_fields)
EVENT_FIELDS = ("id", "request_id", "kind", "actor", "at", "details")
# The table shows what fits on a screen; json and csv carry every field.
TABLE_REQUEST_FIELDS = (
    "id",
    "state",
    "source_snapshot_id",
    "backup_name",
    "requested_by",
    "approved_by",
    "new_snapshot_id",
    "snapshot_status",
    "created_at",
    "error",
)
TABLE_CELL_WIDTH = 40


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: int = args.run(args)
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snapcopy",
        description="Copy GaussDB(DWS) automated snapshots from Slack, after a second person "
        "approves.",
    )
    parser.add_argument("--version", action="version", version=f"snapcopy {bot.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the bot",
        description="Run the bot: HTTP mode (POST /slack/events, GET /healthz) by default, or "
        "Socket Mode with --socket.",
    )
    serve.add_argument("--port", type=_port, help="HTTP port (default: $PORT, else 3000)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    serve.add_argument(
        "--socket", action="store_true", help="use Socket Mode (needs SLACK_APP_TOKEN)"
    )
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="copy snapshots of a built-in stand-in instead of the cloud (no cloud keys needed)",
    )
    serve.set_defaults(run=_serve)

    doctor = commands.add_parser(
        "doctor",
        help="check this deployment: Slack, DWS, the policy, the database",
        description="Check what `snapcopy serve` needs, one line each (✓ or ✗ with the fix). "
        "Exit status 0 only when every check passes. Only reads: safe beside a live bot.",
    )
    doctor.add_argument("--socket", action="store_true", help="check for Socket Mode")
    doctor.set_defaults(run=_doctor)

    audit = commands.add_parser(
        "audit",
        help="print the audit log",
        description="Print the copy requests recorded in SNAPCOPY_DB, newest first.",
    )
    audit.add_argument(
        "--format",
        choices=("json", "csv", "table"),
        default="table",
        help="json and csv carry every field; table (default) the main ones",
    )
    audit.add_argument("--limit", type=_positive, metavar="N", help="at most N rows, newest")
    audit.add_argument(
        "--state",
        type=_state,
        action="append",
        help="only requests in this state (repeatable): " + ", ".join(State),
    )
    audit.add_argument(
        "--events", action="store_true", help="print the event trail instead of the requests"
    )
    audit.add_argument("--request", type=_positive, metavar="ID", help="only this request")
    audit.add_argument(
        "--db", type=Path, metavar="PATH", help="audit log to read (default: $SNAPCOPY_DB)"
    )
    audit.set_defaults(run=_audit)
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (1-65535)")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return int(text)


def _state(text: str) -> State:
    try:
        return State(text.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown state '{text}' (known: {', '.join(State)})"
        ) from None


# --- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    if args.socket and args.port is not None:
        print("snapcopy serve: --port applies to HTTP mode, not --socket.", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"port": args.port} if args.port is not None else {}
    try:
        settings, policy = load_all(socket=args.socket, sandbox=args.sandbox, **overrides)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_USAGE

    import sqlite3

    from bot.logs import configure_logging
    from bot.server import run_http, run_socket_mode
    from bot.slack.startup import TokenRefused

    configure_logging(settings.snapcopy_log_level, secrets=settings.secret_values())
    try:
        if args.socket:
            return run_socket_mode(settings, policy, sandbox=args.sandbox)
        run_http(settings, policy, host=args.host, port=settings.port, sandbox=args.sandbox)
    except TokenRefused as refused:
        print(ConfigError([str(refused)]).render(), file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as error:
        problem = f"the audit log {settings.snapcopy_db} cannot be opened for writing: {error}."
        print(ConfigError([problem]).render(), file=sys.stderr)
        return EXIT_USAGE
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import logging

    from bot import doctor

    # The checklist says what went wrong; the clients' own log lines would only repeat it.
    logging.getLogger().addHandler(logging.NullHandler())

    checks = doctor.run(socket=args.socket)
    print(doctor.render(checks))
    return 0 if all(check.ok for check in checks) else 1


# --- audit -------------------------------------------------------------------------------------


class _AuditSettings(BaseSettings):
    """Only where the audit log is: reading it needs no Slack tokens and no cloud keys."""

    model_config = Settings.model_config
    snapcopy_db: Path = Settings.model_fields["snapcopy_db"].default


def _audit(args: argparse.Namespace) -> int:
    if args.events and args.state:
        print(
            "snapcopy audit: --state selects requests; it cannot be used with --events.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    path = args.db
    if path is None:
        try:
            path = _AuditSettings().snapcopy_db
        except ValidationError:
            print("snapcopy audit: SNAPCOPY_DB is not a valid path.", file=sys.stderr)
            return EXIT_USAGE
    if not path.is_file():
        # Opening the store would create an empty database and hide a wrong path.
        print(
            f"snapcopy audit: no audit log at {path} (set SNAPCOPY_DB to the database that "
            "`snapcopy serve` writes).",
            file=sys.stderr,
        )
        return EXIT_USAGE

    from bot.store import Store

    store = Store(path)
    try:
        if args.events:
            fields: Sequence[str] = EVENT_FIELDS
            rows = store.events(args.request, limit=args.limit)
        else:
            fields = REQUEST_FIELDS
            requests = store.find(states=args.state, limit=None if args.request else args.limit)
            if args.request:
                requests = [request for request in requests if request.id == args.request]
            rows = [request.model_dump(mode="json") for request in requests]
    finally:
        store.close()

    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "csv":
        sys.stdout.write(render_csv(rows, fields))
    else:
        table_fields = EVENT_FIELDS if args.events else TABLE_REQUEST_FIELDS
        sys.stdout.write(render_table(rows, table_fields))
    return 0


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

    def fit(value: Any) -> str:
        text = " ".join(_cell(value).split()) or "-"
        return text if len(text) <= TABLE_CELL_WIDTH else text[: TABLE_CELL_WIDTH - 1] + "…"

    cells = [[fit(row.get(field)) for field in fields] for row in rows]
    widths = [max(len(field), *(len(line[i]) for line in cells)) for i, field in enumerate(fields)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.ljust(width) for value, width in zip(values, widths, strict=True)
        ).rstrip()

    out = [line(fields), line(["-" * width for width in widths])]
    out += [line(values) for values in cells]
    return "\n".join(out) + "\n"
