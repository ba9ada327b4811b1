"""`users import` and `users export` on MariaDB against its own client, in the same run.

The server is a private one (Debian's mariadb-server, started as the tests start theirs,
on a free port), or the one DBTOOL_BENCH_MARIADB_URL names. The same generated CSV as the
other imports (users with a pre-computed Argon2 hash) goes into `users` with dbtool, and
into an identical empty table with the `mariadb` client's LOAD DATA LOCAL INFILE (no
validation); the export is `users export --include-hashes` against `mariadb --batch -e
'SELECT ...'` of the same columns. Peak memory of the import at a small and a large file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.data import COLUMNS, generate
from benchmarks.harness import (
    DBTOOL,
    Row,
    clean_env,
    memory_row,
    peak_rss_kib,
    run_quiet,
    time_interleaved,
)


def run(runs: int, quick: bool = False, **_: object) -> list[Row]:
    if shutil.which("mariadb") is None:
        return []
    count = 100_000 if quick else 1_000_000
    small = 10_000
    repeats = max(3, runs // 5)
    with tempfile.TemporaryDirectory() as tmp, _server() as server_url:
        folder = Path(tmp)
        data = generate(folder / "users.csv", count)
        few = generate(folder / "few.csv", small)
        with _database(server_url) as (url, client):
            return _imports(url, client, data, few, count, small, repeats) + _exports(
                url, client, folder, count, repeats
            )


@contextmanager
def _server() -> Iterator[str]:
    """A MariaDB server URL (without a database): DBTOOL_BENCH_MARIADB_URL, or a private
    server started for the run."""
    given = os.environ.get("DBTOOL_BENCH_MARIADB_URL")
    if given:
        yield given
        return
    from tests.topology import MariaDB

    server = MariaDB.create(buffer_pool="2G")
    try:
        yield server.url()
    finally:
        server.remove()


@contextmanager
def _database(server_url: str) -> Iterator[tuple[str, list[str]]]:
    """A new database made by `dbtool init --create-database` (its URL, and the mariadb
    client's arguments for it), dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"dbtool_bench_{uuid.uuid4().hex[:8]}"
    url = make_url(server_url).set(database=name)
    client = ["mariadb", "--protocol=tcp", "-h", url.host or "127.0.0.1",
              "-P", str(url.port or 3306), "-u", url.username or "root",
              "--local-infile=1", name]  # fmt: skip
    if url.password:  # through the environment, never argv
        os.environ["MYSQL_PWD"] = url.password
    text = url.render_as_string(hide_password=False)
    run_quiet([DBTOOL, "--url", text, "init", "--create-database"], env=clean_env())
    try:
        _sql(client, "CREATE TABLE users_copy LIKE users")
        yield text, client
    finally:
        _sql(client[:-1], f"DROP DATABASE IF EXISTS `{name}`")


def _sql(client: list[str], statement: str) -> None:
    subprocess.run([*client, "-e", statement], check=True, capture_output=True)


def _imports(
    url: str, client: list[str], data: Path, few: Path, count: int, small: int, repeats: int
) -> list[Row]:
    env = clean_env()
    # The same CSV, converted by the server as it loads (MySQL reads neither the UUIDs'
    # dashes, nor true/false, nor ISO 8601's "T" and zone as they are).
    load = (
        f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE users_copy CHARACTER SET utf8mb4"
        " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'"
        " IGNORE 1 LINES (@id, email, username, @active, @superuser, @created, @updated,"
        " hashed_password) SET id = REPLACE(@id, '-', ''), is_active = (@active = 'true'),"
        " is_superuser = (@superuser = 'true'),"
        " created_at = CAST(REPLACE(SUBSTRING_INDEX(@created, '+', 1), 'T', ' ') AS DATETIME(6)),"
        " updated_at = CAST(REPLACE(SUBSTRING_INDEX(@updated, '+', 1), 'T', ' ') AS DATETIME(6))"
    )

    def with_client(_: int) -> float:
        _sql(client, "TRUNCATE users_copy")
        return _timed(lambda: _sql(client, load))

    def with_dbtool(_: int) -> float:
        _sql(client, "TRUNCATE users")
        return _timed(lambda: run_quiet([DBTOOL, "--url", url, "users", "import", str(data)],
                                        env=env))  # fmt: skip

    medians = time_interleaved({"dbtool": with_dbtool, "client": with_client}, repeats, warmup=0)
    rss = {}
    for rows, source in ((small, few), (count, data)):
        _sql(client, "TRUNCATE users")
        rss[rows] = peak_rss_kib([DBTOOL, "--url", url, "users", "import", str(source)], env=env)
    return [
        Row(
            f"`users import`, {count:,} rows (MariaDB)",
            count / medians["dbtool"],
            "`mariadb` LOAD DATA LOCAL INFILE",
            count / medians["client"],
            unit="rows/s",
            target=0.7,
            higher_is_better=True,
            note=f"{medians['dbtool']:.1f} s vs {medians['client']:.1f} s; dbtool validates "
            "every row, all or nothing",
        ),
        memory_row(f"`users import` peak RSS, {count:,} rows (MariaDB)", rss),
    ]


def _exports(url: str, client: list[str], folder: Path, count: int, repeats: int) -> list[Row]:
    env = clean_env()
    out = folder / "export.csv"
    select = f"SELECT {COLUMNS.replace(',', ', ')} FROM users ORDER BY created_at, id"

    def with_client(_: int) -> float:
        with out.open("w") as stream:
            start = time.perf_counter()
            subprocess.run([*client, "--batch", "-e", select], stdout=stream, check=True)
            return time.perf_counter() - start

    def with_dbtool(_: int) -> float:
        return _timed(lambda: run_quiet(
            [DBTOOL, "--url", url, "users", "export", "--include-hashes", "-o", str(out)],
            env=env,
        ))  # fmt: skip

    medians = time_interleaved({"dbtool": with_dbtool, "client": with_client}, repeats, warmup=1)
    return [
        Row(
            f"`users export`, {count:,} rows (MariaDB)",
            count / medians["dbtool"],
            "`mariadb --batch -e 'SELECT ...'`",
            count / medians["client"],
            unit="rows/s",
            target=0.5,
            higher_is_better=True,
            note=f"{medians['dbtool']:.1f} s vs {medians['client']:.1f} s, whole command, "
            "start-up included; dbtool writes CSV",
        )
    ]


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
