"""Bulk import and export of users: streaming, all-or-nothing, set-based, on any user model.

Import reads CSV or JSON Lines in batches (dbtool.transfer.readers), validates every row by the same
rules as `users add`, hashes plain passwords on all cores, stages the rows in a temporary
table shaped like the user table (COPY on PostgreSQL, executemany on SQLite) and moves them
into it with set-based statements, all in one transaction. Memory holds one batch, whatever
the file size. Blocks of lines in the plain form of an export skip the row-by-row work
(dbtool.transfer.blocks, `_BlockLoader`); into an empty PostgreSQL table, the indexes are
built after the load (`Backend.drop_indexes_for_load`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    Table,
    Uuid,
    and_,
    exists,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import DefaultClause
from sqlalchemy.sql.elements import BindParameter

from dbtool.backends.base import Backend, IndexConflictError
from dbtool.db import Database
from dbtool.errors import ConflictError, DbtoolError, InvalidInputError
from dbtool.formats import OnConflict
from dbtool.models.user_model import (
    FLAG_DEFAULTS,
    FLAG_ROLES,
    NaiveTimeError,
    UserModel,
    check_length,
    converter,
    python_type,
)
from dbtool.transfer.blocks import BlockForm, block_form
from dbtool.transfer.readers import (
    ERROR_KEY,
    Block,
    Records,
    block_records,
    detect_format,
    read_records,
)
from dbtool.users import passwords
from dbtool.users.validation import normalize_email, normalize_username, username_from_email
from dbtool.wording import counted

__all__ = [
    "ImportConflictError",
    "ImportRejectedError",
    "ImportReport",
    "Rejection",
    "detect_format",
    "import_fields",
    "import_users",
    "plain_password_key",
    "read_records",
]

REPORT_LIMIT = 20
DEFAULT_BATCH_SIZE = 5000
DERIVED_USERNAME = "__derived_username"
LINE = "__line"


def plain_password_key(model: UserModel) -> str:
    """The column name of plain-text passwords in import files."""
    return "plain_password" if model.password.name == "password" else "password"


def import_fields(model: UserModel) -> tuple[str, ...]:
    """The columns an import file may have: the table's, plus plain-text passwords."""
    return (*model.table.columns.keys(), plain_password_key(model))


# --- validation -------------------------------------------------------------------------------


class RowError(Exception):
    """Why one input row cannot be imported; `field`, the key whose value failed (the
    rejects file leaves that value out: a misplaced password fails as an email)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RowPlan:
    """How each input row becomes a staged row of the user model (built once per import).

    The staged row holds, in `columns` order: the line number, then every column of the
    user table (None where the file said nothing and the database or the move decides),
    then the username derived from the email where the file gives none. Keep `validate`
    lean: it runs once per row of files with millions of rows.
    """

    def __init__(
        self,
        model: UserModel,
        *,
        min_password_length: int,
        scheme: str,
        assume_utc: bool = False,
        server_id: Any = None,
        integer_range: Callable[[Column[Any]], tuple[int, int]] | None = None,
    ) -> None:
        """`server_id`: the database's expression for a random (v4) id (the backend's
        `random_uuid`), which makes the ids the file does not give, in the move, not here:
        a second per million rows. `integer_range`: the backend's, so that a number the
        column cannot hold is a row error, not the driver's."""
        self.model = model
        self.server_id = server_id
        server_ids = self.server_ids = server_id is not None
        self.min_password_length = min_password_length
        self.scheme = scheme
        self.plain = plain_password_key(model)
        table_columns = list(model.table.columns)
        self.columns: list[str] = [LINE, *(c.name for c in table_columns)]
        if model.username is not None:
            self.columns.append(DERIVED_USERNAME)
        self.index = {name: position for position, name in enumerate(self.columns)}
        special = {model.email, model.password, model.username}
        # (key, staged position, converter) for the columns taken from the file as they are.
        integers = integer_range or _int64
        self.plain_columns = [
            (c.name, self.index[c.name], _import_converter(c, assume_utc=assume_utc,
                                                           integers=integers(c)))
            for c in table_columns
            if c not in special
        ]  # fmt: skip
        self.hash_length = getattr(model.password.type, "length", None)
        # Python-side callable defaults (uuid4, ...) run per row here: INSERT ... SELECT
        # cannot call them. Scalar and server defaults are applied by the move.
        self.fillers = [
            (self.index[c.name], getattr(c.default, "arg"))  # noqa: B009 (typing: Any)
            for c in table_columns
            if c.default is not None
            and c.default.is_callable
            and c not in {*special, model.created, model.updated}  # stamped in validate
            and not (server_ids and c is model.id)
        ]
        if model.generate_id and not server_ids:
            self.fillers.append((self.index[model.id.name], lambda _ctx: uuid.uuid4()))
        self.fillers += [(self.index[c.name], lambda _ctx: uuid.uuid4()) for c in model.generated]
        # (name, position, whether an empty field is the empty string): a required text
        # column takes "" (what `users add --set name=` stores and export writes back).
        self.required = [
            (c.name, self.index[c.name], issubclass(python_type(c), str)) for c in model.required
        ]
        # Keys and positions looked up once, not for every row.
        self.email_key, self.email_at = model.email.name, self.index[model.email.name]
        self.password_key = model.password.name
        self.password_at = self.index[model.password.name]
        self.username_key = None if model.username is None else model.username.name
        self.username_at = self.index.get(self.username_key or "")
        self.derived_at = self.index.get(DERIVED_USERNAME)
        self.created_at = None if model.created is None else self.index[model.created.name]
        self.updated_at = None if model.updated is None else self.index[model.updated.name]

    def validate(
        self, line: int, record: dict[str, Any], now: datetime
    ) -> tuple[list[Any], str | None]:
        """(staged values, plain password or None); RowError says what is wrong."""
        if ERROR_KEY in record:
            raise RowError(record[ERROR_KEY])
        model = self.model
        values: list[Any] = [None] * len(self.columns)
        values[0] = line
        raw_email = _text(record, self.email_key)
        if raw_email is None:
            raise RowError("email is missing")
        try:
            email = normalize_email(raw_email, lower_case=model.lowercase_emails)
            check_length(model.email, email)
        except InvalidInputError as exc:
            raise RowError(exc.without_value, self.email_key) from None
        values[self.email_at] = email
        derived = None
        if self.username_key is not None:
            given = _text(record, self.username_key)
            try:
                if given is not None:
                    derived = normalize_username(given)
                    values[self.username_at] = derived  # type: ignore[index]
                else:  # staged apart: the move uses it for new users only
                    derived = username_from_email(email)
                    values[self.derived_at] = derived  # type: ignore[index]
                check_length(model.username, derived)  # type: ignore[arg-type]
            except InvalidInputError as exc:
                raise RowError(exc.without_value, self.username_key) from None
        plain = _text(record, self.plain)
        hashed = _text(record, self.password_key)
        if plain is not None:
            if hashed is not None:
                raise RowError(f"give either {self.plain} or {self.password_key}, not both")
            problem = passwords.policy_violation(
                plain,
                min_length=self.min_password_length,
                email=email,
                username=derived,
                scheme=self.scheme,
            )
            if problem is not None:
                raise RowError(problem)
        elif hashed is None:
            raise RowError(f"{self.plain} or {self.password_key} is missing")
        else:
            hashed = passwords.normalize_hash(hashed)
            problem = passwords.normalized_hash_problem(hashed)
            if problem is not None:
                raise RowError(f"{self.password_key} {problem}", self.password_key)
            if self.hash_length is not None and len(hashed) > self.hash_length:
                raise RowError(
                    f"{self.password_key} is longer than the column allows "
                    f"({self.hash_length} characters)"
                )
            values[self.password_at] = hashed
        for key, position, convert in self.plain_columns:
            raw = record.get(key)
            if raw is None or raw == "":
                continue
            try:
                values[position] = convert(raw)
            # The value itself is never quoted: with the columns in the wrong order, a
            # password can sit under any header.
            except NaiveTimeError as exc:
                raise RowError(f"{key} {exc}; --assume-utc reads such times as UTC", key) from None
            except ValueError as exc:
                raise RowError(f"{key} {exc}", key) from None
        created_at, updated_at = self.created_at, self.updated_at
        if created_at is not None:
            if values[created_at] is None:
                # The import's start, a microsecond per line on: "oldest first" lists the
                # rows of one import in the file's order, not by their random ids.
                values[created_at] = now + timedelta(microseconds=line)
            if updated_at is not None and values[updated_at] is None:
                values[updated_at] = values[created_at]
        elif updated_at is not None and values[updated_at] is None:
            values[updated_at] = now
        for position, make in self.fillers:  # after the timestamps: ids, other defaults
            if values[position] is None:
                values[position] = make(None)
        for key, position, takes_empty in self.required:
            if values[position] is None:
                if takes_empty and record.get(key) == "":
                    values[position] = ""
                    continue
                raise RowError(f"{key} is missing (the user model requires it)")
        return values, plain


_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _int64(_: Column[Any]) -> tuple[int, int]:
    return -(2**63), 2**63 - 1


def _import_converter(
    column: Column[Any], *, assume_utc: bool, integers: tuple[int, int]
) -> Callable[[Any], Any]:
    """`converter`, except that a UUID in its canonical text form is kept as that text: both
    drivers take it as it is (asyncpg's COPY parses it; on SQLite `_bind_processor` turns it
    into the stored hex), and parsing a million of them into UUID objects is a second of
    an import's time."""
    convert = converter(column, assume_utc=assume_utc, integers=integers)
    if not isinstance(column.type, Uuid):  # custom types may expect UUID objects
        return convert
    canonical = _CANONICAL_UUID.fullmatch

    def to_uuid(value: Any) -> Any:
        if value.__class__ is str and canonical(value):
            return value
        return convert(value)

    return to_uuid


def _text(record: dict[str, Any], key: str) -> str | None:
    """A text field of `record`, None where absent or empty."""
    value = record.get(key)
    if value is None or value.__class__ is str:  # every CSV field, and most JSON ones
        return value or None
    raise RowError(f"{key} must be text", key)


# --- the import -------------------------------------------------------------------------------


@dataclass
class Rejection:
    line: int
    reason: str
    record: dict[str, Any]
    field: str | None = None  # whose value failed


@dataclass
class ImportReport:
    rows: int = 0
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    seconds: float = 0.0
    indexes_built_after: int = 0  # secondary indexes built after the load (empty table)
    rejections: list[Rejection] = field(default_factory=list)  # the first REPORT_LIMIT
    conflicts: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "indexes_built_after_load": self.indexes_built_after,
            "seconds": round(self.seconds, 3),
        }


class ImportRejectedError(DbtoolError):
    """Rows were invalid and --skip-invalid was not given: nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(
            f"{counted(report.rejected, 'invalid row')}, nothing was imported "
            "(fix them, or pass --skip-invalid to import the valid rows)"
        )
        self.report = report


class ImportConflictError(ConflictError):
    """Conflicting emails/usernames under --on-conflict fail (or unresolvable): nothing written."""

    def __init__(self, report: ImportReport, how: str) -> None:
        super().__init__(f"conflicting users, nothing was imported ({how})")
        self.report = report


def _server_id(backend: Backend, dialect: Any, model: UserModel) -> Any:
    """The database's expression for the user table's random ids, where the move can make
    them (the backend has one) and they are ids dbtool would make with uuid4, or the model
    does; else None."""
    expression = backend.random_uuid(dialect)
    if expression is None:
        return None
    default = model.id.default
    by_uuid4 = (
        default is not None
        and getattr(default, "arg", None) is not None
        and (
            getattr(default.arg, "__wrapped__", None) is uuid.uuid4  # type: ignore[attr-defined]
        )
    )
    return expression if model.generate_id or by_uuid4 else None


def staging_table(model: UserModel, plan: RowPlan) -> Table:
    """A temporary table with the user table's column types, every column nullable."""
    columns: list[Column[Any]] = [Column(LINE, Integer, nullable=False)]
    for column in model.table.columns:
        columns.append(Column(column.name, column.type, nullable=True))
    if DERIVED_USERNAME in plan.index:
        assert model.username is not None
        columns.append(Column(DERIVED_USERNAME, model.username.type, nullable=True))
    return Table("dbtool_import_staging", MetaData(), *columns, prefixes=["TEMPORARY"])


async def import_users(
    db: Database,
    records: Iterable[tuple[int, dict[str, Any]]],
    *,
    on_conflict: OnConflict = OnConflict.FAIL,
    skip_invalid: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    min_password_length: int | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    model: UserModel | None = None,
    assume_utc: bool = False,
    again: Callable[[], Iterable[tuple[int, dict[str, Any]]]] | None = None,
) -> ImportReport:
    """Import `records` (from read_records) in one transaction: all or nothing.

    `again`, where the input can be read again from its start (a file): the records anew.
    An import that fails on conflicts may then go into an empty table without its
    secondary indexes, built once after the load (`Backend.drop_indexes_for_load`); a value
    the file repeats is found when they are built, and the file is then imported again
    the usual way, which names the lines.

    Each batch is staged (COPY on PostgreSQL, executemany on SQLite) and moved into the user
    table by set-based statements according to `on_conflict` (or, where it can be, copied
    straight into it: `_DirectCopy`); while the database moves one
    batch, the next is read and validated, so Python's work and the server's overlap. Raises
    ImportRejectedError (invalid rows without skip_invalid) or ImportConflictError; in both
    cases, and on any other failure or cancellation, nothing is written. `assume_utc` reads
    timestamps without a time zone as UTC.
    """
    started = time.perf_counter()
    model = model or db.user_model
    settings = db.settings
    backend = db.backend
    plan = RowPlan(
        model,
        min_password_length=settings.password_min_length
        if min_password_length is None
        else min_password_length,
        scheme=settings.password_hash,
        assume_utc=assume_utc,
        server_id=_server_id(backend, db.engine.dialect, model),
        integer_range=backend.integer_range,
    )
    report = ImportReport()
    rows: Iterator[tuple[int, Any]] = iter(records)

    # A driver whose exchanges with the server are taken up only when the event loop turns
    # gets turns while a batch is validated; one that works in its own thread needs none
    # (and measured slower with them).
    slice_rows = backend.validation_slice or batch_size

    created = datetime.now(UTC)  # the creation time of the rows that have none

    found: list[Any] = []  # a block that ended a slice, or a record that ended a block
    # Blocks go four batches at a time to a COPY, which has a cost of its own (a million
    # rows with their indexes: 8.4 s in 5,000-row COPYs, 7.5 s in 20,000-row ones); two
    # at a time as JSON (SQLite parses the whole text: a million rows took 14.5 s and 148
    # MiB at one batch, 12.6 s and 163 MiB at two, 11.9 s and 193 MiB at four).
    block_batch = 4 * batch_size

    def take(count: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to `count` records, ending early at a block."""
        if not blocks_offered:
            return list(islice(rows, count))
        part = []
        pushed_back = found[:]
        found.clear()
        for item in chain(pushed_back, rows) if pushed_back else rows:
            if item[1].__class__ is Block:
                found.append(item)
                break
            part.append(item)
            if len(part) >= count:
                break
        return part

    async def next_block() -> Block | None:
        """The block that ended the last slice and those right after it, up to a batch:
        one load for the database, the event loop turning between them (the database's
        replies to the load in flight are read while the reader checks the next)."""
        if not found or found[0][1].__class__ is not Block:
            return None
        blocks: list[Block] = [found.pop()[1]]
        count = blocks[0].rows
        while count < block_batch:
            await asyncio.sleep(0)
            item: tuple[int, Any] | None = next(rows, None)
            if item is None:
                break
            if not isinstance(item[1], Block):
                found.append(item)  # a record: the next batch starts with it
                break
            blocks.append(item[1])
            count += item[1].rows
        return Block.joined(blocks)

    async def next_batch() -> tuple[bool, list[tuple[list[Any], str | None]], Block | None]:
        """Read and validate the next batch, a slice at a time, letting the event loop turn
        between slices: the database's replies to the batch in flight are read, and its next
        statement sent, while Python works (so the server never waits for a whole batch).
        A block of lines the file gives in a plain form ends the batch, and comes with it."""
        staged: list[tuple[list[Any], str | None]] = []
        more, left = False, batch_size
        while left > 0 and (part := take(min(left, slice_rows))):
            more, left = True, left - len(part)
            staged += _validate_batch(plan, part, report, on_reject, created)
            await asyncio.sleep(0)
            if found:
                break
        block = await next_block()
        return more or block is not None, staged, block

    staging = staging_table(model, plan)
    moving: asyncio.Task[Any] | None = None
    moving_payload: Any = None  # the batch in flight, for a conflict report
    batches = 0
    blocks_offered = False

    async def settle(task: asyncio.Task[Any] | None) -> None:
        """Wait for the batch in flight. A block the database refused (a date that does not
        exist, a taken email) was rolled back to its savepoint: its rows go the slow way,
        which finds the line, or the conflict to report."""
        nonlocal moving, moving_payload
        moving = None
        refused = None if task is None else await task
        if refused is None:
            return
        ready = [values for values, _ in _validate_batch(
            plan, list(block_records(refused)), report, on_reject, created
        )]  # fmt: skip
        if ready and (not report.rejected or skip_invalid):
            moving_payload = payload = stage.prepare(ready)
            await _send(stage, payload, moves, report, len(ready), direct)

    with _collector_paused(), _hashing_threads() as hashing:
        try:
            async with db.session() as session, AsyncExitStack() as stack:
                conn = await session.connection()
                await stack.enter_async_context(backend.import_lock(conn, model.table))
                await stack.enter_async_context(backend.bulk_session(conn))
                dropped = None
                if again is not None and on_conflict is OnConflict.FAIL:
                    dropped = await backend.drop_indexes_for_load(conn, model.table)
                await backend.create_temporary(conn, staging)
                json_batches = await backend.rows_as_json(conn)
                moves = _Moves.build(backend, on_conflict, model, staging, plan, json=json_batches)
                stage = _Stager(backend, conn, staging, plan, json=json_batches)
                direct = (
                    _DirectCopy(backend, model, plan, conn.dialect)
                    if backend.copies_rows
                    and on_conflict is OnConflict.FAIL
                    and not moves.staged.align_spellings
                    else None
                )
                loader = _BlockLoader.offered(backend, stage, records, plan, direct, moves)
                blocks_offered = loader is not None
                if loader is not None and loader.moves is None:
                    loader.binary = dropped is None
                if loader is not None and loader.json is not None:
                    block_batch = 2 * batch_size
                try:
                    more, staged, block = await next_batch()
                    while more:
                        if staged and (not report.rejected or skip_invalid):
                            ready = await _hash_plain_passwords(
                                staged, hashing, plan, settings.password_hash
                            )
                            payload = stage.prepare(ready)  # while the previous batch moves
                            await settle(moving)  # the previous batch has left the staging table
                            moving_payload = payload
                            moving = _send(stage, payload, moves, report, len(ready), direct)
                            await asyncio.sleep(0)  # the batch is on its way; the database...
                        if block is not None and loader is not None:
                            data = loader.payload(block)
                            await settle(moving)
                            moving = asyncio.create_task(loader.load(block, data, report))
                            await asyncio.sleep(0)
                        more, staged, block = await next_batch()  # ...works while Python does this
                        batches += 1
                        if batches % 20 == 0:  # see _collector_paused
                            gc.collect()
                        if on_progress is not None:
                            on_progress(report.rows)
                    await settle(moving)
                finally:
                    # Never leave a statement running on the connection about to be closed.
                    if moving is not None and not moving.done():
                        await asyncio.gather(moving, return_exceptions=True)
                    await stack.aclose()  # the connection's own settings back
                if report.rejected and not skip_invalid:
                    raise ImportRejectedError(report)
                if dropped is not None:
                    await dropped.rebuild()
                    report.indexes_built_after = dropped.count
                if moves.staged.after is not None:
                    await conn.execute(moves.staged.after)
                await conn.run_sync(lambda sync: staging.drop(sync))
        except IndexConflictError:
            assert again is not None
            # Its rejected rows went to on_reject already: not again.
            return await import_users(
                db, again(), on_conflict=on_conflict, skip_invalid=skip_invalid,
                batch_size=batch_size, min_password_length=min_password_length,
                on_progress=on_progress, model=model, assume_utc=assume_utc,
            )  # fmt: skip
        except IntegrityError:
            # The transaction is gone (nothing written); explain the batch that conflicted.
            report.conflicts = await _explain_conflicts(
                db, model, staging, plan, moving_payload, on_conflict
            )
            raise ImportConflictError(report, _conflict_summary(report.conflicts)) from None
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _hashing_threads() -> Iterator[ThreadPoolExecutor]:
    """A thread per core for Argon2 (which releases the GIL). On the way out, hashes not yet
    started are dropped: after Ctrl-C or an error, waiting for a whole batch of them would
    take minutes."""
    pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="dbtool-hash")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's automatic cyclic garbage collection during the import.

    Each row allocates a handful of short-lived containers that reference counting frees;
    the collector, triggered every few hundred allocations, would scan every batch in flight
    again and again for about a quarter of the per-row time. The import collects itself
    instead, every 20 batches, so the few cycles it makes (tasks, futures) are still freed
    and memory stays flat; what existed before (modules, the models' metadata) is set aside
    meanwhile (gc.freeze), so those collections look at the import's own objects only.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def _validate_batch(
    plan: RowPlan,
    batch: list[tuple[int, dict[str, Any]]],
    report: ImportReport,
    on_reject: Callable[[Rejection], None] | None,
    now: datetime,
) -> list[tuple[list[Any], str | None]]:
    staged: list[tuple[list[Any], str | None]] = []
    append, validate = staged.append, plan.validate
    report.rows += len(batch)
    for line, record in batch:
        try:
            append(validate(line, record, now))
        except RowError as exc:
            report.rejected += 1
            rejection = Rejection(line, str(exc), record, exc.field)
            if len(report.rejections) < REPORT_LIMIT:
                report.rejections.append(rejection)
            if on_reject is not None:
                on_reject(rejection)
    return staged


async def _hash_plain_passwords(
    rows: list[tuple[list[Any], str | None]], pool: ThreadPoolExecutor, plan: RowPlan, scheme: str
) -> list[list[Any]]:
    """The rows ready to stage, plain passwords hashed on every core at once (argon2
    releases the GIL while it works)."""
    plain = [(values, secret) for values, secret in rows if secret is not None]
    if plain:
        position = plan.index[plan.model.password.name]
        loop = asyncio.get_running_loop()
        hashes = await asyncio.gather(
            *(
                loop.run_in_executor(pool, passwords.hash_password, secret, scheme)
                for _, secret in plain
            )
        )
        for (values, _), hashed in zip(plain, hashes, strict=True):
            values[position] = hashed
    return [values for values, _ in rows]


class _Stager:
    """Puts one batch into the (empty) staging table, past SQLAlchemy's per-row statement
    machinery, in two steps: `prepare` (Python's work: each column type's bind processor,
    as SQLAlchemy would apply it) and `load` (the database's).

    PostgreSQL: asyncpg's binary COPY. SQLite: the batch as one JSON array, which one
    INSERT ... SELECT FROM json_each() unpacks; a single step that runs in aiosqlite's
    thread without Python's lock while the next batch is validated (executemany would take
    the lock back for every row and stall both). Rows themselves are left as they are: a
    conflict report stages them again."""

    def __init__(
        self,
        backend: Backend,
        conn: AsyncConnection,
        staging: Table,
        plan: RowPlan,
        *,
        json: bool = False,
    ) -> None:
        self.backend, self.conn, self.staging, self.plan = backend, conn, staging, plan
        self.json = json
        dialect = conn.dialect
        # Values validate converted from the file (and no Python default filled in): the
        # processor of a native boolean only checks for True or False, which they are.
        converted = {at for _, at, _ in plan.plain_columns} - {at for at, _ in plan.fillers}
        self.processors = [
            (position, processor)
            for position, column in enumerate(staging.columns)
            if not (
                position in converted
                and type(column.type) is Boolean
                and dialect.supports_native_boolean
            )
            and (processor := backend.bind_processor(column, dialect)) is not None
        ]

    def prepare(self, rows: list[list[Any]]) -> Any:
        """What `load` takes: the batch, processed (and on SQLite, as JSON text)."""
        processed = self._processed(rows)
        if self.json:
            try:
                return json.dumps(processed, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError):  # a value JSON cannot carry: bound as it is
                pass
        return processed

    def _processed(self, rows: list[list[Any]]) -> list[list[Any]]:
        """The rows, their values through the bind processors (in place: the rows are this
        batch's own, and a conflict report stages the prepared batch again)."""
        processors = self.processors
        if processors:
            for row in rows:
                for position, process in processors:
                    if (value := row[position]) is not None:
                        row[position] = process(value)
        return rows

    async def load(self, payload: Any) -> None:
        if not payload:
            return
        await self.backend.load_rows(self.conn, self.staging, self.plan.columns, payload)


def _fallback(column: Column[Any], model: UserModel, plan: RowPlan, backend: Backend) -> Any | None:
    """What the move puts in `column` (not the username) where a staged row has no value,
    as an SQL expression (a literal where it is a constant); None for NULL."""
    default = _default_expression(column, backend)
    if column is model.id and plan.server_ids:
        default = plan.server_id
    role = next((r for r, c in model.roles() if c is column), None)
    if default is None and role in FLAG_ROLES:
        default = literal(FLAG_DEFAULTS[role])
    return default


def _default_expression(column: Column[Any], backend: Backend) -> Any | None:
    """What the database would put in `column` when an INSERT leaves it out, as an SQL
    expression for `coalesce(staged, default)`; None when that is NULL (or done in Python)."""
    default = column.default
    if default is not None and default.is_scalar:
        return literal(getattr(default, "arg"), type_=column.type)  # noqa: B009
    server = column.server_default
    if isinstance(server, DefaultClause):
        return text(server.arg) if isinstance(server.arg, str) else server.arg
    if column.table.autoincrement_column is column:
        return backend.next_id(column)  # None where the database numbers NULL ids itself
    return None


@dataclass(frozen=True)
class _MoveStatements:
    """The set-based statements that move one staged batch into the user table, built once
    per import (building them per batch would also leave objects behind for the collector)."""

    align_spellings: tuple[Any, ...]  # emails stored as typed: one spelling per person
    drop_superseded: Any  # update: a later line for the same email wins
    update_existing: Any  # update: overwrite users matched by email
    drop_updated: Any  # update: what remains staged is new
    insert: Any
    empty_staging: Any
    after: Any  # once, at the end: move an id counter past imported ids

    @classmethod
    def build(
        cls,
        backend: Backend,
        policy: OnConflict,
        model: UserModel,
        staging: Table,
        plan: RowPlan,
        source: Any = None,
    ) -> _MoveStatements:
        """The statements for `policy`, reading the batch from the staging table, or from
        `source` (a selectable with the same columns) for an insert of its rows alone."""
        users = model.table
        source = staging if source is None else source
        s = source.c
        email = users.c[model.email.name]
        fixed = {model.id, model.email, model.created}
        update_parts: tuple[Any, Any, Any] = (None, None, None)
        if policy is OnConflict.UPDATE:
            # A derived table, selected from: MariaDB and MySQL then work it out once, where
            # the plain subquery was worked out again for every staged row (3,000 rows of an
            # update: 100 s).
            last = (
                select(func.max(s[LINE]).label("line"))
                .group_by(s[model.email.name])
                .subquery("last_lines")
            )
            last_lines = select(last.c.line)
            changes = {
                column.name: (
                    s[column.name]
                    if column is model.password or column is model.updated
                    else func.coalesce(s[column.name], users.c[column.name])
                )
                for column in users.columns
                if column not in fixed
            }
            update_parts = (
                staging.delete().where(s[LINE].not_in(last_lines)),
                update(users).where(email == s[model.email.name]).values(changes),
                staging.delete().where(exists().where(email == s[model.email.name])),
            )
        values: dict[str, Any] = {}
        for column in users.columns:
            staged = s[column.name]
            if column is model.username:
                values[column.name] = func.coalesce(staged, s[DERIVED_USERNAME])
                continue
            default = _fallback(column, model, plan, backend)
            values[column.name] = staged if default is None else func.coalesce(staged, default)
        new_rows = select(*values.values()).select_from(source)
        if policy is OnConflict.SKIP:
            new_rows = new_rows.order_by(s[LINE])  # of repeated emails, the first wins
        insert_rows = backend.insert(users).from_select(list(values), new_rows)
        if policy is OnConflict.SKIP:
            insert_rows = insert_rows.on_conflict_do_nothing()
        after = (
            backend.advance_ids(users, model.id) if users.autoincrement_column is model.id else None
        )
        return cls(
            _spelling_alignment(model, staging) if source is staging else (),
            *update_parts,
            insert=insert_rows,
            empty_staging=None if source is not staging else backend.empty_table(staging),
            after=after,
        )


def _spelling_alignment(model: UserModel, staging: Table) -> tuple[Any, ...]:
    """For a model that keeps emails as typed (an application's: a case-sensitive unique
    index, a login that ignores case), the statements that rewrite the staged emails to the
    spelling already stored, where exactly one user has the email in some letter case, and
    else to the spelling of its first line in the batch: the unique index, the update's
    match and the conflict report then see one person as one email, never as a second
    account. The built-in model stores emails lower case and needs none."""
    if model.lowercase_emails:
        return ()
    name, s = model.email.name, staging.c
    stored_key = func.lower(model.table.c[name])
    stored = (
        select(stored_key.label("key"), func.min(model.table.c[name]).label("spelling"))
        .where(stored_key.in_(select(func.lower(s[name]))))
        .group_by(stored_key)
        .having(func.count() == 1)
        .subquery("stored")
    )
    # No "where the spelling differs": under a collation that ignores case (MySQL's
    # default) two spellings compare equal, and would never be aligned.
    to_stored = (
        update(staging).where(func.lower(s[name]) == stored.c.key).values({name: stored.c.spelling})
    )
    staged_key = func.lower(s[name])
    firsts = (
        select(staged_key.label("key"), func.min(s[LINE]).label("line"))
        .group_by(staged_key)
        .having(func.count(func.distinct(s[name])) > 1)
        .subquery("firsts")
    )
    first = staging.alias("first_line")
    to_first = (
        update(staging)
        .where(staged_key == firsts.c.key, first.c[LINE] == firsts.c.line)
        .values({name: first.c[name]})
    )
    return to_stored, to_first


@dataclass(frozen=True)
class _Moves:
    """How batches reach the user table: through the staging table, or (SQLite, policies
    without updates) straight from the batch's JSON in one statement, which aiosqlite's
    thread runs while the next batch is validated."""

    staged: _MoveStatements
    direct: _MoveStatements | None = None

    @classmethod
    def build(
        cls,
        backend: Backend,
        policy: OnConflict,
        model: UserModel,
        staging: Table,
        plan: RowPlan,
        *,
        json: bool = False,
    ) -> _Moves:
        staged = _MoveStatements.build(backend, policy, model, staging, plan)
        if not json or policy is OnConflict.UPDATE or staged.align_spellings:
            return cls(staged)
        source = backend.json_rows(staging).subquery("staged")
        return cls(staged, _MoveStatements.build(backend, policy, model, staging, plan, source))


def _send(
    stage: _Stager,
    payload: Any,
    moves: _Moves,
    report: ImportReport,
    rows: int,
    direct: _DirectCopy | None = None,
) -> asyncio.Task[None]:
    """Start moving a prepared batch into the user table: the task that does it, while the
    next batch is read. The batch is loaded into the staging table (COPY on PostgreSQL) and
    moved from there, or copied straight into the user table (`_DirectCopy`), or, on
    SQLite, inserted from its JSON in one statement."""
    if direct is not None and (records := direct.records(payload)) is not None:
        return asyncio.create_task(direct.copy(stage.conn, records, report))
    if moves.direct is not None and isinstance(payload, str):
        return asyncio.create_task(_insert_json(stage, moves.direct, payload, report, rows))
    return asyncio.create_task(_load_and_move(stage, payload, moves.staged, report, rows))


class _DirectCopy:
    """`--on-conflict fail` on PostgreSQL: a batch in which every row has what the move
    would otherwise fill in on the server goes straight into the user table by COPY, as
    `psql \\copy` does. Through the staging table, the server ran the batch's COPY, the
    move's INSERT ... SELECT and a TRUNCATE one after the other, waiting on Python's COPY
    encoding in between: about a tenth of an import's time. What the move fills in from a
    constant (a scalar default, a flag's default, the username derived from the email) is
    filled in here; a batch with a row that lacks a value only the database can make (a
    server default, an id it generates) goes through the staging table as before."""

    def __init__(self, backend: Backend, model: UserModel, plan: RowPlan, dialect: Any) -> None:
        self.backend, self.table = backend, model.table
        self.columns = [column.name for column in model.table.columns]
        self.end = 1 + len(self.columns)  # staged rows: the line, the table's columns, ...
        self.made_by_database: list[int] = []
        # (position, constant, position to take the value from instead), as the move does.
        self.fills: list[tuple[int, Any, int | None]] = []
        for column in model.table.columns:
            at = plan.index[column.name]
            if column is model.username:
                self.fills.append((at, None, plan.derived_at))
            elif isinstance(default := _fallback(column, model, plan, backend), BindParameter):
                self.fills.append((at, _processed(column, dialect, default.value), None))
            elif default is not None:
                self.made_by_database.append(at)

    def records(self, rows: list[list[Any]]) -> list[list[Any]] | None:
        """The prepared batch as rows of the user table, or None where it must be moved."""
        for at in self.made_by_database:
            if None in map(itemgetter(at), rows):
                return None
        for at, constant, source in self.fills:
            if None in map(itemgetter(at), rows):
                for row in rows:  # in place: a conflict report stages these rows again
                    if row[at] is None:
                        row[at] = constant if source is None else row[source]
        end = self.end
        return [row[1:end] for row in rows]

    def filled(self, plan: RowPlan) -> dict[str, tuple[bool, Any]]:
        """The columns filled in where a row has no value: (whether with a constant, the
        constant as the driver takes it)."""
        return {plan.columns[at]: (source is None, constant) for at, constant, source in self.fills}

    async def copy(
        self, conn: AsyncConnection, records: list[list[Any]], report: ImportReport
    ) -> None:
        await self.backend.copy_rows(conn, self.table, self.columns, records)
        report.staged += len(records)
        report.inserted += len(records)


class _BlockLoader:
    """Blocks of plain lines of a CSV file (dbtool.transfer.blocks) sent to the database's
    loader in a savepoint each: straight into the user table where `_DirectCopy` would copy
    their rows, else into the staging table (their lines numbered) and moved from there."""

    def __init__(
        self,
        backend: Backend,
        conn: AsyncConnection,
        table: Table,
        moves: _MoveStatements | None,
        json: _Stager | None = None,
    ) -> None:
        self.backend, self.conn, self.table, self.moves = backend, conn, table, moves
        self.json = json  # SQLite: rows as one JSON text, for `moves` (the direct insert)
        self.form: BlockForm | None = None
        self.binary = moves is None  # see payload

    @classmethod
    def offered(
        cls,
        backend: Backend,
        stage: _Stager,
        records: Iterable[Any],
        plan: RowPlan,
        direct: _DirectCopy | None,
        moves: _Moves,
    ) -> _BlockLoader | None:
        """A loader whose means to check blocks were offered to the reader of `records`,
        or None where blocks cannot be taken (the reader or the backend). With `direct`,
        blocks are copied into the user table; else, where the database loads blocks,
        they go through the staging table; else, where batches travel as JSON (SQLite,
        without updates), as JSON straight into the user table."""
        conn = stage.conn
        if not isinstance(records, Records):
            return None
        if direct is not None and backend.loads_blocks:
            loader = cls(backend, conn, plan.model.table, None)
            fills = direct.filled(plan)
        elif moves.direct is not None:
            loader = cls(backend, conn, stage.staging, moves.direct, json=stage)
            fills = {}
        elif backend.loads_blocks:
            loader = cls(backend, conn, stage.staging, moves.staged)
            fills = _DirectCopy(backend, plan.model, plan, conn.dialect).filled(plan)
        else:
            return None

        def form_for(header: list[str]) -> BlockForm | None:
            loader.form = block_form(plan, header, fills, staged=loader.moves is not None)
            return loader.form

        records.offer_blocks(form_for)
        return loader

    def payload(self, block: Block) -> Iterable[Any] | None:
        """What `load` sends: the block's lines as CSV text where the server has time to
        parse them (no indexes to maintain, or the staging table), else its rows converted
        for a binary COPY, which leaves the server less to do; None where a value does not
        convert (found while they are sent)."""
        assert self.form is not None  # the reader found it before the first block
        if self.json is not None:
            return self._as_json(block)
        if self.moves is not None:
            return self.form.numbered(block)
        return self.form.records(block) if self.binary else self.form.payload(block)

    async def load(
        self, block: Block, data: Iterable[Any] | None, report: ImportReport
    ) -> Block | None:
        """Load the block; it is given back where the database refused it (rolled back),
        or its values did not convert."""
        assert self.form is not None
        if data is None:
            return block
        if self.json is not None:
            return await self._insert_json(block, data, report)
        if self.moves is not None:
            return await self._load_and_move(block, data, report)
        copied = await self.backend.load_block(
            self.conn, self.table, self.form.columns, data, csv_lines=not self.binary
        )
        if copied is None:
            return block
        report.rows += block.rows
        report.staged += copied
        report.inserted += copied
        return None

    def _as_json(self, block: Block) -> list[str] | None:
        """The block's rows as the staging table's, through its bind processors, as one
        JSON text (in a list); None where a value does not convert."""
        assert self.form is not None and self.json is not None
        staging = list(self.table.columns)
        positions = {name: at for at, name in enumerate(self.form.columns)}
        processors = dict(self.json.processors)
        texts: list[str] = []  # a JSON array per part (their rows never held all at once)
        try:
            for part in self.form.parts(block):
                count = len(part[0])
                columns = [
                    part[positions[column.name]] if column.name in positions else (None,) * count
                    for column in staging
                ]
                for at, process in processors.items():
                    if column_values := columns[at]:
                        columns[at] = [None if v is None else process(v) for v in column_values]
                rows = list(zip(*columns, strict=True))
                texts.append(json.dumps(rows, ensure_ascii=False, allow_nan=False)[1:-1])
            return ["[" + ",".join(texts) + "]"]
        except (TypeError, ValueError):
            return None

    async def _insert_json(
        self, block: Block, data: Iterable[Any], report: ImportReport
    ) -> Block | None:
        """The direct insert of the block's JSON, in a savepoint."""
        assert self.json is not None and self.moves is not None
        (payload,) = data
        json, moves = self.json, self.moves

        async def insert(moved: ImportReport) -> bool:
            await _insert_json(json, moves, payload, moved, block.rows)
            return True

        return await self._in_savepoint(block, report, insert)

    async def _load_and_move(
        self, block: Block, data: Iterable[Any], report: ImportReport
    ) -> Block | None:
        """Into the staging table and on into the user table, both in one savepoint."""
        assert self.form is not None and self.moves is not None
        form, moves = self.form, self.moves

        async def load_and_move(moved: ImportReport) -> bool:
            copied = await self.backend.load_block(
                self.conn, self.table, form.columns, data, csv_lines=True
            )
            if copied is None:
                return False
            await _move(self.conn, moves, moved, staged=copied)
            return True

        return await self._in_savepoint(block, report, load_and_move)

    async def _in_savepoint(
        self,
        block: Block,
        report: ImportReport,
        step: Callable[[ImportReport], Awaitable[bool]],
    ) -> Block | None:
        """`step` (counting into a report of its own) in a savepoint: the block is given
        back where the step or a constraint refused it (rolled back), else its counts are
        added to `report`."""
        moved = ImportReport()
        savepoint = await self.conn.begin_nested()
        try:
            done = await step(moved)
        except IntegrityError:
            done = False
        if not done:
            await savepoint.rollback()
            return block
        await savepoint.commit()
        report.rows += block.rows
        for name in ("staged", "inserted", "updated", "skipped"):
            setattr(report, name, getattr(report, name) + getattr(moved, name))
        return None


def _processed(column: Column[Any], dialect: Any, value: Any) -> Any:
    """`value` as the column type's bind processor hands it to the driver."""
    processor = column.type._cached_bind_processor(dialect)
    return value if processor is None else processor(value)


async def _load_and_move(
    stage: _Stager, payload: Any, statements: _MoveStatements, report: ImportReport, rows: int
) -> None:
    await stage.load(payload)
    await _move(stage.conn, statements, report, staged=rows)


async def _insert_json(
    stage: _Stager, statements: _MoveStatements, payload: str, report: ImportReport, rows: int
) -> None:
    inserted = await stage.backend.run_at_once(stage.conn, statements.insert, {"payload": payload})
    report.staged += rows
    report.inserted += inserted
    report.skipped += rows - inserted


async def _move(
    conn: AsyncConnection, statements: _MoveStatements, report: ImportReport, *, staged: int
) -> None:
    """Move the staged batch into the user table, set-based, and leave the staging table
    empty. Earlier batches are already in, so the unique constraints see the file so far."""
    report.staged += staged
    moved = 0
    for statement in statements.align_spellings:
        await conn.execute(statement)
    if statements.update_existing is not None:
        await conn.execute(statements.drop_superseded)  # those lines count as skipped
        moved += (await conn.execute(statements.update_existing)).rowcount
        report.updated += moved
        await conn.execute(statements.drop_updated)
    inserted = (await conn.execute(statements.insert)).rowcount
    report.inserted += inserted
    report.skipped += staged - moved - inserted
    if statements.empty_staging is not None:
        await conn.execute(statements.empty_staging)


async def _explain_conflicts(
    db: Database,
    model: UserModel,
    staging: Table,
    plan: RowPlan,
    payload: Any,
    policy: OnConflict,
) -> list[str]:
    """Stage the batch that conflicted (as `_Stager.prepare` made it) again, in a
    transaction that is rolled back, and report its first conflicting emails and usernames
    with their lines."""
    async with db.engine.connect() as conn:
        await conn.begin()
        await db.backend.create_temporary(conn, staging)
        stage = _Stager(db.backend, conn, staging, plan, json=isinstance(payload, str))
        await stage.load(payload)
        for statement in _spelling_alignment(model, staging):
            await conn.execute(statement)
        try:
            return await _conflicts_in_staging(conn, model, staging, policy)
        finally:
            await conn.rollback()


async def _conflicts_in_staging(
    conn: AsyncConnection, model: UserModel, staging: Table, policy: OnConflict
) -> list[str]:
    users = model.table
    s = staging.c
    email, line = s[model.email.name], s[LINE]
    found: list[str] = []

    async def collect(query: Any, describe: Callable[[Any], str]) -> None:
        for row in await conn.execute(query.limit(REPORT_LIMIT - len(found))):
            found.append(describe(row))

    first_line = func.min(line)
    await collect(
        select(email, first_line, func.max(line), func.count())
        .group_by(email)
        .having(func.count() > 1)
        .order_by(first_line),
        lambda r: f"email {r[0]!r} appears {r[3]} times (first on line {r[1]}, last on {r[2]})",
    )
    if policy is not OnConflict.UPDATE:
        await collect(
            select(email, line)
            .where(exists().where(users.c[model.email.name] == email))
            .order_by(line),
            lambda r: f"email {r[0]!r} (line {r[1]}) already exists (or came earlier in the file)",
        )
    if model.username is not None:
        effective = func.coalesce(s[model.username.name], s[DERIVED_USERNAME])
        await collect(
            select(effective, func.min(line), func.count(func.distinct(email)))
            .group_by(effective)
            .having(func.count(func.distinct(email)) > 1)
            .order_by(func.min(line)),
            lambda r: (
                f"username {r[0]!r} is used by {r[2]} different emails (first on line {r[1]})"
            ),
        )
        await collect(
            select(effective, line)
            .where(
                exists().where(
                    and_(
                        users.c[model.username.name] == effective,
                        users.c[model.email.name] != email,
                    )
                )
            )
            .order_by(line),
            lambda r: (
                f"username {r[0]!r} (line {r[1]}) belongs to another user (or an earlier line)"
            ),
        )
    return found or ["a unique constraint was violated"]


def _conflict_summary(conflicts: list[str]) -> str:
    more = "" if len(conflicts) == 1 else f", and {len(conflicts) - 1} more listed above"
    return f"{conflicts[0]}{more}"
