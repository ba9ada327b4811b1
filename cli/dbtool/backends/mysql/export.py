"""MySQL's and MariaDB's fast export: the server renders each row as one finished line
(CSV as csv.writer writes it, or a JSON object as json.dumps does), read through an
unbuffered cursor, so that Python moves strings and builds no object per value.

Timestamps are DATETIME values in UTC (dbtool's sessions run in UTC); UUIDs, whatever
form another tool stored them in, are written in the canonical form; booleans as
true/false. JSON is rendered by the server only where its JSON_QUOTE escapes as Python's
json does (checked on a probe); else the general path writes it.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, String, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends.base import ExportJob, driver_sql
from dbtool.backends.rendering import cat, csv_field, json_line, write_lines
from dbtool.formats import Format
from dbtool.models.user_model import keeps_time_zone, python_type

BATCH = 10_000  # rows fetched at a time
_JSON_PROBE = '"\\ü\n\t\x01\u2028/\x7f'


def as_text(column: Column[Any]) -> Any:
    """The column's value as the general path writes it in CSV; NULL stays NULL."""
    kind = python_type(column)
    if issubclass(kind, bool):
        return case((column.is_(None), None), (column != 0, "true"), else_="false")
    if issubclass(kind, datetime):
        # isoformat() leaves out a zero fraction of a second.
        fraction = case((func.microsecond(column) == 0, ""), else_=func.date_format(column, ".%f"))
        iso = cat(func.date_format(column, "%Y-%m-%dT%H:%i:%s"), fraction)
        return cat(iso, "+00:00") if keeps_time_zone(column) else iso
    if issubclass(kind, date):
        return func.date_format(column, "%Y-%m-%d")
    if issubclass(kind, uuid.UUID):
        digits = func.lower(func.replace(cast(column, String), "-", ""))
        parts = [func.substr(digits, start, length) for start, length in _UUID_PARTS]
        return case((column.is_(None), None), else_=func.concat_ws("-", *parts))
    return cast(column, String)


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _csv_value(column: Column[Any]) -> Any:
    """The column's part of a CSV line (never NULL: the general path writes nothing)."""
    value = csv_field(column) if issubclass(python_type(column), str) else as_text(column)
    return func.coalesce(value, "")


def _json_value(column: Column[Any]) -> Any:
    kind = python_type(column)
    if issubclass(kind, bool | int):
        return func.coalesce(as_text(column), "null")
    return func.coalesce(func.json_quote(as_text(column)), "null")


def _lines(job: ExportJob) -> Any:
    if job.fmt is Format.CSV:
        pieces: list[Any] = []
        for position, column in enumerate(job.columns):
            pieces += [*([","] if position else []), _csv_value(column)]
        return job.query([cat(*pieces).label("line")])
    return job.query([json_line(job.columns, _json_value).label("line")])


async def export(job: ExportJob) -> int | None:
    """The export, or None where the general path must write it (JSON, on a server whose
    JSON_QUOTE escapes otherwise than Python)."""
    conn = job.conn
    if job.fmt is not Format.CSV and not await _json_quote_matches(conn):
        return None
    sql, arguments = driver_sql(conn.dialect, _lines(job))
    raw: Any = (await conn.get_raw_connection()).driver_connection
    try:
        async with raw.cursor(_unbuffered(raw)) as cursor:
            await cursor.execute(sql, arguments)
            return await write_lines(job, cursor, BATCH)
    except BaseException:
        # An unfinished unbuffered result ends only by reading it to the end: the
        # connection goes instead (the reader left, Ctrl-C).
        await conn.invalidate()
        raise


def _unbuffered(raw: Any) -> Any:
    """The driver's server-side (unbuffered) cursor class."""
    module = type(raw).__module__.split(".")[0]
    if module == "aiomysql":
        from aiomysql.cursors import SSCursor
    else:
        from asyncmy.cursors import SSCursor
    return SSCursor


async def _json_quote_matches(conn: AsyncConnection) -> bool:
    probe = await conn.scalar(select(func.json_quote(literal(_JSON_PROBE, String))))
    return bool(probe == json.dumps(_JSON_PROBE, ensure_ascii=False))
