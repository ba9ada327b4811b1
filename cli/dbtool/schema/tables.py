"""Creating, inspecting and dropping the models' schema (and the database itself).

"The models" are the configured metadata (DBTOOL_MODELS, or the built-in tables). A table
counts as the models' own only when its columns match: a table of the same name but another
shape (an application's own `users`, say) is reported, never dropped without `--force`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Index, Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends import backend_for
from dbtool.backends.errors import LockNotGrantedError
from dbtool.config import Settings
from dbtool.db import Database, RetryCallback, create_engine
from dbtool.errors import DbtoolError, RefusedError
from dbtool.models.user_model import Models

VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class VersionTable:
    """Where Alembic records the applied revisions: `alembic_version` unless env.py says
    otherwise (`context.configure(version_table=..., version_table_schema=...)`)."""

    name: str = VERSION_TABLE
    schema: str | None = None

    @property
    def fullname(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def quoted(self, dialect: Any) -> str:
        prepare = dialect.identifier_preparer
        name = prepare.quote(self.name)
        return f"{prepare.quote_schema(self.schema)}.{name}" if self.schema else name

    def exists(self, sync: Connection) -> bool:
        return bool(inspect(sync).has_table(self.name, schema=self.schema))

    def alembic_opts(self) -> dict[str, Any]:
        return {"version_table": self.name, "version_table_schema": self.schema}


def find_version_table(
    sync: Connection, models: Models, configured: str | None = None
) -> VersionTable:
    """The version table of this database: DBTOOL_ALEMBIC_VERSION_TABLE (`configured`,
    `name` or `schema.name`) when set; else `alembic_version` when it exists, else a table
    of Alembic's shape (one column, `version_num`) outside the models, in the default schema
    or one of the models' (an env.py with its own `version_table`, as advanced-alchemy's
    `alembic_versions` or litestar-fullstack's `ddl_version`); `alembic_version` when there
    is none yet."""
    if configured:
        prefix, _, table = configured.rpartition(".")
        return VersionTable(table, prefix or None)
    inspector = inspect(sync)
    if inspector.has_table(VERSION_TABLE):
        return VersionTable()
    own = {(table.schema, table.name) for table in models.tables}
    for schema in [None, *sorted({t.schema for t in models.tables if t.schema})]:
        for name in inspector.get_table_names(schema=schema):
            if (schema, name) in own:
                continue
            columns = [column["name"] for column in inspector.get_columns(name, schema=schema)]
            if columns == ["version_num"]:
                return VersionTable(name, schema)
    return VersionTable()


class SchemaMismatchError(DbtoolError):
    """Tables of the models' names exist with other columns: not the tables they describe."""


class LockTimeoutError(DbtoolError):
    """A schema change waited longer than DBTOOL_LOCK_TIMEOUT for a table lock."""


@dataclass(frozen=True)
class TableState:
    """One table of the models, as the database has it."""

    name: str  # schema-qualified when the model says so
    exists: bool
    missing_columns: list[str] = field(default_factory=list)  # in the model, not the table
    extra_columns: list[str] = field(default_factory=list)  # in the table, not the model
    rows: int | None = None
    rows_estimated: bool = False  # rows is the planner's estimate (large PostgreSQL tables)
    dependents: list[str] = field(default_factory=list)  # outside tables referencing it

    @property
    def matches(self) -> bool:
        return self.exists and not self.missing_columns and not self.extra_columns

    def mismatch(self) -> str:
        """`users exists but lacks a, b; has extra c`."""
        parts = []
        if self.missing_columns:
            parts.append(f"lacks {', '.join(self.missing_columns)}")
        if self.extra_columns:
            parts.append(f"has extra {', '.join(self.extra_columns)}")
        return f"{self.name} exists but {'; '.join(parts)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "missing_columns": self.missing_columns,
            "extra_columns": self.extra_columns,
        }


@dataclass(frozen=True)
class SchemaState:
    tables: list[TableState]

    @property
    def present(self) -> list[TableState]:
        return [table for table in self.tables if table.exists]

    @property
    def missing(self) -> list[TableState]:
        return [table for table in self.tables if not table.exists]

    @property
    def mismatched(self) -> list[TableState]:
        return [table for table in self.present if not table.matches]

    @property
    def complete(self) -> bool:
        return all(table.matches for table in self.tables)


@dataclass(frozen=True)
class SchemaReport:
    created: list[str]
    existing: list[str]
    indexes: list[str] = field(default_factory=list)  # created on tables that existed


@dataclass(frozen=True)
class DropPlan:
    """What `drop` will do: tables to drop (child tables first) and tables it leaves."""

    drop: list[TableState]
    skipped: list[tuple[TableState, str]]  # (table, why)
    force: bool
    version_table: str | None = None  # Alembic's version table, dropped too

    @property
    def blocked(self) -> list[str]:
        """Why dropping would break tables outside the models (without --force)."""
        if self.force:
            return []
        return [
            f"{outside} (not in the models) references {table.name}"
            for table in self.drop
            for outside in table.dependents
        ]


def model_tables(models: Models) -> list[str]:
    return [table.fullname for table in models.tables]


@contextlib.asynccontextmanager
async def _schema_change(db: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction for DDL: the lock timeout, then dbtool's schema lock (concurrent runs
    wait their turn): behind a long transaction the DDL gives up after DBTOOL_LOCK_TIMEOUT
    instead of waiting forever with every query on the table queued behind it."""
    async with (
        bounded_waits(db),
        db.transaction() as conn,
        db.backend.schema_change(conn, db.settings),
    ):
        yield conn


@contextlib.asynccontextmanager
async def _reading(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction for what init, drop and reset look at first (the previews,
    the row counts shown before a drop): no wait in it outlasts DBTOOL_LOCK_TIMEOUT."""
    async with bounded_waits(db), db.transaction(readonly=True) as conn:
        await db.backend.bound_lock_waits(conn, db.settings)
        yield conn


@contextlib.asynccontextmanager
async def bounded_waits(db: Database) -> AsyncIterator[None]:
    """A lock not granted within DBTOOL_LOCK_TIMEOUT, inside the block, as LockTimeoutError
    (exit 1) naming the session in the way; the block's transaction is rolled back."""
    backend = db.backend
    try:
        yield
    except (DBAPIError, LockNotGrantedError) as exc:
        if isinstance(exc, DBAPIError) and not backend.is_lock_timeout(exc):
            raise
        tables = [table.fullname for table in db.models.tables] + [VERSION_TABLE]
        raise LockTimeoutError(
            f"a lock was not granted within {db.settings.lock_timeout:g}s "
            f"(DBTOOL_LOCK_TIMEOUT){await backend.lock_holders(db, tables)}; nothing was changed"
        ) from None


def _columns(sync: Connection, tables: Sequence[Table]) -> dict[tuple[str | None, str], list[str]]:
    """The column names of those of `tables` that exist, by (schema, name): from one
    catalogue query where the backend has one, else from SQLAlchemy's inspector."""
    found = backend_for(sync.dialect.name).table_columns(sync, list(tables))
    if found is not None:
        return found
    inspector = inspect(sync)
    present = {
        (schema, name)
        for schema in {table.schema for table in tables}
        for name in inspector.get_table_names(schema=schema)
    }
    return {
        (table.schema, table.name): [
            column["name"] for column in inspector.get_columns(table.name, table.schema)
        ]
        for table in tables
        if (table.schema, table.name) in present
    }


def _referencing(
    sync: Connection, tables: Sequence[Table]
) -> dict[tuple[str | None, str], list[str]]:
    """The tables outside `tables` whose foreign keys reference each of them."""
    inspector = inspect(sync)
    ours = {(table.schema, table.name) for table in tables}
    referenced: dict[tuple[str | None, str], list[str]] = {}
    default = inspector.default_schema_name  # named by some databases (MySQL) as such
    for schema in {table.schema for table in tables}:
        for (_, name), constraints in inspector.get_multi_foreign_keys(schema=schema).items():
            if (schema, name) in ours:
                continue
            for constraint in constraints:
                referred = constraint.get("referred_schema")
                referred = None if referred == default else referred
                target = (referred or schema, constraint["referred_table"])
                referenced.setdefault(target, []).append(name)
    return referenced


def _inspect(sync: Connection, tables: Sequence[Table], *, dependents: bool) -> list[TableState]:
    existing = _columns(sync, tables)
    referenced = _referencing(sync, tables) if dependents else {}
    states = []
    for table in tables:
        key = (table.schema, table.name)
        actual = existing.get(key)
        if actual is None:
            states.append(TableState(table.fullname, exists=False))
            continue
        wanted = [column.name for column in table.columns]
        states.append(
            TableState(
                table.fullname,
                exists=True,
                missing_columns=[name for name in wanted if name not in actual],
                extra_columns=[name for name in actual if name not in wanted],
                dependents=sorted(set(referenced.get(key, []))),
            )
        )
    return states


# From this many rows (by the planner's statistics) a PostgreSQL table's count is estimated
# unless exact counts are asked for: count(*) reads the whole table.
ESTIMATE_FROM = 100_000


async def inspect_schema(
    conn: AsyncConnection,
    models: Models,
    *,
    counts: bool = False,
    dependents: bool = False,
    estimate: bool = False,
) -> SchemaState:
    """How the database holds each table of the models (row counts on request; with
    `estimate`, large PostgreSQL tables get the planner's estimate instead)."""
    tables = models.tables
    states = await conn.run_sync(lambda sync: _inspect(sync, tables, dependents=dependents))
    if counts:
        by_name = {table.fullname: table for table in tables}
        states = [
            await _counted(conn, state, by_name[state.name], estimate) if state.exists else state
            for state in states
        ]
    return SchemaState(states)


async def _counted(
    conn: AsyncConnection, state: TableState, table: Table, estimate: bool
) -> TableState:
    # Only the name: the table's columns may not be the model's.
    name = _quoted(table, conn.dialect.identifier_preparer)
    if estimate:
        guess = await backend_for(conn.dialect.name).estimated_rows(conn, name)
        if guess is not None and guess >= ESTIMATE_FROM:
            return replace(state, rows=int(guess), rows_estimated=True)
    rows = await conn.scalar(text(f"SELECT count(*) FROM {name}"))
    return replace(state, rows=int(rows or 0))


def _quoted(table: Table, preparer: Any) -> str:
    quote = preparer.quote
    name = quote(table.name)
    return f"{quote(table.schema)}.{name}" if table.schema else name


async def create_schema(db: Database) -> SchemaReport:
    """Create the missing tables, all in one transaction; safe to run concurrently.

    Refuses (SchemaMismatchError, nothing created) when a table of the models' name exists
    with other columns."""
    models = db.models
    async with _schema_change(db) as conn:
        state = await inspect_schema(conn, models)
        _refuse_mismatched(state)
        await _create_missing(conn, models, state)
        indexes = await _create_missing_indexes(conn, models, state)
    await db.backend.after_schema_created(db)
    return SchemaReport(
        created=[table.name for table in state.missing],
        existing=[table.name for table in state.present],
        indexes=indexes,
    )


def _refuse_mismatched(state: SchemaState) -> None:
    if state.mismatched:
        described = "; ".join(table.mismatch() for table in state.mismatched)
        raise SchemaMismatchError(
            f"{described}: not the table the models describe; migrate it to match (e.g. "
            "with Alembic), point DBTOOL_MODELS at the models that match it, or drop it "
            "with `dbtool drop --force`"
        )


async def _create_missing(conn: AsyncConnection, models: Models, state: SchemaState) -> None:
    missing = {table.name for table in state.missing}
    tables = [table for table in models.tables if table.fullname in missing]
    if tables:
        await conn.run_sync(lambda sync: models.metadata.create_all(sync, tables=tables))


def _missing_indexes(sync: Connection, models: Models, state: SchemaState) -> list[Index]:
    """The models' indexes that existing tables lack (tables made by an earlier version of
    the models: the list order's index, say)."""
    present = {table.name for table in state.present}
    inspector = inspect(sync)
    missing: list[Index] = []
    for table in models.tables:
        if table.fullname not in present or not table.indexes:
            continue
        existing = {index["name"] for index in inspector.get_indexes(table.name, table.schema)}
        indexes = sorted(table.indexes, key=lambda index: str(index.name))
        missing += [
            index for index in indexes if index.name not in existing and created_here(index, sync)
        ]
    return missing


def created_here(item: Any, bind: Any) -> bool:
    """Whether this database's dialect creates `item` (an index or a constraint): not
    when its `ddl_if(dialect=..., callable_=...)` says otherwise (advanced-alchemy's slug
    index is PostgreSQL's only), so nothing counts as missing that `init` would never make.
    `bind`: a connection, or a mock engine's."""
    condition = getattr(item, "_ddl_if", None)  # SQLAlchemy's record of ddl_if()
    if condition is None:
        return True
    from sqlalchemy.schema import AddConstraint, CreateIndex

    ddl = CreateIndex(item) if isinstance(item, Index) else AddConstraint(item)
    return bool(condition._should_execute(ddl, item, bind))


async def _create_missing_indexes(
    conn: AsyncConnection, models: Models, state: SchemaState
) -> list[str]:
    """Create the indexes existing tables lack; their names."""

    def create(sync: Connection) -> list[str]:
        indexes = _missing_indexes(sync, models, state)
        for index in indexes:
            index.create(sync)
        return [f"{index.name} on {index.table.fullname}" for index in indexes]  # type: ignore[union-attr]

    return await conn.run_sync(create)


async def present_tables(db: Database, *, with_version_table: bool = False) -> list[str]:
    """The models' tables that exist (and Alembic's version table, if asked and there)."""
    async with _reading(db) as conn:
        state = await inspect_schema(conn, db.models)
        version = (
            await conn.run_sync(lambda sync: _existing_version_table(sync, db))
            if with_version_table
            else None
        )
    return [table.name for table in state.present] + ([version.fullname] if version else [])


def _existing_version_table(sync: Connection, db: Database) -> VersionTable | None:
    version = find_version_table(sync, db.models, db.settings.alembic_version_table)
    return version if version.exists(sync) else None


async def describe_tables(
    db: Database, *, dependents: bool = False, estimate: bool = False
) -> SchemaState:
    """The models' tables as they exist, with their row counts (estimated for large
    PostgreSQL tables, if `estimate`)."""
    async with _reading(db) as conn:
        return await inspect_schema(
            conn, db.models, counts=True, dependents=dependents, estimate=estimate
        )


def plan_drop(state: SchemaState, models: Models, *, force: bool) -> DropPlan:
    """Which existing tables `drop` may drop: those that match the models (all with force);
    a table another skipped table references is kept too."""
    by_name = {table.fullname: table for table in models.tables}
    skipped: list[tuple[TableState, str]] = []
    drop: list[TableState] = []
    if force:
        drop = state.present
    else:
        drop = [table for table in state.present if table.matches]
        skipped = [(table, table.mismatch()) for table in state.mismatched]
        kept = {table.name for table, _ in skipped}
        for table in reversed(list(drop)):  # children first, so skips propagate to parents
            referrers = sorted(
                name
                for name in kept
                if any(
                    key.column.table is by_name[table.name] for key in by_name[name].foreign_keys
                )
            )
            if referrers:
                drop.remove(table)
                kept.add(table.name)
                skipped.append((table, f"{', '.join(referrers)} (kept) references it"))
    order = {name: index for index, name in enumerate(by_name)}
    drop.sort(key=lambda table: -order[table.name])
    return DropPlan(drop=drop, skipped=skipped, force=force)


async def drop_schema(db: Database, *, force: bool = False) -> DropPlan:
    """Drop the models' tables that exist and match, in one transaction; returns the plan
    it carried out (skipped tables stay). RefusedError when tables outside the models
    reference a table to drop (unless `force`, which drops with CASCADE on PostgreSQL)."""
    async with _schema_change(db) as conn:
        return await _drop(conn, db, force=force)


async def _drop(conn: AsyncConnection, db: Database, *, force: bool) -> DropPlan:
    models = db.models
    state = await inspect_schema(conn, models, counts=True, dependents=True)
    plan = plan_drop(state, models, force=force)
    if plan.blocked:
        raise RefusedError(
            f"cannot drop: {'; '.join(plan.blocked)}; drop or change those first, or use --force"
        )
    names = {table.name for table in plan.drop}
    tables = [table for table in models.tables if table.fullname in names]
    if not tables:
        return plan
    version = await conn.run_sync(lambda sync: _existing_version_table(sync, db))
    if not plan.skipped and version is not None:
        # Alembic's record of applied migrations goes too: left behind, it would say the
        # schema is at head while its tables are gone.
        await conn.exec_driver_sql(f"DROP TABLE {version.quoted(conn.dialect)}")
        plan = replace(plan, version_table=version.fullname)
    cascade = await _cascade(conn, tables) if force else None
    # CASCADE drops the foreign keys (and views) of outside objects that depend on them.
    for statement in cascade or ():
        await conn.exec_driver_sql(statement)
    # Children first; after CASCADE this only drops the named types (enums) left behind.
    await conn.run_sync(lambda sync: models.metadata.drop_all(sync, tables=tables))
    return plan


async def reset_schema(db: Database, *, force: bool = False) -> tuple[DropPlan, SchemaReport]:
    """Drop and re-create the models' tables in one transaction: a failure (or a crash)
    half-way leaves the schema as it was."""
    models = db.models
    async with _schema_change(db) as conn:
        plan = await _drop(conn, db, force=force)
        state = await inspect_schema(conn, models)
        await _create_missing(conn, models, state)
    return plan, SchemaReport(
        created=[table.name for table in state.missing],
        existing=[table.name for table in state.present],
    )


def _render(db: Database, build: Callable[[Any], None]) -> list[str]:
    """The DDL `build(engine)` would run, compiled for the database's dialect, not run."""
    from sqlalchemy import create_mock_engine

    statements: list[str] = []

    def collect(sql: Any, *args: Any, **kwargs: Any) -> None:
        statements.append(f"{str(sql.compile(dialect=mock.dialect)).strip()};")

    mock = create_mock_engine(db.settings.url, collect)
    build(mock)
    return statements


async def create_sql(db: Database, *, assume_empty: bool = False) -> list[str]:
    """The statements `init` would run on this database (its missing tables; all of them
    with `assume_empty`, as after a drop)."""
    models = db.models
    tables = models.tables
    indexes: list[Index] = []
    if not assume_empty:
        async with _reading(db) as conn:
            state = await inspect_schema(conn, models)
            _refuse_mismatched(state)
            indexes = await conn.run_sync(lambda sync: _missing_indexes(sync, models, state))
        missing = {table.name for table in state.missing}
        tables = [table for table in models.tables if table.fullname in missing]

    def build(mock: Any) -> None:
        models.metadata.create_all(mock, tables=tables, checkfirst=False)
        for index in indexes:
            index.create(mock)

    return _render(db, build)


async def drop_sql(db: Database, *, force: bool = False) -> tuple[DropPlan, list[str]]:
    """What `drop` would do here, and its statements."""
    models = db.models
    async with _reading(db) as conn:
        state = await inspect_schema(conn, models, counts=True, dependents=True)
        version = await conn.run_sync(lambda sync: _existing_version_table(sync, db))
        plan = plan_drop(state, models, force=force)
        names = {table.name for table in plan.drop}
        tables = [table for table in models.tables if table.fullname in names]
        cascade = await _cascade(conn, tables) if force else None
    statements = (
        [f"DROP TABLE {version.quoted(db.engine.dialect)};"]
        if tables and version is not None and not plan.skipped
        else []
    )
    if cascade is not None:
        statements += [f"{statement};" for statement in cascade]
    else:
        statements += _render(
            db, lambda mock: models.metadata.drop_all(mock, tables=tables, checkfirst=False)
        )
    return plan, statements


async def _cascade(conn: AsyncConnection, tables: list[Table]) -> list[str] | None:
    """The statements dropping `tables` with what depends on them, children first; None
    where the backend has no such drop."""
    quoted = [_quoted(table, conn.dialect.identifier_preparer) for table in reversed(tables)]
    return await backend_for(conn.dialect.name).drop_cascade(conn, quoted)


def database_name(settings: Settings) -> str:
    """What the user types to confirm a destructive action: the database (or file) name."""
    return backend_for(settings.url).database_label(settings.url)


async def create_database(
    settings: Settings, *, wait: float = 0.0, on_retry: RetryCallback | None = None
) -> bool:
    """Make sure the target database exists; True if this call created it (a server's
    database; for a file, its directory)."""
    return await backend_for(settings.url).create_database(
        settings, wait=wait, on_retry=on_retry, engine=create_engine
    )


async def drop_database(settings: Settings) -> None:
    """Drop the database `create_database` made in this run (see Backend.drop_database)."""
    await backend_for(settings.url).drop_database(settings, engine=create_engine)
