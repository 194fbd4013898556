"""The `snapcopy` command: `serve` runs the bot, `doctor` checks a deployment, `audit` prints the
audit log.

Only the standard library is imported up front: `audit` (bot/audit.py) needs nothing else and
starts fast, and the serving stack (pydantic, Bolt, uvicorn) loads only for `serve` and `doctor`.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import bot
from bot import audit as audit_log

EXIT_USAGE = 2


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
    serve.add_argument(
        "--port",
        type=_port,
        help="HTTP port (default: $PORT, else 3000); with --socket, of /livez, /healthz, /metrics",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    serve.add_argument(
        "--socket", action="store_true", help="use Socket Mode (needs SLACK_APP_TOKEN)"
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="HTTP mode: serving processes sharing the port and the database, one per core "
        "(default: 1)",
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

    _database_commands(commands)

    audit = commands.add_parser(
        "audit",
        help="print the audit log (read-only)",
        description="Print the copy requests recorded in the database (--db, else SNAPCOPY_DB, "
        "else DATABASE_URL), newest first. Opens it read-only: an SQLite file read-only, "
        "PostgreSQL in a READ ONLY transaction.",
    )
    audit_log.add_arguments(audit)
    audit.set_defaults(run=audit_log.run)
    return parser


def _database_commands(commands: Any) -> None:
    db = commands.add_parser(
        "db",
        help="the database: its status, or a copy of it into another",
        description="SNAPCOPY_DB (else DATABASE_URL, else ./snapcopy.db) as `serve` would use it.",
    )
    sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    status = sub.add_parser(
        "status",
        help="the engine, the schema version and whether migrations are pending",
        description="Exit status 1 when the database is newer than this snapcopy, 2 when it "
        "cannot be read.",
    )
    status.add_argument("--db", metavar="PATH_OR_URL", help="this database instead")
    status.set_defaults(run=_db_status)
    copy = sub.add_parser(
        "copy",
        help="copy every request, event, approval and owed work into an empty database",
        description="With the bot stopped: copy SOURCE into TARGET (an SQLite file's path or a "
        "postgresql:// URL each), which must be empty; the rows are counted on both sides.",
    )
    copy.add_argument("source", metavar="SOURCE")
    copy.add_argument("target", metavar="TARGET")
    copy.set_defaults(run=_db_copy)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of processes (1-64)")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (1-65535)")
    return int(text)


# --- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from bot.errors import ConfigError
    from bot.settings import load_all

    overrides = {"port": args.port} if args.port is not None else {}
    try:
        settings, policy = load_all(socket=args.socket, sandbox=args.sandbox, **overrides)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_USAGE

    from bot.logs import configure_logging
    from bot.server import run_http, run_socket_mode

    configure_logging(settings.snapcopy_log_level, secrets=settings.secret_values())
    host, port, sandbox = args.host, settings.port, args.sandbox
    if args.socket:
        return _started(
            lambda: run_socket_mode(settings, policy, sandbox=sandbox, host=host), settings
        )
    if args.workers == 1:
        return _started(
            lambda: run_http(settings, policy, host=host, port=port, sandbox=sandbox), settings
        )
    from bot.forked import Supervisor, listening_socket

    def child(listening: socket.socket) -> int:
        def serving() -> None:
            run_http(settings, policy, host=host, port=port, sandbox=sandbox, sockets=[listening])

        return _started(serving, settings)

    try:
        listening = listening_socket(host, port)
    except OSError as error:
        print(f"snapcopy cannot start: port {port} on {host}: {error.strerror}.", file=sys.stderr)
        return EXIT_USAGE
    return Supervisor(args.workers, child, listening, give_up_on=EXIT_USAGE).run()


def _started(serving: Callable[[], int | None], settings: Any) -> int:
    """Serve; a start-up that cannot go on is one message and exit status 2."""
    import sqlite3

    from bot.database import BadUrl
    from bot.errors import ConfigError, StoreUnavailable
    from bot.slack.startup import TokenRefused
    from bot.store.engine import SchemaTooNew

    try:
        return serving() or 0
    except TokenRefused as refused:
        print(ConfigError([str(refused)]).render(), file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as trouble:
        print(ConfigError([_unusable(settings.database.shown, trouble)]).render(), file=sys.stderr)
        return EXIT_USAGE
    except BadUrl as error:
        print(ConfigError([f"SNAPCOPY_DB: {error}"]).render(), file=sys.stderr)
        return EXIT_USAGE
    except SchemaTooNew as too_new:
        problem = f"SNAPCOPY_DB: {settings.database.shown}: {too_new}"
        print(ConfigError([problem]).render(), file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as error:
        problem = f"the audit log {settings.database.shown} cannot be opened for writing: {error}."
        print(ConfigError([problem]).render(), file=sys.stderr)
        return EXIT_USAGE


# --- db -----------------------------------------------------------------------------------------


def _db_status(args: argparse.Namespace) -> int:
    from bot.database import configured, parse
    from bot.errors import StoreUnavailable
    from bot.store.status import status

    try:
        database = parse(args.db, "--db") if args.db else configured()
        found = status(database)
    except ValueError as error:
        print(f"snapcopy db status: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as trouble:
        problem = _db_unusable("the database", database.shown, trouble)
        print(f"snapcopy db status: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(found.lines()))
    return 1 if found.too_new else 0


def _db_copy(args: argparse.Namespace) -> int:
    from bot.database import parse
    from bot.errors import StoreUnavailable
    from bot.store.copying import CopyRefused, Unusable, copy_database

    try:
        source, target = parse(args.source, "SOURCE"), parse(args.target, "TARGET")
        copied = copy_database(source, target)
    except (ValueError, CopyRefused) as error:
        print(f"snapcopy db copy: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Unusable as unusable:
        problem = _db_unusable(unusable.side, unusable.database.shown, unusable.trouble)
        print(f"snapcopy db copy: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as trouble:
        print(
            f"snapcopy db copy: the copy broke off and TARGET keeps none of it: a database "
            f"{trouble.what} ({trouble.detail}); {_FIXES[trouble.reason]}, then copy again.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print("\n".join(copied.lines()))
    return 0 if copied.matches else 1


def _db_unusable(name: str, shown: str, trouble: Any) -> str:
    """One sentence for `snapcopy db`: which database, what is wrong, what to do."""
    return f"{name} {shown} {trouble.what} ({trouble.detail}); {_FIXES[trouble.reason]}."


# What to do about a database that cannot be used at start-up, by StoreUnavailable.reason.
_FIXES = {
    "full": "free some space on its volume",
    "locked": "stop the process that holds it, or wait for it to finish",
    "read-only": "make the file and its directory writable for this user",
    "corrupt": "restore it from a backup, or rebuild it with sqlite3's .recover",
    "io": "check the volume it is on",
    "unavailable": "check that the file is an SQLite database on a mounted volume, or that "
    "the PostgreSQL database exists",
    "unreachable": "check the host, the port, and that PostgreSQL is running and reachable",
    "refused": "check the user name and password in the URL",
    "denied": "grant snapcopy's user the privileges `snapcopy doctor` lists",
}


def _unusable(path: object, trouble: Any) -> str:
    """One sentence: which database, what is wrong with it, what SQLite said, what to do."""
    return (
        f"SNAPCOPY_DB: the audit log {path} cannot be used: it {trouble.what} "
        f"({trouble.detail}); {_FIXES[trouble.reason]}, then start snapcopy again."
    )


def _doctor(args: argparse.Namespace) -> int:
    import logging

    from bot import doctor

    # The checklist says what went wrong; the clients' own log lines would only repeat it.
    logging.getLogger().addHandler(logging.NullHandler())

    checks = doctor.run(socket=args.socket)
    print(doctor.render(checks))
    return 0 if all(check.ok for check in checks) else 1
