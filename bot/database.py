"""Which database snapcopy keeps its audit log and owed work in: an SQLite file or PostgreSQL.

`SNAPCOPY_DB` takes a path (SQLite) or a `postgresql://` / `postgres://` URL; when it is unset,
`DATABASE_URL` is honoured (the convention of platforms that attach a database); with neither,
`./snapcopy.db` is used.

Standard library only: `snapcopy audit` reads the choice without importing the bot's settings.
A URL's password is never shown: `shown` is the URL without it, for messages and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PATH = Path("./snapcopy.db")
SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class SqliteFile:
    path: Path
    engine: Literal["sqlite"] = "sqlite"

    @property
    def shown(self) -> str:
        return str(self.path)

    @property
    def secrets(self) -> list[str]:
        return []


@dataclass(frozen=True)
class PostgresUrl:
    url: str  # as given, password and all: only ever handed to the driver
    host: str
    port: int
    name: str
    user: str
    password: str
    engine: Literal["postgresql"] = "postgresql"

    @property
    def where(self) -> str:
        """host:port/database, for sentences about it."""
        return f"{self.host}:{self.port}/{self.name}"

    @property
    def shown(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.where}"

    @property
    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def redact(self, text: str) -> str:
        """`text` without the password, as given in the URL or percent-decoded: a driver's
        message may quote either."""
        try:
            given = urlsplit(self.url).password
        except ValueError:
            given = None
        for secret in filter(None, (given, self.password)):
            text = text.replace(secret, "…")
        return text


class BadUrl(ValueError):
    """A PostgreSQL URL whose words the driver refuses (an unknown parameter, a bad escape);
    the message is one sentence, without the password."""


Database = SqliteFile | PostgresUrl


def choose(snapcopy_db: str | None, database_url: str | None) -> Database:
    """The database the settings name; raises ValueError (one sentence) for a bad URL."""
    if snapcopy_db:
        return parse(snapcopy_db, "SNAPCOPY_DB")
    if database_url:
        return parse(database_url, "DATABASE_URL")
    return SqliteFile(DEFAULT_PATH)


def parse(value: str, name: str = "SNAPCOPY_DB") -> Database:
    """A path or a PostgreSQL URL; anything else with a scheme is refused by name."""
    scheme, sep, _ = value.partition("://")
    if not sep:
        return SqliteFile(Path(value))
    if scheme.lower() not in SCHEMES:
        raise ValueError(
            f"{name}: {scheme}:// is not a database snapcopy can use; give an SQLite file's "
            "path or a postgresql:// URL."
        )
    return _postgres(value, name)


def _postgres(value: str, name: str) -> PostgresUrl:
    try:
        parts = urlsplit(value)
        port = parts.port or 5432
    except ValueError as error:
        raise ValueError(f"{name}: the PostgreSQL URL cannot be read ({error}).") from None
    query = parse_qs(parts.query)
    # libpq takes the host from ?host= too (a Unix socket's directory, for one), before the
    # URL's own.
    host = query.get("host", [""])[0] or unquote(parts.hostname or "") or "localhost"
    database = unquote(parts.path.lstrip("/")) or query.get("dbname", [""])[0]
    user = unquote(parts.username or "") or query.get("user", [""])[0]
    if not database:
        raise ValueError(
            f"{name}: the PostgreSQL URL names no database; add it after the host, "
            "e.g. postgresql://user@host:5432/snapcopy."
        )
    password = unquote(parts.password or "") or query.get("password", [""])[0]
    return PostgresUrl(value, host, port, database, user, password)


def configured(env_file: Path = Path(".env")) -> Database:
    """The database `snapcopy serve` would use here, from the environment, else ./.env, without
    reading any other setting (for `snapcopy audit` and `snapcopy db`)."""

    def value(name: str) -> str | None:
        found = os.environ.get(name)
        return found if found is not None else dotenv_value(env_file, name)

    return choose(value("SNAPCOPY_DB"), value("DATABASE_URL"))


def dotenv_value(path: Path, name: str) -> str | None:
    """`name`'s value in a .env file, if the file sets it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        key, equals, found = line.strip().removeprefix("export ").partition("=")
        if equals and key.strip().upper() == name:
            return found.strip().strip("'\"")
    return None
