"""`dbtool users import` on PostgreSQL against `psql \\copy` and one-commit-per-row ORM code.

The same generated CSV (users with a pre-computed Argon2 hash, the columns `users export
--include-hashes` writes) goes into an identical empty table with psql's \\copy, and into
`users` with dbtool, in the same run; the ORM pattern runs on a sample. Peak memory (max
RSS) of the import is measured at 10,000 and 1,000,000 rows.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import DBTOOL, PYTHON, Row, admin_sql, clean_env, run_quiet

HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$ExDYM8hOYqkOufkaUmEYLQ"
    "$dYkCsxF5tiXOUZSYWoF3jjrkC/XaQ9mNM9f3rGHNQpA"
)
COLUMNS = "id,email,username,is_active,is_superuser,created_at,updated_at,hashed_password"
ORM_SAMPLE = 1_000


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    if not postgres_url:
        return []
    rows = 50_000 if quick else 500_000
    memory_rows = (10_000, 100_000 if quick else 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        return _run(postgres_url, Path(tmp), rows, memory_rows, repeats=max(3, runs // 5))


def generate(path: Path, count: int) -> Path:
    now = datetime.now(UTC).isoformat()
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS.split(","))
        for n in range(count):
            writer.writerow(
                [uuid.uuid4(), f"user{n}@example.com", f"user{n}", "true", "false", now, now, HASH]
            )
    return path


def _run(
    server_url: str, tmp: Path, count: int, memory_rows: tuple[int, int], repeats: int
) -> list[Row]:
    from sqlalchemy.engine import make_url

    env = clean_env()
    name = f"dbtool_bench_{uuid.uuid4().hex[:8]}"
    base = make_url(server_url)
    url = base.set(drivername="postgresql+asyncpg", database=name)
    url_text = url.render_as_string(hide_password=False)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    _psql(
        base.set(drivername="postgresql").render_as_string(hide_password=False),
        f'CREATE DATABASE "{name}"',
    )
    try:
        run_quiet([DBTOOL, "--url", url_text, "init"], env=env)
        _psql(libpq, "CREATE TABLE users_copy (LIKE users INCLUDING ALL)")
        data = generate(tmp / "users.csv", count)
        timings: dict[str, list[float]] = {"psql": [], "dbtool": []}
        psql_available = shutil.which("psql") is not None
        for _ in range(repeats):
            if psql_available:
                _psql(libpq, "TRUNCATE users_copy")
                start = time.perf_counter()
                _psql(
                    libpq, f"\\copy users_copy({COLUMNS}) FROM '{data}' WITH (FORMAT csv, HEADER)"
                )
                timings["psql"].append(time.perf_counter() - start)
            _psql(libpq, "TRUNCATE users")
            start = time.perf_counter()
            run_quiet([DBTOOL, "--url", url_text, "users", "import", str(data)], env=env)
            timings["dbtool"].append(time.perf_counter() - start)
        orm_rate = asyncio.run(_orm_rows_per_second(url_text, ORM_SAMPLE))
        rss = {
            n: _import_peak_rss(url_text, libpq, generate(tmp / f"m{n}.csv", n), env)
            for n in memory_rows
        }
    finally:
        _psql(
            base.set(drivername="postgresql").render_as_string(hide_password=False),
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )

    rate = {key: count / statistics.median(values) for key, values in timings.items() if values}
    small, large = memory_rows
    rows = []
    if "psql" in rate:
        rows.append(
            Row(
                f"`users import`, {count:,} rows (PostgreSQL)",
                rate["dbtool"],
                "`psql \\copy`",
                rate["psql"],
                unit="rows/s",
                target=0.5,
                higher_is_better=True,
                note="whole command, start-up included",
            )
        )
    rows += [
        Row(
            f"`users import`, {count:,} rows (PostgreSQL)",
            rate["dbtool"],
            f"ORM, one commit per row ({ORM_SAMPLE:,}-row sample)",
            orm_rate,
            unit="rows/s",
            target=50,
            higher_is_better=True,
        ),
        Row(
            f"`users import` peak RSS, {large:,} rows",
            rss[large] / 1024,
            f"peak RSS, {small:,} rows",
            rss[small] / 1024,
            unit="MiB",
            target=1.2,
        ),
    ]
    return rows


def _psql(dsn: str, command: str) -> None:
    if shutil.which("psql") is None:
        admin_sql(dsn, command)
        return
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn, "-c", command],
        check=True,
        capture_output=True,
    )


async def _orm_rows_per_second(url: str, sample: int) -> float:
    """The usual seed-script code: one ORM object and one commit per row."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from cli.models import User

    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE users"))
        start = time.perf_counter()
        for n in range(sample):
            async with sessions() as session:
                session.add(
                    User(email=f"orm{n}@example.com", username=f"orm{n}", hashed_password=HASH)
                )
                await session.commit()
        return sample / (time.perf_counter() - start)
    finally:
        await engine.dispose()


def _import_peak_rss(url: str, libpq: str, data: Path, env: dict[str, str]) -> float:
    """Peak resident memory (KiB) of one `dbtool users import` process.

    Measured by a small parent that only starts it: the maximum RSS Linux reports for a child
    also counts the memory it shared with its parent when forked, which for this (large)
    benchmark process would hide the import's own figure.
    """
    _psql(libpq, "TRUNCATE users")
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.PIPE, text=True)\n"
        "if done.returncode:\n"
        "    sys.exit(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", measure, DBTOOL, "--url", url, "users", "import", str(data)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import of {data} failed: {done.stderr}")
    return float(done.stdout)  # KiB on Linux
