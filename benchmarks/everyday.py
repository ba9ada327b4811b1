"""Everyday commands (`users show`, `users list`, `ping`, `info`, `pool-status`) against
their floor: a Python process that imports SQLAlchemy's asyncio layer and the driver and runs
one query (what any tool built on them must pay), and beside it the database's own shell
(psql, sqlite3) running the same lookup. Whole processes, wall clock, on a table of 10,000
users.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.data import generate, libpq, load, postgres_database, sqlite_database
from benchmarks.harness import DBTOOL, PYTHON, Row, clean_env, time_interleaved, timed_process

USERS = 10_000
EMAIL = "user5000@example.com"
LOOKUP = (
    "SELECT id, email, username, is_active, is_superuser, created_at, updated_at "
    f"FROM users WHERE email = '{EMAIL}'"
)
# The floor: the imports every command needs, one engine, one query, disposed.
FLOOR = """
import asyncio, sys
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
import {driver}

async def main():
    engine = create_async_engine(sys.argv[1])
    async with engine.connect() as conn:
        (await conn.execute(text(sys.argv[2]))).all()
    await engine.dispose()

asyncio.run(main())
"""
COMMANDS = {
    "users show": ["users", "show", EMAIL],
    "users list": ["users", "list"],
    "ping": ["ping"],
    "info": ["info"],
    "pool-status": ["pool-status"],
}


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    runs *= 4  # short figures on a shared machine: more of them
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(Path(tmp) / "users.csv", USERS)
        if postgres_url:
            with postgres_database(postgres_url) as url:
                load(url, data)
                shell = ["psql", "-X", "-A", "-t", libpq(url), "-c", LOOKUP]
                rows += _measure("PostgreSQL", url, "asyncpg", "psql", shell, runs, target=1.15)
        url = sqlite_database(Path(tmp) / "users.db")
        load(url, data)
        shell = ["sqlite3", url.removeprefix("sqlite:///"), LOOKUP]
        # pool-status has nothing to show on SQLite beyond the client pool.
        rows += _measure("SQLite", url, "aiosqlite", "sqlite3", shell, runs, target=None)
    return rows


def _measure(
    backend: str,
    url: str,
    driver: str,
    shell_name: str,
    shell: list[str],
    runs: int,
    target: float | None,
) -> list[Row]:
    env = clean_env()
    async_url = url if "+" in url.split(":", 1)[0] else url.replace(":", f"+{driver}:", 1)
    measures = {
        name: timed_process([DBTOOL, "--url", url, *args], env=env)
        for name, args in COMMANDS.items()
    }
    measures["floor"] = timed_process(
        [PYTHON, "-c", FLOOR.format(driver=driver), async_url, LOOKUP], env=env
    )
    has_shell = shutil.which(shell_name) is not None
    if has_shell:
        measures["shell"] = timed_process(shell, env=env)
    ms = {name: seconds * 1000 for name, seconds in time_interleaved(measures, runs).items()}
    rows = []
    for name in COMMANDS:
        versus_shell = f"{ms[name] / ms['shell']:.1f}x {shell_name} -c ({ms['shell']:.0f} ms)"
        rows.append(
            Row(
                f"`dbtool {name}` ({backend})",
                ms[name],
                f"imports of SQLAlchemy asyncio + {driver}, one query",
                ms["floor"],
                target=target,
                note=versus_shell if has_shell else "",
            )
        )
    return rows
