"""The session lifecycle as applications use it: a real FastAPI app under concurrent load.

Warnings are errors here (see pyproject's filterwarnings): a connection left to the garbage
collector, or an unclosed socket or transport, fails the test.
"""

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import QueuePool

from dbtool.db import Database
from dbtool.models.builtin import User
from dbtool.schema.tables import create_schema
from dbtool.users.service import add_user, get_user

pytestmark = pytest.mark.asyncio

REQUESTS = 500
CONCURRENCY = 50
APP_NAME = "dbtool-test-app"


class Boom(Exception):
    """Raised by the endpoint after it wrote, to prove the write is rolled back."""


def build_app(db: Database) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with db:
            yield

    app = FastAPI(lifespan=lifespan)
    Session = Annotated[AsyncSession, Depends(db.session_dependency, scope="function")]

    @app.post("/items/{number}")
    async def create_item(number: int, session: Session) -> dict[str, Any]:
        user = User(
            email=f"user{number}@example.com",
            username=f"user{number}",
            hashed_password="$argon2id$not-a-real-hash",
        )
        session.add(user)
        await session.flush()  # the row is written inside the transaction...
        await asyncio.sleep(0)  # ...and other requests run meanwhile
        if number % 5 == 0:
            raise Boom(number)  # ...then the request fails: the row must not survive
        return {"id": str(user.id)}

    @app.get("/slow")
    async def slow(session: Session) -> None:
        session.add(User(email="slow@example.com", username="slow", hashed_password="x"))
        await session.flush()
        await asyncio.sleep(30)

    @app.get("/slow-query")
    async def slow_query(session: Session) -> None:
        await session.execute(text("SELECT pg_sleep(30)"))

    return app


@pytest_asyncio.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A Database with the schema in place and a pool small enough to be exercised."""
    setup = Database.from_url(database_url, must_exist=False)
    async with setup:
        await create_schema(setup)
    db = Database.from_url(
        database_url, pool_size=10, max_overflow=5, pool_timeout=30, application_name=APP_NAME
    )
    yield db
    await db.dispose()


async def server_connections(database_url: str) -> int:
    """Connections the server sees from the application (PostgreSQL), via a separate probe."""
    async with Database.from_url(database_url) as probe, probe.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(text("pg_stat_activity"))
            .where(text("application_name = :name"))
            .params(name=APP_NAME)
        )
    return int(count or 0)


async def test_concurrent_requests_commit_or_roll_back_and_leak_nothing(
    database: Database, database_url: str, backend: str
) -> None:
    app = build_app(database)
    capacity = database.settings.pool_capacity
    peak_server = 0
    done = asyncio.Event()

    async def sample_server() -> None:
        nonlocal peak_server
        while not done.is_set():
            peak_server = max(peak_server, await server_connections(database_url))
            await asyncio.sleep(0.05)

    limit = asyncio.Semaphore(CONCURRENCY)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app):
        sampler = asyncio.create_task(sample_server()) if backend == "postgres" else None
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:

            async def call(number: int) -> tuple[int, int]:
                async with limit:
                    response = await client.post(f"/items/{number}")
                    return number, response.status_code

            results = await asyncio.gather(*(call(n) for n in range(1, REQUESTS + 1)))
        done.set()
        if sampler is not None:
            await sampler

        pool = database.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0  # every request gave its connection back
        assert pool.size() == 10
        if backend == "postgres":
            assert 0 < peak_server <= capacity
            assert await server_connections(database_url) <= capacity

        async with database.session() as session:
            stored = set(await session.scalars(select(User.username)))
    succeeded = {f"user{n}" for n, status in results if status == 200}
    failed = {f"user{n}" for n, status in results if status == 500}
    assert len(succeeded) == REQUESTS * 4 // 5 and len(failed) == REQUESTS // 5
    assert stored == succeeded  # every success is there, no failure is
    gc.collect()  # a leaked connection would warn (as an error) now


async def test_cancelled_request_returns_its_connection_and_rolls_back(
    database: Database,
) -> None:
    app = build_app(database)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):  # the client gives up mid-request
                    await client.get("/slow")
        pool = database.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 0
    gc.collect()


@pytest.mark.postgres
async def test_cancelled_query_returns_its_connection(new_postgres_database: str) -> None:
    from tests.helpers import postgres_url

    url = postgres_url(new_postgres_database)
    db = Database.from_url(url, pool_size=2, max_overflow=0, application_name=APP_NAME)
    app = build_app(db)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for _ in range(3):  # more cancellations than the pool has connections
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await client.get("/slow-query")
        pool = db.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0
        async with db.session() as session:  # and the pool still hands out working sessions
            assert await session.scalar(text("SELECT 1")) == 1
    gc.collect()


@pytest.mark.parametrize("scope", ["function", "request"])
async def test_dependency_scope_decides_whether_a_failed_commit_reaches_the_client(
    database: Database, scope: str
) -> None:
    """Why the README says `scope="function"`: only then does the commit happen before the
    response, so a commit that fails turns into a 500 instead of a 200 for lost data."""
    app = FastAPI()
    Session = Annotated[AsyncSession, Depends(database.session_dependency, scope=scope)]

    @app.post("/duplicate")
    async def duplicate(session: Session) -> dict[str, str]:
        # Not flushed here: the unique violation only surfaces at commit.
        session.add(User(email="dup@example.com", username="dup2", hashed_password="x"))
        return {"status": "created"}

    async with database:
        async with database.session() as session:
            session.add(User(email="dup@example.com", username="dup1", hashed_password="x"))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            status = (await client.post("/duplicate")).status_code
        assert status == (500 if scope == "function" else 200)
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_cancelled_task_inside_a_session_rolls_back(database: Database) -> None:
    async with database:
        started = asyncio.Event()

        async def work() -> None:
            async with database.session() as session:
                await add_user(session, email="cancel@example.com", password="long enough pw")
                started.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(work())
        await started.wait()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        pool = database.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_session_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    async with database:
        async with database.session() as session:
            user = await add_user(session, email="kept@example.com", password="long enough pw")
        with pytest.raises(Boom):
            async with database.session() as session:
                await add_user(session, email="lost@example.com", password="long enough pw")
                raise Boom
        async with database.session() as session:
            assert (await get_user(session, "kept@example.com")).id == user.id
            # expire_on_commit=False: attributes stay readable after the commit.
            assert user.email == "kept@example.com"
            assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_database_lifecycle_api(database_url: str) -> None:
    db = Database.from_url(database_url, must_exist=False)
    with pytest.raises(RuntimeError, match="not connected"):
        _ = db.engine
    await db.connect()
    await db.connect()  # idempotent
    engine = db.engine
    await db.dispose()
    await db.dispose()  # safe twice
    with pytest.raises(RuntimeError):
        _ = db.sessionmaker
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_session_dependency_is_a_plain_async_generator(database: Database) -> None:
    """Usable without FastAPI too: one session per iteration, committed at the end."""
    async with database:
        dependency = database.session_dependency()
        session = await anext(dependency)
        email = f"{uuid.uuid4().hex}@example.com"
        session.add(User(email=email, username="plain", hashed_password="x"))
        with pytest.raises(StopAsyncIteration):
            await anext(dependency)
        async with database.session() as check:
            assert await check.scalar(select(func.count()).select_from(User)) == 1
