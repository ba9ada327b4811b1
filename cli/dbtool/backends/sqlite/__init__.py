"""SQLite through aiosqlite, the embedded default: everything dbtool does differently on it.

Real transactions (DDL inside them, the write lock taken up front with BEGIN IMMEDIATE),
a file that is never created as a side effect, write-ahead logging once the schema
exists, a file lock for work held apart from the transaction (migrations), batches
unpacked from one JSON text by the database in aiosqlite's thread, and exports rendered
by SQLite itself (`export`, with a second reader process: `chunks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, String, Table, bindparam, event, func, literal_column, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dbtool.backends.base import (
    READONLY,
    Backend,
    ClientCommand,
    ExportJob,
    driver_sql,
    pool_options,
)
from dbtool.backends.sqlite.files import (
    create_private_file,
    database_file,
    in_memory,
    sqlite_error,
)
from dbtool.errors import DatabaseUnavailableError, RefusedError
from dbtool.models.user_model import python_type

if TYPE_CHECKING:
    from dbtool.backends.errors import UnavailableError
    from dbtool.config import Settings
    from dbtool.db import Database, RetryCallback

# How long a SQLite connection waits for another writer's lock before "database is locked".
BUSY_TIMEOUT = 30.0
# The page cache during an import (KiB): the user table's unique indexes take rows in
# random order, and a cache of a few pages makes most of those inserts read from disk.
IMPORT_CACHE_KIB = 65536

_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's default for SQLite
_UUID_SAMPLES = (uuid.UUID(int=0), uuid.UUID("01234567-89ab-cdef-0123-456789abcdef"))
_DATETIME_SAMPLES = (
    datetime(1, 1, 1),
    datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999),
    datetime(2000, 1, 2, 3, 4, 5, tzinfo=UTC),
)


class SQLite(Backend):
    name: ClassVar[str] = "sqlite"
    product: ClassVar[str] = "SQLite"
    embedded: ClassVar[bool] = True

    # --- URLs and connecting -----------------------------------------------------------

    def hosts(self, url: URL) -> list[str]:
        return [url.database or ":memory:"]

    def database_file(self, url: URL) -> Path | None:
        return database_file(url)

    def database_files(self, url: URL) -> dict[str, Path]:
        database = self.database_file(url)
        if database is None:
            return {}
        # SQLite follows a symlink to the file and keeps its -wal, -shm and -journal files
        # beside the real one.
        real = database.resolve()
        files = {"the SQLite database in use": database}
        for suffix in ("-wal", "-shm", "-journal"):
            files[f"the SQLite database's {suffix} file"] = Path(f"{real}{suffix}")
        return files

    def database_label(self, url: URL) -> str:
        path = self.database_file(url)
        return path.name if path is not None else url.database or ":memory:"

    def check_target(self, url: URL, *, must_exist: bool) -> None:
        from dbtool.backends.errors import UnavailableError

        path = self.database_file(url)
        if path is None:
            return
        if path.is_dir():
            raise UnavailableError(
                f"{path} is a directory, not a SQLite database file", retryable=False
            )
        if must_exist and not path.exists():
            raise UnavailableError(
                f"SQLite database file {path} does not exist (`dbtool init` creates it)",
                retryable=False,
            )
        if not path.parent.is_dir():
            raise UnavailableError(
                f"cannot create SQLite database {path}: directory {path.parent} does not "
                "exist (`dbtool init --create-database` creates it)",
                retryable=False,
            )

    def client_command(self, settings: Settings, private: Path) -> ClientCommand:
        """sqlite3 on the database file (which must exist: sqlite3 would create an empty
        one)."""
        from dbtool.errors import UsageError

        path = self.database_file(settings.url)
        if path is None:
            raise UsageError(
                "the database is in memory, gone when its process ends: no client can open "
                "it (set DATABASE_URL to a file)"
            )
        self.check_target(settings.url, must_exist=True)
        return ClientCommand(("sqlite3",), "sqlite3", (str(path),))

    def engine_options(self, settings: Settings) -> tuple[URL, dict[str, Any]]:
        options: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT}}
        if not in_memory(settings.url):
            # A file's connections are pooled with the pool settings, as SQLAlchemy does
            # from 2.0.38 on; named here so that older releases (NullPool) behave the same.
            from sqlalchemy.pool import AsyncAdaptedQueuePool

            options.update(poolclass=AsyncAdaptedQueuePool, **pool_options(settings))
        return settings.url, options

    def prepare_engine(self, engine: AsyncEngine) -> None:
        """Make SQLite transactions real: DDL inside them, and the write lock taken up front.

        Python's sqlite3 driver (under aiosqlite) neither begins a transaction before DDL
        nor takes the write lock until the first write, so concurrent `init` runs race and
        two writers can deadlock. BEGIN IMMEDIATE takes the lock at the start and waits
        (busy timeout) for other writers instead. Transactions marked read-only (READONLY)
        begin DEFERRED: they take no write lock, so a reader never waits for a writer (in
        WAL mode, which `init` switches on, not even while it commits).
        """

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            readonly = conn.get_execution_options().get(READONLY, False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        database = database_file(engine.url)

        @event.listens_for(engine.sync_engine, "do_connect")
        def _private(*_: Any) -> None:
            # A new database file holds password hashes: readable by its owner only. SQLite
            # gives its -wal, -shm and -journal files the database file's mode.
            if database is not None and not database.exists():
                create_private_file(database)

    async def create_database(
        self,
        settings: Settings,
        *,
        wait: float,
        on_retry: RetryCallback | None,
        engine: Callable[..., AsyncEngine],
    ) -> bool:
        """The file's directory; the file itself appears with the first connection."""
        path = self.database_file(settings.url)
        if path is None or path.exists():
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"cannot create directory {path.parent}: {exc}"
            ) from None
        return False

    # --- what the database is ----------------------------------------------------------

    async def server_version(self, conn: AsyncConnection) -> str:
        return str(await conn.scalar(text("SELECT sqlite_version()")))

    async def database_size(self, conn: AsyncConnection, url: URL) -> tuple[str, int]:
        path = self.database_file(url)
        size = await conn.scalar(
            text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
        )
        return (str(path) if path is not None else ":memory:"), int(size or 0)

    # --- locks and schema changes ------------------------------------------------------
    # A schema change's transaction needs nothing more: it began with BEGIN IMMEDIATE.

    @contextlib.asynccontextmanager
    async def schema_lock(self, db: Database) -> AsyncIterator[None]:
        async with self.taking_turns(db, "schema"):
            yield

    async def broken_references(self, conn: AsyncConnection, table: Table) -> set[Any] | None:
        # SQLite enforces foreign keys only where each connection asks (PRAGMA foreign_keys,
        # which applications rarely set): loads check their rows instead.
        quoted = conn.dialect.identifier_preparer.format_table(table)
        result = await conn.exec_driver_sql(f"PRAGMA foreign_key_check({quoted})")
        # Rows of (table, rowid, referenced table, key index): the rowid and its target.
        rows: list[Sequence[Any]] = list(result)
        return {(row[1], row[2]) for row in rows}

    @contextlib.asynccontextmanager
    async def taking_turns(self, db: Database, name: str) -> AsyncIterator[None]:
        # One lock for everything on a file (an flock of the database file itself, no
        # file beside it): schema changes and seeds never run at once, nor nested.
        path = self.database_file(db.settings.url)
        if path is None:  # in-memory: one process only
            yield
            return
        with path.open("a+b") as handle:  # creates the (empty, valid) database file if need be
            await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    async def after_schema_created(self, db: Database) -> None:
        """Switch the file to write-ahead logging (it stays so): readers then never wait
        for a writer, nor a writer for readers. Outside any transaction, as SQLite
        requires."""
        if self.database_file(db.settings.url) is None:
            return
        async with db.engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            for _ in range(10):
                cursor = await raw.execute("PRAGMA journal_mode")
                if str((await cursor.fetchone())[0]).lower() == "wal":
                    return
                try:
                    await raw.execute("PRAGMA journal_mode=WAL")
                except sqlite3.OperationalError:
                    # Another process has the file open mid-transaction (a concurrent init,
                    # say, which will switch it itself): try again shortly, then leave it.
                    await asyncio.sleep(0.1)

    # --- statements that differ ----------------------------------------------------------

    def insert(self, table: Table) -> Any:
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)

    def bind_processor(self, column: Column[Any], dialect: Any) -> Callable[[Any], Any] | None:
        """SQLite's DateTime formats through a dict for every value; where a plain
        %-format gives the same text (checked on samples here), that is used instead: it
        runs twice per imported row."""
        processor = column.type._cached_bind_processor(dialect)
        kind = python_type(column)
        if processor is None or kind not in (datetime, uuid.UUID):
            return processor
        general = processor

        def fast(value: Any) -> Any:
            if value.__class__ is datetime:
                return _DATETIME % (
                    value.year, value.month, value.day,
                    value.hour, value.minute, value.second, value.microsecond,
                )  # fmt: skip
            if value.__class__ is str:  # a canonical UUID (the import's converter): as hex
                return value.replace("-", "").lower()
            return general(value)

        if kind is datetime:
            same = all(fast(sample) == general(sample) for sample in _DATETIME_SAMPLES)
        else:
            same = all(fast(str(sample).upper()) == general(sample) for sample in _UUID_SAMPLES)
        return fast if same else general

    # --- bulk paths ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def bulk_session(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """A larger page cache for the load; the connection's own given back whatever the
        outcome (it may be an application's pooled connection), never in the way of the
        error that ended it."""
        before = int((await conn.exec_driver_sql("PRAGMA cache_size")).scalar_one())
        await conn.exec_driver_sql(f"PRAGMA cache_size = {-IMPORT_CACHE_KIB}")
        try:
            yield
        finally:
            with contextlib.suppress(DBAPIError):
                await self.run_at_once(conn, text(f"PRAGMA cache_size = {before}"), None)

    async def rows_as_json(self, conn: AsyncConnection) -> bool:
        """With its JSON functions (built in since 3.38, an option before)."""
        try:
            async with conn.begin_nested():
                await conn.exec_driver_sql(
                    "SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')"
                )
        except DBAPIError:
            return False
        return True

    def json_rows(self, table: Table) -> Any:
        element: Any = literal_column("value")
        return select(
            *(
                func.json_extract(element, f"$[{position}]").label(column.name)
                for position, column in enumerate(table.columns)
            )
        ).select_from(func.json_each(bindparam("payload", type_=String)))

    async def load_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], payload: Any
    ) -> None:
        if isinstance(payload, str):
            statement = table.insert().from_select(list(table.c.keys()), self.json_rows(table))
            await self.run_at_once(conn, statement, {"payload": payload})
        else:
            insert = str(table.insert().compile(dialect=conn.dialect))
            await self._raw(conn, "executemany", insert, payload)

    async def run_at_once(self, conn: AsyncConnection, statement: Any, parameters: Any) -> int:
        """One statement as a single aiosqlite request, so that it is under way in
        aiosqlite's thread as soon as the import yields (SQLAlchemy's own execution takes
        several requests, which would wait until the next batch is validated). Errors are
        SQLAlchemy's, as from any other statement, parameters hidden."""
        sql, arguments = driver_sql(conn.dialect, statement, parameters)
        return await self._raw(conn, "execute", sql, arguments)

    async def _raw(self, conn: AsyncConnection, method: str, sql: str, arguments: Any) -> int:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        try:
            cursor = await getattr(raw, method)(sql, arguments)
        except sqlite3.Error as exc:
            raise sqlite_error(sql, exc) from exc
        try:
            return int(cursor.rowcount)
        finally:
            await cursor.close()

    async def fast_export(self, job: ExportJob) -> int | None:
        from dbtool.backends.sqlite.export import export

        return await export(job)

    # --- errors --------------------------------------------------------------------------

    def connection_error(
        self, exc: BaseException, cause: BaseException, target: str, settings: Settings
    ) -> UnavailableError | None:
        from dbtool.backends.errors import UnavailableError

        if "unable to open database file" in str(cause):
            return UnavailableError(f"{target}: unable to open the database file", retryable=False)
        return None

    def translate_error(self, exc: BaseException, settings: Settings) -> Any | None:
        """SQLite's "attempt to write a readonly database", said as what the user can fix:
        a WAL database needs its -shm file beside it even to be read, and a write needs
        write access to the file."""
        from dbtool.backends.errors import UnavailableError, driver_error

        name = getattr(driver_error(exc), "sqlite_errorname", "")
        path = database_file(settings.url)
        if path is None or not str(name).startswith("SQLITE_READONLY"):
            return None
        real = path.resolve()
        if name == "SQLITE_READONLY_DIRECTORY" or not os.access(real.parent, os.W_OK):
            return UnavailableError(
                f"cannot open {path}: SQLite needs to create {real.name}-shm (or a journal) "
                f"beside it, and this user cannot write to {real.parent}; give write access "
                "to the folder, or run as its owner",
                retryable=False,
            )
        if not os.access(real, os.W_OK):
            return RefusedError(
                f"{path} is read-only for this user, and this command writes to it; give "
                "write access to the file, or run as its owner"
            )
        return None

    def unique_violation_columns(self, cause: BaseException) -> list[str] | None:
        """SQLite says `UNIQUE constraint failed: users.email, users.x`."""
        if getattr(cause, "sqlite_errorname", "") not in (
            "SQLITE_CONSTRAINT_UNIQUE",
            "SQLITE_CONSTRAINT_PRIMARYKEY",
        ):
            return None
        listed = str(cause).partition(":")[2]
        return [part.strip().rpartition(".")[2] for part in listed.split(",") if part.strip()]

    def is_missing_table(self, cause: BaseException) -> bool:
        return str(cause).startswith("no such table")

    def is_missing_column(self, cause: BaseException) -> bool:
        return str(cause).startswith("no such column")
