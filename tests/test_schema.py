"""init / drop / reset / ping end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from dbtool.config import load_settings
from dbtool.db import Database
from tests.helpers import (
    PRODUCTS,
    Dbtool,
    Terminal,
    assert_clean_error,
    pg_execute,
    postgres_url,
    run_sql,
    table_names,
)


def test_init_creates_the_tables_once(dbtool: Dbtool) -> None:
    first = dbtool("init", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["created"] == ["users"]
    assert "users" in table_names(dbtool.url)

    again = dbtool("init", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["created"] == []
    assert report["existing"] == ["users"]


def test_init_reports_in_words(dbtool: Dbtool) -> None:
    result = dbtool("init")
    assert result.exit_code == 0
    assert "Created tables: users" in result.stderr
    assert result.stdout == ""  # messages go to stderr, data to stdout
    assert "up to date" in dbtool("init").stderr


def test_timestamps_are_set_per_row_and_timezone_aware(initialised: Dbtool) -> None:
    for email in ("alice@example.com", "bob@example.com"):
        result = initialised("users", "add", email, "--password-stdin", input="longenough1\n")
        assert result.exit_code == 0, result.output
    rows = json.loads(initialised("users", "list", "--json").stdout)
    created = [row["created_at"] for row in rows]
    assert created[0] != created[1]
    assert all(value.endswith("+00:00") for value in created)


def test_concurrent_init_creates_the_schema_exactly_once(dbtool: Dbtool) -> None:
    processes = [dbtool.spawn("init", "--json") for _ in range(8)]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [code for code, _, _ in outcomes] == [0] * 8, outcomes
    reports = [json.loads(out) for _, out, _ in outcomes]
    assert sum(report["created"] == ["users"] for report in reports) == 1
    assert table_names(dbtool.url) >= {"users"}


def test_drop_without_terminal_or_yes_refuses_and_keeps_everything(initialised: Dbtool) -> None:
    initialised("users", "add", "alice@example.com", "--password-stdin", input="longenough1\n")
    result = initialised("drop")
    assert_clean_error(result, 5, "--yes")
    assert "table users (1 row)" in result.stderr  # it showed what would be destroyed
    assert "users" in table_names(initialised.url)


def test_drop_with_yes(initialised: Dbtool) -> None:
    initialised("users", "add", "alice@example.com", "--password-stdin", input="longenough1\n")
    result = initialised("drop", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dropped"] == [{"table": "users", "rows": 1}]
    assert json.loads(result.stdout)["skipped"] == []
    assert "users" not in table_names(initialised.url)
    # Nothing left: a second drop succeeds and says so.
    again = initialised("drop", "--yes")
    assert again.exit_code == 0
    assert "Nothing to drop" in again.stderr


def test_protected_database_refuses_drop_even_with_yes(initialised: Dbtool) -> None:
    env = {"DBTOOL_PROTECTED": "true"}
    for command in ("drop", "reset"):
        result = initialised(command, "--yes", env=env)
        assert_clean_error(result, 5, "protected", "--allow-protected")
    assert "users" in table_names(initialised.url)
    result = initialised("drop", "--yes", "--allow-protected", env=env)
    assert result.exit_code == 0, result.output
    assert "users" not in table_names(initialised.url)


def test_reset_empties_the_tables(initialised: Dbtool) -> None:
    initialised("users", "add", "alice@example.com", "--password-stdin", input="longenough1\n")
    assert_clean_error(initialised("reset"), 5, "--yes")
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(1,)]
    result = initialised("reset", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "database": json.loads(result.stdout)["database"],
        "dropped": [{"table": "users", "rows": 1}],  # the same shape as drop --json
        "skipped": [],
        "created": ["users"],
    }
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


def test_drop_on_a_terminal_asks_for_the_database_name(initialised: Dbtool) -> None:
    name = (
        Path(initialised.url.removeprefix("sqlite+aiosqlite:///")).name
        if initialised.url.startswith("sqlite")
        else initialised.url.rsplit("/", 1)[1]
    )
    wrong = Terminal("--url", initialised.url, "drop")
    wrong.expect("to confirm")
    wrong.send("not-the-name")
    assert wrong.wait() == 130, wrong.transcript
    assert "users" in table_names(initialised.url)

    right = Terminal("--url", initialised.url, "drop")
    right.expect(f"Type {name!r} to confirm")
    right.send(name)
    assert right.wait() == 0, right.transcript
    assert "Dropped tables: users" in right.transcript
    assert "users" not in table_names(initialised.url)


def test_ctrl_c_at_the_confirmation_cancels_cleanly(initialised: Dbtool) -> None:
    terminal = Terminal("--url", initialised.url, "drop")
    terminal.expect("to confirm")
    # The prompt is written before Python starts reading the terminal: a SIGINT in that
    # window is only noticed by CPython at the next key (its read loop checks signals on
    # EINTR alone; 3 in 40 here, under load). A person's Ctrl-C comes later than that.
    time.sleep(0.3)
    terminal.send_raw(b"\x03")
    assert terminal.wait() == 130, terminal.transcript
    assert "Traceback" not in terminal.transcript
    assert "users" in table_names(initialised.url)


def test_ping_reports_server_and_latency(initialised: Dbtool, backend: str) -> None:
    result = initialised("ping", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["server"] == PRODUCTS[backend]
    assert data["version"][0].isdigit()
    assert 0 < data["latency_ms"] < 1000


def test_every_database_command_needs_the_database(backend: str) -> None:
    """Each command really runs its coroutine: pointed at a database that cannot be
    reached, it fails with exit 3 instead of silently succeeding."""
    if backend == "postgres":
        unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
    else:
        unreachable = f"sqlite+aiosqlite:///{Path.cwd() / 'missing' / 'none.db'}"
    (Path.cwd() / "fixtures.jsonl").write_text('{"table": "users", "row": {"email": "a@b.co"}}\n')
    dbtool = Dbtool(unreachable, env={"DBTOOL_SEED": "fixtures.jsonl"})
    for args in COMMANDS_THAT_CONNECT:
        result = dbtool(*args, input="longenough1\n")
        assert result.exit_code == 3, (args, result.output)
        assert "Traceback" not in result.output


COMMANDS_THAT_CONNECT = [
    ("init",),
    ("drop", "--yes"),
    ("reset", "--yes"),
    ("ping",),
    ("pool-status",),
    ("cluster",),
    ("info",),
    ("check",),
    ("users", "add", "alice@example.com", "--password-stdin"),
    ("users", "list"),
    ("users", "show", "alice@example.com"),
    ("users", "set-password", "alice@example.com", "--password-stdin"),
    ("users", "check-password", "alice@example.com", "--password-stdin"),
    ("users", "update", "alice@example.com", "--inactive"),
    ("users", "delete", "alice@example.com", "--yes"),
    ("users", "import", "-", "--format", "jsonl"),
    ("users", "export"),
    ("dump",),
    ("load", "fixtures.jsonl"),
    ("seed",),
    ("shell", "-c", "pass"),
]


def test_the_command_table_above_covers_every_command() -> None:
    from tests.test_docs import all_commands

    names = {tuple(name.split()) for name in all_commands()}
    covered = {args[:2] if args[0] == "users" else args[:1] for args in COMMANDS_THAT_CONNECT}
    assert names - covered == NO_DATABASE_COMMANDS


# dbshell hands the connection to the database's own client (whose status it passes on).
NO_DATABASE_COMMANDS = {("config",), ("dbshell",)}


@pytest.mark.sqlite
def test_commands_other_than_init_never_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    dbtool = Dbtool(f"sqlite:///{path}")
    result = dbtool("users", "list")
    assert_clean_error(result, 3, "does not exist", "dbtool init")
    assert not path.exists()
    assert dbtool("init").exit_code == 0
    assert path.exists()


@pytest.mark.sqlite
def test_init_create_database_makes_the_sqlite_directory(tmp_path: Path) -> None:
    dbtool = Dbtool(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'app.db'}")
    assert_clean_error(dbtool("init"), 3, "directory")
    result = dbtool("init", "--create-database")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nested" / "dir" / "app.db").exists()


@pytest.mark.postgres
def test_connection_errors_are_one_line_exit_3(postgres_available: None) -> None:
    cases = {
        "postgresql://postgres@127.0.0.1:1/postgres": "connection refused",
        "postgresql://postgres@no-such-host.invalid/postgres": "unknown host",
        f"postgresql://postgres@127.0.0.1:5432/missing_{uuid.uuid4().hex[:8]}": "does not exist",
        "postgresql://no_such_role_x:pw@127.0.0.1:5432/postgres": "authentication failed",
    }
    for url, fragment in cases.items():
        result = Dbtool(url)("ping")
        line = assert_clean_error(result, 3, fragment)
        assert ":pw@" not in line


@pytest.mark.postgres
def test_wrong_password_is_exit_3(password_postgres: str) -> None:
    wrong = password_postgres.replace(":right-pw@", ":wrong-pw@")
    result = Dbtool(wrong)("ping")
    line = assert_clean_error(result, 3, "authentication failed")
    assert "wrong-pw" not in result.output and "***" in line
    assert Dbtool(password_postgres)("ping").exit_code == 0


@pytest.mark.postgres
def test_init_create_database(postgres_available: None) -> None:
    name = f"dbtool_test_{uuid.uuid4().hex[:12]}"
    dbtool = Dbtool(postgres_url(name))
    try:
        assert_clean_error(dbtool("init"), 3, "does not exist", "--create-database")
        processes = [dbtool.spawn("init", "--create-database", "--json") for _ in range(4)]
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in processes]
        assert [code for code, _, _ in outcomes] == [0] * 4, outcomes
        reports = [json.loads(out) for _, out, _ in outcomes]
        assert sum(report["database_created"] for report in reports) == 1
        assert sum(report["created"] == ["users"] for report in reports) == 1
        assert "users" in table_names(dbtool.url)
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_connections_carry_the_application_name(new_postgres_database: str) -> None:
    """The CLI's connections say "dbtool"; an application's say its program's name (never
    "dbtool"), unless it names itself."""
    database_url = postgres_url(new_postgres_database)

    async def name_of(db: Database) -> tuple[str, int]:
        async with db, db.session() as session:
            own = await session.scalar(text("SELECT current_setting('application_name')"))
            seen = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :own AND pid = pg_backend_pid()"
                ),
                {"own": own},
            )
            return str(own), int(seen or 0)

    assert asyncio.run(name_of(Database(load_settings(url=database_url)))) == ("pytest", 1)
    named = Database.from_url(database_url, application_name="billing-api")
    assert asyncio.run(name_of(named)) == ("billing-api", 1)
    report = json.loads(Dbtool(database_url)("pool-status", "--json").stdout)
    assert any(row["application_name"] == "dbtool" for row in report["server"]["by_application"])
