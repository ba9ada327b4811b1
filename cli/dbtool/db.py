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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dbtool.backends import backend_for
from dbtool.backends.base import READONLY, Backend, ServerRole
from dbtool.backends.errors import UnavailableError, connection_error
from dbtool.config import Settings, load_settings, mask_url, normalize_url, str_url
from dbtool.errors import CommitUncertainError, DatabaseUnavailableError, RefusedError
from dbtool.models.user_model import Models, UserModel, load_models

# Where a session made by `Database.session()` finds its Database (see `database_of`).
SESSION_DATABASE_KEY = "dbtool.database"

T = TypeVar("T")
RetryCallback = Callable[[int, DatabaseUnavailableError, float], None]
"""Called before each retry while waiting: (attempt number, why it failed, seconds left)."""


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
        # Given here, each setting counts as chosen (Settings.password_hash_chosen).
        sources = {f"DBTOOL_{name.upper()}": "argument" for name in settings}
        return cls(
            Settings(url=normalised, sources=sources, **{**extras, **settings}),
            must_exist=must_exist,
            engine_options=engine_options,
        )

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database is not connected: call `await db.connect()` first")
        return self._engine

    @property
    def connected(self) -> bool:
        """Whether `connect()` made the engine (and `dispose()` has not let it go)."""
        return self._engine is not None

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
    def backend(self) -> Backend:
        """What this database does differently (`dbtool.backends`)."""
        return backend_for(self.settings.url)

    async def connect(
        self, *, wait: float = 0.0, on_retry: RetryCallback | None = None, verify: bool = True
    ) -> Self:
        """Create the engine in the running event loop and (by default) prove it can connect.

        With `wait` > 0, retry failures that waiting can cure (refused, starting up, timeout)
        until `wait` seconds have passed. Raises DatabaseUnavailableError.
        """
        if self._engine is not None:
            return self
        self.backend.check_target(self.settings.url, must_exist=self.must_exist)
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
        """Primary or standby, where, and how far behind (None: no replication)."""
        if self.backend.embedded:
            return None
        async with self.reading() as conn:
            return await self.backend.server_role(conn)

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

    async def retrying(
        self,
        step: Callable[[], Awaitable[T]],
        *,
        wait: float,
        on_retry: RetryCallback | None = None,
        write: bool = False,
        replayable: bool = True,
    ) -> T:
        """Run `step` (a unit of work: a whole transaction), and while `wait` seconds last,
        again whenever the database went away under it: the connection lost (a server
        shut down, a failover), no host of the URL that takes writes yet, a write refused
        by a server that has just become a standby. Between attempts the pool is emptied
        (its connections may lead to the old primary), and the database reached again.

        A step whose COMMIT was cut off may have been saved: it is run again only when
        `replayable` (running it twice leaves what running it once does); otherwise
        CommitUncertainError says so. Any other error is raised at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.25
        for attempt in range(1, 1_000_000):
            try:
                return await step()
            except Exception as exc:
                error = self._gone(exc, write=write)
                if error is None:
                    raise
                remaining = deadline - loop.time()
                uncertain = isinstance(exc, CommitUncertainError) and not replayable
                if wait <= 0 or remaining <= 0 or uncertain:
                    # As dbtool's error, so that a caller that carries on (--watch, a
                    # scrape) knows the database went away, whatever the driver raised.
                    if error is exc or self.backend.is_read_only(exc):
                        raise  # (a write on a standby stays the refusal it is: exit 5)
                    raise error from exc
                if on_retry is not None:
                    on_retry(attempt, error, remaining)
            await self.engine.dispose()  # the next connection may reach another host
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, 2.0)
            left = max(deadline - loop.time(), 0.0)
            await retry_connect(self._ping, self.settings, wait=left, on_retry=on_retry)
            if write:
                await self.require_primary(wait=max(deadline - loop.time(), 0.0),
                                           on_retry=on_retry)  # fmt: skip
        raise AssertionError("unreachable")

    def _gone(self, exc: BaseException, *, write: bool) -> DatabaseUnavailableError | None:
        """Why waiting may cure `exc` (the database went away, or its primary moved), else
        None."""
        if isinstance(exc, CommitUncertainError):
            return exc
        if isinstance(exc, BrokenPipeError):
            return None  # our own output's reader left (`| head`), not the database
        lost = connection_error(exc, self.settings)
        if lost is not None:
            return lost if lost.retryable else None
        if write and self.backend.is_read_only(exc):
            return UnavailableError(
                f"{mask_url(self.settings.url)} has become a read-only standby (a failover?)",
                retryable=True,
            )
        return None

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
        lock, so it never waits for a writer (`SQLite.prepare_engine`)."""
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
            await self._commit(session.commit)

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
            transaction = await conn.begin()
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(SQLAlchemyError, OSError):
                    await transaction.rollback()
                raise
            await self._commit(transaction.commit)

    async def _commit(self, commit: Callable[[], Awaitable[None]]) -> None:
        """COMMIT; a connection lost on the way is CommitUncertainError: the server may have
        committed before the answer was lost."""
        try:
            await commit()
        except Exception as exc:
            lost = connection_error(exc, self.settings)
            if lost is None:
                raise
            raise CommitUncertainError(
                f"{lost.message}, while committing: the changes may or may not have been "
                "saved; look before running the command again"
            ) from exc


def create_engine(settings: Settings, **engine_options: Any) -> AsyncEngine:
    """The engine for `settings`, the only place one is built; call it inside the event
    loop that will use it. `engine_options` are passed on to create_async_engine
    (connect_args merged; a poolclass of their own drops the pool sizes)."""
    backend = backend_for(settings.url)
    url, options = backend.engine_options(settings)
    extra = dict(engine_options)
    given = dict(extra.pop("connect_args", {}) or {})
    connect_args = dict(options.pop("connect_args", {}))
    if "server_settings" in given and "server_settings" in connect_args:
        given["server_settings"] = {**connect_args["server_settings"], **given["server_settings"]}
    if "poolclass" in extra:  # the caller's own pool: dbtool's pool settings do not apply
        for key in ("poolclass", "pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
            options.pop(key, None)
    engine = create_async_engine(
        url,
        echo=settings.echo,
        # Emails and hashes never appear in error messages or echo logs.
        hide_parameters=True,
        pool_pre_ping=settings.pool_pre_ping,
        connect_args={**connect_args, **given},
        **{**options, **extra},
    )
    backend.prepare_engine(engine)
    return engine


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
            error = await _explained(error, settings)
            remaining = deadline - loop.time()
            if not error.retryable or remaining <= 0:
                raise error from exc
            if on_retry is not None:
                on_retry(number, error, remaining)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


async def _explained(error: UnavailableError, settings: Settings) -> UnavailableError:
    """A connection failure on a URL of several hosts, said host by host where the backend
    can ("no read-write host among 3: 2 standbys, 1 refusing connections"), rather than
    the last host's error alone."""
    backend = backend_for(settings.url)
    if not error.retryable or len(backend.hosts(settings.url)) < 2:
        return error
    try:
        summary = await backend.explain_hosts(settings)
    except Exception:  # the explanation is a bonus: never replace the error with another
        return error
    if summary is None:
        return error
    explained = UnavailableError(f"cannot connect to {mask_url(settings.url)}: {summary}",
                                 retryable=True)  # fmt: skip
    explained.__cause__ = error.__cause__
    return explained


def database_of(session: AsyncSession) -> Database | None:
    """The Database that made `session`, if dbtool made it."""
    found = session.info.get(SESSION_DATABASE_KEY)
    return found if isinstance(found, Database) else None
