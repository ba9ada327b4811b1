"""`users export` takes a fast path (COPY on PostgreSQL, raw rows on SQLite) where it can;
its output must be byte for byte what the general path writes, for every format, on tricky
values: quotes, commas, newlines, non-ASCII text, empty strings and NULLs, timestamps with
and without a fraction of a second, filters."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path

import pytest

from cli.exporting import _plain, _sqlite_ready, export_users, general_export
from cli.formats import Format
from cli.users import UserFilter
from tests.helpers import Dbtool, run_sql

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
    url: str, models: str | None, fmt: Format, selection: UserFilter, *, fast: bool = True
) -> tuple[str, str]:
    from cli.appmodels import load_models
    from cli.config import load_settings
    from cli.db import Database

    options = {"DBTOOL_MODELS": models} if models else {}
    settings = load_settings(url=url, options=options)

    async def both() -> tuple[str, str]:
        async with Database(settings) as db:
            model = load_models(settings.models, settings.user_model, settings.user_fields).user
            assert all(_plain(column) for column in model.table.columns)
            columns = [*model.public_names, model.password.name]
            fast_output, general = io.StringIO(), io.StringIO()
            async with db.session(readonly=True) as session:
                if db.settings.backend == "sqlite":  # the fast path is taken, or not
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


@pytest.mark.parametrize("fmt", list(Format))
def test_the_fast_export_writes_what_the_general_one_writes(database_url: str, fmt: Format) -> None:
    models = "tests.apps.template_app:SQLModel"  # free text (full_name), created_at
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": models})
    assert dbtool("init").exit_code == 0
    for number, name in enumerate([*NAMES, None]):
        args = ["--set", f"full_name={name}"] if name is not None else []
        args += ["--set", f"created_at={TIMES[number % len(TIMES)]}"]
        if number % 3 == 0:
            args.append("--inactive")
        added = dbtool("users", "add", f"u{number}@example.com", "--password-stdin", *args,
                       input="long enough pw")  # fmt: skip
        assert added.exit_code == 0, added.output
    for selection in (UserFilter(), UserFilter(active=False), UserFilter(search="U1"),
                      UserFilter(search="nobody")):  # fmt: skip
        fast, general = exports(database_url, models, fmt, selection)
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
        {"id": str(uuid.uuid4()), "t": True, "f": False},
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
