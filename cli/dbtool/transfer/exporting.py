"""`users export`: the selected users' columns in CSV, JSON Lines or one JSON array.

The general path (`ExportWriter` over `UserRecord`s) defines the output. Where every
column is a plain value, the backend may render the file in the database instead
(`Backend.fast_export`: COPY on PostgreSQL, printf on SQLite), so that Python only moves
bytes; tests compare both paths byte for byte.
"""

from __future__ import annotations

import csv
import json
import uuid
from datetime import date, datetime
from typing import IO, Any

from sqlalchemy import Column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from dbtool.backends import backend_for
from dbtool.backends.base import ExportJob
from dbtool.formats import Format, csv_value, json_default
from dbtool.models.user_model import UserModel, python_type
from dbtool.users.service import UserFilter, filtered, list_order, stream_users

FAST_TYPES = (bool, int, str, uuid.UUID, datetime, date)


def export_columns(model: UserModel, include_hashes: bool) -> list[str]:
    return [*model.public_names, *([model.password.name] if include_hashes else [])]


def _plain(column: Column[Any]) -> bool:
    """True for a column whose stored value, read back, is one of FAST_TYPES unchanged:
    no enum, and no TypeDecorator that converts what it reads."""
    kind = python_type(column)
    if not issubclass(kind, FAST_TYPES) or getattr(column.type, "enums", None):
        return False
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        converts = type(column_type).process_result_value is not TypeDecorator.process_result_value
        return not converts and not getattr(column_type.impl, "enums", None)
    return True


async def export_users(
    session: AsyncSession,
    selection: UserFilter,
    *,
    model: UserModel,
    columns: list[str],
    fmt: Format,
    stream: IO[str],
) -> int:
    """Write the selected users' `columns` to `stream` in `fmt`; how many were written."""
    table_columns = [model.table.columns[name] for name in columns]
    conn = await session.connection()
    if all(_plain(column) for column in table_columns):
        order = list_order(model)
        job = ExportJob(
            conn=conn,
            model=model,
            columns=table_columns,
            fmt=fmt,
            stream=stream,
            query=lambda values: filtered(
                select(*values).select_from(model.table), selection, model
            ),
            keys=filtered(select(*order).select_from(model.table), selection, model),
            order=order,
        )
        written = await backend_for(conn.dialect.name).fast_export(job)
        if written is not None:
            return written
    return await general_export(session, selection, model, columns, fmt, stream)


async def general_export(
    session: AsyncSession,
    selection: UserFilter,
    model: UserModel,
    columns: list[str],
    fmt: Format,
    stream: IO[str],
) -> int:
    """Any model, any values: one UserRecord at a time through ExportWriter."""
    writer = ExportWriter(stream, fmt, columns)
    count = 0
    with_hash = model.password.name in columns
    users = stream_users(session, selection, model=model, with_hash=with_hash)
    try:
        async for user in users:
            writer.write({name: user.data[name] for name in columns})
            count += 1
    except BaseException:
        # Stopped half-way (the reader left, Ctrl-C): the connection is dropped rather than
        # made to read the rest of the rows, which is the only other way MySQL's protocol
        # has to end an unfinished result.
        conn = await session.connection()
        await conn.invalidate()
        raise
    finally:
        await users.aclose()
    writer.close()
    return count


class ExportWriter:
    """Writes exported rows as CSV, JSON Lines or one JSON array, in the form `users
    import` reads back. Call `close` after the last row (it ends the JSON array)."""

    def __init__(self, stream: IO[str], fmt: Format, columns: list[str]) -> None:
        self.stream, self.fmt, self.columns = stream, fmt, columns
        self._csv = csv.writer(stream, lineterminator="\n") if fmt is Format.CSV else None
        if self._csv is not None:
            self._csv.writerow(columns)
        self._separator = "[\n"  # before the next JSON array element

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([csv_value(row[name]) for name in self.columns])
            return
        line = json.dumps(row, default=json_default, ensure_ascii=False)
        if self.fmt is Format.JSON:
            self.stream.write(self._separator + line)
            self._separator = ",\n"
        else:
            self.stream.write(line + "\n")

    def close(self) -> None:
        if self.fmt is Format.JSON:
            self.stream.write("[]\n" if self._separator == "[\n" else "\n]\n")
