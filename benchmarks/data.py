"""Data sets shared by the benchmarks: a CSV of users as `users export --include-hashes`
writes them, and databases (a PostgreSQL database, a SQLite file) holding them.

Users are generated with a pre-computed Argon2 hash (hashing a million passwords would take
a day) and creation times one 10 ms apart, oldest first, as a real table's are.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import DBTOOL, admin_sql, clean_env, run_quiet

HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$ExDYM8hOYqkOufkaUmEYLQ"
    "$dYkCsxF5tiXOUZSYWoF3jjrkC/XaQ9mNM9f3rGHNQpA"
)
COLUMNS = "id,email,username,is_active,is_superuser,created_at,updated_at,hashed_password"


def generate(path: Path, count: int) -> Path:
    """`count` users in a CSV file at `path`."""
    start = datetime.now(UTC) - timedelta(milliseconds=10 * count)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS.split(","))
        for n in range(count):
            created = (start + timedelta(milliseconds=10 * n)).isoformat()
            row = [uuid.uuid4(), f"user{n}@example.com", f"user{n}", "true", "false"]
            writer.writerow([*row, created, created, HASH])
    return path


def libpq(url: str) -> str:
    """The URL for psql and asyncpg (no SQLAlchemy driver name)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def psql(url: str, command: str) -> None:
    """One psql command (asyncpg when psql is not installed and the command is SQL)."""
    if shutil.which("psql") is None:
        admin_sql(url, command)
        return
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq(url), "-c", command],
        check=True,
        capture_output=True,
    )


def psql_script(url: str, script: str) -> None:
    """A psql script (meta-commands such as \\copy included) in one transaction."""
    subprocess.run(
        ["psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", libpq(url), "-f", "-"],
        input=script.encode(),
        check=True,
        capture_output=True,
    )


@contextmanager
def postgres_database(server_url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A new database on the server, initialised by dbtool (its URL; `env`: the models, when
    not the built-in ones), dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"dbtool_bench_{uuid.uuid4().hex[:8]}"
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=name)
    admin_sql(server_url, f'CREATE DATABASE "{name}"')
    try:
        text = url.render_as_string(hide_password=False)
        run_quiet([DBTOOL, "--url", text, "init"], env=env or clean_env())
        yield text
    finally:
        admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_database(path: Path) -> str:
    """A SQLite file initialised by dbtool (its URL)."""
    url = f"sqlite:///{path}"
    run_quiet([DBTOOL, "--url", url, "init"], env=clean_env())
    return url


def load(url: str, data: Path) -> None:
    """Import `data` with dbtool (and, on PostgreSQL, ANALYZE, as autovacuum would)."""
    run_quiet([DBTOOL, "--url", url, "users", "import", str(data)], env=clean_env())
    if url.startswith("postgresql"):
        psql(url, "ANALYZE users")
