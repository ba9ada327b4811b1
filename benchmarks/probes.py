"""Health probes: `dbtool ping` as a Kubernetes exec probe or a deploy gate, against
PostgreSQL's own `pg_isready` (the floor: a C program that only opens a connection), in
wall time and peak memory. `python -c 'import asyncpg'` is given too: the floor of any
Python probe that talks to PostgreSQL."""

from __future__ import annotations

import shutil
from statistics import median

from benchmarks.harness import (
    DBTOOL,
    PYTHON,
    Row,
    clean_env,
    peak_rss_kib,
    time_interleaved,
    timed_process,
)


def run(runs: int, *, postgres_url: str, **_: object) -> list[Row]:
    isready = shutil.which("pg_isready")
    if isready is None:
        return []
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    env = clean_env()
    ping = [DBTOOL, "--url", postgres_url, "ping", "--require", "primary"]
    ready = [isready, "-q", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    runs *= 2  # short figures on a shared machine
    medians = time_interleaved(
        {
            "ping": timed_process(ping, env=env),
            "pg_isready": timed_process(ready, env=env),
            "asyncpg": timed_process([PYTHON, "-c", "import asyncpg, asyncio"], env=env),
        },
        runs,
    )
    ms = {name: seconds * 1000 for name, seconds in medians.items()}
    memory = {
        name: median(peak_rss_kib(argv, env=env) for _ in range(3)) / 1024
        for name, argv in (("ping", ping), ("pg_isready", ready))
    }
    return [
        Row("`dbtool ping --require primary`", ms["ping"], "`pg_isready`", ms["pg_isready"],
            target=3.0, note="goal of the HA issue"),
        Row("`dbtool ping --require primary`", ms["ping"], "`python -c 'import asyncpg'`",
            ms["asyncpg"], note="floor of a Python probe"),
        Row("`dbtool ping` peak memory", memory["ping"], "`pg_isready` peak memory",
            memory["pg_isready"], unit="MiB", note="goal: under 30 MiB"),
    ]  # fmt: skip
