"""Start-up: which modules each command loads (deterministic, not timed).

dbtool runs dozens of times per CI pipeline and on every completion keystroke, so help,
version and completion must not pay for SQLAlchemy, the drivers or hashing, and a command
loads only what it uses. The timings themselves live in benchmarks/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Dbtool, postgres_url

HEAVY = ("sqlalchemy", "asyncpg", "aiosqlite", "pwdlib", "argon2", "bcrypt", "email_validator")

# Runs the real entry point and reports the top-level packages loaded when it exits.
PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write(
    "\\nMODULES=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})) + "\\n"))
sys.argv = ["dbtool", *json.loads(sys.argv[1])]
from dbtool.app import main
main()
"""


def loaded_modules(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=60,
    )
    marker = done.stderr.rsplit("MODULES=", 1)
    assert len(marker) == 2, done.stderr
    return set(json.loads(marker[1]))


@pytest.mark.parametrize(
    "args", [("--help",), ("--version",), ("users", "--help"), ("init", "--help"), ()]
)
def test_help_and_version_load_no_database_or_hashing_modules(args: tuple[str, ...]) -> None:
    loaded = loaded_modules(*args)
    assert "typer" in loaded  # the probe really ran the CLI
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_shell_completion_loads_no_database_modules() -> None:
    import os

    env = {**os.environ, "_DBTOOL_COMPLETE": "complete_bash", "COMP_WORDS": "dbtool users li",
           "COMP_CWORD": "2"}  # fmt: skip
    probe = PROBE.replace(
        'sys.argv = ["dbtool", *json.loads(sys.argv[1])]', 'sys.argv = ["dbtool"]'
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert "list" in done.stdout  # it completed "li" to "list"
    loaded = set(json.loads(done.stderr.rsplit("MODULES=", 1)[1]))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_importing_the_cli_builds_nothing() -> None:
    """Importing the package and the Typer app reads no settings and builds no console."""
    code = (
        "import sys, dbtool, dbtool.app, dbtool.commands.runtime, dbtool.commands.users;"
        "print(sorted(m for m in sys.modules if m.startswith(('rich', 'dotenv', 'asyncio'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.sqlite
def test_a_sqlite_command_never_loads_asyncpg(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    loaded = loaded_modules("--url", url, "init")
    assert {"sqlalchemy", "aiosqlite"} <= loaded
    assert "asyncpg" not in loaded
    assert "alembic" not in loaded  # no alembic.ini here: no Alembic
    listed = loaded_modules("--url", url, "users", "list")
    assert not listed & {"asyncpg", "pwdlib", "argon2", "email_validator", "alembic"}
    added = loaded_modules("--url", url, "users", "add", "ada@example.com", "--password-stdin",
                           stdin="long enough pw\n")  # fmt: skip
    assert {"pwdlib", "argon2", "email_validator"} <= added
    assert "asyncpg" not in added


@pytest.mark.postgres
def test_a_postgres_command_never_loads_aiosqlite(new_postgres_database: str) -> None:
    url = postgres_url(new_postgres_database)
    loaded = loaded_modules("--url", url, "init")
    assert {"sqlalchemy", "asyncpg"} <= loaded
    assert "aiosqlite" not in loaded
    listed = loaded_modules("--url", url, "users", "list")
    assert not listed & {"aiosqlite", "pwdlib", "argon2", "email_validator"}
    # Nor SQLite's own module, or statistics for a median, on the everyday commands.
    # Nor Rich, piped (pool-status's panels are for terminals).
    for args in (("ping",), ("info",), ("pool-status",), ("users", "show", "x@example.com")):
        loaded = loaded_modules("--url", url, *args)
        assert not loaded & {"aiosqlite", "sqlite3", "statistics", "dotenv", "rich"}, args


@pytest.mark.sqlite
def test_piped_everyday_commands_load_no_rich_and_no_hashing(tmp_path: Path) -> None:
    """Scripts pipe dbtool: messages and tables are then plain text (Rich is for terminals),
    and reading users never loads hashing or the legacy-hash verifiers."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    loaded_modules("--url", url, "init")
    for email in ("ada@example.com", "bob@example.com"):
        loaded_modules("--url", url, "users", "add", email, "--password-stdin",
                       stdin="long enough pw\n")  # fmt: skip
    # (--limit 1: a page of a longer list, with its hints under the table)
    for args in (("ping",), ("info",), ("users", "show", "ada@example.com"), ("users", "list"),
                 ("users", "list", "--limit", "1"), ("users", "export"),
                 ("pool-status",)):  # fmt: skip
        loaded = loaded_modules("--url", url, *args)
        assert "sqlalchemy" in loaded, args
        unwanted = {"rich", "pwdlib", "argon2", "passlib", "email_validator", "alembic"}
        assert not loaded & unwanted, (args, sorted(loaded & unwanted))


# Records whether the cyclic garbage collector is on around the command's first step, and
# after `main()` returns to its caller.
GC_PROBE = """
import gc, json, sys
from dbtool.commands import runtime as command
seen = []
run = command.Command.run
def recording_run(self, coroutine):
    seen.append(gc.isenabled())
    try:
        return run(self, coroutine)
    finally:
        seen.append(gc.isenabled())
command.Command.run = recording_run
sys.argv = ["dbtool", *json.loads(sys.argv[1])]
from dbtool.app import main
try:
    main()
except SystemExit:
    pass
print(json.dumps({"steps": seen, "after": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("args", [("ping",), ("--version",), ("users", "list", "--json")])
def test_start_up_runs_without_the_garbage_collector(
    initialised: Dbtool, args: tuple[str, ...]
) -> None:
    """The collector is paused while the command starts (imports, engine, first connection)
    and back on, with the start-up's objects frozen, from the command's next step on, and
    for whoever called main()."""
    argv = ["--url", initialised.url, *args] if args != ("--version",) else list(args)
    done = subprocess.run([sys.executable, "-c", GC_PROBE, json.dumps(argv)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after"] is True
    if args == ("--version",):
        assert report["steps"] == []
        return
    steps = report["steps"]
    assert steps[:2] == [False, True], steps  # paused for the first step, then resumed
    assert len(steps) >= 4 and all(steps[2:]), steps
    assert report["frozen"] > 10_000  # SQLAlchemy's objects, out of the collector's way


@pytest.mark.parametrize(
    "message", ["plain", "tab\tand\ttabs", "cr\rbell\x07 esc\x1b[31m", "ünï ✓", "x" * 300,
                "[bold]markup[/bold]", "two\nlines", "bad \udcff utf-8"],
)  # fmt: skip
def test_plain_messages_are_what_rich_prints(message: str) -> None:
    import io

    from rich.console import Console
    from rich.text import Text

    from dbtool.render import console as output

    for prefix, style in (("error: ", "bold red"), ("warning: ", "bold yellow"), ("✓ ", "green")):
        rich = io.StringIO()
        Console(file=rich, highlight=False, soft_wrap=True).print(
            Text.assemble((prefix, style), output.printable(message))
        )
        plain = io.StringIO()
        saved, sys.stderr = sys.stderr, plain
        try:
            output._message(prefix, style, message)
        finally:
            sys.stderr = saved
        assert plain.getvalue() == rich.getvalue()


@pytest.mark.parametrize("columns", ["80", "30", None])
@pytest.mark.parametrize(
    "message", ["showing 1-50 of 9,000 users (use --limit / --offset, or --all)",
                "next page: --after 66e1bae4-9d63-4490-978e-130b54eddbaf", "tab\there",
                "ünï ✓ wide", "x" * 300, "two\nlines", ""],
)  # fmt: skip
def test_wrapped_notes_are_what_rich_prints(
    message: str, columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hints under a table fold to the width as Rich folds them; one that fits is written
    without Rich, exactly as Rich writes it."""
    import io

    from rich.text import Text

    from dbtool.render import console as output

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    printed: dict[str, str] = {}
    for way in ("rich", "dbtool"):
        captured = io.StringIO()
        monkeypatch.setattr(sys, "stderr", captured)
        if way == "rich":
            output.err_console().print(Text(output.printable(message)), soft_wrap=False)
        else:
            output.note(message, wrap=True)
        printed[way] = captured.getvalue()
    assert printed["dbtool"] == printed["rich"]
