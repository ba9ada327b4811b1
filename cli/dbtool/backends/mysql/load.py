"""Bulk loading into MySQL and MariaDB: LOAD DATA LOCAL INFILE, the server's own bulk path
(what `mariadb --local-infile` and `mysqlimport` use), with multi-row INSERTs where the
server refuses LOCAL loads.

Each batch is written as tab-separated text to a private temporary file (mode 0600: it
holds password hashes), loaded, and deleted. The connection advertises LOCAL loads (that
is said at connect time), but the driver answers the server's request for a local file
only while dbtool's own LOAD DATA runs, and only for the file that statement named: a
request at any other time, or for any other file (a hostile server's), is refused. That
check lives in the driver's file sender, replaced by `_GuardedSender` (which also mends
asyncmy 0.2's sender, which fails on the file name the server sends as bytes).

LOAD DATA LOCAL turns duplicate keys and bad values into warnings (the server cannot stop
the client's stream); they are read back after every batch and raised as the errors they
are, so a load is exactly as strict as an INSERT.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import os
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

# Errors that mean the server (or its configuration) takes no LOCAL load.
_LOCAL_REFUSED = (1148, 3948, 2068)
_DUPLICATE_KEY = 1062

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def field(value: Any) -> str:
    """One value as LOAD DATA reads it (FIELDS ESCAPED BY '\\'): NULL as \\N."""
    if value is None:
        return "\\N"
    kind = value.__class__
    if kind is str:
        return value.translate(_ESCAPES)  # type: ignore[no-any-return]
    if kind is bool:
        return "1" if value else "0"
    if kind is datetime:
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(" ")  # type: ignore[no-any-return]
    if kind is date:
        return value.isoformat()  # type: ignore[no-any-return]
    if kind is bytes:
        return value.hex()  # type: ignore[no-any-return]
    return str(value).translate(_ESCAPES)


class LocalLoadRefused(Exception):
    """The server takes no LOAD DATA LOCAL (local_infile off): load by INSERTs instead."""


# The file dbtool's LOAD DATA of this task named: the only one the driver may send.
_allowed: ContextVar[str | None] = ContextVar("dbtool_local_file", default=None)
_guards: set[str] = set()


def _guard(driver_module: str) -> bool:
    """Put `_GuardedSender` in place of the driver's local-file sender (once); False where
    the driver has none of the shape dbtool knows (then batches go by INSERTs)."""
    if driver_module in _guards:
        return True
    try:
        module = importlib.import_module(driver_module)
    except ImportError:
        return False
    original = getattr(module, "LoadLocalFile", None)
    if not isinstance(original, type) or not hasattr(original, "send_data"):
        return False
    module.LoadLocalFile = _guarded(original)  # type: ignore[attr-defined]
    _guards.add(driver_module)
    return True


def _guarded(original: type) -> type:
    class _GuardedSender(original):  # type: ignore[misc]
        """The driver's sender, for dbtool's own file only; any other is answered with an
        empty file (what the protocol expects of a sender that cannot send) and an error."""

        def __init__(self, filename: Any, connection: Any) -> None:
            name = os.fsdecode(filename)
            super().__init__(name, connection)
            self.refused = name != _allowed.get()

        async def send_data(self) -> None:
            if not self.refused:
                await super().send_data()
                return
            self.connection.write_packet(b"")
            drain = getattr(getattr(self.connection, "_proto", None), "drain", None)
            if drain is not None:
                await drain()
            raise PermissionError(f"dbtool refused to send {self.filename!r} to the server")

    return _GuardedSender


async def load_data(
    conn: AsyncConnection, table: Table, columns: list[str], rows: list[list[Any]]
) -> None:
    """Load `rows` (values for `columns`, through the bind processors) into `table` with
    LOAD DATA LOCAL INFILE, in the connection's transaction. A duplicate key is
    SQLAlchemy's IntegrityError, any other value the server would not store a DataError;
    LocalLoadRefused when the server takes no LOCAL load."""
    preparer = conn.dialect.identifier_preparer
    # Bytes travel as hex (the file is text), read into a variable and UNHEX()ed.
    binary = [at for at, name in enumerate(columns) if _is_binary(table, name)]
    names = ", ".join(
        f"@hex{at}" if at in binary else preparer.quote(name) for at, name in enumerate(columns)
    )
    unhex = ", ".join(f"{preparer.quote(columns[at])} = UNHEX(@hex{at})" for at in binary)
    target = preparer.format_table(table)
    raw: Any = (await conn.get_raw_connection()).driver_connection
    if not _guard(type(raw).__module__):
        raise LocalLoadRefused("this driver's local-file sender is not one dbtool knows")
    with _batch_file(rows, _converters(table, columns)) as path:
        statement = (
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {target} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
            f" ({names})" + (f" SET {unhex}" if unhex else "")
        )
        async with raw.cursor() as cursor:
            try:
                with _answering_for(raw, path):
                    await cursor.execute(statement)
            except Exception as exc:
                if exc.args and exc.args[0] in _LOCAL_REFUSED:
                    raise LocalLoadRefused(str(exc)) from exc
                raise
            await cursor.execute("SHOW WARNINGS LIMIT 5")
            warnings = [tuple(row) for row in await cursor.fetchall()]
    for _level, code, message in warnings:
        error = type("DriverError", (Exception,), {})(int(code), str(message))
        if int(code) == _DUPLICATE_KEY:
            raise IntegrityError("LOAD DATA", None, error)
        raise DataError("LOAD DATA", None, error)


def _converters(table: Table, columns: list[str]) -> list[tuple[int, Any]]:
    """(position, function) for the values csv.writer would not write as LOAD DATA reads
    them: booleans (as 1/0) and timestamps with a zone (as UTC without one). Each takes
    what it made already too: a conflict report loads the same rows again."""
    from dbtool.models.user_model import python_type

    found: list[tuple[int, Any]] = []
    for position, name in enumerate(columns):
        kind = python_type(table.columns[name])
        if issubclass(kind, bool):
            found.append((position, _BOOLEANS.get))
        elif _is_binary(table, name):
            found.append((position, _hex))
        elif issubclass(kind, datetime):
            found.append((position, _naive_utc))
    return found


_BOOLEANS = {True: "1", False: "0", "1": "1", "0": "0"}  # 1 and 0 are True and False


def _is_binary(table: Table, name: str) -> bool:
    from sqlalchemy import LargeBinary

    from dbtool.models.user_model import python_type

    column = table.columns[name]
    return isinstance(column.type, LargeBinary) or issubclass(python_type(column), bytes)


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes | bytearray | memoryview) else value


def _naive_utc(value: Any) -> Any:
    zone = getattr(value, "tzinfo", None)
    if zone is UTC:
        return value.replace(tzinfo=None)
    if zone is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


@contextlib.contextmanager
def _batch_file(rows: list[list[Any]], converters: list[tuple[int, Any]]) -> Iterator[str]:
    """The batch as a tab-separated file that only this user can read, removed afterwards:
    csv.writer (in C) escapes tabs, line breaks and backslashes with a backslash, as LOAD
    DATA's ESCAPED BY '\\' reads them; a row holding NULL (\\N, which csv.writer would
    escape) is written value by value."""
    descriptor, path = tempfile.mkstemp(prefix="dbtool-load-", suffix=".tsv")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\",
                                quotechar=None, lineterminator="\n")  # fmt: skip
            # In the rows' order (a table that references itself has its parents first):
            # runs of rows without NULL go through the writer, a column at a time (fewer
            # Python steps), the others value by value.
            start = 0
            for end in [*(at for at, row in enumerate(rows) if None in row), len(rows)]:
                whole = rows[start:end]
                for position, convert in converters:
                    for row in whole:
                        row[position] = convert(row[position])
                writer.writerows(whole)
                if end < len(rows):
                    handle.write("\t".join(map(field, rows[end])) + "\n")
                start = end + 1
        if "'" in path or "\\" in path:  # never: mkstemp's names are letters and digits
            raise ValueError(f"unusable temporary file name {path!r}")
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def _answering_for(raw: Any, path: str) -> Iterator[None]:
    """The driver sends a local file while the block runs, and only `path`."""
    if not hasattr(raw, "_local_infile"):
        raise LocalLoadRefused("this driver cannot send local files")
    token = _allowed.set(path)
    raw._local_infile = True
    try:
        yield
    finally:
        raw._local_infile = False
        _allowed.reset(token)
