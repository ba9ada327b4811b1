"""Creating and dropping the tool's schema (and, on PostgreSQL, the database itself)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from cli.config import Settings
from cli.db import Database, RetryCallback, retry_connect, sqlite_path
from cli.errors import DatabaseUnavailableError
from cli.models import Base

# Any constant works as long as every dbtool process uses the same one: it serialises
# concurrent `init`/`drop` runs on one PostgreSQL database.
SCHEMA_LOCK_ID = 0x6462746F6F6C  # "dbtool"
# Errors PostgreSQL raises when two CREATE DATABASE race: duplicate_database, unique_violation.
_DATABASE_EXISTS_SQLSTATES = ("42P04", "23505")


@dataclass(frozen=True)
class SchemaReport:
    created: list[str]
    existing: list[str]


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int


def model_tables() -> list[str]:
    return [table.name for table in Base.metadata.sorted_tables]


async def _lock_schema(conn: AsyncConnection) -> None:
    # Transaction-scoped, so it is released at COMMIT/ROLLBACK (and works behind PgBouncer).
    # SQLite needs nothing here: its transaction began with BEGIN IMMEDIATE.
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_ID)))


async def existing_tables(conn: AsyncConnection) -> list[str]:
    present = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    return [name for name in model_tables() if name in present]


async def create_schema(db: Database) -> SchemaReport:
    """Create the missing tables, all in one transaction; safe to run concurrently."""
    async with db.transaction() as conn:
        await _lock_schema(conn)
        existing = await existing_tables(conn)
        await conn.run_sync(Base.metadata.create_all)
    return SchemaReport(
        created=[name for name in model_tables() if name not in existing], existing=existing
    )


async def drop_schema(db: Database) -> list[str]:
    """Drop the tool's tables that exist, in one transaction; returns their names."""
    async with db.transaction() as conn:
        await _lock_schema(conn)
        existing = await existing_tables(conn)
        await conn.run_sync(Base.metadata.drop_all)
    return existing


async def describe_tables(db: Database) -> list[TableInfo]:
    """The tool's tables that exist, with their row counts."""
    async with db.transaction() as conn:
        names = await existing_tables(conn)
        tables = {table.name: table for table in Base.metadata.sorted_tables}
        result = []
        for name in names:
            rows = await conn.scalar(select(func.count()).select_from(tables[name]))
            result.append(TableInfo(name, int(rows or 0)))
    return result


def database_name(settings: Settings) -> str:
    """What the user types to confirm a destructive action: the database (or file) name."""
    path = sqlite_path(settings.url)
    if path is not None:
        return path.name
    return settings.url.database or ":memory:"


async def create_database(
    settings: Settings, *, wait: float = 0.0, on_retry: RetryCallback | None = None
) -> bool:
    """Make sure the target database exists; True if this call created it.

    PostgreSQL: through the `postgres` maintenance database (CREATE DATABASE cannot run
    inside a transaction, hence AUTOCOMMIT). SQLite: create the file's directory.
    """
    path = sqlite_path(settings.url)
    if settings.backend == "sqlite":
        if path is None or path.exists():
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"cannot create directory {path.parent}: {exc}"
            ) from None
        return False  # the file itself appears with the first connection

    name = settings.url.database or ""
    maintenance = settings.url.set(database="postgres")
    engine = create_async_engine(
        maintenance,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        hide_parameters=True,
        connect_args={
            "timeout": settings.connect_timeout,
            "server_settings": {"application_name": settings.application_name},
        },
    )
    created = False

    async def attempt() -> None:
        nonlocal created
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return
            quoted = conn.dialect.identifier_preparer.quote(name)
            try:
                await conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
                created = True
            except Exception as exc:
                if getattr(getattr(exc, "orig", None), "sqlstate", None) not in (
                    _DATABASE_EXISTS_SQLSTATES
                ):
                    raise  # someone else creating it at the same moment is fine

    try:
        await retry_connect(
            attempt, replace(settings, url=maintenance), wait=wait, on_retry=on_retry
        )
    finally:
        await engine.dispose()
    return created
