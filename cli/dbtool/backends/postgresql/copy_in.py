"""A CSV file streamed into a table by COPY ... FROM STDIN (CSV, HEADER): PostgreSQL's own
parser checks every value against its column, at the speed of `psql \\copy`.

A value it refuses ends the COPY (and the transaction) with the line and the column in the
error's context ("COPY reading, line 12, column price: ..."): raised as RowRejected, the
value itself left out of the reason (it may be a secret). Times without a zone are read as
UTC (the transaction's time zone), as dbtool writes them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends.base import CsvSource, RowRejected

CHUNK = 1 << 20
_WHERE = re.compile(r"COPY \S+, line (?P<line>\d+)(?:, column (?P<column>[^:]+))?")
_VALUE = re.compile(r':\s*".*"\s*$', re.DOTALL)
# Integrity errors that are one row's fault (its line is known), not a conflict.
_ROW_FAULTS = {"23502", "23514"}  # not null, check


async def copy_csv(conn: AsyncConnection, table: Table, source: CsvSource) -> int:
    from asyncpg.exceptions import DataError, IntegrityConstraintViolationError

    raw: Any = (await conn.get_raw_connection()).driver_connection
    await conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
    try:
        status = await raw.copy_to_table(
            table.name, source=_chunks(source), columns=source.columns,
            schema_name=table.schema, format="csv", header=True,
            force_not_null=source.keep_empty or None,
        )  # fmt: skip
    except IntegrityConstraintViolationError as exc:
        if exc.sqlstate in _ROW_FAULTS:
            raise _rejected(exc) from None
        raise IntegrityError("COPY", None, exc) from exc
    except DataError as exc:
        raise _rejected(exc) from None
    return int(str(status).split()[-1])


async def load_block(
    conn: AsyncConnection,
    table: Table,
    columns: list[str],
    rows: Iterable[Any],
    *,
    csv_lines: bool = False,
) -> int | None:
    """`rows` into `table` in a savepoint: pieces of CSV text without a header (text COPY,
    `csv_lines`), or rows of values (binary COPY); None where the server refused a value
    or a constraint, or `rows` raised ValueError (rolled back to the savepoint: the caller
    reads the lines itself to say which)."""
    from asyncpg.exceptions import DataError, IntegrityConstraintViolationError

    raw: Any = (await conn.get_raw_connection()).driver_connection
    where = {"columns": columns, "schema_name": table.schema}
    await raw.execute("SAVEPOINT dbtool_block")
    try:
        if csv_lines:
            source = _pieces(rows)
            status = await raw.copy_to_table(table.name, source=source, format="csv", **where)
        else:
            status = await raw.copy_records_to_table(table.name, records=rows, **where)
    except (DataError, IntegrityConstraintViolationError, ValueError):
        await raw.execute("ROLLBACK TO SAVEPOINT dbtool_block")
        return None
    await raw.execute("RELEASE SAVEPOINT dbtool_block")
    return int(str(status).split()[-1])


async def _pieces(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:  # made as the server takes them
        yield piece


async def _chunks(source: CsvSource) -> AsyncIterator[bytes]:
    lines = 0
    with source.path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk
            if source.on_progress is not None:
                lines += chunk.count(b"\n")
                source.on_progress(max(lines - 1, 0))


def _rejected(exc: Any) -> RowRejected:
    where = _WHERE.search(str(getattr(exc, "context", "") or ""))
    line = int(where["line"]) if where else 0
    column = where["column"] if where and where["column"] else getattr(exc, "column_name", None)
    reason = _VALUE.sub("", str(getattr(exc, "message", exc))).strip()
    return RowRejected(line, column, reason)
