"""The database lifecycle: one engine and one session factory per process (or per command).

`Database` is what the CLI uses for every command and what applications use for their
lifespan, e.g. with FastAPI:

    db = Database.from_url("postgresql://app@db/app")

    @asynccontextmanager
    async def lifespan(app):
        async with db:                     # connect() ... dispose()
            yield

    SessionDep = Annotated[AsyncSession, Depends(db.session_dependency, scope="function")]
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dbtool.backends.errors import UnavailableError, connection_error
from dbtool.config import Settings, load_settings, mask_url, normalize_url, str_url
from dbtool.errors import DatabaseUnavailableError, RefusedError
from dbtool.models.user_model import Models, UserModel, load_models

# How long a SQLite connection waits for another writer's lock before "database is locked".
SQLITE_BUSY_TIMEOUT = 30.0

# Where a session made by `Database.session()` finds its Database (see `database_of`).
SESSION_DATABASE_KEY = "dbtool.database"
# Execution option marking a transaction that only reads (SQLite: BEGIN DEFERRED).
READONLY = "dbtool_readonly"

RetryCallback = Callable[[int, DatabaseUnavailableError, float], None]
"""Called before each retry while waiting: (attempt number, why it failed, seconds left)."""


@dataclass(frozen=True)
class ServerRole:
    """Which server a connection reached, and whether it can take writes."""

    standby: bool  # in recovery: a hot standby, read-only
    host: str | None  # host:port actually reached (a multi-host URL names several)
    replay_lag_bytes: int | None = None  # WAL received but not yet replayed (standby)
    last_replay_seconds: float | None = None  # since the last replayed transaction

    @property
    def name(self) -> str:
        return "standby" if self.standby else "primary"

    def describe(self) -> str:
        where = f" at {self.host}" if self.host else ""
        if not self.standby:
            return f"primary{where}"
        lag = []
        if self.replay_lag_bytes is not None:
            lag.append(f"{self.replay_lag_bytes:,} bytes of WAL to replay")
        if self.last_replay_seconds is not None:
            lag.append(f"last transaction replayed {self.last_replay_seconds:g}s ago")
        return f"read-only standby{where}" + (f" ({', '.join(lag)})" if lag else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.name,
            "host": self.host,
            "replay_lag_bytes": self.replay_lag_bytes,
            "last_replay_seconds": self.last_replay_seconds,
        }


_ROLE_SQL = (
    "SELECT pg_is_in_recovery(), host(inet_server_addr()), inet_server_port(),"
    " CASE WHEN pg_is_in_recovery() THEN"
    " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 END,"
    " CASE WHEN pg_is_in_recovery() THEN"
    " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END"
)


class Database:
    """Owns the async engine and the session factory; create it inside the running loop.

    Use it as an async context manager, or call `connect()` and `dispose()` yourself.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        must_exist: bool = True,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        # Extra create_async_engine() keywords: connect_args (merged with dbtool's), poolclass...
        self.engine_options = dict(engine_options or {})
        # False only for commands that create the database (init): an embedded SQLite file
        # is never created as a side effect of, say, `users list`.
        self.must_exist = must_exist
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._models: Models | None = None

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        must_exist: bool = True,
        engine_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> Database:
        """A Database for `url` (normalised like DATABASE_URL); other Settings fields as
        keywords, e.g. `Database.from_url(url, pool_size=20, application_name="api")`, and
        engine options, e.g. `engine_options={"poolclass": NullPool, "connect_args": {...}}`."""
        normalised, extras = normalize_url(str_url(url), "argument")
        return cls(
            Settings(url=normalised, **{**extras, **settings}),
            must_exist=must_exist,
            engine_options=engine_options,
        )

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database is not connected: call `await db.connect()` first")
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError("Database is not connected: call `await db.connect()` first")
        return self._sessionmaker

    @property
    def models(self) -> Models:
        """The models this database is managed with (DBTOOL_MODELS, or the built-in ones)."""
        if self._models is None:
            settings = self.settings
            self._models = load_models(settings.models, settings.user_model, settings.user_fields)
        return self._models

    @property
    def user_model(self) -> UserModel:
        """The table the users commands work on; ConfigError when it cannot be told."""
        return self.models.user

    @property
    def dialect(self) -> str:
        """ "postgresql" or "sqlite"."""
        return self.settings.backend

    async def connect(
        self, *, wait: float = 0.0, on_retry: RetryCallback | None = None, verify: bool = True
    ) -> Self:
        """Create the engine in the running event loop and (by default) prove it can connect.

        With `wait` > 0, retry failures that waiting can cure (refused, starting up, timeout)
        until `wait` seconds have passed. Raises DatabaseUnavailableError.
        """
        if self._engine is not None:
            return self
        _check_sqlite_file(self.settings.url, must_exist=self.must_exist)
        self._engine = create_engine(self.settings, **self.engine_options)
        # The services find the settings and models in use through the session's info.
        self._sessionmaker = async_sessionmaker(
            self._engine, expire_on_commit=False, info={SESSION_DATABASE_KEY: self}
        )
        if verify:
            try:
                await retry_connect(self._ping, self.settings, wait=wait, on_retry=on_retry)
            except BaseException:
                await self.dispose()
                raise
        return self

    async def server_role(self) -> ServerRole | None:
        """Primary or standby, where, and how far behind (None for SQLite)."""
        if self.dialect != "postgresql":
            return None
        async with self.reading() as conn:
            row = (await conn.exec_driver_sql(_ROLE_SQL)).one()
        standby, host, port, lag_bytes, seconds = tuple(row)
        return ServerRole(
            standby=bool(standby),
            host=f"{host}:{port}" if host else None,
            replay_lag_bytes=None if lag_bytes is None else int(max(lag_bytes, 0)),
            last_replay_seconds=None if seconds is None else round(max(seconds, 0.0), 1),
        )

    async def require_primary(
        self, *, wait: float = 0.0, on_retry: RetryCallback | None = None
    ) -> None:
        """Refuse to go on when the server is a read-only standby (RefusedError, exit 5),
        before anything is done; with `wait`, keep checking (and reconnecting: a multi-host
        URL may lead to the new primary) until it is promoted, else UnavailableError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        attempt = 0
        while True:
            role = await self.server_role()
            if role is None or not role.standby:
                return
            where = role.host or mask_url(self.settings.url)
            if wait <= 0:
                raise RefusedError(
                    f"{where} is a read-only standby (in recovery), and this command writes: "
                    "point DATABASE_URL at the primary, or list the hosts with "
                    "target_session_attrs=read-write"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UnavailableError(
                    f"{where} is still a read-only standby after {wait:g}s", retryable=False
                )
            attempt += 1
            if on_retry is not None:
                waiting = UnavailableError(
                    f"{where} is a read-only standby (waiting for a primary)", retryable=True
                )
                on_retry(attempt, waiting, remaining)
            await asyncio.sleep(min(1.0, remaining))
            await self.engine.dispose()  # the next connection may reach another host

    async def _ping(self) -> None:
        async with self.reading() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        """Close every pooled connection. Safe to call twice."""
        engine, self._engine, self._sessionmaker = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.dispose()

    @contextlib.asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit when the block succeeds, roll back on any exception
        (including cancellation), and always close, returning the connection to the pool.

        `readonly=True` (reads only): on SQLite the transaction does not take the write
        lock, so it never waits for a writer (see `_use_sqlite_transactions`)."""
        async with self.sessionmaker() as session:
            try:
                if readonly:
                    await session.connection(execution_options={READONLY: True})
                yield session
            except BaseException:
                # If the connection itself is gone, rollback fails too; close() below then
                # discards it. The original exception is the one worth reporting.
                with contextlib.suppress(SQLAlchemyError, OSError):
                    await session.rollback()
                raise
            await session.commit()

    async def session_dependency(self) -> AsyncIterator[AsyncSession]:
        """A FastAPI dependency yielding one session per request, with `session()`'s rules.

        Declare it with `Depends(db.session_dependency, scope="function")` so the commit
        happens before the response is sent (FastAPI's default "request" scope runs it after).
        """
        async with self.session() as session:
            yield session

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (diagnostics): on SQLite it never takes the write lock."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READONLY: True})
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction (Core-level work such as DDL): commit or roll back."""
        async with self.engine.connect() as conn:
            if readonly:
                await conn.execution_options(**{READONLY: True})
            async with conn.begin():
                yield conn


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
        context.load_cert_chain(settings.ssl_cert, settings.ssl_key)
    return context


def _unique_statement_name() -> str:
    return f"__dbtool_{uuid.uuid4().hex}__"


def default_application_name() -> str:
    """What an application's connections are called when nothing says otherwise: the
    program's name (uvicorn, gunicorn, ...), so they are never mistaken for dbtool's."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if program.name == "__main__.py":  # python -m uvicorn: the package's name
        program = program.parent
    return (program.name.removesuffix(".py") or "python")[:63]


def create_engine(settings: Settings, **engine_options: Any) -> AsyncEngine:
    """The engine for `settings`; call it inside the event loop that will use it.
    `engine_options` are passed on to create_async_engine (connect_args merged)."""
    options: dict[str, Any] = {
        "echo": settings.echo,
        # Emails and hashes never appear in error messages or echo logs.
        "hide_parameters": True,
        "pool_pre_ping": settings.pool_pre_ping,
    }
    url = settings.url
    if settings.backend == "postgresql":
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
    else:
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT}
    extra = dict(engine_options)
    given = dict(extra.pop("connect_args", {}) or {})
    if "server_settings" in given and "server_settings" in connect_args:
        given["server_settings"] = {**connect_args["server_settings"], **given["server_settings"]}
    options["connect_args"] = {**connect_args, **given}
    if "poolclass" not in extra and (
        settings.backend == "postgresql" or not _is_sqlite_memory(url)
    ):
        options.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
        )
    engine = create_async_engine(url, **{**options, **extra})
    if settings.backend == "sqlite":
        _use_sqlite_transactions(engine)
    return engine


def _use_sqlite_transactions(engine: AsyncEngine) -> None:
    """Make SQLite transactions real: DDL inside them, and the write lock taken up front.

    Python's sqlite3 driver (under aiosqlite) neither begins a transaction before DDL nor
    takes the write lock until the first write, so concurrent `init` runs race and two
    writers can deadlock. BEGIN IMMEDIATE takes the lock at the start and waits (busy
    timeout) for other writers instead. Transactions marked read-only (`Database.session(
    readonly=True)`) begin DEFERRED: they take no write lock, so a reader never waits for a
    writer (in WAL mode, which `init` switches on, not even while it commits).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and URI-style databases."""
    if url.get_backend_name() != "sqlite" or _is_sqlite_memory(url) or "uri" in url.query:
        return None
    return Path(url.database or "")


def _check_sqlite_file(url: URL, *, must_exist: bool) -> None:
    path = sqlite_path(url)
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
            f"cannot create SQLite database {path}: directory {path.parent} does not exist "
            "(`dbtool init --create-database` creates it)",
            retryable=False,
        )


async def retry_connect(
    attempt: Callable[[], Any],
    settings: Settings,
    *,
    wait: float = 0.0,
    on_retry: RetryCallback | None = None,
) -> None:
    """Run `attempt` (a coroutine function that connects), retrying as `connect()` describes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    delay = 0.25
    for number in range(1, 1_000_000):
        try:
            await attempt()
            return
        except Exception as exc:
            error = connection_error(exc, settings)
            if error is None:
                raise
            remaining = deadline - loop.time()
            if not error.retryable or remaining <= 0:
                raise error from exc
            if on_retry is not None:
                on_retry(number, error, remaining)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def database_of(session: AsyncSession) -> Database | None:
    """The Database that made `session`, if dbtool made it."""
    found = session.info.get(SESSION_DATABASE_KEY)
    return found if isinstance(found, Database) else None


def driver_sql(
    dialect: Any, statement: Any, parameters: Mapping[str, Any] | None = None
) -> tuple[str, list[Any]]:
    """A Core statement as its driver takes it: the SQL, and the positional arguments after
    each type's bind processor, as SQLAlchemy would send them. For the few hot paths that
    talk to the driver directly (COPY, aiosqlite in one request)."""
    compiled = statement.compile(dialect=dialect)
    values = compiled.construct_params(parameters)
    processors = compiled._bind_processors
    arguments = []
    for name in compiled.positiontup or ():
        value = values[name]
        process = processors.get(name)
        arguments.append(process(value) if process is not None and value is not None else value)
    return compiled.string, arguments


def sqlite_error(statement: str, exc: Exception) -> Exception:
    """An error of Python's sqlite3 module, raised where SQLAlchemy is bypassed, as the
    SQLAlchemy error it would have raised (IntegrityError, OperationalError, ...), so that
    it is reported as any other; parameters hidden."""
    import sqlite3

    return DBAPIError.instance(statement, None, exc, sqlite3.Error, hide_parameters=True)
