"""PostgreSQL through asyncpg: everything dbtool does differently on it.

URLs in libpq's spelling (sslmode, multi-host, target_session_attrs), PgBouncer's
transaction mode, the server's role in a replicated cluster, advisory locks for schema
changes and imports, CREATE DATABASE through the maintenance database, and binary COPY
both ways. asyncpg itself is imported only where COPY or its exceptions are used.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, Table, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from dbtool.backends.base import (
    Backend,
    ClientCommand,
    ClusterView,
    CsvSource,
    DroppedIndexes,
    ExportJob,
    ServerConnections,
    ServerProcess,
    ServerRole,
    default_application_name,
    integer_bits,
    pool_options,
    private_file,
)
from dbtool.backends.urls import (
    check_server_url,
    choice,
    no_key_password,
    single,
    take_dbtool_settings,
)
from dbtool.errors import ConfigError, RefusedError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from dbtool.backends.errors import UnavailableError
    from dbtool.config import Settings
    from dbtool.db import Database, RetryCallback

# The key of dbtool's schema lock (pg_advisory_xact_lock): init, drop, reset, migrations.
SCHEMA_LOCK_ID = 0x6462746F6F6C  # "dbtool"

# libpq's sslmode values, all of which asyncpg's `ssl=` understands under the same names.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's names for the certificate files -> the settings that hold them.
CERTIFICATES = {"sslrootcert": "ssl_rootcert", "sslcert": "ssl_cert", "sslkey": "ssl_key"}
TARGET_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
# URL query parameters dbtool understands for PostgreSQL; anything else would reach
# asyncpg.connect() as an unexpected keyword and fail at connect time.
URL_PARAMETERS = (
    "host",
    "port",
    "target_session_attrs",
    "statement_cache_size",
    "prepared_statement_cache_size",
    "ssl",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "connect_timeout",
)

_AUTH_FAILED = ("28P01", "28000")
# duplicate_prepared_statement, invalid_sql_statement_name: prepared statements that meet
# another client's, or are gone, as they do through PgBouncer in transaction mode.
_PREPARED_STATEMENT_SQLSTATES = ("42P05", "26000")
# connection_exception (08xxx) and the server ending the session (admin_shutdown, crash).
_LOST_SQLSTATES = ("08000", "08003", "08006", "57P01", "57P02")
_RETRYABLE_SQLSTATES = {
    "57P03": "the server is starting up",
    "53300": "the server has too many connections",
}
# duplicate_database, and unique_violation on pg_database when two sessions race.
_DATABASE_EXISTS_SQLSTATES = ("42P04", "23505")
_LOCK_NOT_AVAILABLE = "55P03"
_PG_KEY = re.compile(r"Key \((?P<columns>.+?)\)=")

# The server's role and, on a standby, its WAL receiver and lag: behind the newest WAL it
# knows of (received, or reported by its upstream: `latest_end_lsn`), not behind what it
# received only (a stopped receiver would read 0); 0 seconds once caught up, not the time
# since the last transaction (which grows on an idle, current cluster).
_ROLE_SQL = (
    "WITH r AS (SELECT status, latest_end_lsn, flushed_lsn FROM pg_stat_wal_receiver),"
    " s AS (SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn() AS replayed,"
    " GREATEST((SELECT latest_end_lsn FROM r), (SELECT flushed_lsn FROM r),"
    " pg_last_wal_receive_lsn()) AS known)"
    " SELECT s.standby, host(inet_server_addr()), inet_server_port(),"
    " CASE WHEN s.standby THEN coalesce((SELECT status FROM r),"
    " CASE WHEN EXISTS (SELECT 1 FROM r) THEN 'unknown' ELSE 'stopped' END) END,"
    " CASE WHEN s.standby THEN greatest(pg_wal_lsn_diff(s.known, s.replayed), 0)::float8 END,"
    " CASE WHEN s.standby THEN CASE WHEN s.replayed >= s.known THEN 0 ELSE"
    " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END END"
    " FROM s"
)

# The columns of tables by schema and name, in one catalogue query; a schema of '' is the
# connection's current one, and only tables count (relkind r, p), as in SQLAlchemy's
# get_table_names.
_COLUMNS_SQL = text(
    "SELECT t.schema_name, t.table_name, a.attname"
    " FROM unnest(CAST(:schemas AS text[]), CAST(:names AS text[])) AS t(schema_name, table_name)"
    " JOIN pg_namespace n ON n.nspname = coalesce(nullif(t.schema_name, ''), current_schema())"
    " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name"
    " AND c.relkind IN ('r', 'p')"
    " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY 1, 2, a.attnum"
)

_BLOCKERS_SQL = text(
    "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),"
    " extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start))::float8"
    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.granted AND a.pid <> pg_backend_pid()"
    " AND l.relation = ANY (SELECT to_regclass(name)::oid"
    " FROM unnest(CAST(:names AS text[])) AS name)"
    " GROUP BY 1, 2, 3, 4 ORDER BY 4 DESC NULLS LAST LIMIT 3"
)

_SETTINGS_SQL = text(
    "SELECT name, setting::int FROM pg_settings WHERE name IN "
    "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
)
_IN_USE_SQL = text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
_BY_APPLICATION_SQL = text(
    "SELECT coalesce(application_name, ''), coalesce(state, 'unknown'), count(*)"
    " FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_type = 'client backend'"
    " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
)
# The longest-running backend by `since`, among those matching `where` (both fixed below).
_PROCESS_SQL = (
    "SELECT pid, coalesce(application_name, ''), coalesce(state, 'unknown'),"
    " extract(epoch FROM clock_timestamp() - {since})::float8"
    " FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_type = 'client backend' AND {where}"
    " ORDER BY {since} LIMIT 1"
)


class PostgreSQL(Backend):
    name: ClassVar[str] = "postgresql"
    product: ClassVar[str] = "PostgreSQL"
    # COPY and the move are several exchanges with the server, each taken up only when
    # the event loop turns: validation yields every this many rows.
    validation_slice: ClassVar[int | None] = 100

    # --- URLs and connecting -----------------------------------------------------------

    def normalize_url(self, url: URL, where: str) -> tuple[URL, dict[str, Any]]:
        query = check_server_url(url, where, URL_PARAMETERS)
        _check_hosts(query, where)
        for key in ("ssl", "sslmode"):
            if key in query:  # asyncpg spells libpq's sslmode as ssl
                query["ssl"] = choice(query.pop(key), key, SSL_MODES, where)
        extras = take_dbtool_settings(query, where, CERTIFICATES)
        if "target_session_attrs" in query:
            key = "target_session_attrs"
            query[key] = choice(query[key], key, TARGET_SESSION_ATTRS, where)
        # The caches asyncpg and SQLAlchemy keep of prepared statements: 0 means PgBouncer
        # in transaction mode, which DBTOOL_PGBOUNCER configures fully (engine_options).
        for key in ("statement_cache_size", "prepared_statement_cache_size"):
            if key in query:
                size = single(query.pop(key), key, where)
                if size.strip() != "0":
                    raise ConfigError(
                        f"{where}: {key}={size!r}: only 0 is accepted (PgBouncer in "
                        "transaction mode); or leave it out"
                    )
                extras["pgbouncer"] = True
        return url.set(query=query), extras

    def hosts(self, url: URL) -> list[str]:
        hosts = url.query.get("host")
        if hosts:
            listed = (hosts,) if isinstance(hosts, str) else hosts
            return [host if ":" in host else f"{host}:{url.port or 5432}" for host in listed]
        return [f"{url.host or 'localhost'}:{url.port or 5432}"]

    def client_command(self, settings: Settings, private: Path) -> ClientCommand:
        """psql, told where to connect by libpq's environment variables (so that `-- ARGS`
        stay the user's); the password in a passfile of its own."""
        url = settings.url
        hosts = [host.rpartition(":") for host in self.hosts(url)]
        env = {
            "PGHOST": ",".join(host for host, _, _ in hosts),
            "PGPORT": ",".join(port for _, _, port in hosts),
            "PGAPPNAME": settings.application_name or default_application_name(),
        }
        libpq = {
            "PGUSER": url.username,
            "PGDATABASE": url.database,
            "PGSSLMODE": url.query.get("ssl"),
            "PGTARGETSESSIONATTRS": url.query.get("target_session_attrs"),
            "PGSSLROOTCERT": settings.ssl_rootcert,
            "PGSSLCERT": settings.ssl_cert,
            "PGSSLKEY": settings.ssl_key,
        }
        env |= {name: str(value) for name, value in libpq.items() if value}
        if url.password:
            # Any host, port, database, user: the file is this run's alone. ":" and "\"
            # are escaped as the passfile format asks.
            secret = str(url.password).replace("\\", "\\\\").replace(":", "\\:")
            env["PGPASSFILE"] = str(private_file(private, "pgpass", f"*:*:*:*:{secret}\n"))
        return ClientCommand(("psql",), "postgresql-client", env=env)

    def engine_options(self, settings: Settings) -> tuple[URL, dict[str, Any]]:
        url = settings.url
        name = settings.application_name or default_application_name()
        connect_args: dict[str, Any] = {
            "timeout": settings.connect_timeout,
            "server_settings": {"application_name": name},
        }
        context = ssl_context(settings)
        if context is not None:
            connect_args["ssl"] = context
        if settings.pgbouncer:
            # PgBouncer in transaction mode hands each transaction whichever server
            # connection is free: no statement may be prepared under a name another client
            # could also use, nor be expected to survive the transaction. Both caches off,
            # and every prepared statement named uniquely (SQLAlchemy's documented recipe).
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
            connect_args["statement_cache_size"] = 0
            connect_args["prepared_statement_name_func"] = _unique_statement_name
        return url, {"connect_args": connect_args, **pool_options(settings)}

    async def create_database(
        self,
        settings: Settings,
        *,
        wait: float,
        on_retry: RetryCallback | None,
        engine: Callable[..., AsyncEngine],
    ) -> bool:
        """Through the `postgres` maintenance database, with the same connection settings
        as every other connection (PgBouncer's included); CREATE DATABASE cannot run inside
        a transaction, hence AUTOCOMMIT."""
        from dbtool.db import retry_connect

        name = settings.url.database or ""
        maintenance = replace(settings, url=settings.url.set(database="postgres"))
        maintenance_engine = engine(maintenance, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        created = False

        async def attempt() -> None:
            nonlocal created
            async with maintenance_engine.connect() as conn:
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
                    if _sqlstate(exc) not in _DATABASE_EXISTS_SQLSTATES:
                        raise  # someone else creating it at the same moment is fine

        try:
            await retry_connect(attempt, maintenance, wait=wait, on_retry=on_retry)
        finally:
            await maintenance_engine.dispose()
        return created

    async def drop_database(
        self, settings: Settings, *, engine: Callable[..., AsyncEngine]
    ) -> None:
        """Through the maintenance database, without FORCE: a concurrent init that found the
        database and works in it keeps it."""
        maintenance = replace(settings, url=settings.url.set(database="postgres"))
        maintenance_engine = engine(maintenance, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with maintenance_engine.connect() as conn:
                quoted = conn.dialect.identifier_preparer.quote(settings.url.database or "")
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        finally:
            await maintenance_engine.dispose()

    # --- what the server is ------------------------------------------------------------

    async def server_version(self, conn: AsyncConnection) -> str:
        version = await conn.scalar(text("SHOW server_version"))
        return str(version).split()[0]

    async def server_role(self, conn: AsyncConnection) -> ServerRole | None:
        row = (await conn.exec_driver_sql(_ROLE_SQL)).one()
        standby, host, port, receiver, lag_bytes, seconds = tuple(row)
        return ServerRole(
            standby=bool(standby),
            host=f"{host}:{port}" if host else None,
            replay_lag_bytes=None if lag_bytes is None else int(lag_bytes),
            replay_lag_seconds=None if seconds is None else round(max(seconds, 0.0), 3),
            receiver=receiver,
        )

    async def explain_hosts(self, settings: Settings) -> str | None:
        from dbtool.backends.postgresql.cluster import explain_hosts

        return await explain_hosts(settings, self.hosts(settings.url), ssl_context(settings))

    async def cluster(self, settings: Settings, patroni: str | None) -> ClusterView | None:
        from dbtool.backends.postgresql.cluster import cluster_view

        return await cluster_view(
            settings, self.hosts(settings.url), patroni, ssl_context(settings)
        )

    async def database_size(self, conn: AsyncConnection, url: URL) -> tuple[str, int]:
        query = text("SELECT current_database(), pg_database_size(current_database())")
        name, size = (await conn.execute(query)).one()
        return str(name), int(size or 0)

    async def estimated_rows(self, conn: AsyncConnection, quoted_table: str) -> int | None:
        # reltuples is -1 (PostgreSQL 14+) or 0 for a table never analysed.
        guess = await conn.scalar(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"),
            {"name": quoted_table},
        )
        return None if guess is None else int(guess)

    def table_columns(
        self, sync: Connection, tables: list[Table]
    ) -> dict[tuple[str | None, str], list[str]] | None:
        """One catalogue query (the inspector takes four, each a large statement to
        compile: a third of `dbtool info`'s own time)."""
        found: dict[tuple[str | None, str], list[str]] = {}
        parameters = {
            "schemas": [table.schema or "" for table in tables],
            "names": [table.name for table in tables],
        }
        for schema, name, column in sync.execute(_COLUMNS_SQL, parameters):
            columns = found.setdefault((schema or None, name), [])
            if column is not None:
                columns.append(column)
        return found

    async def server_connections(self, conn: AsyncConnection) -> ServerConnections | None:
        settings = {name: int(value) for name, value in await conn.execute(_SETTINGS_SQL)}
        by_application = [
            {"application_name": app, "state": state, "count": int(count)}
            for app, state, count in await conn.execute(_BY_APPLICATION_SQL)
        ]
        reserved = settings.get("superuser_reserved_connections", 0) + settings.get(
            "reserved_connections", 0
        )
        return ServerConnections(
            database_name=str(await conn.scalar(text("SELECT current_database()"))),
            max_connections=settings["max_connections"],
            reserved_connections=reserved,
            in_use=int(await conn.scalar(_IN_USE_SQL) or 0),
            by_application=by_application,
            oldest_transaction=await _one_process(
                conn,
                since="xact_start",
                where="xact_start IS NOT NULL AND pid <> pg_backend_pid()",
            ),
            longest_idle_in_transaction=await _one_process(
                conn, since="state_change", where="state LIKE 'idle in transaction%'"
            ),
        )

    async def pooler_report(self, settings: Settings, admin_url: str) -> Any | None:
        from dbtool.backends.postgresql.pgbouncer import pgbouncer_report

        return await pgbouncer_report(settings, admin_url)

    async def pooler_in_between(self, db: Database) -> Any | None:
        from dbtool.backends.postgresql.pgpool import pgpool_report, proxied

        async with db.reading() as conn:
            if not await proxied(conn, self.hosts(db.settings.url)):
                return None
        return await pgpool_report(db.settings)

    # --- locks and schema changes ------------------------------------------------------

    async def bound_lock_waits(self, conn: AsyncConnection, settings: Settings) -> None:
        # lock_timeout covers every lock, advisory ones included; SET LOCAL ends with the
        # transaction (and is fine behind PgBouncer in transaction mode).
        milliseconds = max(int(settings.lock_timeout * 1000), 1)
        await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")

    @contextlib.asynccontextmanager
    async def schema_change(self, conn: AsyncConnection, settings: Settings) -> AsyncIterator[None]:
        # The timeout first: behind a long transaction (or a concurrent run that hangs) the
        # DDL gives up after DBTOOL_LOCK_TIMEOUT instead of waiting with every query on the
        # table queued behind it. The advisory lock ends with the transaction.
        await self.bound_lock_waits(conn, settings)
        await _advisory_lock(conn, SCHEMA_LOCK_ID)
        yield

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == _LOCK_NOT_AVAILABLE

    async def lock_holders(self, db: Database, tables: list[str]) -> str:
        try:
            async with db.reading() as conn:
                rows = list(await conn.execute(_BLOCKERS_SQL, {"names": tables}))
        except Exception:  # the explanation is a bonus; never replace the error with another
            return ""
        held = [
            f"pid {pid} ({application or 'no application name'}, {state}, for {age or 0:.0f}s)"
            for pid, application, state, age in rows
        ]
        return f": held by {'; '.join(held)}" if held else ""

    @contextlib.asynccontextmanager
    async def schema_lock(self, db: Database) -> AsyncIterator[None]:
        async with db.engine.connect() as conn, conn.begin():
            await self.bound_lock_waits(conn, db.settings)
            await _advisory_lock(conn, SCHEMA_LOCK_ID)
            yield

    @contextlib.asynccontextmanager
    async def taking_turns(self, db: Database, name: str) -> AsyncIterator[None]:
        async with db.engine.connect() as conn, conn.begin():
            await _advisory_lock(conn, func.hashtext(f"dbtool {name}"))
            yield

    async def drop_cascade(
        self, conn: AsyncConnection, quoted_tables: list[str]
    ) -> list[str] | None:
        return [f"DROP TABLE IF EXISTS {table} CASCADE" for table in quoted_tables]

    @contextlib.asynccontextmanager
    async def import_lock(self, conn: AsyncConnection, table: Table) -> AsyncIterator[None]:
        # Two overlapping imports would otherwise deadlock on each other's rows, or both
        # try to insert what `--on-conflict update` should have updated. Released with the
        # transaction.
        await _advisory_lock(conn, func.hashtext(f"dbtool import {table.fullname}"))
        yield

    # --- statements that differ ----------------------------------------------------------

    def insert(self, table: Table) -> Any:
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)

    def next_id(self, column: Column[Any]) -> Any | None:
        # SERIAL and IDENTITY columns both have a sequence.
        return func.nextval(_serial_sequence(column))

    def random_uuid(self, conn_dialect: Any) -> Any | None:
        # gen_random_uuid() is built in from PostgreSQL 13.
        if (conn_dialect.server_version_info or (0,)) < (13,):
            return None
        return func.gen_random_uuid()

    def advance_ids(self, table: Table, column: Column[Any]) -> Any | None:
        sequence = _serial_sequence(column)
        highest = select(func.max(column)).scalar_subquery()
        # Only past positive ids: a sequence starts at 1, and setval refuses 0 or less.
        return select(func.setval(sequence, highest)).where(highest >= 1)

    def integer_range(self, column: Column[Any]) -> tuple[int, int]:
        """smallint, integer and bigint: 16, 32 and 64 bits."""
        bits = integer_bits(column)
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def empty_table(self, table: Table) -> Any:
        # TRUNCATE, not DELETE: a temporary table is never vacuumed, and deleted rows
        # would pile up for every later batch to scan.
        return text(f"TRUNCATE {_quoted(table)}")

    defers_constraints: ClassVar[bool] = True

    async def defer_constraints(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")

    async def snapshot(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    # --- bulk paths ----------------------------------------------------------------------

    @property
    def copies_rows(self) -> bool:
        return True

    async def copy_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], records: list[list[Any]]
    ) -> None:
        from asyncpg.exceptions import IntegrityConstraintViolationError

        raw = (await conn.get_raw_connection()).driver_connection
        try:
            await raw.copy_records_to_table(  # type: ignore[union-attr]
                table.name, records=records, columns=columns, schema_name=table.schema
            )
        except IntegrityConstraintViolationError as exc:  # as SQLAlchemy reports the move's
            raise IntegrityError("COPY", None, exc) from exc

    @property
    def loads_blocks(self) -> bool:
        return True

    async def drop_indexes_for_load(
        self, conn: AsyncConnection, table: Table
    ) -> DroppedIndexes | None:
        from dbtool.backends.postgresql.indexes import drop_indexes_for_load

        return await drop_indexes_for_load(conn, table, _quoted(table))

    async def load_block(
        self,
        conn: AsyncConnection,
        table: Table,
        columns: list[str],
        rows: Iterable[Any],
        *,
        csv_lines: bool = False,
    ) -> int | None:
        from dbtool.backends.postgresql.copy_in import load_block

        return await load_block(conn, table, columns, rows, csv_lines=csv_lines)

    async def copy_csv(self, conn: AsyncConnection, table: Table, source: CsvSource) -> int | None:
        from dbtool.backends.postgresql.copy_in import copy_csv

        return await copy_csv(conn, table, source)

    async def load_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], payload: Any
    ) -> None:
        raw = (await conn.get_raw_connection()).driver_connection
        # Into the temporary table, inside the same transaction.
        await raw.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=payload, columns=columns
        )

    async def fast_export(self, job: ExportJob) -> int | None:
        from dbtool.backends.postgresql.export import copy_out

        return await copy_out(job)

    # --- errors --------------------------------------------------------------------------

    def connection_error(
        self, exc: BaseException, cause: BaseException, target: str, settings: Settings
    ) -> UnavailableError | None:
        from dbtool.backends.errors import UnavailableError

        url = settings.url
        code = getattr(cause, "sqlstate", None)
        if code in _AUTH_FAILED:
            return UnavailableError(
                f"{target}: authentication failed for user {url.username!r}", retryable=False
            )
        if code == "3D000":
            if len(self.hosts(url)) > 1:
                # Several hosts: the one that answered may be a standby that has not yet
                # replayed the CREATE DATABASE (during a failover, say).
                return UnavailableError(
                    f"{target}: database {url.database!r} does not exist on the host that "
                    "answered (a standby behind its primary?)",
                    retryable=True,
                )
            return UnavailableError(
                f"{target}: database {url.database!r} does not exist "
                "(`dbtool init --create-database` creates it)",
                retryable=False,
            )
        if code in _RETRYABLE_SQLSTATES:
            return UnavailableError(f"{target}: {_RETRYABLE_SQLSTATES[code]}", retryable=True)
        if type(cause).__name__ == "TargetServerAttributeNotMatched":
            wanted = url.query.get("target_session_attrs", "any")
            return UnavailableError(
                f"{target}: none of {', '.join(self.hosts(url))} is {wanted} "
                "(a failover in progress?)",
                retryable=True,
            )
        if code in _LOST_SQLSTATES or (
            # asyncpg used directly (COPY) raises its own InterfaceError for a dead one.
            type(cause).__module__.startswith("asyncpg") and "connection is closed" in str(cause)
        ):
            return UnavailableError(f"{target}: the connection was lost", retryable=True)
        return None

    def unique_violation_columns(self, cause: BaseException) -> list[str] | None:
        """PostgreSQL says `Key (email)=(...) already exists.` in the error's detail."""
        if getattr(cause, "sqlstate", None) != "23505":
            return None
        found = _PG_KEY.search(str(getattr(cause, "detail", "") or ""))
        return [name.strip().strip('"') for name in found["columns"].split(",")] if found else []

    def translate_error(self, exc: BaseException, settings: Settings) -> Any | None:
        from dbtool.backends.errors import URL_LABEL, driver_error, first_line
        from dbtool.config import mask_url

        code = _sqlstate(exc)
        if code in _PREPARED_STATEMENT_SQLSTATES:
            return ConfigError(
                f"{first_line(exc)}: this looks like PgBouncer in transaction mode; set "
                "DBTOOL_PGBOUNCER=true (or add ?prepared_statement_cache_size=0 to the URL)"
            )
        if code == "25006":  # read_only_sql_transaction: a write reached a standby
            return RefusedError(
                f"{mask_url(settings.url)} is a read-only standby: {first_line(exc)}; point "
                "DATABASE_URL at the primary, or use target_session_attrs=read-write"
            )
        if "root certificate file" in str(driver_error(exc)):
            # asyncpg wants the server's CA certificate for sslmode=verify-ca/verify-full.
            return ConfigError(
                f"{URL_LABEL} asks to verify the server's certificate (sslmode=verify-ca or "
                f"verify-full), but {first_line(exc)}; give the CA certificate with "
                "sslrootcert=PATH in the URL, or use sslmode=require"
            )
        return None

    def is_read_only(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == "25006"  # read_only_sql_transaction

    def is_missing_table(self, cause: BaseException) -> bool:
        return getattr(cause, "sqlstate", None) == "42P01"

    def is_missing_column(self, cause: BaseException) -> bool:
        return getattr(cause, "sqlstate", None) == "42703"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """An SSL context for the URL's sslrootcert / sslcert / sslkey, with libpq's meaning of
    sslmode: verify-full checks the certificate and the host name, verify-ca the certificate
    only, and require (or prefer) with a root certificate given checks it as verify-ca does."""
    if not (settings.ssl_rootcert or settings.ssl_cert):
        return None
    mode = str(settings.url.query.get("ssl", "prefer"))
    context = ssl.create_default_context(cafile=settings.ssl_rootcert)
    if mode != "verify-full":
        context.check_hostname = False
    if not settings.ssl_rootcert:  # only a client certificate: the server is not checked
        context.verify_mode = ssl.CERT_NONE
    if settings.ssl_cert:
        context.load_cert_chain(settings.ssl_cert, settings.ssl_key, password=no_key_password)
    return context


def _unique_statement_name() -> str:
    return f"__dbtool_{uuid.uuid4().hex}__"


async def _advisory_lock(conn: AsyncConnection, key: Any) -> None:
    """dbtool's one kind of lock: transaction-scoped, so released at COMMIT or ROLLBACK
    (and safe behind PgBouncer in transaction mode), waiting for whoever holds it."""
    await conn.execute(select(func.pg_advisory_xact_lock(key)))


def _sqlstate(exc: BaseException) -> str | None:
    from dbtool.backends.errors import sqlstate

    return sqlstate(exc)


async def _one_process(conn: AsyncConnection, *, since: str, where: str) -> ServerProcess | None:
    row = (await conn.execute(text(_PROCESS_SQL.format(since=since, where=where)))).first()
    if row is None:
        return None
    pid, application, state, age = row
    return ServerProcess(int(pid), str(application), str(state), round(float(age), 1))


def _check_hosts(query: dict[str, Any], where: str) -> None:
    """The hosts of a multi-host URL: each `name` or `name:port`, ports in range."""
    hosts = query.get("host")
    for host in (hosts,) if isinstance(hosts, str) else hosts or ():
        if "@" in host:
            raise ConfigError(
                f"{where} has an '@' in its host part; percent-encode '@' in the password as %40"
            )
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        if not name or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
            raise ConfigError(f"{where}: host={host!r} must be NAME or NAME:PORT (1-65535)")


def _quoted(table: Table) -> str:
    """The table's name as SQL, schema included, quoted where it needs to be."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    return str(PGDialect_asyncpg().identifier_preparer.format_table(table))  # type: ignore[no-untyped-call]


def _serial_sequence(column: Column[Any]) -> Any:
    """The sequence behind a serial or identity column. pg_get_serial_sequence parses its
    first argument as SQL (unquoted names fold to lower case); the column name it takes
    as it is."""
    return func.pg_get_serial_sequence(_quoted(column.table), column.name)
