"""Whole commands: `dbtool init` (SQLite, PostgreSQL) and `dbtool users add`.

The reference for a command is the bare import cost of the modules it loads (found by
running it once): a command whose work is small next to its imports is as fast as its
dependencies allow.
"""

from __future__ import annotations

import tempfile
import time
import uuid

from benchmarks.harness import (
    DBTOOL,
    Row,
    admin_sql,
    clean_env,
    import_only_command,
    modules_loaded_by,
    run_quiet,
    time_interleaved,
    timed_process,
)

PASSWORD = "benchmark password"


def run(runs: int, postgres_url: str | None = None, **_: object) -> list[Row]:
    rows = _sqlite(runs)
    if postgres_url:
        rows += _postgres(runs, postgres_url)
    return rows


def _sqlite(runs: int) -> list[Row]:
    env = clean_env()
    with tempfile.TemporaryDirectory() as tmp:

        def fresh_url(number: int) -> str:
            return f"sqlite:///{tmp}/init-{number + 10}.db"

        needed = modules_loaded_by(["--url", f"sqlite:///{tmp}/probe.db", "init"])
        users_db = f"sqlite:///{tmp}/users.db"
        run_quiet([DBTOOL, "--url", users_db, "init"], env=env)
        add_needs = modules_loaded_by(
            ["--url", users_db, "users", "add", "probe@example.com", "--password-stdin"],
            stdin=PASSWORD,
        )
        medians = time_interleaved(
            {
                "init": timed_process(lambda n: [DBTOOL, "--url", fresh_url(n), "init"], env=env),
                "init imports": timed_process(import_only_command(needed), env=env),
                "add": timed_process(
                    lambda n: [
                        DBTOOL,
                        "--url",
                        users_db,
                        "users",
                        "add",
                        f"user{n + 10}@example.com",
                        "--password-stdin",
                    ],
                    stdin=PASSWORD,
                    env=env,
                ),
                "add imports": timed_process(import_only_command(add_needs), env=env),
            },
            runs,
        )
    hash_ms = _argon2_hash_ms(runs)
    ms = {name: seconds * 1000 for name, seconds in medians.items()}
    return [
        Row(
            "`dbtool init`, fresh SQLite file",
            ms["init"],
            "bare import of the modules it loads",
            ms["init imports"],
            target=1.3,
        ),
        Row(
            "`dbtool users add` (SQLite)",
            ms["add"],
            "its imports + one Argon2 hash",
            ms["add imports"] + hash_ms,
            note=f"one Argon2id hash: {hash_ms:.0f} ms",
        ),
    ]


def _argon2_hash_ms(runs: int) -> float:
    from dbtool.users.passwords import hash_password

    hash_password(PASSWORD)  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        hash_password(PASSWORD)
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2] * 1000


def _postgres(runs: int, server_url: str) -> list[Row]:
    from sqlalchemy.engine import make_url

    env = clean_env()
    base = make_url(server_url).set(drivername="postgresql+asyncpg")
    prefix = f"dbtool_bench_{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_{number + 10}" for number in range(-1, runs)] + [f"{prefix}_probe"]

    def url(name: str) -> str:
        return base.set(database=name).render_as_string(hide_password=False)

    def create(number: int) -> None:
        admin_sql(server_url, f'CREATE DATABASE "{prefix}_{number + 10}"')

    try:
        admin_sql(server_url, f'CREATE DATABASE "{prefix}_probe"')
        needed = modules_loaded_by(["--url", url(f"{prefix}_probe"), "init"])
        medians = time_interleaved(
            {
                "init": timed_process(
                    lambda n: [DBTOOL, "--url", url(f"{prefix}_{n + 10}"), "init"],
                    before=create,
                    env=env,
                ),
                "init imports": timed_process(import_only_command(needed), env=env),
            },
            runs,
        )
    finally:
        for name in names:
            admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}"')
    ms = {name: seconds * 1000 for name, seconds in medians.items()}
    return [
        Row(
            "`dbtool init`, fresh PostgreSQL database",
            ms["init"],
            "bare import of the modules it loads",
            ms["init imports"],
        ),
    ]
