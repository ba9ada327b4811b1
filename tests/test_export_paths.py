"""`users export` takes a fast path (COPY on PostgreSQL, raw rows on SQLite) where it can;
its output must be byte for byte what the general path writes, for every format, on tricky
values: quotes, commas, newlines, non-ASCII text, empty strings and NULLs, timestamps with
and without a fraction of a second, filters."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from dbtool.backends.sqlite.export import _sqlite_ready
from dbtool.formats import Format
from dbtool.transfer.exporting import _plain, export_users, general_export
from dbtool.users.service import UserFilter
from tests.helpers import Dbtool, assert_clean_error, raw_uuid, run_sql

NAMES = [
    'Ada "The Countess", née Byron',
    "two\nlines",
    "tab\there",
    "",
    "ünïcödé ✓ 𝄞",
    "back\\slash",
    "\\.",
    "semi;colon",
    "carriage\rreturn",
    " leading space",
    "unicode line sep \u2028 and control \x01",
]
TIMES = ["2024-02-29T23:59:59+00:00", "2024-03-01T00:00:00.000001+00:00",
         "1999-12-31T12:00:00.5+02:00"]  # fmt: skip


def exports(
    url: str,
    models: str | None,
    fmt: Format,
    selection: UserFilter,
    *,
    fast: bool = True,
    with_hash: bool = True,
) -> tuple[str, str]:
    from dbtool.config import load_settings
    from dbtool.db import Database
    from dbtool.models.user_model import load_models

    options = {"DBTOOL_MODELS": models} if models else {}
    settings = load_settings(url=url, options=options)

    async def both() -> tuple[str, str]:
        async with Database(settings) as db:
            model = load_models(settings.models, settings.user_model, settings.user_fields).user
            assert all(_plain(column) for column in model.table.columns)
            columns = [*model.public_names, *([model.password.name] if with_hash else [])]
            fast_output, general = io.StringIO(), io.StringIO()
            async with db.session(readonly=True) as session:
                if db.backend.name == "sqlite":  # the fast path is taken, or not
                    table_columns = [model.table.columns[name] for name in columns]
                    conn = await session.connection()
                    assert await _sqlite_ready(conn, model, table_columns) is fast
                count = await export_users(
                    session, selection, model=model, columns=columns, fmt=fmt, stream=fast_output
                )
                assert count == await general_export(
                    session, selection, model, columns, fmt, general
                )
            return fast_output.getvalue(), general.getvalue()

    return asyncio.run(both())


TEMPLATE_APP = "tests.apps.template_app:SQLModel"  # free text (full_name), created_at
SELECTIONS = (UserFilter(), UserFilter(active=False), UserFilter(search="U1"),
              UserFilter(search="nobody"))  # fmt: skip


def add_tricky_users(url: str) -> None:
    """A dozen users of the template app with every awkward name, some inactive."""
    dbtool = Dbtool(url, env={"DBTOOL_MODELS": TEMPLATE_APP})
    assert dbtool("init").exit_code == 0
    for number, name in enumerate([*NAMES, None]):
        args = ["--set", f"full_name={name}"] if name is not None else []
        args += ["--set", f"created_at={TIMES[number % len(TIMES)]}"]
        if number % 3 == 0:
            args.append("--inactive")
        added = dbtool("users", "add", f"u{number}@example.com", "--password-stdin", *args,
                       input="long enough pw")  # fmt: skip
        assert added.exit_code == 0, added.output


@pytest.mark.parametrize("fmt", list(Format))
def test_the_fast_export_writes_what_the_general_one_writes(database_url: str, fmt: Format) -> None:
    add_tricky_users(database_url)
    for selection in SELECTIONS:
        fast, general = exports(database_url, TEMPLATE_APP, fmt, selection)
        if database_url.startswith("postgresql") and fmt is Format.CSV:
            # COPY quotes a value that holds a carriage return (so that it reads back);
            # nothing else may differ.
            general = general.replace(",carriage\rreturn,", ',"carriage\rreturn",')
        assert fast == general


def test_the_built_in_model_exports_identically(initialised: Dbtool) -> None:
    for number in range(5):
        args = ["--superuser"] if number == 2 else []
        added = initialised("users", "add", f"b{number}@example.com", "--password-stdin", *args,
                            input="long enough pw")  # fmt: skip
        assert added.exit_code == 0
    for fmt in Format:
        fast, general = exports(initialised.url, None, fmt, UserFilter())
        assert fast == general
        assert fast.count("@example.com") == 5


def test_values_stored_by_other_tools_take_the_general_path(initialised: Dbtool) -> None:
    """A row written behind SQLAlchemy's back (CURRENT_TIMESTAMP: no fraction, no zone;
    a hyphenated id) is exported as the general path reads it."""
    added = initialised("users", "add", "a@example.com", "--password-stdin", input="long enough pw")
    assert added.exit_code == 0
    run_sql(
        initialised.url,
        "INSERT INTO users (id, email, username, hashed_password, is_active, is_superuser,"
        " created_at, updated_at) VALUES (:id, 'b@example.com', 'b', 'x', :t, :f,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        {"id": raw_uuid(initialised.url), "t": True, "f": False},
    )
    sqlite = initialised.url.startswith("sqlite")
    for fmt in Format:
        fast, general = exports(initialised.url, None, fmt, UserFilter(), fast=not sqlite)
        assert fast == general
        assert "b@example.com" in fast


def test_tricky_values_import_unchanged(database_url: str, tmp_path: Path) -> None:
    """What `users import` stores is what the file says, whatever the characters (SQLite
    carries each batch as JSON: non-ASCII, control characters, quotes and backslashes must
    come through it untouched)."""
    import csv

    models = "tests.apps.template_app:SQLModel"
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": models})
    assert dbtool("init").exit_code == 0
    path = tmp_path / "tricky.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "full_name", "password"])
        for number, name in enumerate(NAMES):
            writer.writerow([f"t{number}@example.com", name, "long enough pw"])
    imported = dbtool("users", "import", str(path), "--batch-size", "4")
    assert imported.exit_code == 0, imported.output
    stored = dict(run_sql(database_url, 'SELECT email, full_name FROM "user"'))
    expected = {f"t{number}@example.com": name or None for number, name in enumerate(NAMES)}
    assert {email: name or None for email, name in stored.items()} == expected


# --- SQLite: large tables are rendered by two readers (dbtool.backends.sqlite.chunks) ---


@pytest.fixture
def two_readers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Chunks of 2 rows, so that a dozen users take the two-reader path; the list collects
    the row counts of the chunks the second reader sends."""
    from dbtool.backends.sqlite import export as exporting

    monkeypatch.setattr(exporting, "SQLITE_CHUNK", 2)
    sent: list[int] = []
    receive = exporting._Worker.chunk

    async def chunk(self: exporting._Worker) -> tuple[int, bytes]:
        count, rendered = await receive(self)
        sent.append(count)
        return count, rendered

    monkeypatch.setattr(exporting._Worker, "chunk", chunk)
    return sent


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'big.db'}"


@pytest.mark.parametrize("fmt", list(Format))
def test_two_readers_write_what_the_general_path_writes(
    tmp_path: Path, two_readers: list[int], fmt: Format
) -> None:
    url = sqlite_url(tmp_path)
    add_tricky_users(url)
    for selection in SELECTIONS:
        two_readers.clear()
        fast, general = exports(url, TEMPLATE_APP, fmt, selection)
        assert fast == general
        # Every other chunk came from the second reader, the last one possibly empty.
        users = general.count("@example.com")
        assert sum(two_readers) == (users // 4) * 2 + max(0, users % 4 - 2)
        assert len(two_readers) == (users + 2) // 4


@pytest.mark.parametrize("first", [True, False], ids=["first-row", "last-row"])
def test_two_readers_find_a_value_stored_by_another_tool_in_either_half(
    tmp_path: Path, two_readers: list[int], first: bool
) -> None:
    """Each reader checks half of the rows; a value the rendering would get wrong (an
    upper-case id) in either half sends the whole export down the general path."""
    url = sqlite_url(tmp_path)
    add_tricky_users(url)
    (low,) = run_sql(url, 'SELECT min(rowid) FROM "user"')[0]
    (high,) = run_sql(url, 'SELECT max(rowid) FROM "user"')[0]
    run_sql(url, 'UPDATE "user" SET id = upper(id) WHERE rowid = :row',
            {"row": low if first else high})  # fmt: skip
    for fmt in Format:
        fast, general = exports(url, TEMPLATE_APP, fmt, UserFilter(), fast=False)
        assert fast == general
        assert two_readers == []  # nothing was rendered


def test_an_export_while_another_connection_writes_reads_alone(
    tmp_path: Path, two_readers: list[int]
) -> None:
    """When another connection holds the write lock, the export does not wait for it (the
    second reader could not be started on the same snapshot): it renders every chunk."""
    import sqlite3

    url = sqlite_url(tmp_path)
    add_tricky_users(url)
    writer = sqlite3.connect(tmp_path / "big.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE \"user\" SET full_name = 'changing' WHERE email = 'u0@example.com'")
    try:
        fast, general = exports(url, TEMPLATE_APP, Format.CSV, UserFilter())
    finally:
        writer.rollback()
        writer.close()
    assert fast == general
    assert "changing" not in fast
    assert two_readers == []


@pytest.fixture
def second_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Replaces the second reader's script with the given Python source."""
    from dbtool.backends.sqlite import chunks as sqlite_chunks

    def replace(source: str) -> None:
        script = tmp_path / "second_reader.py"
        script.write_text(source)
        monkeypatch.setattr(sqlite_chunks, "__file__", str(script))

    return replace


def test_a_second_reader_that_cannot_start_leaves_the_export_to_the_first(
    tmp_path: Path, two_readers: list[int], second_reader: Callable[[str], None]
) -> None:
    second_reader("import sys\nsys.stderr.write('unable to open database file\\n')\nsys.exit(1)\n")
    url = sqlite_url(tmp_path)
    add_tricky_users(url)
    fast, general = exports(url, TEMPLATE_APP, Format.JSON, UserFilter())
    assert fast == general
    assert two_readers == []


def test_a_second_reader_failing_midway_fails_the_export_cleanly(
    tmp_path: Path, two_readers: list[int], second_reader: Callable[[str], None]
) -> None:
    """It says why in one line (exit 1), and `-o` leaves no file behind."""
    second_reader(
        "import struct, sys\n"
        "def frame(count, data):\n"
        "    sys.stdout.buffer.write(struct.pack('!qQ', count, len(data)) + data)\n"
        "    sys.stdout.flush()\n"
        "sys.stdin.readline()\n"
        "frame(-1, b'ready')\n"
        "sys.stdin.readline()\n"
        "frame(-2, b'0')\n"
        "sys.stderr.write('disk I/O error\\n')\n"
        "sys.exit(1)\n"
    )
    url = sqlite_url(tmp_path)
    add_tricky_users(url)
    target = tmp_path / "users.csv"
    dbtool = Dbtool(url, env={"DBTOOL_MODELS": TEMPLATE_APP})
    result = dbtool("users", "export", "-o", str(target))
    assert_clean_error(result, 1, "second reader failed: disk I/O error")
    assert not target.exists()
    assert list(tmp_path.glob(".users.csv.*")) == []


def test_the_cli_exports_through_two_readers(tmp_path: Path, two_readers: list[int]) -> None:
    """Through the command, to a file and to standard output (bytes written past the text
    layer after the header written through it)."""
    url = sqlite_url(tmp_path)
    add_tricky_users(url)
    dbtool = Dbtool(url, env={"DBTOOL_MODELS": TEMPLATE_APP})
    target = tmp_path / "users.jsonl"
    assert dbtool("users", "export", "-o", str(target), "--include-hashes").exit_code == 0
    piped = dbtool("users", "export", "--format", "csv")
    assert piped.exit_code == 0, piped.output
    assert two_readers
    _, general_jsonl = exports(url, TEMPLATE_APP, Format.JSONL, UserFilter())
    assert target.read_text(encoding="utf-8") == general_jsonl
    _, general_csv = exports(url, TEMPLATE_APP, Format.CSV, UserFilter(), with_hash=False)
    assert piped.stdout == general_csv


def test_a_large_export_through_the_console_script(initialised: Dbtool, tmp_path: Path) -> None:
    """12,000 users: more than two 5,000-row chunks, so on SQLite the real second process
    renders every other one; the file is what the general path writes."""
    from tests.test_scale import fill

    fill(initialised.url, 12_000)
    target = tmp_path / "all.csv"
    result = initialised.run("users", "export", "--include-hashes", "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert "Exported 12,000 users" in result.stderr
    fast, general = exports(initialised.url, None, Format.CSV, UserFilter())
    assert target.read_text(encoding="utf-8") == general == fast


def test_an_export_whose_reader_leaves_ends_quietly(initialised: Dbtool) -> None:
    """`dbtool users export | head -1`: exit 1, nothing on stderr, no second process left."""
    import subprocess

    from tests.test_scale import fill

    fill(initialised.url, 12_000)
    process = initialised.spawn("users", "export")
    assert process.stdout is not None
    assert process.stdout.readline().startswith("id,email")
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr == ""
    left = subprocess.run(["pgrep", "-f", "sqlite_chunks.py"], capture_output=True, text=True)
    assert left.stdout == ""
