"""Bulk import and export of users: streaming, all-or-nothing, set-based.

Import reads CSV or JSON Lines in batches, validates every row by the same rules as
`users add`, hashes plain passwords on all cores, stages the rows in a temporary table (COPY
on PostgreSQL, executemany on SQLite) and moves them into `users` with one set-based
statement per step, all in one transaction. Memory holds one batch, whatever the file size.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    and_,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from cli import passwords
from cli.db import Database
from cli.errors import ConflictError, DbtoolError, InvalidInputError, UsageError
from cli.formats import Format, OnConflict, csv_value, json_default
from cli.models import EMAIL_MAX_LENGTH, PUBLIC_USER_FIELDS, User, UTCDateTime
from cli.users import UserFilter, filtered
from cli.validation import normalize_email, normalize_username, username_from_email

IMPORT_COLUMNS = (
    "id",
    "email",
    "username",
    "password",
    "hashed_password",
    "is_active",
    "is_superuser",
    "created_at",
    "updated_at",
)
EXPORT_HASH_COLUMN = "hashed_password"
REPORT_LIMIT = 20
DEFAULT_BATCH_SIZE = 5000


def detect_format(
    path: str | None, explicit: Format | None, *, default: Format | None = None
) -> Format:
    """--format wins; then the file extension (.csv, .jsonl, .ndjson); then `default`."""
    if explicit is not None:
        return explicit
    suffix = Path(path or "").suffix.lower()
    if suffix == ".csv":
        return Format.CSV
    if suffix in (".jsonl", ".ndjson"):
        return Format.JSONL
    if default is not None:
        return default
    where = "standard input" if path in (None, "-") else repr(path)
    raise UsageError(f"cannot tell the format of {where}: use --format csv or --format jsonl")


# --- reading -------------------------------------------------------------------------------


class RowError(Exception):
    """Why one input row cannot be imported."""


def read_records(stream: IO[str], fmt: Format) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every row, streaming. Unknown columns are a UsageError."""
    if fmt is Format.CSV:
        reader = csv.DictReader(stream)
        _check_columns(reader.fieldnames or [], where="the CSV header")
        if "email" not in (reader.fieldnames or []):
            raise UsageError("the CSV header has no email column")
        for record in reader:
            if None in record:  # more fields than the header has
                yield reader.line_num, {"__error__": "more fields than the header has columns"}
            else:
                yield reader.line_num, record
        return
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {"__error__": f"not valid JSON ({exc.msg})"}
            continue
        if not isinstance(record, dict):
            yield number, {"__error__": "not a JSON object"}
            continue
        _check_columns(record, where=f"line {number}")
        yield number, record


def _check_columns(names: Iterable[str], *, where: str) -> None:
    unknown = sorted(set(names) - set(IMPORT_COLUMNS))
    if unknown:
        raise UsageError(
            f"unknown column(s) in {where}: {', '.join(unknown)} "
            f"(allowed: {', '.join(IMPORT_COLUMNS)})"
        )


# Text columns, in the order validate_record unpacks them.
_TEXT_KEYS = ("email", "username", "password", "hashed_password", "id", "created_at", "updated_at")
_FLAGS = {
    **dict.fromkeys(("1", "true", "yes", "on", "t", "y"), True),
    **dict.fromkeys(("0", "false", "no", "off", "f", "n"), False),
}
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _texts(record: dict[str, Any]) -> list[str | None]:
    """The text columns of `record`, None where absent or empty."""
    values: list[str | None] = []
    for key in _TEXT_KEYS:
        value = record.get(key)
        if value.__class__ is str:  # every CSV field, and most JSON ones
            values.append(value or None)
        elif value is None:
            values.append(None)
        else:
            raise RowError(f"{key} must be text")
    return values


def _flag(record: dict[str, Any], key: str) -> bool | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if value.__class__ is bool:
        return bool(value)
    if isinstance(value, str):
        flag = _FLAGS.get(value)
        if flag is None:
            flag = _FLAGS.get(value.strip().lower())
        if flag is not None:
            return flag
    raise RowError(f"{key} must be true or false, not {value!r}")


def _timestamp(key: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"{key} is not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise RowError(f"{key} needs a time zone (e.g. {value}+00:00)")
    return parsed


def _user_id(raw: str | None) -> uuid.UUID | str:
    """A new id, or the given one; a canonical UUID string is passed on as it is (PostgreSQL
    parses it; SQLite staging converts it), which saves parsing it here."""
    if raw is None:
        return uuid.uuid4()
    if _CANONICAL_UUID.fullmatch(raw):
        return raw
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise RowError(f"id is not a UUID: {raw!r}") from None


# A validated row as it goes into the staging table, in staging column order. A plain
# password travels beside it and is replaced by its hash before staging. (A list rather than
# an object: at hundreds of thousands of rows, per-row overhead is what limits the import.)
STAGED_COLUMNS = (
    "line",
    "id",
    "email",
    "username",
    "derived_username",
    "hashed_password",
    "is_active",
    "is_superuser",
    "created_at",
    "updated_at",
)
_HASH = STAGED_COLUMNS.index("hashed_password")


def validate_record(
    line: int, record: dict[str, Any], *, min_password_length: int, now: datetime | None = None
) -> tuple[list[Any], str | None]:
    """The same rules as `users add`, for one record: (staged values, plain password or
    None). RowError says what is wrong. `now` stamps rows the file gives no timestamps.

    This runs once per row of files with millions of rows: keep it lean.
    """
    if "__error__" in record:
        raise RowError(record["__error__"])
    raw_email, given, plain, hashed, raw_id, raw_created, raw_updated = _texts(record)
    if raw_email is None:
        raise RowError("email is missing")
    try:
        email = normalize_email(raw_email)
        username = normalize_username(given) if given is not None else None
        derived = username or username_from_email(email)
    except InvalidInputError as exc:
        raise RowError(str(exc)) from None
    if plain is not None:
        if hashed is not None:
            raise RowError("give either password or hashed_password, not both")
        problem = passwords.policy_violation(
            plain, min_length=min_password_length, email=email, username=derived
        )
        if problem is not None:
            raise RowError(problem)
    elif hashed is None:
        raise RowError("password or hashed_password is missing")
    elif not passwords.is_password_hash(hashed):
        raise RowError("hashed_password is not a complete Argon2 or bcrypt hash")
    created = (
        _timestamp("created_at", raw_created)
        if raw_created is not None
        else (now or datetime.now(UTC))
    )
    values = [
        line,
        _user_id(raw_id),
        email,
        username,
        derived,
        hashed,
        _flag(record, "is_active"),
        _flag(record, "is_superuser"),
        created,
        _timestamp("updated_at", raw_updated) if raw_updated is not None else created,
    ]
    return values, plain


# --- the import ----------------------------------------------------------------------------


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


_staging_metadata = MetaData()
staging = Table(
    "dbtool_import_staging",
    _staging_metadata,
    Column("line", Integer, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("email", String(EMAIL_MAX_LENGTH), nullable=False),
    Column("username", String(64)),
    Column("derived_username", String(64), nullable=False),
    Column("hashed_password", String(255), nullable=False),
    Column("is_active", Boolean),
    Column("is_superuser", Boolean),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    prefixes=["TEMPORARY"],
)


async def import_users(
    db: Database,
    records: Iterable[tuple[int, dict[str, Any]]],
    *,
    on_conflict: OnConflict = OnConflict.FAIL,
    skip_invalid: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    min_password_length: int = passwords.DEFAULT_MIN_LENGTH,
    on_reject: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import `records` (from read_records) in one transaction: all or nothing.

    Each batch is staged (COPY on PostgreSQL, executemany on SQLite) and moved into users by
    set-based statements according to `on_conflict`; while the database moves one batch,
    the next is read and validated, so Python's work and the server's overlap. Raises
    ImportRejectedError (invalid rows without skip_invalid) or ImportConflictError; in both
    cases, and on any other failure or cancellation, nothing is written.
    """
    started = time.perf_counter()
    report = ImportReport()
    rows = iter(records)

    def next_batch() -> tuple[bool, list[tuple[list[Any], str | None]]]:
        batch = list(islice(rows, batch_size))
        return bool(batch), _validate_batch(batch, report, min_password_length, on_reject)

    moving: asyncio.Task[None] | None = None
    moving_rows: list[list[Any]] = []
    batches = 0
    with (
        _collector_paused(),
        ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="dbtool-hash") as hashing,
    ):
        try:
            async with db.session() as session:
                conn = await session.connection()
                await conn.run_sync(lambda sync: staging.create(sync))
                statements = _MoveStatements.build(conn.dialect.name, on_conflict)
                try:
                    more, staged = next_batch()
                    while more:
                        if not report.rejected or skip_invalid:
                            ready = await _hash_plain_passwords(staged, hashing)
                            if moving is not None:
                                await moving  # the previous batch has left the staging table
                            await _stage(conn, ready)
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
                await conn.run_sync(lambda sync: staging.drop(sync))
        except IntegrityError:
            # The transaction is gone (nothing written); explain the batch that conflicted.
            report.conflicts = await _explain_conflicts(db, moving_rows, on_conflict)
            raise ImportConflictError(report, _conflict_summary(report.conflicts)) from None
    report.seconds = time.perf_counter() - started
    return report


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
    batch: list[tuple[int, dict[str, Any]]],
    report: ImportReport,
    min_password_length: int,
    on_reject: Callable[[Rejection], None] | None,
) -> list[tuple[list[Any], str | None]]:
    staged = []
    now = datetime.now(UTC)  # one creation time per batch: rows of a batch arrive together
    for line, record in batch:
        report.rows += 1
        try:
            staged.append(
                validate_record(line, record, min_password_length=min_password_length, now=now)
            )
        except RowError as exc:
            report.rejected += 1
            rejection = Rejection(line, str(exc), record)
            if len(report.rejections) < REPORT_LIMIT:
                report.rejections.append(rejection)
            if on_reject is not None:
                on_reject(rejection)
    return staged


async def _hash_plain_passwords(
    rows: list[tuple[list[Any], str | None]], pool: ThreadPoolExecutor
) -> list[list[Any]]:
    """The rows ready to stage, plain passwords hashed on every core at once (argon2
    releases the GIL while it works)."""
    plain = [(values, secret) for values, secret in rows if secret is not None]
    if plain:
        loop = asyncio.get_running_loop()
        hashes = await asyncio.gather(
            *(loop.run_in_executor(pool, passwords.hash_password, secret) for _, secret in plain)
        )
        for (values, _), hashed in zip(plain, hashes, strict=True):
            values[_HASH] = hashed
    return [values for values, _ in rows]


async def _stage(conn: AsyncConnection, rows: list[list[Any]]) -> None:
    """Put one batch into the (empty) staging table."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        # asyncpg's binary COPY into the temporary table, inside the same transaction.
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            staging.name, records=rows, columns=STAGED_COLUMNS
        )
        return
    named = [dict(zip(STAGED_COLUMNS, row, strict=True)) for row in rows]
    for values in named:  # SQLAlchemy's Uuid type on SQLite wants UUID objects
        if isinstance(values["id"], str):
            values["id"] = uuid.UUID(values["id"])
    await conn.execute(insert(staging), named)


def _user_values(s: Any) -> dict[str, Any]:
    """Column values for a new user from staging row `s`; defaults where the file was silent."""
    return {
        "id": s.id,
        "email": s.email,
        "username": func.coalesce(s.username, s.derived_username),
        "hashed_password": s.hashed_password,
        "is_active": func.coalesce(s.is_active, True),
        "is_superuser": func.coalesce(s.is_superuser, False),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    }


@dataclass(frozen=True)
class _MoveStatements:
    """The set-based statements that move one staged batch into users, built once per import
    (building them per batch would also leave SQLAlchemy objects behind for the collector)."""

    drop_superseded: Any  # update: a later line for the same email wins
    update_existing: Any  # update: overwrite users matched by email
    drop_updated: Any  # update: what remains staged is new
    insert: Any
    empty_staging: Any  # where the insert did not already empty it

    @classmethod
    def build(cls, dialect: str, policy: OnConflict) -> _MoveStatements:
        users = cast(Table, User.__table__)
        s = staging.c
        update_parts: tuple[Any, Any, Any] = (None, None, None)
        if policy is OnConflict.UPDATE:
            last_lines = select(func.max(s.line)).group_by(s.email)
            update_parts = (
                staging.delete().where(s.line.not_in(last_lines)),
                update(users)
                .where(users.c.email == s.email)
                .values(
                    username=func.coalesce(s.username, users.c.username),
                    hashed_password=s.hashed_password,
                    is_active=func.coalesce(s.is_active, users.c.is_active),
                    is_superuser=func.coalesce(s.is_superuser, users.c.is_superuser),
                    updated_at=s.updated_at,
                ),
                staging.delete().where(exists().where(users.c.email == s.email)),
            )
        source = staging
        values = _user_values(source.c)
        new_rows = select(*values.values()).select_from(source)
        if policy is OnConflict.SKIP:
            new_rows = new_rows.order_by(source.c.line)  # of repeated emails, the first wins
        insert_dialect = _insert_for(dialect)
        insert_rows = insert_dialect(users).from_select(list(values), new_rows)
        if policy is OnConflict.SKIP:
            insert_rows = insert_rows.on_conflict_do_nothing()
        return cls(
            *update_parts,
            insert=insert_rows,
            # TRUNCATE, not DELETE: a temporary table is never vacuumed, and deleted rows
            # would pile up for every later batch to scan.
            empty_staging=text(f"TRUNCATE {staging.name}")
            if dialect == "postgresql"
            else staging.delete(),
        )


async def _move(
    conn: AsyncConnection, statements: _MoveStatements, report: ImportReport, *, staged: int
) -> None:
    """Move the staged batch into users, set-based, and leave the staging table empty.
    Earlier batches are already in users, so the unique constraints see the file so far."""
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
    if statements.empty_staging is not None:
        await conn.execute(statements.empty_staging)


def _insert_for(dialect: str) -> Any:
    """The dialect's INSERT (both PostgreSQL's and SQLite's support ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def _explain_conflicts(db: Database, rows: list[list[Any]], policy: OnConflict) -> list[str]:
    """Stage the batch that conflicted again, in a transaction that is rolled back, and
    report its first conflicting emails and usernames with their lines."""
    async with db.engine.connect() as conn:
        await conn.begin()
        await conn.run_sync(lambda sync: staging.create(sync))
        await _stage(conn, rows)
        try:
            return await _conflicts_in_staging(conn, policy)
        finally:
            await conn.rollback()


async def _conflicts_in_staging(conn: AsyncConnection, policy: OnConflict) -> list[str]:
    users = cast(Table, User.__table__)
    s = staging.c
    effective = func.coalesce(s.username, s.derived_username)
    found: list[str] = []

    async def collect(query: Any, describe: Callable[[Any], str]) -> None:
        for row in await conn.execute(query.limit(REPORT_LIMIT - len(found))):
            found.append(describe(row))

    first_line = func.min(s.line)
    await collect(
        select(s.email, first_line, func.max(s.line), func.count())
        .group_by(s.email)
        .having(func.count() > 1)
        .order_by(first_line),
        lambda r: f"email {r[0]!r} appears {r[3]} times (first on line {r[1]}, last on {r[2]})",
    )
    if policy is not OnConflict.UPDATE:
        await collect(
            select(s.email, s.line)
            .where(exists().where(users.c.email == s.email))
            .order_by(s.line),
            lambda r: f"email {r[0]!r} (line {r[1]}) already exists (or came earlier in the file)",
        )
    await collect(
        select(effective, func.min(s.line), func.count(func.distinct(s.email)))
        .group_by(effective)
        .having(func.count(func.distinct(s.email)) > 1)
        .order_by(func.min(s.line)),
        lambda r: f"username {r[0]!r} is used by {r[2]} different emails (first on line {r[1]})",
    )
    await collect(
        select(effective, s.line)
        .where(exists().where(and_(users.c.username == effective, users.c.email != s.email)))
        .order_by(s.line),
        lambda r: f"username {r[0]!r} (line {r[1]}) belongs to another user (or an earlier line)",
    )
    return found or ["a unique constraint was violated"]


def _conflict_summary(conflicts: list[str]) -> str:
    more = "" if len(conflicts) == 1 else f", and {len(conflicts) - 1} more listed above"
    return f"{conflicts[0]}{more}"


# --- export --------------------------------------------------------------------------------


def export_columns(include_hashes: bool) -> list[str]:
    return [*PUBLIC_USER_FIELDS, *([EXPORT_HASH_COLUMN] if include_hashes else [])]


async def stream_users(
    session: AsyncSession, selection: UserFilter, *, include_hashes: bool, chunk: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every selected user as a dict of export columns, fetched `chunk` rows at a time."""
    columns = export_columns(include_hashes)
    result = await session.stream_scalars(
        filtered(select(User), selection).execution_options(yield_per=chunk)
    )
    async for user in result:
        yield {name: getattr(user, name) for name in columns}


class ExportWriter:
    """Writes exported rows as CSV or JSON Lines, in the form `users import` reads back."""

    def __init__(self, stream: IO[str], fmt: Format, columns: list[str]) -> None:
        self.stream, self.fmt, self.columns = stream, fmt, columns
        self._csv = csv.writer(stream, lineterminator="\n") if fmt is Format.CSV else None
        if self._csv is not None:
            self._csv.writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([csv_value(row[name]) for name in self.columns])
        else:
            self.stream.write(json.dumps(row, default=json_default, ensure_ascii=False) + "\n")
