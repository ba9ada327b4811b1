"""dbshell and shell on every backend: the real clients (psql, sqlite3, mariadb) with the
password kept out of every process's argv and environment, and a Python REPL (Python's
own and IPython) with the models at hand and top-level await."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.helpers import Dbtool, Terminal, assert_clean_error, dbtool_executable, run_sql
from tests.topology import MariaDB

# (PYTHONPATH: subprocesses run in a scratch folder, and import the models from here.)
SHAPES = {
    "DBTOOL_MODELS": "tests.apps.shapes_app:Base",
    "PYTHONPATH": str(Path(__file__).parents[1]),
}

# Per backend: client arguments that print the number of plans, and ones that fail.
COUNT_PLANS = {
    "sqlite": ("SELECT count(*) FROM plan;",),
    "postgres": ("-tAc", "SELECT count(*) FROM plan"),
    "mariadb": ("-N", "-e", "SELECT count(*) FROM plan"),
}
FAILING = {
    "sqlite": ("SELECT * FROM nope;",),
    "postgres": ("-v", "ON_ERROR_STOP=1", "-c", "SELECT * FROM nope"),
    "mariadb": ("-e", "SELECT * FROM nope"),
}


@pytest.fixture
def shapes(database_url: str) -> Dbtool:
    dbtool = Dbtool(database_url, env=SHAPES)
    assert dbtool("init").exit_code == 0
    run_sql(database_url, "INSERT INTO plan (id, code, name, price, features) "
            "VALUES (1, 'free', 'Free', 0, '{}')")  # fmt: skip
    return dbtool


def test_dbshell_runs_the_databases_own_client(shapes: Dbtool, backend: str) -> None:
    result = shapes.run("dbshell", "--", *COUNT_PLANS[backend])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1"
    failed = shapes.run("dbshell", "--", *FAILING[backend])
    assert failed.exit_code != 0  # the client's own status
    assert "nope" in failed.stderr


def test_dbshell_reads_sql_from_stdin(shapes: Dbtool, backend: str) -> None:
    result = shapes.run("dbshell", input="SELECT count(*) FROM plan;\n")
    assert result.exit_code == 0, result.output
    assert "1" in result.stdout.split()


def test_dbshell_names_the_package_when_the_client_is_missing(
    shapes: Dbtool, backend: str, tmp_path: Path
) -> None:
    process = shapes.spawn("dbshell", env={"PATH": str(tmp_path)})
    _, stderr = process.communicate(timeout=60)
    package = {"sqlite": "sqlite3", "postgres": "postgresql-client", "mariadb": "mariadb-client"}
    assert process.returncode == 1, stderr
    assert "is not installed: install the" in stderr and package[backend] in stderr
    assert "Traceback" not in stderr


def test_dbshell_refuses_an_in_memory_database() -> None:
    result = Dbtool("sqlite+aiosqlite:///:memory:")("dbshell")
    assert_clean_error(result, 2, "in memory")


def _processes_mentioning(secret: str, besides: int) -> list[str]:
    """Processes whose argv or environment holds `secret`: this test's and dbtool's own
    environment aside (where the user put the URL)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            if part == "environ" and int(entry.name) == besides:
                continue
            try:
                if secret.encode() in (entry / part).read_bytes():
                    found.append(f"{entry.name}/{part}")
            except OSError:
                continue
    return found


def _watch_a_client_run(dbtool: Dbtool, secret: str, tmp_path: Path, *args: str) -> None:
    """Run `dbshell -- ARGS` (a query that sleeps), and while the client runs check that no
    process shows the password; afterwards, that the private folder is gone."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # The URL in the environment, as a careful user gives it (not in argv, where --url is).
    env = {**os.environ, "DATABASE_URL": dbtool.url, "TMPDIR": str(scratch)}
    process = subprocess.Popen(
        [dbtool_executable(), "dbshell", "--", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    seen: list[str] = []
    modes: set[int] = set()  # of the private folder and the file in it, while they exist
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        seen += _processes_mentioning(secret, besides=process.pid)
        for path in [*scratch.glob("dbtool-dbshell-*"), *scratch.glob("dbtool-dbshell-*/*")]:
            try:
                modes.add(path.stat().st_mode & 0o777)
            except FileNotFoundError:
                continue
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stdout.strip().endswith("ok"), stdout
    assert not seen, seen
    assert modes == {0o700, 0o600}
    assert not list(scratch.iterdir())  # the password's file went with its folder


@pytest.mark.postgres
def test_dbshell_gives_psql_the_password_in_a_private_file(
    password_postgres: str, tmp_path: Path
) -> None:
    dbtool = Dbtool(password_postgres)
    _watch_a_client_run(
        dbtool, "right-pw", tmp_path, "-tAc", "SELECT pg_sleep(1.5), 'ok'", "-F", " "
    )


@pytest.mark.mariadb
def test_dbshell_gives_mariadb_the_password_in_an_option_file(
    mariadb_server: MariaDB, tmp_path: Path
) -> None:
    password = "p\"w#1\\x;y'z"  # quotes, a comment sign and a backslash: the file's escapes
    mariadb_server.admin(
        "CREATE USER IF NOT EXISTS 'shell'@'127.0.0.1' IDENTIFIED BY 'p\"w#1\\\\x;y''z';"
        " GRANT SELECT ON *.* TO 'shell'@'127.0.0.1'"
    )
    url = f"mysql+asyncmy://shell:{quote(password, safe='')}@127.0.0.1:{mariadb_server.port}/mysql"
    _watch_a_client_run(Dbtool(url), password, tmp_path, "-N", "-e", "SELECT SLEEP(1.5), 'ok'")


# --- shell ---------------------------------------------------------------------------------


def test_shell_runs_code_with_the_models_and_await(shapes: Dbtool) -> None:
    code = (
        "rows = (await session.execute(select(Plan.code, Plan.name))).all()\n"
        "print(rows, len(tables), type(db).__name__)"
    )
    result = shapes.run("shell", "-c", code)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[('free', 'Free')] 7 Database"


def test_shell_runs_a_script_from_stdin_and_keeps_only_committed_changes(
    shapes: Dbtool,
) -> None:
    script = (
        "session.add(Tag(id=1, name='kept'))\n"
        "await session.commit()\n"
        "session.add(Tag(id=2, name='dropped'))\n"
        "await session.flush()\n"
    )
    result = shapes.run("shell", input=script)
    assert result.exit_code == 0, result.output
    assert run_sql(shapes.url, "SELECT name FROM tag") == [("kept",)]


def test_a_failing_script_exits_with_its_status(shapes: Dbtool) -> None:
    result = shapes.run("shell", "-c", "await session.execute(text('SELECT * FROM nope'))")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "nope" in result.stderr  # the script's own
    assert shapes.run("shell", "-c", "import sys; sys.exit(3)").exit_code == 3
    assert shapes.run("shell", "-c", "raise SystemExit('bye')").stderr.strip() == "bye"


@pytest.mark.parametrize("flavour", ["plain", "ipython"])
def test_the_interactive_shell(shapes: Dbtool, flavour: str) -> None:
    args = ["--url", shapes.url, "shell", *(["--plain"] if flavour == "plain" else [])]
    terminal = Terminal(*args, env=SHAPES)
    prompt, answer = (">>> ", "+ 41") if flavour == "plain" else ("In [", "Out[")
    terminal.expect("dbtool shell on")
    terminal.expect(prompt)
    terminal.send("await session.scalar(select(func.count()).select_from(Plan)) + 41")
    terminal.expect(answer)
    terminal.expect("42")
    terminal.send("exit()")
    assert terminal.wait() == 0, terminal.transcript
    assert "Traceback" not in terminal.transcript
