"""Helpers for the tests: running the real CLI, and reading the database independently."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from dbtool.app import app

# What `ping` and `info` call each backend's server.
PRODUCTS = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mariadb": "MariaDB"}

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL = os.environ.get("DBTOOL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
REQUIRE_POSTGRES = os.environ.get("DBTOOL_REQUIRE_POSTGRES") == "1"
TEST_DB_PREFIX = "dbtool_test_"


def postgres_dsn(database: str | None = None) -> str:
    """A plain libpq DSN for asyncpg, optionally for another database."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def postgres_url(database: str) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


async def _pg_execute(sql: str, database: str | None) -> None:
    conn = await asyncpg.connect(postgres_dsn(database), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_execute(sql: str, database: str | None = None) -> None:
    asyncio.run(_pg_execute(sql, database))


def postgres_problem() -> str | None:
    """Why the test PostgreSQL server cannot be used, or None."""
    try:
        pg_execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {make_url(POSTGRES_URL)!r} is not reachable: {exc!r}"
    return None


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def dbtool_executable() -> str:
    """The installed `dbtool` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "dbtool"
    found = str(script) if script.exists() else shutil.which("dbtool")
    assert found, "the dbtool console script is not installed (pip install -e '.[test]')"
    return found


class Dbtool:
    """Runs the real CLI against one database: in-process through Typer's test runner (stdin
    is then not a terminal), or as a subprocess of the installed console script."""

    def __init__(self, url: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.env = env or {}  # settings every run gets (e.g. DBTOOL_MODELS)

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        result = CliRunner().invoke(
            app, ["--url", self.url, *args], input=input, env={**self.env, **(env or {})}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def spawn(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        env = {**os.environ, **self.env, **kwargs.pop("env", {})}
        return subprocess.Popen(
            [dbtool_executable(), "--url", self.url, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=_default_sigint,
            **kwargs,
        )

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> Result:
        """The console script in a subprocess, to completion."""
        process = self.spawn(*args)
        stdout, stderr = process.communicate(input, timeout=timeout)
        return Result(process.returncode, stdout, stderr)


def assert_clean_error(result: Result, exit_code: int, *fragments: str) -> str:
    """One `error:` line with the expected exit code, and no traceback; returns the line."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def run_sql(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run SQL against `url` with a plain SQLAlchemy engine, independent of dbtool's code."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":

        async def go() -> list[tuple[Any, ...]]:
            engine = create_async_engine(parsed)
            try:
                async with engine.begin() as conn:
                    result = await conn.execute(text(sql), params or {})
                    return [tuple(row) for row in result] if result.returns_rows else []
            finally:
                await engine.dispose()

        return asyncio.run(go())
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        # PyMySQL: synchronous, and not the driver dbtool uses (asyncmy). UTC, as dbtool's
        # sessions are; the tests' SQL quotes names the standard way ("user"): ANSI_QUOTES.
        setup = "SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"
        engine = create_engine(
            parsed.set(drivername="mysql+pymysql"), connect_args={"init_command": setup}
        )
    else:
        engine = create_engine(parsed.set(drivername="sqlite"))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params or {})
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def column_type(url: str, table: str, column: str) -> str:
    """A column's type as the database declares it (to reference it from another table:
    SQLAlchemy's Uuid is CHAR(32) on MariaDB under 2.0, its native UUID under 2.1)."""
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        query = ("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                 " WHERE attrelid = CAST(:table AS regclass) AND attname = :column")  # fmt: skip
    elif backend in ("mysql", "mariadb"):
        query = ("SELECT column_type FROM information_schema.columns WHERE table_schema ="
                 " DATABASE() AND table_name = :table AND column_name = :column")  # fmt: skip
    else:
        query = "SELECT type FROM pragma_table_info(:table) WHERE name = :column"
    return str(run_sql(url, query, {"table": table, "column": column})[0][0])


def model_rows(url: str, table: Any) -> list[tuple[Any, ...]]:
    """The rows of a models' `table`, read through its column types (datetimes, decimals,
    UUIDs as Python values) by plain SQLAlchemy and another driver than dbtool's, sorted."""
    from sqlalchemy import select

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"))
    elif backend in ("mysql", "mariadb"):
        engine = create_engine(
            parsed.set(drivername="mysql+pymysql"),
            connect_args={"init_command": "SET time_zone = '+00:00'"},
        )
    else:
        engine = create_engine(parsed.set(drivername="sqlite"))
    try:
        with engine.connect() as conn:
            return sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
    finally:
        engine.dispose()


def raw_uuid(url: str) -> str:
    """A new UUID as a row written by hand stores it where the column is SQLAlchemy's Uuid:
    PostgreSQL's uuid type takes the usual form; elsewhere it is 32 hex digits."""
    value = uuid.uuid4()
    return str(value) if make_url(url).get_backend_name() == "postgresql" else value.hex


def table_names(url: str) -> set[str]:
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    elif backend in ("mysql", "mariadb"):
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {row[0] for row in run_sql(url, sql)}


def _default_sigint() -> None:
    """In the child: Ctrl-C (SIGINT) handled as in an interactive shell. A shell's background
    job (`pytest ... &`, some CI runners) starts with SIGINT ignored, and Python then keeps
    ignoring it: the Ctrl-C tests would hang or fail there only."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _become_terminal_session() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin, so that
    Ctrl-C typed into it arrives as SIGINT, as in a real shell."""
    import fcntl
    import termios

    _default_sigint()
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The console script run with a pseudo-terminal as stdin/stdout/stderr, so prompts and
    terminal-only behaviour can be exercised for real."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, rows: int = 50) -> None:
        import fcntl
        import pty
        import struct
        import termios

        environment = {**os.environ, "COLUMNS": "200", "TERM": "xterm", **(env or {})}
        environment.setdefault("LINES", str(rows))
        self._master, slave = pty.openpty()
        # The terminal's own size says COLUMNS and LINES too, as a real terminal's would.
        size = struct.pack("HHHH", int(environment["LINES"]), int(environment["COLUMNS"]), 0, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        self.process = subprocess.Popen(
            [dbtool_executable(), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment,
            preexec_fn=_become_terminal_session,
        )
        os.close(slave)
        self.transcript = ""
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        import select

        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self._master, 4096)
        except OSError:  # the child closed the terminal
            return False
        if not chunk:
            return False
        self.transcript += chunk.decode(errors="replace")
        return True

    def expect(self, text: str, timeout: float = 20) -> None:
        """Wait for `text` to appear after what earlier expects matched."""
        import time

        deadline = time.monotonic() + timeout
        while (found := self.transcript.find(text, self._seen)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.5)) and self.process.poll() is not None):
                if (found := self.transcript.find(text, self._seen)) >= 0:
                    break
                self.close()  # no process outlives a failed test
                raise AssertionError(f"did not see {text!r} in:\n{self.transcript}")
        self._seen = found + len(text)

    def send(self, line: str) -> None:
        os.write(self._master, (line + "\n").encode())

    def send_raw(self, data: bytes) -> None:
        os.write(self._master, data)

    def wait(self, timeout: float = 30) -> int:
        import time

        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.05):
            pass
        try:
            code = self.process.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            self.close()  # killed if it did not end in time: no process outlives a test
        return code

    def close(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._close_master()

    def _close_master(self) -> None:
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
