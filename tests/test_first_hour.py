"""The first hour with dbtool: output that fits, options anywhere, honest lists, help.

Rendering is checked on a real pseudo-terminal at fixed widths and with stdout piped.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import Dbtool, Terminal, assert_clean_error, run_sql

PASSWORD = "long enough pw"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
LONG_EMAIL = "first.middle.lastname.with.a.long.mailbox@subdomain.example-company.com"


def screen(*args: str, columns: int, env: dict[str, str] | None = None) -> list[str]:
    """The lines `dbtool ARGS` prints on a terminal `columns` wide, without escapes."""
    terminal = Terminal(*args, env={"COLUMNS": str(columns), **(env or {})})
    assert terminal.wait() == 0, terminal.transcript
    return [ANSI.sub("", line) for line in terminal.transcript.split("\n")]


def add(dbtool: Dbtool, email: str, *args: str) -> dict[str, object]:
    result = dbtool("users", "add", email, "--password-stdin", "--json", *args, input=PASSWORD)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


# --- 1. tables that fit ---------------------------------------------------------------------


@pytest.mark.parametrize("columns", [40, 60, 80, 120, 200])
def test_users_list_fits_and_keeps_what_matters_at_any_width(
    initialised: Dbtool, columns: int
) -> None:
    """Emails whole at every width; at 80 columns whether users are active and superusers
    (a 36-character UUID gives way first, and is then named as left out); ids whole when
    shown."""
    users = [add(initialised, email) for email in ("admin@example.com", "ada@example.org")]
    lines = screen("--url", initialised.url, "users", "list", columns=columns)
    text = "\n".join(lines)
    header = next(line for line in lines if "email" in line)
    for user in users:
        assert str(user["email"]) in text, text
        if " id " in f" {header} ":  # shown: whole, it can be copied
            assert str(user["id"]) in text, text
    assert "…" not in text
    assert all(len(line.rstrip()) <= columns for line in lines), text
    if columns >= 80:
        assert "is_active" in header and "is_superuser" in header, text
    if columns >= 120:  # a row per user, with id and email side by side
        assert any(str(users[0]["id"]) in line and "admin@example.com" in line for line in lines)
    if 60 <= columns < 120:
        assert "not shown at this width: id" in text or " id " in f" {header} ", text


def test_piped_lists_are_tab_separated_and_never_cut(initialised: Dbtool) -> None:
    user = add(initialised, LONG_EMAIL)
    result = initialised.run("users", "list")
    header, row = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["id", "email", "username"]
    assert row.split("\t")[:2] == [str(user["id"]), LONG_EMAIL]
    config = Dbtool(initialised.url).run("config")
    assert "DBTOOL_PASSWORD_MIN_LENGTH\t8\tdefault" in config.stdout


@pytest.mark.parametrize("columns", [60, 80])
def test_config_shows_whole_setting_names(tmp_path: Path, columns: int) -> None:
    lines = screen("--url", f"sqlite:///{tmp_path / 'x.db'}", "config", columns=columns)
    text = "\n".join(lines)
    for name in ("DBTOOL_PASSWORD_MIN_LENGTH", "DBTOOL_POOL_PRE_PING", "DBTOOL_USER_PASSWORD"):
        assert name in text, text
    assert "…" not in text
    assert any("DBTOOL_POOL_TIMEOUT" in line and " 30 " in f"{line} " for line in lines)


# --- 2. global options anywhere -------------------------------------------------------------


def test_global_options_work_after_the_command(initialised: Dbtool, tmp_path: Path) -> None:
    from tests.test_config import run

    assert run("ping", "--url", initialised.url).exit_code == 0
    listed = run("users", "list", "--url", initialised.url, "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    env_file = tmp_path / "ci.env"
    env_file.write_text("DBTOOL_POOL_SIZE=9\n")
    shown = json.loads(run("config", "--json", "--env-file", str(env_file)).stdout)
    assert shown["DBTOOL_POOL_SIZE"]["value"] == 9
    debug = run("users", "show", "nobody@example.com", "--url", initialised.url, "--debug")
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    # after `--`, it is data, not an option
    data = run("--url", initialised.url, "users", "show", "--", "--url")
    assert_clean_error(data, 1, "no user matches '--url'")


# --- 3. lists tell the truth ---------------------------------------------------------------


def test_lists_say_how_many_there_are(initialised: Dbtool) -> None:
    rows = "".join(
        json.dumps({"email": f"person{n}@example.com", "password": PASSWORD}) + "\n"
        for n in range(120)
    )
    assert initialised("users", "import", "-", "--format", "jsonl", input=rows).exit_code == 0
    default = initialised("users", "list", "--csv")
    assert len(default.stdout.splitlines()) == 51  # header + the default 50
    assert "showing 1-50 of 120 users (use --limit / --offset, or --all)" in default.stderr
    page = initialised("users", "list", "--csv", "--limit", "30", "--offset", "100")
    assert len(page.stdout.splitlines()) == 21 and "120 users" in page.stderr
    beyond = initialised("users", "list", "--offset", "500")
    assert "no users after the first 500: there are 120" in beyond.stderr
    for args in (("--all",), ("--limit", "0")):
        everything = initialised("users", "list", "--json", *args)
        assert len(json.loads(everything.stdout)) == 120, args
    counted = json.loads(initialised("users", "list", "--json", "--count", "--limit", "5").stdout)
    assert counted["total"] == 120 and len(counted["users"]) == 5
    streamed = json.loads(initialised("users", "list", "--json", "--count", "--all").stdout)
    assert streamed["total"] == 120 and len(streamed["users"]) == 120
    assert isinstance(json.loads(initialised("users", "list", "--json").stdout), list)
    few = initialised("users", "list", "--search", "person11")
    assert "11 users" in few.stderr  # person11, person110-119


# --- 5. the password in the environment ------------------------------------------------------


def test_the_password_variable_works_everywhere_and_says_why_not_from_dotenv(
    initialised: Dbtool, tmp_path: Path
) -> None:
    env = {"DBTOOL_USER_PASSWORD": PASSWORD}
    assert initialised("users", "add", "env@example.com", env=env).exit_code == 0
    assert initialised("users", "check-password", "env@example.com", env=env).exit_code == 0
    wrong = initialised("users", "check-password", "env@example.com",
                        env={"DBTOOL_USER_PASSWORD": "not it at all"})  # fmt: skip
    assert wrong.exit_code == 1
    (tmp_path / ".env").write_text(f"DBTOOL_USER_PASSWORD={PASSWORD}\n")
    refused = initialised("users", "add", "dotenv@example.com")
    assert_clean_error(refused, 2, "is in the .env file", "process environment only")
    config = json.loads(initialised("config", "--json").stdout)["DBTOOL_USER_PASSWORD"]
    assert config == {"value": "(not set)", "source": "in .env, which is not read for it"}
    shown = initialised("config", "--json", env=env)
    assert json.loads(shown.stdout)["DBTOOL_USER_PASSWORD"]["value"] == "(set, hidden)"
    assert PASSWORD not in shown.stdout


# --- 6. suggestions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (("user", "list"), "Did you mean 'users'?"),
        (("pign",), "Did you mean 'ping'?"),
        (("users", "lst"), "Did you mean 'list'?"),
        (("users", "import-users"), "Did you mean 'import'?"),
    ],
)
def test_every_command_name_gets_a_suggestion(args: tuple[str, ...], suggestion: str) -> None:
    from tests.test_config import run

    assert_clean_error(run(*args), 2, suggestion)


def test_unknown_setting_names_draw_a_warning(tmp_path: Path) -> None:
    from tests.test_config import run

    result = run("config", env={"DBTOOL_POOL_SIZ": "3"})
    assert result.exit_code == 0
    assert "warning: DBTOOL_POOL_SIZ (from environment) is not a dbtool setting" in result.stderr
    assert "did you mean DBTOOL_POOL_SIZE?" in result.stderr
    assert "warning" not in run("config", env={"DBTOOL_POOL_SIZE": "3"}).stderr
    (tmp_path / ".env").write_text("DBTOOL_ECHOO=true\n")
    from_file = run("config")
    assert "DBTOOL_ECHOO (from .env file" in from_file.stderr and "DBTOOL_ECHO?" in from_file.stderr


# --- 7. help ---------------------------------------------------------------------------------


def test_every_command_has_examples_and_no_click_leftovers() -> None:
    from tests.test_config import run
    from tests.test_docs import all_commands

    for name in all_commands():
        result = run(*name.split(), "--help", env={"COLUMNS": "120"})
        assert result.exit_code == 0, name
        assert "Examples" in result.stdout, name
        for leftover in ("{", "<str>", "<int", "<float", "x>=", "<text>"):
            assert leftover not in result.stdout, (name, leftover, result.stdout)
    group = run("users", "--help", env={"COLUMNS": "200"}).stdout
    description = group.split("Options")[0]
    for sub in ("add", "list", "show", "update", "delete", "set-password", "check-password",
                "import", "export"):  # fmt: skip
        assert sub in description, sub
    plain = run()
    assert plain.exit_code == 0 and "Usage" in plain.stdout


# --- 8. progress and live output ------------------------------------------------------------


def test_the_wait_spinner_says_why_first_and_fits(tmp_path: Path) -> None:
    terminal = Terminal("--url", "postgresql://postgres@127.0.0.1:1/x", "ping", "--wait", "2",
                        env={"COLUMNS": "70"})  # fmt: skip
    assert terminal.wait() == 3
    # Each spinner frame redraws its line (carriage return, erase line).
    frames = re.split(r"\r|\n|\x1b\[2K", terminal.transcript)
    lines = [ANSI.sub("", frame) for frame in frames]
    spinner = [line for line in lines if "refused" in line and not line.startswith("error")]
    assert spinner, terminal.transcript
    assert all(len(line) <= 70 for line in spinner), spinner
    assert all(line[2:].startswith("connection refused") for line in spinner), spinner
    assert not any(line.count("127.0.0.1:1") > 1 for line in spinner)


def test_import_progress_is_labelled_from_a_file_and_from_stdin(
    initialised: Dbtool, tmp_path: Path
) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(
        json.dumps({"email": f"p{n}@example.com", "password": PASSWORD}) + "\n"
        for n in range(2500)))  # fmt: skip
    from_file = Terminal("--url", initialised.url, "users", "import", str(path),
                         "--batch-size", "100", env={"COLUMNS": "160"})  # fmt: skip
    from_file.expect("of 2,500 rows")
    from_file.expect("elapsed")
    from_file.send_raw(b"\x03")
    assert from_file.wait() == 130
    # Fewer lines than the terminal's input buffer holds, so that Ctrl-C gets through while
    # dbtool hashes them or waits for more input; either way it stops at once.
    piped = Terminal("--url", initialised.url, "users", "import", "-", "--format", "jsonl",
                     "--batch-size", "10", env={"COLUMNS": "160"})  # fmt: skip
    piped.send("\n".join(path.read_text().splitlines()[:25]))
    piped.expect("MB read")
    piped.expect("20 rows")  # two batches in: dbtool is about to wait for more input
    time.sleep(1)
    piped.send_raw(b"\x03")
    assert piped.wait(timeout=10) == 130
    assert "/?" not in piped.transcript


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_watch_says_when_it_refreshed_and_how_to_stop(initialised: Dbtool) -> None:
    terminal = Terminal("--url", initialised.url, "pool-status", "--watch", "--interval", "0.2",
                        env={"COLUMNS": "100"})  # fmt: skip
    terminal.expect("updated ")
    terminal.expect("Ctrl-C to quit")
    terminal.send_raw(b"\x03")
    assert terminal.wait() == 0, terminal.transcript


@pytest.mark.parametrize("width", [60, 80, 100, 119, 120, 200])
@pytest.mark.parametrize("known_total", [True, False])
def test_the_progress_line_fits_without_cutting_anything(width: int, known_total: bool) -> None:
    """Rich's own Progress, as the import draws it, at a million rows of a million: no part
    cut to "…" (at 80 columns it read `elapsed 0… · ETA 0:0…`)."""
    from rich.console import Console
    from rich.progress import Progress

    from dbtool.render.live import WIDE_PROGRESS, progress_columns

    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
    progress = Progress(*progress_columns(width, known_total=known_total), console=console,
                        auto_refresh=False)  # fmt: skip
    done = "1,000,000 of 1,000,000 rows" if width >= WIDE_PROGRESS else "1,000,000/1,000,000 rows"
    progress.add_task("import", total=1_000_000 if known_total else None, completed=999_999,
                      done=done if known_total else "999,999 rows · 1,234.5 MB read",
                      rate="123,456")  # fmt: skip
    console.print(progress.get_renderable())
    line = console.export_text().rstrip("\n")
    assert "…" not in line and "\n" not in line and len(line) <= width, line
    assert ("ETA" in line) is known_total and ("1,000,000" in line or "999,999" in line)


def test_messages_wrap_between_words_on_a_terminal(initialised: Dbtool, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(
        "email,password\n" + "".join(f"u{n}@example.com,{PASSWORD}\n" for n in range(3))
    )
    lines = screen("--url", initialised.url, "users", "import", str(path), "--on-conflict",
                   "skip", columns=40)  # fmt: skip
    summary = lines[next(i for i, line in enumerate(lines) if "✓ Imported 3 rows" in line) :]
    words = set(" ".join(summary).split())
    for word in ("inserted,", "updated,", "skipped,", "rejected"):
        assert word in words, summary  # never cut in two
    assert len(summary) > 2 and all(len(line.rstrip()) <= 40 for line in summary), summary


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_watch_fits_a_small_terminal_with_the_warnings_in_view(initialised: Dbtool) -> None:
    """80x24, twenty applications connected and a session idle in a transaction: the
    warning is on screen (it used to be below the bottom edge until Ctrl-C)."""
    import asyncio

    import asyncpg

    from tests.helpers import postgres_dsn

    async def hold(ready: asyncio.Event, stop: asyncio.Event) -> None:
        dsn = postgres_dsn(initialised.url.rsplit("/", 1)[1])
        connections = [await asyncpg.connect(dsn, server_settings={"application_name": f"app{n}"})
                       for n in range(20)]  # fmt: skip
        idle = connections[0].transaction()
        await idle.start()
        ready.set()
        await stop.wait()
        await idle.rollback()
        for connection in connections:
            await connection.close()

    async def scenario() -> str:
        ready, stop = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(hold(ready, stop))
        await ready.wait()
        args = ["pool-status", "--watch", "--interval", "0.3", "--idle-warning", "0.1"]
        terminal = Terminal("--url", initialised.url, *args, env={"COLUMNS": "80"}, rows=24)
        try:
            await asyncio.to_thread(terminal.expect, "idle in transaction for")
            terminal.send_raw(b"\x03")
            assert await asyncio.to_thread(terminal.wait) == 0
        finally:
            terminal.close()
            stop.set()
            await holder
        return terminal.transcript

    asyncio.run(scenario())


# --- 9. small inconsistencies ---------------------------------------------------------------


def test_small_inconsistencies(initialised: Dbtool, tmp_path: Path) -> None:
    add(initialised, "single@example.com")
    exported = initialised("users", "export")
    assert "Exported 1 user to stdout" in exported.stderr
    assert_clean_error(initialised("users", "list", "--active", "--inactive"), 2, "choose one")
    assert_clean_error(initialised("users", "export", "--active", "--inactive"), 2, "choose one")
    assert_clean_error(initialised("users", "update", "single@example.com", "--superuser",
                                   "--no-superuser"), 2, "choose one")  # fmt: skip
    added = add(initialised, "keys@example.com")
    assert added["created"] is True  # documented in the README
    updated = json.loads(initialised("users", "update", "keys@example.com", "--inactive",
                                     "--json").stdout)  # fmt: skip
    assert updated["changed"] is True
    missing = Dbtool(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")("init")
    assert_clean_error(missing, 3, "--create-database")
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(2,)]


def test_pages_say_next_only_when_there_is_one(initialised: Dbtool) -> None:
    first, second = (add(initialised, email) for email in ("a@example.com", "b@example.com"))
    page = initialised("users", "list", "--limit", "1")
    assert f"next page: --after {first['id']}" in page.stderr
    last = initialised("users", "list", "--limit", "1", "--after", str(first["id"]))
    assert "b@example.com" in last.stdout and "next page" not in last.stderr
    whole = initialised("users", "list", "--limit", "2")
    assert "next page" not in whole.stderr and "2 users" in whole.stderr
    one = initialised("users", "list", "--search", "a@")
    assert "1 user" in one.stderr and "1 users" not in one.stderr
    assert str(second["id"]) not in one.stdout


def test_an_import_lists_in_the_files_order(initialised: Dbtool, tmp_path: Path) -> None:
    """The rows of one import share no creation time: oldest first is the file's order,
    not the order of their random ids."""
    emails = [f"user{n:02}@example.com" for n in range(40)]
    path = tmp_path / "users.csv"
    path.write_text("email,password\n" + "".join(f"{e},{PASSWORD}\n" for e in emails))
    imported = initialised("users", "import", str(path))
    assert imported.exit_code == 0 and "Imported 40 rows" in imported.stderr
    listed = json.loads(initialised("users", "list", "--json").stdout)
    assert [user["email"] for user in listed] == emails


def test_check_advises_what_can_fix_it(initialised: Dbtool) -> None:
    run_sql(initialised.url, "ALTER TABLE users ADD COLUMN legacy TEXT")
    extra = initialised("check")
    assert_clean_error(extra, 1, "1 difference", "create a migration", "never changes")
    assert "run `dbtool init`)" not in extra.stderr
    run_sql(initialised.url, "DROP TABLE users")
    missing = initialised("check")
    assert_clean_error(missing, 1, "run `dbtool init`")


def test_a_mapped_class_given_as_the_models_is_named_in_words(initialised: Dbtool) -> None:
    env = {"DBTOOL_MODELS": "tests.apps.fastapi_users_app:User"}
    result = initialised("init", env=env)
    line = assert_clean_error(result, 2, "'User' (a class) is a mapped class", "DBTOOL_USER_MODEL")
    assert "Intercept" not in line and "Declarative" not in line


@pytest.mark.postgres
def test_verify_full_without_a_root_certificate_is_a_configuration_error(
    postgres_available: None, tmp_path: Path
) -> None:
    from tests.test_config import run

    url = f"postgresql://postgres@127.0.0.1:5432/postgres?sslmode=verify-full&x={uuid.uuid4()}"
    result = run("ping", env={"DATABASE_URL": url.split("&x=")[0], "HOME": str(tmp_path)})
    assert_clean_error(result, 2, "sslrootcert=PATH")
    missing = run("ping", env={"DATABASE_URL": url.split("&x=")[0] + "&sslrootcert=/nope.crt"})
    assert_clean_error(missing, 2, "sslrootcert=/nope.crt is not a readable file")
