"""`users list --limit 50` stays flat in the table's size: the server time of the very query
dbtool sends (PostgreSQL: EXPLAIN ANALYZE's execution time; SQLite: the query run in
process), at 10,000 and at 1,000,000 users, for the first page and for a page deep in the
list reached with `--after` (keyset) and with `--offset` (which must skip rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.data import generate, libpq, load, postgres_database, sqlite_database
from benchmarks.harness import DBTOOL, Row, clean_env, time_interleaved, timed_process

SMALL = 10_000


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    large = 100_000 if quick else 1_000_000
    samples = max(15, runs * 2)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as databases:
        folder = Path(tmp)
        files = {n: generate(folder / f"{n}.csv", n) for n in (SMALL, large)}
        if postgres_url:
            timings, urls = {}, {}
            for n, data in files.items():
                urls[n] = url = databases.enter_context(postgres_database(postgres_url))
                load(url, data)
                timings[n] = {
                    page: asyncio.run(_postgres_ms(url, sql, samples))
                    for page, sql in _queries(url, n).items()
                }
            rows += _rows("PostgreSQL", timings, large)
            rows.append(_whole_command("PostgreSQL", urls, large, runs))
        timings, urls = {}, {}
        for n, data in files.items():
            urls[n] = url = sqlite_database(folder / f"{n}.db")
            load(url, data)
            timings[n] = {
                page: _sqlite_ms(url, sql, samples) for page, sql in _queries(url, n).items()
            }
        rows += _rows("SQLite", timings, large)
        rows.append(_whole_command("SQLite", urls, large, runs))
    return rows


def _whole_command(backend: str, urls: dict[int, str], large: int, runs: int) -> Row:
    """`users list --limit 50` as a user runs it (start-up, page and total), at both sizes."""
    env = clean_env()
    medians = time_interleaved(
        {n: timed_process([DBTOOL, "--url", url, "users", "list", "--limit", "50"], env=env)
         for n, url in urls.items()},
        runs,
    )  # fmt: skip
    return Row(
        f"`users list --limit 50`, whole command, {large:,} users ({backend})",
        medians[large] * 1000,
        f"the same at {SMALL:,} users",
        medians[SMALL] * 1000,
        target=1.2,
        note="the total estimated from the planner's statistics above 100,000 rows"
        if backend == "PostgreSQL"
        else "SQLite has no statistics to estimate from: it counts",
    )


def _queries(url: str, count: int) -> dict[str, str]:
    """The SQL of `users list` (first page), `--after` the middle user and `--offset` half
    the table, as dbtool builds it for this database."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from dbtool.models.user_model import load_models
    from dbtool.users.service import UserFilter, after_condition, filtered

    model = load_models(None, None, None).user
    dialect = make_url(url).get_dialect()()  # no connection: only to compile
    middle = _middle_key(url, count)
    first = filtered(select(*model.public_columns), UserFilter(), model).limit(50)
    pages = {
        "first page": first,
        "--after, deep": first.where(after_condition(model, middle)),
        "--offset, deep": first.offset(count // 2),
    }
    return {
        name: str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        for name, query in pages.items()
    }


def _middle_key(url: str, count: int) -> tuple[Any, ...]:
    """The (created_at, id) of the user half-way down the list."""
    query = f"SELECT created_at, id FROM users ORDER BY created_at, id LIMIT 1 OFFSET {count // 2}"
    if url.startswith("sqlite"):
        from datetime import datetime
        from uuid import UUID

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            created, key = conn.execute(query).fetchone()
        return datetime.fromisoformat(created), UUID(key)

    async def fetch() -> tuple[Any, ...]:
        import asyncpg

        conn = await asyncpg.connect(libpq(url))
        try:
            return tuple(await conn.fetchrow(query))
        finally:
            await conn.close()

    return asyncio.run(fetch())


async def _postgres_ms(url: str, sql: str, samples: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(libpq(url))
    try:
        times = []
        for _ in range(samples + 1):
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
            times.append(float(json.loads(plan)[0]["Execution Time"]))
        return statistics.median(times[1:])
    finally:
        await conn.close()


def _sqlite_ms(url: str, sql: str, samples: int) -> float:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        times = []
        for _ in range(samples + 1):
            start = time.perf_counter()
            conn.execute(sql).fetchall()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times[1:])


def _rows(backend: str, timings: dict[int, dict[str, float]], large: int) -> list[Row]:
    return [
        Row(
            f"`users list --limit 50`, {page}, {large:,} users ({backend})",
            timings[large][page],
            f"the same at {SMALL:,} users",
            timings[SMALL][page],
            target=None if page.startswith("--offset") else 2,
            note="server time of dbtool's query"
            + ("; --offset skips rows, --after does not" if page.startswith("--offset") else ""),
        )
        for page in timings[large]
    ]
