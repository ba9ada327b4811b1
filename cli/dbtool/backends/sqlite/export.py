"""SQLite's fast export: the query returns each row as one finished line (built by
printf), after one scan has checked that every value is in the form SQLAlchemy stores
(values written by other tools in other forms go through the general path). Large tables
are rendered by this process and a second one (`chunks`), every other chunk each."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    Column,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends.base import READONLY, ExportJob, driver_sql
from dbtool.backends.rendering import cat, csv_field, json_line, write_lines
from dbtool.backends.sqlite.files import database_file, sqlite_error
from dbtool.formats import Format
from dbtool.models.user_model import UserModel, keeps_time_zone, python_type

SQLITE_BATCH = 10_000
_MAX_PRINTF_ARGUMENTS = 100  # SQLite's limit: 127


def _file(conn: AsyncConnection) -> Any:
    return database_file(conn.engine.url)


async def export(job: ExportJob) -> int | None:
    """The export, or None where a value needs the general path."""
    conn, model = job.conn, job.model
    two = await _sqlite_in_two(job) if await _two_readers_pay(conn, model) else _Not.ALONE
    if isinstance(two, int):
        return two
    if two is _Not.ALONE and await _sqlite_ready(conn, model, job.columns):
        return await _sqlite_out(job)
    return None


def as_text(column: Column[Any]) -> Any:
    """The column's value as the general path writes it in CSV; NULL stays NULL."""
    kind = python_type(column)
    if issubclass(kind, bool):
        return case({1: literal("true"), 0: literal("false")}, value=column)
    if issubclass(kind, date) and not issubclass(kind, datetime):
        return column
    rendered = _sqlite_rendering(column)
    if rendered is None:
        return column
    # NULL stays NULL (printf would render the pieces around it).
    return case((column.is_not(None), func.printf(*rendered)))


def _sqlite_rendering(column: Column[Any]) -> tuple[Any, ...] | None:
    """printf's format and arguments that render a SQLite timestamp or UUID column as the
    general path writes it (None: the stored value is already that text). SQLite holds what
    SQLAlchemy stores (_sqlite_ready checks): "YYYY-MM-DD HH:MM:SS.ffffff" for timestamps,
    32 lower-case hex digits for UUIDs."""
    kind = python_type(column)
    if issubclass(kind, datetime):
        # isoformat() leaves out a zero fraction of a second.
        time = case(
            (func.substr(column, 21) == "000000", func.substr(column, 12, 8)),
            else_=func.substr(column, 12),
        )
        suffix = "+00:00" if keeps_time_zone(column) else ""
        return f"%.10sT%s{suffix}", column, time
    if issubclass(kind, uuid.UUID):
        starts = (9, 13, 17, 21)
        return "%.8s-%.4s-%.4s-%.4s-%s", column, *(func.substr(column, at) for at in starts)
    return None


def _json_value(column: Column[Any]) -> Any:
    """The column's value in JSON: numbers and true/false as they are, the rest quoted."""
    from sqlalchemy import Text

    kind = python_type(column)
    if issubclass(kind, bool):
        return func.coalesce(as_text(column), "null")
    if issubclass(kind, int):
        return func.coalesce(cast(column, Text), "null")
    return func.json_quote(as_text(column))  # json_quote(NULL) is null


def _csv_piece(column: Column[Any]) -> tuple[str, list[Any]]:
    """A column's part of the line, as printf format and arguments (printf builds the
    whole line in one step, where || would copy it once per column)."""
    kind = python_type(column)
    if issubclass(kind, str):
        return "%s", [csv_field(column)]
    if issubclass(kind, bool):
        return "%s", [as_text(column)]  # NULL prints as nothing
    rendered = _sqlite_rendering(column)
    if rendered is None:
        return "%s", [column]  # integers and dates as stored
    if column.nullable:
        return "%s", [as_text(column)]
    piece, *arguments = rendered
    return piece, arguments


def _csv_line(columns: list[Column[Any]]) -> Any:
    """One CSV line as text, as csv.writer(lineterminator="\\n") writes it (one string per
    row costs Python far less than a value per column)."""
    calls: list[Any] = []
    pieces: list[str] = []
    arguments: list[Any] = []
    for column in columns:
        piece, more = _csv_piece(column)
        if len(arguments) + len(more) > _MAX_PRINTF_ARGUMENTS:
            calls.append(func.printf(",".join(pieces) + ",", *arguments))
            pieces, arguments = [], []
        pieces.append(piece)
        arguments += more
    return cat(*calls, func.printf(",".join(pieces), *arguments))


def _lines(job: ExportJob) -> Any:
    """The selected rows, one finished line each."""
    if job.fmt is Format.CSV:
        return job.query([_csv_line(job.columns).label("line")])
    return job.query([json_line(job.columns, _json_value).label("line")])


def _sqlite_irregular(column: Column[Any]) -> Any | None:
    """A condition true for stored values the query would not render as the general path
    does (None: every value is fine)."""
    kind = python_type(column)
    if issubclass(kind, bool):
        return and_(column.is_not(None), column.not_in(_values(0, 1)))
    if issubclass(kind, datetime):
        # GLOB's "?" (one character each) checks length and separators in one cheap step.
        regular = and_(
            func.typeof(column) == "text", column.op("GLOB")("????-??-?? ??:??:??.??????")
        )
        return and_(column.is_not(None), not_(regular))
    if issubclass(kind, uuid.UUID):
        regular = and_(
            func.typeof(column) == "text",
            func.length(column) == 32,
            column == func.lower(column),
        )
        return and_(column.is_not(None), not_(regular))
    if issubclass(kind, date):
        return and_(column.is_not(None), func.length(column) != 10)
    if issubclass(kind, int):
        return func.typeof(column).not_in(_values("integer", "null"))
    return func.typeof(column).not_in(_values("text", "null"))


def _values(*values: Any) -> list[Any]:
    """Values for IN as separate placeholders, which the two readers' SQL can carry (a
    plain list is expanded only when SQLAlchemy runs the statement)."""
    return [literal(value) for value in values]


_JSON_PROBE = '"\\ü\n\t\x01\u2028'


async def _sqlite_ready(
    conn: AsyncConnection, model: UserModel, columns: list[Column[Any]]
) -> bool:
    """Whether every stored value is one the query renders exactly (one scan), and this
    SQLite's json_quote escapes as Python's json does."""
    if not await _json_quote_matches(conn):
        return False
    return (await conn.scalar(_irregular_row(model, columns))) is None


async def _json_quote_matches(conn: AsyncConnection) -> bool:
    """Whether this SQLite's json_quote escapes as Python's json does."""
    probe = await conn.scalar(select(func.json_quote(_JSON_PROBE)))
    return bool(probe == json.dumps(_JSON_PROBE, ensure_ascii=False))


def _irregular_row(model: UserModel, columns: list[Column[Any]]) -> Any:
    """A row holding a value the SQLite rendering would get wrong, if there is one."""
    conditions = [c for column in columns if (c := _sqlite_irregular(column)) is not None]
    return select(literal(1)).select_from(model.table).where(or_(*conditions)).limit(1)


async def _sqlite_out(job: ExportJob) -> int:
    conn = job.conn
    sql, arguments = driver_sql(conn.dialect, _lines(job))
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(sql, arguments)  # type: ignore[union-attr]
    try:
        return await write_lines(job, cursor, SQLITE_BATCH)
    finally:
        await cursor.close()


# --- SQLite, large tables: two readers ---------------------------------------------------------

SQLITE_CHUNK = 5_000  # rows a reader renders in one step (about 1.2 MB of CSV)


async def _two_readers_pay(conn: AsyncConnection, model: UserModel) -> bool:
    """Whether the export reads through two processes (`dbtool.backends.sqlite.chunks`): the
    database is a UTF-8 file, the transaction only reads (so another connection sees what it sees,
    and the brief write lock below cannot wait for this one), the table holds more than
    two chunks of rows, and json_quote renders JSON as the general path does."""
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    if _file(conn) is None or not options.get(READONLY):
        return False
    if await conn.scalar(text("PRAGMA encoding")) != "UTF-8":
        return False
    if not await _json_quote_matches(conn):
        return False
    beyond = select(literal(1)).select_from(model.table).limit(1).offset(2 * SQLITE_CHUNK)
    return await conn.scalar(beyond) is not None


def _plan(job: ExportJob) -> Any:
    """The statements both readers run (`dbtool.backends.sqlite.chunks.Plan`)."""
    from sqlalchemy import LargeBinary, bindparam, tuple_

    from dbtool.backends.sqlite.chunks import Plan, Statement

    conn, model = job.conn, job.model
    dialect = conn.dialect

    def statement(query: Any, *names: str) -> Statement:
        sql, arguments = driver_sql(dialect, query, dict.fromkeys(names))
        order = query.compile(dialect=dialect).positiontup
        return Statement(sql, arguments, [order.index(name) for name in names])

    order = job.order
    names = [f"key{number}" for number in range(len(order))]
    keyed = [bindparam(name, type_=col.type) for name, col in zip(names, order, strict=True)]
    after = tuple_(*order) > tuple_(*keyed)
    separator = ",\n" if job.fmt is Format.JSON else "\n"

    def render(query: Any) -> Any:
        lines = query.limit(SQLITE_CHUNK).subquery()
        rendered = cast(func.group_concat(lines.c.line, separator), LargeBinary)
        return select(func.count(), rendered).select_from(lines)

    lines = _lines(job)
    keys = job.keys
    check = _irregular_row(model, job.columns)
    rowids = literal_column("rowid").between(bindparam("low"), bindparam("high"))
    return Plan(
        database=str(_file(conn)),
        chunk=SQLITE_CHUNK,
        snapshot=statement(select(literal(1)).select_from(model.table).limit(1)),
        render_first=statement(render(lines)),
        render_next=statement(render(lines.where(after)), *names),
        seek_first=statement(keys.offset(SQLITE_CHUNK - 1).limit(1)),
        seek_next=statement(keys.where(after).offset(SQLITE_CHUNK - 1).limit(1), *names),
        check=statement(check.where(rowids), "low", "high"),
        check_whole=statement(check),
    )


class _Not(Enum):
    """Why `_sqlite_in_two` wrote nothing."""

    IRREGULAR = "a value needs the general path"
    ALONE = "no second reader: the single query on the session's connection instead"


async def _sqlite_in_two(job: ExportJob) -> int | _Not:
    """The export rendered by this process and a second one (`dbtool.backends.sqlite.chunks`), every
    other chunk each, from one snapshot: while both take theirs, a write lock keeps other
    connections from committing (for the few milliseconds the second process takes to
    start). Without the lock (another writer holds it, the file is read-only), or when the
    second process or this one's own connection cannot start, nothing is written: ALONE."""
    import asyncio
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from dbtool.backends.sqlite import chunks as sqlite_chunks

    plan = _plan(job)
    table = job.model.table
    rowid: Any = literal_column("rowid")
    # Two subqueries: SQLite finds a lone min() or max() in the index, both at once by a scan.
    bounds = select(*(select(end(rowid)).select_from(table).scalar_subquery()
                      for end in (func.min, func.max)))  # fmt: skip
    has_rowid = table.dialect_options["sqlite"].get("with_rowid", True)
    bounds_sql = driver_sql(job.conn.dialect, bounds)[0] if has_rowid else None
    loop = asyncio.get_running_loop()
    # One thread owns this process's connection (sqlite3 objects stay in one thread).
    thread = ThreadPoolExecutor(1, thread_name_prefix="dbtool-export")

    def call(function: Any, *arguments: Any) -> Any:
        return loop.run_in_executor(thread, function, *arguments)

    worker: _Worker | None = None
    db = None
    try:
        lock = await call(_write_lock, plan.database)
        if lock is None:
            return _Not.ALONE
        try:
            worker = await _Worker.start(plan)
            if worker is None:
                return _Not.ALONE
            try:
                db = await call(sqlite_chunks.connect, plan.database)
                reader = sqlite_chunks.Reader(db, plan, parity=0)
                await call(reader.take_snapshot)
                halves = await call(_rowid_halves, db, bounds_sql)
            except sqlite3.Error:  # (a read-only URI the session's connection did not need)
                return _Not.ALONE
            if not await worker.ready(halves[1]):
                return _Not.ALONE
        finally:
            await call(lock.close)  # closing rolls back: other writers go on
        mine = call(reader.irregular, halves[0])
        if await mine or await worker.irregular():
            return _Not.IRREGULAR
        return await _merge(call, reader, worker, job)
    except sqlite3.Error as exc:
        raise sqlite_error("users export", exc) from exc
    finally:
        if worker is not None:
            await worker.stop()
        if db is not None:
            await call(db.close)
        thread.shutdown(wait=False)


Rowids = tuple[int, int]


def _rowid_halves(db: Any, bounds_sql: str | None) -> tuple[Rowids | None, Rowids | None]:
    """The table's rowids split in two, for the two readers' checks (None, None: the table
    has no rowid or no rows, and the first reader checks it whole)."""
    low, high = db.execute(bounds_sql).fetchone() if bounds_sql else (None, None)
    if low is None or high is None:
        return None, None
    middle = (low + high) // 2
    return (low, middle), (middle + 1, high)


def _write_lock(path: str) -> Any:
    """A connection holding the write lock (no other connection can commit), or None when
    another writer has it or the file is read-only."""
    import sqlite3

    from dbtool.backends.sqlite.chunks import file_uri

    lock = sqlite3.connect(file_uri(path, "rw"), uri=True, timeout=0.2, isolation_level=None,
                           check_same_thread=False)  # fmt: skip
    try:
        lock.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        lock.close()
        return None
    return lock


# Bytes of the second reader's output taken in at a time: asyncio buffers up to twice this
# before it stops reading the pipe. Its default (64 KiB) costs two event-loop turns per
# 128 KiB; 4 MiB let the second reader run up to 8 MiB ahead when dbtool's own chunks were
# slower (peak memory 64 to 84 MiB from run to run at a million rows, against 59 at 10,000);
# 1 MiB keeps two chunks in flight, as fast (5.34 s vs 5.25 s, medians of 5 interleaved runs)
# at 64 to 66 MiB.
_PIPE_BUFFER = 1 << 20


class _Worker:
    """The second reader: `cli/sqlite_chunks.py` in its own process."""

    def __init__(self, process: Any) -> None:
        self.process: Any = process  # asyncio.subprocess.Process, its pipes all open

    @classmethod
    async def start(cls, plan: Any) -> _Worker | None:
        import asyncio
        import sys

        from dbtool.backends.sqlite import chunks as sqlite_chunks

        pipe = asyncio.subprocess.PIPE
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", sqlite_chunks.__file__, stdin=pipe, stdout=pipe,
                stderr=pipe, limit=_PIPE_BUFFER,
            )  # fmt: skip
        except OSError:
            return None
        worker = cls(process)
        worker.process.stdin.write(plan.to_json().encode() + b"\n")
        return worker

    async def ready(self, rowids: Rowids | None) -> bool:
        """Send the rows it checks; whether it has taken its snapshot."""
        from dbtool.backends.sqlite.chunks import READY
        from dbtool.errors import DbtoolError

        try:
            self.process.stdin.write(json.dumps(rowids).encode() + b"\n")
            await self.process.stdin.drain()
            self.process.stdin.close()
            count, _ = await self._frame()
        except (OSError, DbtoolError):
            return False
        return count == READY

    async def irregular(self) -> bool:
        _, payload = await self._frame()
        return payload == b"1"

    async def chunk(self) -> tuple[int, bytes]:
        return await self._frame()

    async def _frame(self) -> tuple[int, bytes]:
        import asyncio

        from dbtool.backends.sqlite.chunks import HEADER
        from dbtool.errors import DbtoolError

        try:
            count, length = HEADER.unpack(await self.process.stdout.readexactly(HEADER.size))
            return count, await self.process.stdout.readexactly(length)
        except asyncio.IncompleteReadError:
            why = (await self.process.stderr.read()).decode(errors="replace").strip()
            raise DbtoolError(f"the export's second reader failed: {why or 'it stopped'}") from None

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def _merge(
    call: Any,
    reader: Any,
    worker: _Worker,
    job: ExportJob,
) -> int:
    """Write the chunks in order, the second reader's between this one's; how many rows."""
    fmt, stream = job.fmt, job.stream
    write = getattr(stream, "write_bytes", None) or (lambda data: stream.write(data.decode()))
    job.write_csv_header()
    mine = reader.chunks()
    pending = call(next, mine, (0, b""))
    total, number = 0, 0
    while True:
        if number % 2 == 0:
            count, rendered = await pending  # type: int, bytes
            pending = call(next, mine, (0, b""))  # under way while the other chunk is written
        else:
            count, rendered = await worker.chunk()
        if count:
            if fmt is Format.JSON:
                write(b"[\n" if total == 0 else b",\n")
            write(rendered if fmt is Format.JSON else rendered + b"\n")
        total += count
        if count < reader.plan.chunk:
            break
        number += 1
    if fmt is Format.JSON:
        write(b"\n]\n" if total else b"[]\n")
    return total
