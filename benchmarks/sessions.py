"""Sessions per second: "open a session, fetch one user by primary key, close".

50 concurrent tasks share a pool of 10 connections on PostgreSQL, done three ways in the
same run: dbtool's `Database.session()`, a bare `async_sessionmaker`, and a raw asyncpg
pool (the floor under any SQLAlchemy session).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from benchmarks.harness import Row

CONCURRENCY = 50
POOL_SIZE = 10
USERS = 1_000


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    if not postgres_url:
        return []
    sessions = 2_000 if quick else 4_000
    return asyncio.run(_run(postgres_url, sessions, rounds=max(3, runs // 2)))


async def _run(server_url: str, sessions: int, rounds: int) -> list[Row]:
    import asyncpg
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from dbtool.db import Database
    from dbtool.models.builtin import User
    from dbtool.schema.tables import create_schema

    name = f"dbtool_bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = make_url(server_url).set(drivername="postgresql")
    admin = await asyncpg.connect(admin_dsn.render_as_string(hide_password=False))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=name)
    try:
        async with Database.from_url(url) as setup:
            await create_schema(setup)
            async with setup.session() as session:
                session.add_all(
                    User(email=f"u{i}@example.com", username=f"u{i}", hashed_password="x")
                    for i in range(USERS)
                )
            async with setup.session() as session:
                from sqlalchemy import select

                ids = list(await session.scalars(select(User.id)))
        picks = [random.choice(ids) for _ in range(sessions)]

        db = Database.from_url(url, pool_size=POOL_SIZE, max_overflow=0)
        await db.connect()
        bare_engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0)
        bare = async_sessionmaker(bare_engine, expire_on_commit=False)
        raw = await asyncpg.create_pool(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
        )

        async def with_dbtool(pk: uuid.UUID) -> None:
            async with db.session() as session:
                await session.get(User, pk)

        async def with_bare(pk: uuid.UUID) -> None:
            # The same unit of work: commit on success, roll back on error, close.
            async with bare.begin() as session:
                await session.get(User, pk)

        async def with_bare_no_commit(pk: uuid.UUID) -> None:
            async with bare() as session:  # closes with a rollback, never commits
                await session.get(User, pk)

        async def with_asyncpg(pk: uuid.UUID) -> None:
            async with raw.acquire() as conn:
                await conn.fetchrow(
                    "SELECT id, email, username, hashed_password, is_active, is_superuser,"
                    " created_at, updated_at FROM users WHERE id = $1",
                    pk,
                )

        variants: dict[str, Callable[[uuid.UUID], Awaitable[None]]] = {
            "dbtool": with_dbtool,
            "bare": with_bare,
            "bare, no commit": with_bare_no_commit,
            "asyncpg": with_asyncpg,
        }
        rates: dict[str, list[float]] = {key: [] for key in variants}
        try:
            for round_number in range(rounds + 1):  # the first round warms up
                for key, work in variants.items():
                    rate = await _sessions_per_second(work, picks)
                    if round_number:
                        rates[key].append(rate)
        finally:
            await db.dispose()
            await bare_engine.dispose()
            await raw.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    median = {key: statistics.median(values) for key, values in rates.items()}
    # As time per session, so "adds at most 10%" reads as a ratio of at most 1.10.
    per_session = {key: 1e6 / rate for key, rate in median.items()}
    note = (
        f"{median['dbtool']:,.0f} vs {median['bare']:,.0f} vs {median['asyncpg']:,.0f} sessions/s;"
        f" {CONCURRENCY} tasks, pool {POOL_SIZE}"
    )
    return [
        Row("session + get by id (PostgreSQL)", per_session["dbtool"],
            "bare `async_sessionmaker.begin()`", per_session["bare"], unit="µs", target=1.10,
            note=note),
        Row("session + get by id (PostgreSQL)", per_session["dbtool"],
            "bare session, no commit", per_session["bare, no commit"], unit="µs",
            note="the difference is the COMMIT round trip"),
        Row("session + get by id (PostgreSQL)", per_session["dbtool"], "raw asyncpg pool",
            per_session["asyncpg"], unit="µs"),
    ]  # fmt: skip


async def _sessions_per_second(
    work: Callable[[uuid.UUID], Awaitable[None]], picks: list[uuid.UUID]
) -> float:
    queue = iter(picks)

    async def worker() -> None:
        for pk in queue:  # tasks share one iterator: 50 in flight until it runs dry
            await work(pk)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(picks) / (time.perf_counter() - start)
