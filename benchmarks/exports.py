"""`dbtool users export` against the database's own CSV writers: `psql \\copy (SELECT ...)
TO` on PostgreSQL, `sqlite3 -csv` on SQLite, on the same table in the same run (the same
columns, in the same order), and its peak memory at a small and a large table.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from benchmarks.data import COLUMNS, generate, libpq, load, postgres_database, sqlite_database
from benchmarks.harness import (
    DBTOOL,
    Row,
    clean_env,
    memory_row,
    peak_rss_kib,
    run_quiet,
    time_interleaved,
)

QUERY = f"SELECT {COLUMNS.replace(',', ', ')} FROM users ORDER BY created_at, id"


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    count = 100_000 if quick else 1_000_000
    small = 10_000
    repeats = max(3, runs // 5)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as databases:
        folder = Path(tmp)
        data = generate(folder / "users.csv", count)
        few = generate(folder / "few.csv", small)
        # (backend, url, url with few users, reference, its command, the program it needs)
        targets: list[tuple[str, str, str, str, Callable[[Path], None], str]] = []
        if postgres_url:
            url, url_few = (databases.enter_context(postgres_database(postgres_url))
                            for _ in range(2))  # fmt: skip
            copy = partial(_psql_copy, url)
            targets.append(("PostgreSQL", url, url_few, "`psql \\copy (SELECT ...) TO`", copy,
                            "psql"))  # fmt: skip
        path = folder / "users.db"
        url, url_few = sqlite_database(path), sqlite_database(folder / "few.db")
        targets.append(("SQLite", url, url_few, "`sqlite3 -csv`", partial(_sqlite3_csv, path),
                        "sqlite3"))  # fmt: skip
        for backend, url, url_few, name, reference, program in targets:
            load(url, data)
            load(url_few, few)
            rows += _compare(backend, url, url_few, folder, count, small, repeats, name,
                             reference, shutil.which(program) is not None)  # fmt: skip
    return rows


def _compare(
    backend: str,
    url: str,
    url_few: str,
    folder: Path,
    count: int,
    small: int,
    repeats: int,
    reference_name: str,
    reference: Callable[[Path], None],
    has_reference: bool,
) -> list[Row]:
    env = clean_env()
    target = folder / "export.csv"

    def export(_: int) -> float:
        target.unlink(missing_ok=True)
        start = time.perf_counter()
        run_quiet([DBTOOL, "--url", url, "users", "export", "--include-hashes", "-o", str(target)],
                  env=env)  # fmt: skip
        return time.perf_counter() - start

    def referenced(_: int) -> float:
        out = folder / "reference.csv"
        start = time.perf_counter()
        reference(out)
        return time.perf_counter() - start

    measures = {"dbtool": export, **({"reference": referenced} if has_reference else {})}
    medians = time_interleaved(measures, repeats)
    rss = {
        rows: peak_rss_kib([DBTOOL, "--url", where, "users", "export", "--include-hashes"], env=env)
        for rows, where in ((small, url_few), (count, url))
    }
    results = []
    if has_reference:
        results.append(
            Row(
                f"`users export`, {count:,} rows ({backend})",
                count / medians["dbtool"],
                reference_name,
                count / medians["reference"],
                unit="rows/s",
                target=0.5,
                higher_is_better=True,
                note=f"{medians['dbtool']:.1f} s vs {medians['reference']:.1f} s, "
                "whole command, start-up included",
            )
        )
    results.append(memory_row(f"`users export` peak RSS, {count:,} rows ({backend})", rss))
    return results


def _psql_copy(url: str, out: Path) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq(url), "-c",
         f"\\copy ({QUERY}) TO '{out}' WITH (FORMAT csv, HEADER)"],
        check=True, capture_output=True,
    )  # fmt: skip


def _sqlite3_csv(path: Path, out: Path) -> None:
    with out.open("wb") as stream:
        subprocess.run(["sqlite3", "-csv", "-header", str(path), QUERY], check=True,
                       stdout=stream)  # fmt: skip
