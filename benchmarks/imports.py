"""`dbtool users import` against the databases' own bulk loaders, in the same run.

PostgreSQL: the same generated CSV (users with a pre-computed Argon2 hash, the columns
`users export --include-hashes` writes) goes into an identical empty table with psql's
\\copy, and into `users` with dbtool; one-commit-per-row ORM code runs on a sample; peak
memory (max RSS) of the import is measured at a small and a large file.

SQLite: the same file into a fresh database file made by `dbtool init`, with the sqlite3
shell's `.import --csv` (one transaction, no validation) and with dbtool (every row
validated), and with `sqlite-utils insert` when it is installed.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.data import (
    COLUMNS,
    HASH,
    generate,
    postgres_database,
    psql,
    sqlite_database,
)
from benchmarks.harness import (
    DBTOOL,
    Row,
    clean_env,
    memory_row,
    peak_rss_kib,
    run_quiet,
    time_interleaved,
)

ORM_SAMPLE = 1_000


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    count = 100_000 if quick else 1_000_000
    small = 10_000
    repeats = max(3, runs // 5)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = generate(folder / "users.csv", count)
        few = generate(folder / "few.csv", small)
        rows = []
        if postgres_url:
            rows += _postgres(postgres_url, data, few, count, small, repeats)
        rows += _sqlite(folder, data, count, repeats)
    return rows


def _postgres(
    server_url: str, data: Path, few: Path, count: int, small: int, repeats: int
) -> list[Row]:
    env = clean_env()
    with postgres_database(server_url) as url:
        psql(url, "CREATE TABLE users_copy (LIKE users INCLUDING ALL)")

        def with_psql(_: int) -> float:
            psql(url, "TRUNCATE users_copy")
            return _timed(lambda: psql(
                url, f"\\copy users_copy({COLUMNS}) FROM '{data}' WITH (FORMAT csv, HEADER)"
            ))  # fmt: skip

        def with_dbtool(_: int) -> float:
            psql(url, "TRUNCATE users")
            return _timed(
                lambda: run_quiet([DBTOOL, "--url", url, "users", "import", str(data)], env=env)
            )

        measures = {"dbtool": with_dbtool}
        if shutil.which("psql") is not None:
            measures["psql"] = with_psql
        medians = time_interleaved(measures, repeats, warmup=0)
        orm_rate = asyncio.run(_orm_rows_per_second(url, ORM_SAMPLE))
        rss = {}
        for rows, source in ((small, few), (count, data)):
            psql(url, "TRUNCATE users")
            rss[rows] = peak_rss_kib(
                [DBTOOL, "--url", url, "users", "import", str(source)], env=env
            )
    rate = count / medians["dbtool"]
    results = []
    if "psql" in medians:
        results.append(
            Row(
                f"`users import`, {count:,} rows (PostgreSQL)",
                rate,
                "`psql \\copy`",
                count / medians["psql"],
                unit="rows/s",
                target=0.75,
                higher_is_better=True,
                note=f"{medians['dbtool']:.1f} s vs {medians['psql']:.1f} s, whole command, "
                "start-up included",
            )
        )
    results += [
        Row(
            f"`users import`, {count:,} rows (PostgreSQL)",
            rate,
            f"ORM, one commit per row ({ORM_SAMPLE:,}-row sample)",
            orm_rate,
            unit="rows/s",
            target=50,
            higher_is_better=True,
        ),
        memory_row(f"`users import` peak RSS, {count:,} rows (PostgreSQL)", rss),
    ]
    return results


def _sqlite(folder: Path, data: Path, count: int, repeats: int) -> list[Row]:
    env = clean_env()
    runs = iter(range(1_000_000))

    def fresh() -> Path:
        path = folder / f"import-{next(runs)}.db"
        sqlite_database(path)
        return path

    def into_fresh_file(command: Callable[[Path], list[str]]) -> Callable[[int], float]:
        """A measure: `command` loading the data into a new file made by `dbtool init`."""

        def measure(_: int) -> float:
            path = fresh()
            seconds = _timed(lambda: run_quiet(command(path), env=env))
            path.unlink()
            return seconds

        return measure

    with_dbtool = into_fresh_file(
        lambda path: [DBTOOL, "--url", f"sqlite:///{path}", "users", "import", str(data)]
    )
    with_shell = into_fresh_file(
        lambda path: ["sqlite3", str(path), f".import --csv --skip 1 {data} users"]
    )
    with_sqlite_utils = into_fresh_file(
        lambda path: ["sqlite-utils", "insert", str(path), "users", str(data), "--csv"]
    )

    measures: dict[str, Callable[[int], float]] = {"dbtool": with_dbtool}
    if shutil.which("sqlite3") is not None:
        measures["sqlite3"] = with_shell
    if shutil.which("sqlite-utils") is not None:
        measures["sqlite-utils"] = with_sqlite_utils
    medians = time_interleaved(measures, repeats, warmup=0)
    names = {"sqlite3": "`sqlite3 .import --csv`", "sqlite-utils": "`sqlite-utils insert --csv`"}
    return [
        Row(
            f"`users import`, {count:,} rows (SQLite)",
            count / medians["dbtool"],
            names[reference],
            count / medians[reference],
            unit="rows/s",
            target=0.6 if reference == "sqlite3" else None,
            higher_is_better=True,
            note=f"{medians['dbtool']:.1f} s vs {medians[reference]:.1f} s; dbtool validates "
            "every row",
        )
        for reference in names
        if reference in medians
    ]


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


async def _orm_rows_per_second(url: str, sample: int) -> float:
    """The usual seed-script code: one ORM object and one commit per row."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from dbtool.models.builtin import User

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
