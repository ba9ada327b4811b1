"""PostgreSQL's fast export: `COPY (SELECT ...) TO STDOUT`, the server rendering every
value as the general path writes it (ISO 8601 timestamps in UTC, true/false, JSON
objects), so Python only moves bytes. One deliberate difference in CSV: a value holding a
carriage return is quoted (COPY's rule), so that it reads back as it was."""

from __future__ import annotations

import codecs
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Text, cast, func, text

from dbtool.backends.base import ExportJob, driver_sql
from dbtool.backends.rendering import ArrayWriter, cat, json_line
from dbtool.formats import Format
from dbtool.models.user_model import keeps_time_zone, python_type


def as_text(column: Column[Any]) -> Any:
    """The column's value as the general path writes it in CSV; NULL stays NULL."""
    kind = python_type(column)
    if issubclass(kind, datetime):
        # In UTC: copy_out sets the transaction's time zone (cheaper than timezone() on
        # every value). isoformat() leaves out a zero fraction of a second.
        iso = func.replace(func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS.US'), ".000000", "")
        return cat(iso, "+00:00") if keeps_time_zone(column) else iso
    if issubclass(kind, date):
        return func.to_char(column, "YYYY-MM-DD")
    return cast(column, Text)  # booleans as 'true' / 'false'


def _copy_value(column: Column[Any]) -> Any:
    """The column for COPY ... CSV: ids and integers as COPY writes them (as str() does),
    the rest as text."""
    kind = python_type(column)
    if issubclass(kind, str):
        # COPY writes an empty string as "" and NULL as nothing; the general path writes
        # both as nothing.
        return func.nullif(column, "")
    if issubclass(kind, uuid.UUID | int) and not issubclass(kind, bool):
        return column
    return as_text(column)


def _json_value(column: Column[Any]) -> Any:
    """The column's value in JSON: numbers and true/false as they are, the rest quoted."""
    kind = python_type(column)
    if issubclass(kind, bool):
        return func.coalesce(as_text(column), "null")
    if issubclass(kind, int):
        return func.coalesce(cast(column, Text), "null")
    return func.coalesce(cast(func.to_json(as_text(column)), Text), "null")


async def copy_out(job: ExportJob) -> int:
    conn, fmt, stream = job.conn, job.fmt, job.stream
    if fmt is Format.CSV:
        values = [_copy_value(column).label(column.name) for column in job.columns]
        options: dict[str, Any] = {"format": "csv", "header": True}
    else:
        values = [json_line(job.columns, _json_value).label("line")]
        # One column that never holds these characters, CR or LF (JSON escapes them): COPY
        # then writes each line as it is.
        options = {"format": "csv", "delimiter": "\x02", "quote": "\x01"}
    sql, arguments = driver_sql(conn.dialect, job.query(values))
    decoder = codecs.getincrementaldecoder("utf-8")()
    array = ArrayWriter(stream) if fmt is Format.JSON else None
    write = array.write if array is not None else stream.write
    write_bytes = getattr(stream, "write_bytes", None)  # GuardedStream: straight to the file

    async def sink(chunk: bytes) -> None:
        if array is None and write_bytes is not None:
            write_bytes(chunk)
        else:
            write(decoder.decode(chunk))

    # Timestamps are rendered in UTC (as_text); only this transaction's setting changes.
    await conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
    raw = await conn.get_raw_connection()
    status = await raw.driver_connection.copy_from_query(  # type: ignore[union-attr]
        sql, *arguments, output=sink, **options
    )
    write(decoder.decode(b"", final=True))
    if array is not None:
        array.close()
    return int(str(status).rsplit(" ", 1)[-1])  # "COPY 1000000"
