"""Rows of the `requests` and `events` tables, as the store writes and reads them: request
fields encoded for their columns (lists as JSON), rows decoded into `CopyRequest`s, events
appended, and the conditions of a guarded update."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain import CopyRequest
from bot.store.engine import Cursor, Db

REQUEST_COLUMNS = tuple(CopyRequest.model_fields)
# Columns that hold a JSON list.
LIST_COLUMNS = frozenset({"dws_request_ids", "approvers", "notify", "escalate_to"})


def add_event(
    db: Db,
    request_id: int | None,
    kind: str,
    actor: str | None,
    details: dict[str, Any],
    at: str,
) -> None:
    db.execute(
        "INSERT INTO events (request_id, kind, actor, at, details) VALUES (?, ?, ?, ?, ?)",
        [request_id, kind, actor, at, json.dumps(details, sort_keys=True, default=str)],
    )


def insert_row(db: Db, table: str, row: Mapping[str, Any]) -> int:
    """Insert one row; returns its new id."""
    columns = ", ".join(f"[{column}]" for column in row)
    marks = ", ".join("?" for _ in row)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id"
    return int(db.execute(sql, list(row.values())).fetchall()[0][0])


def update_request(db: Db, request_id: int, fields: Mapping[str, Any]) -> CopyRequest | None:
    """Set `fields` of a request; returns it as it is now (None when there is no such
    request), read by the same statement rather than by another after the commit."""
    sets = ", ".join(f"[{column}] = ?" for column in fields)
    return returned(
        db.execute(
            f"UPDATE requests SET {sets} WHERE id = ? RETURNING *", [*fields.values(), request_id]
        )
    )


def returned(cursor: Cursor) -> CopyRequest | None:
    """The request a statement with `RETURNING *` wrote, read to the end (so that, on SQLite,
    the statement is complete)."""
    rows = cursor.fetchall()
    if not rows:
        return None
    keys = [column[0] for column in cursor.description]
    return decode(dict(zip(keys, rows[0], strict=True)))


def conditions(where: Mapping[str, Sequence[str | None]]) -> tuple[str, list[str]]:
    """` AND ([column] IS NULL OR [column] IN (?, ...))` for each column, and the values."""
    sql, values = "", []
    for column in encode(dict.fromkeys(where)):
        allowed = [value for value in where[column] if value is not None]
        either = [f"[{column}] IS NULL"] if None in where[column] else []
        if allowed:
            either.append(f"[{column}] IN ({', '.join('?' for _ in allowed)})")
            values += allowed
        sql += f" AND ({' OR '.join(either) or 'FALSE'})"
    return sql, values


def encode(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(REQUEST_COLUMNS)
    if unknown:
        raise ValueError(f"not request columns: {sorted(unknown)}")
    return {key: _column_value(value) for key, value in fields.items()}


def _column_value(value: Any) -> Any:
    """Lists as JSON text, and booleans as 0 or 1 (INTEGER columns on both engines)."""
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def decode(row: dict[str, Any]) -> CopyRequest:
    lists = {column: json.loads(row.get(column) or "[]") for column in LIST_COLUMNS}
    return CopyRequest.model_validate(row | lists)
