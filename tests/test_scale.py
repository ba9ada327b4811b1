"""Lists and counts that stay flat as the table grows: `users list` pages (first, and deep
with --after) are read from an index in list order, never sorted; `--after` pages through
every user exactly once, ties in creation time included; applications' user models without
an index on their creation time are listed by primary key; `info` estimates the rows of
large PostgreSQL tables unless --exact."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from tests.helpers import Dbtool, assert_clean_error, run_sql

PASSWORD = "long enough pw"
HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$ExDYM8hOYqkOufkaUmEYLQ"
    "$dYkCsxF5tiXOUZSYWoF3jjrkC/XaQ9mNM9f3rGHNQpA"
)


def fill(url: str, count: int) -> None:
    """`count` users created one second apart (user1 the newest), in the stored forms
    SQLAlchemy writes, straight through SQL."""
    if url.startswith("postgresql"):
        run_sql(
            url,
            "INSERT INTO users (id, email, username, hashed_password, is_active, is_superuser,"
            " created_at, updated_at) SELECT gen_random_uuid(), 'u' || g || '@example.com',"
            " 'u' || g, 'x', true, false, now() - g * interval '1 second', now()"
            f" FROM generate_series(1, {count}) AS g",
        )
        run_sql(url, "ANALYZE users")
        return
    if make_url(url).get_backend_name() in ("mysql", "mariadb"):
        run_sql(
            url,
            f"INSERT INTO users (id, email, username, hashed_password, is_active, is_superuser,"
            " created_at, updated_at) SELECT REPLACE(UUID(), '-', ''), CONCAT('u', seq,"
            " '@example.com'), CONCAT('u', seq), 'x', 1, 0,"
            " UTC_TIMESTAMP(6) - INTERVAL seq SECOND, UTC_TIMESTAMP(6)"
            f" FROM seq_1_to_{count}",  # MariaDB's Sequence engine
        )
        run_sql(url, "ANALYZE TABLE users")
        return
    run_sql(
        url,
        f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {count})"
        " INSERT INTO users (id, email, username, hashed_password, is_active, is_superuser,"
        " created_at, updated_at) SELECT lower(hex(randomblob(16))), 'u' || n || '@example.com',"
        " 'u' || n, 'x', 1, 0,"
        " strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || n || ' seconds') || '.000000',"
        " strftime('%Y-%m-%d %H:%M:%S', 'now') || '.000000' FROM g",
    )


def list_query(url: str, after: tuple[Any, ...] | None = None) -> str:
    """The SQL `users list` sends for a first page, or a page after the user with `after`
    as its list key, with the values written in."""
    from dbtool.models.user_model import load_models
    from dbtool.users.service import UserFilter, after_condition, filtered

    model = load_models(None, None, None).user
    query = filtered(select(*model.public_columns), UserFilter(), model).limit(50)
    if after is not None:
        query = query.where(after_condition(model, after))
    dialect = make_url(url).get_dialect()()
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def plan(url: str, sql: str) -> str:
    if url.startswith("postgresql"):
        return "\n".join(row[0] for row in run_sql(url, f"EXPLAIN {sql}"))
    if url.startswith("mysql"):  # key used, and "Using filesort" when it sorts
        return "\n".join(" ".join(map(str, row)) for row in run_sql(url, f"EXPLAIN {sql}"))
    return "\n".join(str(row[-1]) for row in run_sql(url, f"EXPLAIN QUERY PLAN {sql}"))


def test_pages_are_read_from_the_list_index_never_sorted(initialised: Dbtool) -> None:
    fill(initialised.url, 20_000)
    created, key = run_sql(initialised.url, "SELECT created_at, id FROM users "
                           "ORDER BY created_at, id LIMIT 1 OFFSET 10000")[0]  # fmt: skip
    if isinstance(created, str):  # SQLite, read without SQLAlchemy's types
        created = datetime.fromisoformat(created)
    if isinstance(key, str):  # SQLite and MariaDB: the 32 hex digits of SQLAlchemy's Uuid
        key = uuid.UUID(key)
    for sql in (list_query(initialised.url), list_query(initialised.url, (created, key))):
        shown = plan(initialised.url, sql)
        assert "ix_users_created_at_id" in shown, shown
        assert "Sort" not in shown and "TEMP B-TREE" not in shown, shown
        assert "filesort" not in shown, shown


def test_after_pages_through_every_user_once(initialised: Dbtool) -> None:
    rows = "".join(json.dumps({"email": f"p{n}@example.com", "password": PASSWORD}) + "\n"
                   for n in range(57))  # fmt: skip
    # One import: one creation time for all of them, so only the id orders them.
    imported = initialised("users", "import", "-", "--format", "jsonl", input=rows)
    assert imported.exit_code == 0, imported.output
    everyone = [user["id"] for user in json.loads(initialised("users", "list", "--all",
                                                              "--json").stdout)]  # fmt: skip
    seen: list[str] = []
    after: list[str] = []
    while True:
        page = initialised("users", "list", "--json", "--limit", "10", *after)
        assert page.exit_code == 0, page.output
        ids = [user["id"] for user in json.loads(page.stdout)]
        seen += ids
        if len(ids) < 10:
            break
        assert f"next page: --after {ids[-1]}" in page.stderr
        after = ["--after", ids[-1]]
    assert seen == everyone and len(set(seen)) == 57
    # --after takes an email (or username) too: the users after that one, in list order.
    listed = json.loads(initialised("users", "list", "--all", "--json").stdout)
    middle = listed[20]["email"]
    by_email = initialised("users", "list", "--json", "--limit", "3", "--after", middle)
    assert [user["id"] for user in json.loads(by_email.stdout)] == everyone[21:24]
    assert f"showing 3 after {middle} of 57 users" in by_email.stderr
    last = initialised("users", "list", "--after", listed[-1]["email"])
    assert last.exit_code == 0 and "that was the last of 57" in last.stderr
    assert_clean_error(initialised("users", "list", "--after", "nobody@example.com"), 1,
                       "no user matches 'nobody@example.com'")  # fmt: skip
    assert_clean_error(initialised("users", "list", "--all", "--after", "p0@example.com"), 2,
                       "--after goes with a page")  # fmt: skip


def test_a_user_model_without_a_creation_index_is_listed_by_primary_key(
    database_url: str,
) -> None:
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.intid_app:Base"})
    assert dbtool("init").exit_code == 0
    for name in ("c", "a", "b"):
        added = dbtool("users", "add", f"{name}@example.com", "--password-stdin", "--set",
                       f"full_name={name.upper()}", input=PASSWORD)  # fmt: skip
        assert added.exit_code == 0, added.output
    # Newest first in time would put 'b' first; the primary key (1, 2, 3) decides.
    run_sql(database_url, "UPDATE accounts SET created_at = :t WHERE email = 'b@example.com'",
            {"t": datetime(2000, 1, 1, tzinfo=UTC)})  # fmt: skip
    listed = json.loads(dbtool("users", "list", "--json").stdout)
    assert [user["id"] for user in listed] == [1, 2, 3]
    page = dbtool("users", "list", "--json", "--after", "1")
    assert [user["email"] for user in json.loads(page.stdout)] == ["a@example.com",
                                                                   "b@example.com"]  # fmt: skip


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_info_estimates_large_postgres_tables_unless_exact(initialised: Dbtool) -> None:
    fill(initialised.url, 120_000)
    estimated = json.loads(initialised("info", "--json").stdout)["tables"]
    assert estimated[0]["rows_estimated"] is True
    assert abs(estimated[0]["rows"] - 120_000) < 12_000  # the planner's figure, near enough
    text = initialised("info")
    assert "about " in text.stdout and "(estimated; --exact counts them)" in text.stdout
    exact = json.loads(initialised("info", "--json", "--exact").stdout)["tables"]
    assert exact == [{"name": "users", "rows": 120_000}]


def test_info_counts_small_tables_exactly(initialised: Dbtool) -> None:
    fill(initialised.url, 500)
    tables = json.loads(initialised("info", "--json").stdout)["tables"]
    assert tables == [{"name": "users", "rows": 500}]


def test_imported_users_without_ids_get_random_ids(initialised: Dbtool) -> None:
    """Made by the database on PostgreSQL (gen_random_uuid), by dbtool on SQLite: version 4
    UUIDs either way, one per user; the file's own ids are kept."""
    given = uuid.uuid4()
    rows = "email,hashed_password,id\n" + "".join(
        f'n{n}@example.com,"{HASH}",{given if n == 0 else ""}\n' for n in range(300)
    )
    imported = initialised("users", "import", "-", "--format", "csv", input=rows)
    assert imported.exit_code == 0, imported.output
    ids = [uuid.UUID(user["id"]) for user in json.loads(initialised("users", "list", "--all",
                                                                  "--json").stdout)]  # fmt: skip
    assert len(set(ids)) == 300 and given in ids
    assert all(key.version == 4 for key in ids)


@pytest.mark.sqlite
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_without_json_functions_imports_through_the_staging_table(
    initialised: Dbtool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SQLite built without its JSON functions: batches go through executemany and the
    staging table, with the same result."""
    from dbtool.backends.sqlite import SQLite

    async def no_json(self: object, conn: object) -> bool:
        return False

    monkeypatch.setattr(SQLite, "rows_as_json", no_json)
    rows = "email,hashed_password\n" + "".join(f'j{n}@example.com,"{HASH}"\n' for n in range(30))
    imported = initialised("users", "import", "-", "--format", "csv", "--batch-size", "7",
                           input=rows)  # fmt: skip
    assert imported.exit_code == 0, imported.output
    again = initialised("users", "import", "-", "--format", "csv", input=rows)
    assert again.exit_code == 4 and "j0@example.com" in again.stderr  # conflicts explained
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(30,)]


@pytest.mark.sqlite
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_import_gives_the_connection_its_page_cache_back(initialised: Dbtool) -> None:
    """An application's pooled connection keeps its own settings after an import, whether
    the import succeeded or failed on a conflict."""
    import asyncio
    import io

    from sqlalchemy import text

    from dbtool.db import Database
    from dbtool.formats import Format
    from dbtool.transfer.importing import (
        ImportConflictError,
        import_fields,
        import_users,
        read_records,
    )

    async def run() -> list[int]:
        async with Database.from_url(initialised.url, pool_size=1, max_overflow=0) as db:

            async def imported() -> int:
                rows = io.StringIO(f'email,hashed_password\nc@example.com,"{HASH}"\n')
                fields = import_fields(db.user_model)
                await import_users(db, read_records(rows, Format.CSV, fields))
                async with db.session() as session:
                    return int((await session.execute(text("PRAGMA cache_size"))).scalar_one())

            first = await imported()
            with pytest.raises(ImportConflictError):  # the same user again
                await imported()
            async with db.session() as session:
                after_conflict = (await session.execute(text("PRAGMA cache_size"))).scalar_one()
            return [first, int(after_conflict)]

    assert asyncio.run(run()) == [-2000, -2000]


def test_init_adds_the_list_index_to_a_table_made_without_it(initialised: Dbtool) -> None:
    """A `users` table from before the index: `init --sql` shows the CREATE INDEX and changes
    nothing; `init` creates it and says so."""
    index = "ix_users_created_at_id"
    backend = make_url(initialised.url).get_backend_name()
    catalog = {
        "postgresql": "SELECT indexname FROM pg_indexes WHERE indexname = :name",
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND name = :name",
        "mysql": "SELECT DISTINCT index_name FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND index_name = :name",
    }[backend]
    run_sql(initialised.url, f"DROP INDEX {index}" + " ON users" * (backend == "mysql"))
    shown = initialised("init", "--sql")
    assert shown.exit_code == 0, shown.output
    assert f"CREATE INDEX {index} ON users (created_at, id);" in shown.stdout
    assert "CREATE TABLE" not in shown.stdout
    assert run_sql(initialised.url, catalog, {"name": index}) == []
    created = initialised("init", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["indexes_created"] == [f"{index} on users"]
    assert run_sql(initialised.url, catalog, {"name": index}) == [(index,)]
    again = json.loads(initialised("init", "--json").stdout)
    assert again["indexes_created"] == []
