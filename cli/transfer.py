"""Bulk import and export of users: streaming, all-or-nothing, set-based, on any user model.

Import reads CSV or JSON Lines in batches (cli.readers), validates every row by the same
rules as `users add`, hashes plain passwords on all cores, stages the rows in a temporary
table shaped like the user table (COPY on PostgreSQL, executemany on SQLite) and moves them
into it with set-based statements, all in one transaction. Memory holds one batch, whatever
the file size.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import IO, Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
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

from cli import passwords
from cli.appmodels import (
    FLAG_DEFAULTS,
    FLAG_ROLES,
    NaiveTimeError,
    UserModel,
    check_length,
    converter,
)
from cli.db import Database
from cli.errors import ConflictError, DbtoolError, InvalidInputError
from cli.formats import Format, OnConflict, csv_value, excerpt, json_default
from cli.readers import ERROR_KEY, detect_format, read_records
from cli.validation import normalize_email, normalize_username, username_from_email

__all__ = [
    "ExportWriter",
    "ImportConflictError",
    "ImportRejectedError",
    "ImportReport",
    "Rejection",
    "detect_format",
    "import_fields",
    "import_users",
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
    """Why one input row cannot be imported."""


class RowPlan:
    """How each input row becomes a staged row of the user model (built once per import).

    The staged row holds, in `columns` order: the line number, then every column of the
    user table (None where the file said nothing and the database or the move decides),
    then the username derived from the email. Keep `validate` lean: it runs once per row
    of files with millions of rows.
    """

    def __init__(
        self, model: UserModel, *, min_password_length: int, scheme: str, assume_utc: bool = False
    ) -> None:
        self.model = model
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
        self.plain_columns = [
            (c.name, self.index[c.name], converter(c, assume_utc=assume_utc))
            for c in table_columns
            if c not in special
        ]
        self.hash_length = getattr(model.password.type, "length", None)
        # Python-side callable defaults (uuid4, ...) run per row here: INSERT ... SELECT
        # cannot call them. Scalar and server defaults are applied by the move.
        self.fillers = [
            (self.index[c.name], getattr(c.default, "arg"))  # noqa: B009 (typing: Any)
            for c in table_columns
            if c.default is not None
            and c.default.is_callable
            and c not in {*special, model.created, model.updated}  # stamped in validate
        ]
        if model.generate_id:
            self.fillers.append((self.index[model.id.name], lambda _ctx: uuid.uuid4()))
        self.required = [(c.name, self.index[c.name]) for c in model.required]

    def validate(
        self, line: int, record: dict[str, Any], now: datetime
    ) -> tuple[list[Any], str | None]:
        """(staged values, plain password or None); RowError says what is wrong."""
        if ERROR_KEY in record:
            raise RowError(record[ERROR_KEY])
        model = self.model
        values: list[Any] = [None] * len(self.columns)
        values[0] = line
        raw_email = _text(record, model.email.name)
        if raw_email is None:
            raise RowError("email is missing")
        try:
            email = normalize_email(raw_email)
            check_length(model.email, email)
            values[self.index[model.email.name]] = email
            if model.username is not None:
                given = _text(record, model.username.name)
                username = normalize_username(given) if given is not None else None
                derived = username or username_from_email(email)
                check_length(model.username, derived)
                values[self.index[model.username.name]] = username
                values[self.index[DERIVED_USERNAME]] = derived
            else:
                derived = None
        except InvalidInputError as exc:
            raise RowError(str(exc)) from None
        plain = _text(record, self.plain)
        hashed = _text(record, model.password.name)
        if plain is not None:
            if hashed is not None:
                raise RowError(f"give either {self.plain} or {model.password.name}, not both")
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
            raise RowError(f"{self.plain} or {model.password.name} is missing")
        else:
            hashed = passwords.normalize_hash(hashed)
            problem = passwords.hash_problem(hashed)
            if problem is not None:
                raise RowError(f"{model.password.name} {problem}")
            if self.hash_length is not None and len(hashed) > self.hash_length:
                raise RowError(
                    f"{model.password.name} is longer than the column allows "
                    f"({self.hash_length} characters)"
                )
            values[self.index[model.password.name]] = hashed
        for key, position, convert in self.plain_columns:
            raw = record.get(key)
            if raw is None or raw == "":
                continue
            try:
                values[position] = convert(raw)
            except NaiveTimeError as exc:
                hint = "; --assume-utc reads such times as UTC"
                raise RowError(f"{key} {exc}: {excerpt(raw)}{hint}") from None
            except ValueError as exc:
                raise RowError(f"{key} {exc}: {excerpt(raw)}") from None
        if model.created is not None:
            created_at = self.index[model.created.name]
            if values[created_at] is None:
                values[created_at] = now
            if model.updated is not None and values[self.index[model.updated.name]] is None:
                values[self.index[model.updated.name]] = values[created_at]
        elif model.updated is not None and values[self.index[model.updated.name]] is None:
            values[self.index[model.updated.name]] = now
        for position, make in self.fillers:  # after the timestamps: ids, other defaults
            if values[position] is None:
                values[position] = make(None)
        for key, position in self.required:
            if values[position] is None:
                raise RowError(f"{key} is missing (the user model requires it)")
        return values, plain


def _text(record: dict[str, Any], key: str) -> str | None:
    """A text field of `record`, None where absent or empty."""
    value = record.get(key)
    if value is None or value.__class__ is str:  # every CSV field, and most JSON ones
        return value or None
    raise RowError(f"{key} must be text")


# --- the import -------------------------------------------------------------------------------


@dataclass
class Rejection:
    line: int
    reason: str
    record: dict[str, Any]


@dataclass
class ImportReport:
    rows: int = 0
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    seconds: float = 0.0
    rejections: list[Rejection] = field(default_factory=list)  # the first REPORT_LIMIT
    conflicts: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
        }


class ImportRejectedError(DbtoolError):
    """Rows were invalid and --skip-invalid was not given: nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(
            f"{report.rejected} invalid row(s), nothing was imported "
            "(fix them, or pass --skip-invalid to import the valid rows)"
        )
        self.report = report


class ImportConflictError(ConflictError):
    """Conflicting emails/usernames under --on-conflict fail (or unresolvable): nothing written."""

    def __init__(self, report: ImportReport, how: str) -> None:
        super().__init__(f"conflicting users, nothing was imported ({how})")
        self.report = report


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
) -> ImportReport:
    """Import `records` (from read_records) in one transaction: all or nothing.

    Each batch is staged (COPY on PostgreSQL, executemany on SQLite) and moved into the user
    table by set-based statements according to `on_conflict`; while the database moves one
    batch, the next is read and validated, so Python's work and the server's overlap. Raises
    ImportRejectedError (invalid rows without skip_invalid) or ImportConflictError; in both
    cases, and on any other failure or cancellation, nothing is written. `assume_utc` reads
    timestamps without a time zone as UTC.
    """
    started = time.perf_counter()
    model = model or db.user_model
    settings = db.settings
    plan = RowPlan(
        model,
        min_password_length=settings.password_min_length
        if min_password_length is None
        else min_password_length,
        scheme=settings.password_hash,
        assume_utc=assume_utc,
    )
    report = ImportReport()
    rows = iter(records)

    def next_batch() -> tuple[bool, list[tuple[list[Any], str | None]]]:
        batch = list(islice(rows, batch_size))
        return bool(batch), _validate_batch(plan, batch, report, on_reject)

    staging = staging_table(model, plan)
    moving: asyncio.Task[None] | None = None
    moving_rows: list[list[Any]] = []
    batches = 0
    with _collector_paused(), _hashing_threads() as hashing:
        try:
            async with db.session() as session:
                conn = await session.connection()
                await _lock_table(conn, model)
                await conn.run_sync(lambda sync: staging.create(sync))
                statements = _MoveStatements.build(
                    conn.dialect.name, on_conflict, model, staging, plan
                )
                stage = _Stager(conn, staging, plan)
                try:
                    more, staged = next_batch()
                    while more:
                        if not report.rejected or skip_invalid:
                            ready = await _hash_plain_passwords(
                                staged, hashing, plan, settings.password_hash
                            )
                            if moving is not None:
                                await moving  # the previous batch has left the staging table
                            await stage(ready)
                            moving_rows = ready
                            moving = asyncio.create_task(
                                _move(conn, statements, report, staged=len(ready))
                            )
                            await asyncio.sleep(0)  # the move is sent; the server works on it...
                        more, staged = next_batch()  # ...while the next batch is validated
                        batches += 1
                        gc.collect(2 if batches % 50 == 0 else 1)  # see _collector_paused
                        if on_progress is not None:
                            on_progress(report.rows)
                    if moving is not None:
                        await moving
                finally:
                    # Never leave a statement running on the connection about to be closed.
                    if moving is not None and not moving.done():
                        await asyncio.gather(moving, return_exceptions=True)
                if report.rejected and not skip_invalid:
                    raise ImportRejectedError(report)
                if statements.after is not None:
                    await conn.execute(statements.after)
                await conn.run_sync(lambda sync: staging.drop(sync))
        except IntegrityError:
            # The transaction is gone (nothing written); explain the batch that conflicted.
            report.conflicts = await _explain_conflicts(
                db, model, staging, plan, moving_rows, on_conflict
            )
            raise ImportConflictError(report, _conflict_summary(report.conflicts)) from None
    report.seconds = time.perf_counter() - started
    return report


async def _lock_table(conn: AsyncConnection, model: UserModel) -> None:
    """One import at a time per user table (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    is): two overlapping imports would otherwise deadlock on each other's rows, or both
    try to insert what `--on-conflict update` should have updated."""
    if conn.dialect.name == "postgresql":
        key = func.hashtext(f"dbtool import {model.table.fullname}")
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


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
    instead: the young generations once per batch, everything every 50 batches, so the few
    cycles it makes (tasks, futures) are still freed and memory stays flat.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _validate_batch(
    plan: RowPlan,
    batch: list[tuple[int, dict[str, Any]]],
    report: ImportReport,
    on_reject: Callable[[Rejection], None] | None,
) -> list[tuple[list[Any], str | None]]:
    staged = []
    now = datetime.now(UTC)  # one creation time per batch: rows of a batch arrive together
    for line, record in batch:
        report.rows += 1
        try:
            staged.append(plan.validate(line, record, now))
        except RowError as exc:
            report.rejected += 1
            rejection = Rejection(line, str(exc), record)
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
    """Puts one batch into the (empty) staging table."""

    def __init__(self, conn: AsyncConnection, staging: Table, plan: RowPlan) -> None:
        self.conn, self.staging, self.plan = conn, staging, plan
        dialect = conn.dialect
        # COPY bypasses SQLAlchemy's type processing, so apply each column type's bind
        # processor here (most have none on asyncpg).
        self.processors = [
            (position, processor)
            for position, column in enumerate(staging.columns)
            if (processor := column.type._cached_bind_processor(dialect)) is not None
        ]

    async def __call__(self, rows: list[list[Any]]) -> None:
        if not rows:
            return
        if self.conn.dialect.name == "postgresql":
            if self.processors:
                for row in rows:
                    for position, process in self.processors:
                        if row[position] is not None:
                            row[position] = process(row[position])
            raw = await self.conn.get_raw_connection()
            # asyncpg's binary COPY into the temporary table, inside the same transaction.
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                self.staging.name, records=rows, columns=self.plan.columns
            )
            return
        columns = self.plan.columns
        await self.conn.execute(
            self.staging.insert(), [dict(zip(columns, row, strict=True)) for row in rows]
        )


def _default_expression(column: Column[Any], dialect: str) -> Any | None:
    """What the database would put in `column` when an INSERT leaves it out, as an SQL
    expression for `coalesce(staged, default)`; None when that is NULL (or done in Python)."""
    default = column.default
    if default is not None and default.is_scalar:
        return literal(getattr(default, "arg"), type_=column.type)  # noqa: B009
    server = column.server_default
    if isinstance(server, DefaultClause):
        return text(server.arg) if isinstance(server.arg, str) else server.arg
    if column.table.autoincrement_column is column and dialect == "postgresql":
        # SERIAL and IDENTITY columns both have a sequence; SQLite numbers NULL ids itself.
        return func.nextval(func.pg_get_serial_sequence(column.table.fullname, column.name))
    return None


@dataclass(frozen=True)
class _MoveStatements:
    """The set-based statements that move one staged batch into the user table, built once
    per import (building them per batch would also leave objects behind for the collector)."""

    drop_superseded: Any  # update: a later line for the same email wins
    update_existing: Any  # update: overwrite users matched by email
    drop_updated: Any  # update: what remains staged is new
    insert: Any
    empty_staging: Any
    after: Any  # once, at the end (PostgreSQL: move an id sequence past imported ids)

    @classmethod
    def build(
        cls, dialect: str, policy: OnConflict, model: UserModel, staging: Table, plan: RowPlan
    ) -> _MoveStatements:
        users = model.table
        s = staging.c
        email = users.c[model.email.name]
        fixed = {model.id, model.email, model.created}
        update_parts: tuple[Any, Any, Any] = (None, None, None)
        if policy is OnConflict.UPDATE:
            last_lines = select(func.max(s[LINE])).group_by(s[model.email.name])
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
            role = next((r for r, c in model.roles() if c is column), None)
            default = _default_expression(column, dialect)
            if default is None and role in FLAG_ROLES:
                default = literal(FLAG_DEFAULTS[role])
            values[column.name] = staged if default is None else func.coalesce(staged, default)
        new_rows = select(*values.values()).select_from(staging)
        if policy is OnConflict.SKIP:
            new_rows = new_rows.order_by(s[LINE])  # of repeated emails, the first wins
        insert_rows = _insert_for(dialect)(users).from_select(list(values), new_rows)
        if policy is OnConflict.SKIP:
            insert_rows = insert_rows.on_conflict_do_nothing()
        after = None
        if dialect == "postgresql" and users.autoincrement_column is model.id:
            sequence = func.pg_get_serial_sequence(users.fullname, model.id.name)
            after = select(
                func.setval(sequence, select(func.max(model.id)).scalar_subquery())
            ).where(select(func.max(model.id)).scalar_subquery().is_not(None))
        return cls(
            *update_parts,
            insert=insert_rows,
            # TRUNCATE, not DELETE: a temporary table is never vacuumed, and deleted rows
            # would pile up for every later batch to scan.
            empty_staging=text(f"TRUNCATE {staging.name}")
            if dialect == "postgresql"
            else staging.delete(),
            after=after,
        )


async def _move(
    conn: AsyncConnection, statements: _MoveStatements, report: ImportReport, *, staged: int
) -> None:
    """Move the staged batch into the user table, set-based, and leave the staging table
    empty. Earlier batches are already in, so the unique constraints see the file so far."""
    report.staged += staged
    moved = 0
    if statements.update_existing is not None:
        await conn.execute(statements.drop_superseded)  # those lines count as skipped
        moved += (await conn.execute(statements.update_existing)).rowcount
        report.updated += moved
        await conn.execute(statements.drop_updated)
    inserted = (await conn.execute(statements.insert)).rowcount
    report.inserted += inserted
    report.skipped += staged - moved - inserted
    await conn.execute(statements.empty_staging)


def _insert_for(dialect: str) -> Any:
    """The dialect's INSERT (both PostgreSQL's and SQLite's support ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def _explain_conflicts(
    db: Database,
    model: UserModel,
    staging: Table,
    plan: RowPlan,
    rows: list[list[Any]],
    policy: OnConflict,
) -> list[str]:
    """Stage the batch that conflicted again, in a transaction that is rolled back, and
    report its first conflicting emails and usernames with their lines."""
    async with db.engine.connect() as conn:
        await conn.begin()
        await conn.run_sync(lambda sync: staging.create(sync))
        await _Stager(conn, staging, plan)(rows)
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


# --- export -----------------------------------------------------------------------------------


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
