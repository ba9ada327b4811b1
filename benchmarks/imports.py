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
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import (
    COLUMNS,
    HASH,
    generate,
    postgres_database,
    psql,
    psql_script,
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
LARGE = 5_000_000  # the second size of the cases marked for it (not with --quick)
# One user already there: the import cannot take the empty table's path.
SEED_ROW = (
    f"VALUES (gen_random_uuid(), 'seed@example.org', 'seed', true, false, now(), now(), '{HASH}')"
)
WITHOUT_IDS = COLUMNS.removeprefix("id,")


@dataclass(frozen=True)
class Case:
    """One way of importing, timed for dbtool and for psql on the same data."""

    name: str
    target: float
    prepare: str  # SQL run on the (emptied) target table before each timed run; {table}
    dbtool: tuple[str, ...] = ()  # arguments after `users import FILE`
    psql: str = "\\copy {table}({columns}) FROM '{file}' WITH (FORMAT csv, HEADER)"
    without_ids: bool = False
    large: bool = False  # also at LARGE rows


CASES = (
    Case("into an empty table", 1.5, "", large=True),
    Case("into a table with rows", 1.0, f"INSERT INTO {{table}}({COLUMNS}) {SEED_ROW}", large=True),
    Case("without ids, into a table with rows", 1.0,
         f"INSERT INTO {{table}}({COLUMNS}) {SEED_ROW}", without_ids=True),
    # The reference for a skip: psql's staging table and INSERT ... ON CONFLICT DO NOTHING.
    Case("`--on-conflict skip`, half of them there", 0.8,
         "INSERT INTO {table} SELECT * FROM half", ("--on-conflict", "skip"),
         psql="CREATE TEMP TABLE s (LIKE {table});\n"
         "\\copy s({columns}) FROM '{file}' WITH (FORMAT csv, HEADER)\n"
         "INSERT INTO {table} SELECT * FROM s ON CONFLICT DO NOTHING;"),
)  # fmt: skip


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
            rows += _postgres(postgres_url, folder, data, few, count, small, repeats)
            if not quick:
                large = generate(folder / "large.csv", LARGE)
                rows += _postgres_cases(postgres_url, folder, large, LARGE, repeats, large=True)
                large.unlink()
        rows += _sqlite(folder, data, count, repeats)
    return rows


def _postgres_cases(
    server_url: str, folder: Path, data: Path, count: int, repeats: int, *, large: bool = False
) -> list[Row]:
    """Each case (those marked `large` only, with `large`), dbtool and psql interleaved."""
    env = clean_env()
    results = []
    without_ids = _without_ids(data, folder / "without-ids.csv")
    with postgres_database(server_url) as url:
        psql(url, "CREATE TABLE users_copy (LIKE users INCLUDING ALL)")
        psql(url, "ALTER TABLE users_copy ALTER id SET DEFAULT gen_random_uuid()")
        # Every other user of the file, for the skip: the generated emails are numbered.
        psql(url, "CREATE TABLE half AS SELECT * FROM users_copy WITH NO DATA")
        psql(url, f"\\copy half({COLUMNS}) FROM '{data}' WITH (FORMAT csv, HEADER)")
        psql(url, "DELETE FROM half WHERE substring(email FROM 'user(\\d+)@')::int % 2 = 1")
        for case in CASES:
            if large and not case.large:
                continue
            source, columns = (without_ids, WITHOUT_IDS) if case.without_ids else (data, COLUMNS)

            def with_psql(
                _: int, case: Case = case, source: Path = source, columns: str = columns
            ) -> float:
                _empty(url, "users_copy", case.prepare)
                script = case.psql.format(table="users_copy", columns=columns, file=source)
                return _timed(lambda: psql_script(url, script))

            def with_dbtool(_: int, case: Case = case, source: Path = source) -> float:
                _empty(url, "users", case.prepare)
                argv = [DBTOOL, "--url", url, "users", "import", str(source), *case.dbtool]
                return _timed(lambda: run_quiet(argv, env=env))

            medians = time_interleaved({"dbtool": with_dbtool, "psql": with_psql}, repeats, 0)
            results.append(
                Row(
                    f"`users import`, {count:,} rows {case.name} (PostgreSQL)",
                    count / medians["dbtool"],
                    "`psql \\copy`" + (" + `INSERT ... ON CONFLICT`" if case.dbtool else ""),
                    count / medians["psql"],
                    unit="rows/s",
                    target=case.target,
                    higher_is_better=True,
                    note=f"{medians['dbtool']:.1f} s vs {medians['psql']:.1f} s, whole commands",
                )
            )
    without_ids.unlink()
    return results


def _empty(url: str, table: str, prepare: str) -> None:
    psql(url, f"TRUNCATE {table}")
    if prepare:
        psql(url, prepare.format(table=table))


def _without_ids(data: Path, path: Path) -> Path:
    """`data` without its id column (the first)."""
    with data.open() as source, path.open("w") as target:
        for line in source:
            target.write(line.partition(",")[2])
    return path


def _postgres(
    server_url: str, folder: Path, data: Path, few: Path, count: int, small: int, repeats: int
) -> list[Row]:
    results = _postgres_cases(server_url, folder, data, count, repeats)
    env = clean_env()
    with postgres_database(server_url) as url:
        orm_rate = asyncio.run(_orm_rows_per_second(url, ORM_SAMPLE))
        rss = {}
        for rows, source in ((small, few), (count, data)):
            psql(url, "TRUNCATE users")
            rss[rows] = peak_rss_kib(
                [DBTOOL, "--url", url, "users", "import", str(source)], env=env
            )
    return [
        *results,
        Row(
            f"`users import`, {count:,} rows (PostgreSQL)",
            results[0].value,
            f"ORM, one commit per row ({ORM_SAMPLE:,}-row sample)",
            orm_rate,
            unit="rows/s",
            target=50,
            higher_is_better=True,
        ),
        memory_row(f"`users import` peak RSS, {count:,} rows (PostgreSQL)", rss),
    ]


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
            target=0.9 if reference == "sqlite3" else None,  # issue 28
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
