"""Large plain imports on every backend: whole blocks of a clean export checked at once and
handed to the database's loader, and (PostgreSQL) an empty table's indexes built once after
the load. Whatever the path, the rows stored are those the file says, a bad value is named
by its line, a repeated email by its lines, and the table's indexes are as they were."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from tests.helpers import Dbtool, assert_clean_error, run_sql

ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("imported password")
BCRYPT = "$2b$04$" + "a" * 53
COLUMNS = [
    "id", "email", "username", "is_active", "is_superuser", "created_at", "updated_at",
    "hashed_password",
]  # fmt: skip
ROWS = 3000  # more than a batch (and many blocks) of the import


def export_rows(count: int, start: int = 0) -> list[list[str]]:
    """Rows as `users export --include-hashes` writes them, with the variety such files
    have: both hash schemes, flags in several spellings, offsets other than UTC."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(start, start + count):
        created = base + timedelta(seconds=n, microseconds=n % 7)
        zone = timedelta(hours=n % 3)
        stamp = created.astimezone(timezone(zone)).isoformat()
        rows.append([
            str(uuid.UUID(int=n + 1, version=4)), f"user{n}.x+tag@mail{n % 5}.example.com",
            f"user_{n}", ("true", "1", "yes")[n % 3], ("false", "0", "no")[n % 3],
            stamp, stamp, ARGON2 if n % 2 else BCRYPT,
        ])  # fmt: skip
    return rows


def write(path: Path, rows: list[list[str]], header: list[str] = COLUMNS, **kw: Any) -> Path:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, **{"lineterminator": "\n", **kw})
        writer.writerow(header)
        writer.writerows(rows)
    return path


def stored(url: str) -> list[tuple[Any, ...]]:
    rows = run_sql(url, f"SELECT {', '.join(COLUMNS)} FROM users")
    return sorted(
        (str(r[0]).replace("-", ""), r[1], r[2], bool(r[3]), bool(r[4]),
         _utc(r[5]), _utc(r[6]), r[7])
        for r in rows
    )  # fmt: skip


def expected(rows: list[list[str]]) -> list[tuple[Any, ...]]:
    truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    return sorted(
        (r[0].replace("-", ""), r[1], r[2], truth[r[3]], truth[r[4]],
         _utc(datetime.fromisoformat(r[5])), _utc(datetime.fromisoformat(r[6])), r[7])
        for r in rows
    )  # fmt: skip


def _utc(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite's text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def indexes(url: str) -> list[tuple[Any, ...]]:
    if not url.startswith("postgresql"):
        return []
    return run_sql(
        url,
        "SELECT indexname, indexdef, obj_description(format('%I', indexname)::regclass)"
        " FROM pg_indexes WHERE tablename = 'users' ORDER BY indexname",
    )


def summary(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_a_plain_export_is_stored_exactly_as_the_file_says(
    initialised: Dbtool, tmp_path: Path, backend: str
) -> None:
    rows = export_rows(ROWS)
    path = write(tmp_path / "users.csv", rows)
    before = indexes(initialised.url)
    report = summary(initialised("users", "import", str(path), "--json"))
    assert report["rows"] == report["inserted"] == ROWS
    assert stored(initialised.url) == expected(rows)
    assert indexes(initialised.url) == before
    # Built after the load where the database can (an empty table): all four of them.
    assert report["indexes_built_after_load"] == (4 if backend == "postgres" else 0)

    # Into a table that is not empty: the indexes stay, the same rows arrive.
    more = export_rows(ROWS, start=ROWS)
    report = summary(initialised("users", "import", str(write(tmp_path / "more.csv", more)),
                                 "--json"))  # fmt: skip
    assert report["inserted"] == ROWS and report["indexes_built_after_load"] == 0
    assert stored(initialised.url) == expected(rows + more)


def test_rows_outside_the_plain_form_are_read_one_by_one_in_place(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """Capitals, every field quoted, a file without ids, CRLF line ends: the same result
    as plain rows (emails lower case, ids made)."""
    rows = export_rows(ROWS)
    rows[1234][1] = rows[1234][1].upper()
    header = COLUMNS[1:]
    path = write(tmp_path / "users.csv", [r[1:] for r in rows], header, lineterminator="\r\n")
    write(tmp_path / "quoted.csv", rows, quoting=csv.QUOTE_ALL)
    report = summary(initialised("users", "import", str(path), "--json"))
    assert report["inserted"] == ROWS
    got = {r[1]: r[2:] for r in stored(initialised.url)}
    want = {r[1]: r[2:] for r in expected(rows)}
    want[rows[1234][1].lower()] = want.pop(rows[1234][1])
    assert got == want
    ids = run_sql(initialised.url, "SELECT count(DISTINCT id) FROM users")
    assert ids == [(ROWS,)]
    run_sql(initialised.url, "DELETE FROM users")
    summary(initialised("users", "import", str(tmp_path / "quoted.csv"), "--json"))
    assert {r[1]: r[2:] for r in stored(initialised.url)} == want


def seed(dbtool: Dbtool) -> None:
    """One user already there: the import keeps the table's indexes."""
    result = dbtool("users", "add", "seed@example.org", "--password-stdin",
                    input="long enough pw\n")  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("empty", [True, False], ids=["empty", "with-rows"])
def test_a_value_the_database_refuses_is_named_by_its_line(
    initialised: Dbtool, tmp_path: Path, empty: bool
) -> None:
    """February 30th looks plain to the block check; the database (or the conversion for
    it) refuses it, and the import names the line, writing nothing."""
    if not empty:
        seed(initialised)
    rows = export_rows(ROWS)
    rows[1999][5] = "2026-02-30T10:00:00+00:00"  # file line 2001
    path = write(tmp_path / "users.csv", rows)
    before = indexes(initialised.url)
    result = initialised("users", "import", str(path))
    assert_clean_error(result, 1, "1 invalid row")
    assert "line 2001" in result.stderr and "created_at" in result.stderr
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0 if empty else 1,)]
    assert indexes(initialised.url) == before


@pytest.mark.parametrize("empty", [True, False], ids=["empty", "with-rows"])
def test_a_repeated_email_is_named_by_its_lines_and_nothing_is_written(
    initialised: Dbtool, tmp_path: Path, empty: bool
) -> None:
    """Distinct ids, one email twice, far apart: into an empty PostgreSQL table the unique
    index built after the load finds it, and the file is read again the usual way to name
    the lines; into one with rows, the index refuses the block, read again row by row (one
    batch: the report finds both lines)."""
    if not empty:
        seed(initialised)
    rows = export_rows(ROWS)
    rows[2800][1] = rows[3][1]  # lines 5 and 2802
    path = write(tmp_path / "users.csv", rows)
    before = indexes(initialised.url)
    result = initialised("users", "import", str(path))
    assert_clean_error(result, 4, "conflicting users")
    assert f"email {rows[3][1]!r} appears 2 times (first on line 5, last on 2802)" in result.stderr
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0 if empty else 1,)]
    assert indexes(initialised.url) == before


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_indexes_come_back_exactly_as_they_were(initialised: Dbtool, tmp_path: Path) -> None:
    """Partial, expression, deferrable and commented indexes; one that a foreign key
    needs. Dropped and built again, or kept where they must be, the catalogue reads the
    same afterwards."""
    for statement in (
        "CREATE UNIQUE INDEX ix_active_names ON users (lower(username)) WHERE is_active",
        "CREATE INDEX ix_created_brin ON users USING brin (created_at)",
        "ALTER TABLE users ADD CONSTRAINT uq_pair UNIQUE (email, username) DEFERRABLE",
        "CREATE INDEX ix_commented ON users (updated_at)",
        "COMMENT ON INDEX ix_commented IS 'kept: a comment is not in its definition'",
        "CREATE TABLE notes (owner_email varchar(320) REFERENCES users (email))",
    ):
        run_sql(initialised.url, statement)
    before = indexes(initialised.url)
    constraints = "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint ORDER BY 1"
    constraints_before = run_sql(initialised.url, constraints)
    path = write(tmp_path / "u.csv", export_rows(ROWS))
    report = summary(initialised("users", "import", str(path), "--json"))
    # pk, the created_at index, the username constraint, the partial, BRIN and pair
    # indexes; kept: the commented one and the email constraint that notes references.
    assert report["indexes_built_after_load"] == 6
    assert indexes(initialised.url) == before
    assert run_sql(initialised.url, constraints) == constraints_before


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_table_another_session_uses_keeps_its_indexes(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """Another transaction reading the table: the import does not wait for it, and loads
    with the indexes in place (no one may see the table without them)."""
    import psycopg

    url = initialised.url.replace("+asyncpg", "")
    with psycopg.connect(url) as other:
        other.execute("SELECT count(*) FROM users").fetchone()  # holds ACCESS SHARE
        path = write(tmp_path / "u.csv", export_rows(500))
        report = summary(initialised("users", "import", str(path), "--json"))
        assert report["inserted"] == 500 and report["indexes_built_after_load"] == 0
        other.rollback()


@pytest.mark.parametrize("policy", ["skip", "update"])
def test_skip_and_update_store_what_the_row_by_row_path_stores(
    dbtool: Dbtool, new_database: Any, tmp_path: Path, policy: str
) -> None:
    """Into a half-full table, a plain CSV (blocks, through the staging table) and the same
    rows as JSON Lines (read and validated row by row) leave identical tables."""
    rows = export_rows(ROWS)
    changed = [[*row[:7], ARGON2] for row in rows]  # the half present have bcrypt ones
    results = []
    for fmt in ("csv", "jsonl"):
        target = Dbtool(new_database())
        assert target("init").exit_code == 0
        half_file = write(tmp_path / "half.csv", rows[::2])
        assert target("users", "import", str(half_file)).exit_code == 0
        path = tmp_path / f"all.{fmt}"
        if fmt == "csv":
            write(path, changed)
        else:
            path.write_text(
                "".join(json.dumps(dict(zip(COLUMNS, r, strict=True))) + "\n" for r in changed)
            )
        report = summary(target("users", "import", str(path), "--on-conflict", policy, "--json"))
        half = len(rows[::2])
        assert report["inserted"] == ROWS - half
        assert report["skipped" if policy == "skip" else "updated"] == half
        results.append(stored(target.url))
    assert results[0] == results[1]
    hashes = {row[7] for row in results[0]}
    assert hashes == ({ARGON2, BCRYPT} if policy == "skip" else {ARGON2})


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_role_that_does_not_own_the_table_imports_with_its_indexes(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """Only the table's owner may drop its indexes: an application's role with INSERT and
    SELECT alone imports into the empty table the usual way, without an error."""
    from sqlalchemy.engine import make_url

    role = f"dbtool_importer_{uuid.uuid4().hex[:8]}"
    run_sql(initialised.url, f"CREATE ROLE {role} LOGIN")
    try:
        run_sql(initialised.url, f"GRANT SELECT, INSERT ON users TO {role}")
        url = make_url(initialised.url).set(username=role).render_as_string(hide_password=False)
        path = write(tmp_path / "u.csv", export_rows(500))
        report = summary(Dbtool(url)("users", "import", str(path), "--json"))
        assert report["inserted"] == 500 and report["indexes_built_after_load"] == 0
    finally:
        run_sql(initialised.url, f"DROP OWNED BY {role}")
        run_sql(initialised.url, f"DROP ROLE {role}")


@pytest.mark.parametrize("at_boundary", [False, True], ids=["inside", "at-a-block-end"])
def test_a_record_over_two_lines_keeps_every_line_number(
    initialised: Dbtool, tmp_path: Path, at_boundary: bool
) -> None:
    """A quoted field holding a new line makes one record of two lines, also where that
    new line ends a block the reader checks (the record then runs on into the next block):
    the rows after it keep their true line numbers."""
    from dbtool.transfer.readers import BLOCK_CHARS

    rows = export_rows(ROWS)
    header = ",".join(COLUMNS) + "\n"

    def body() -> str:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        return text.getvalue()

    def inner(row: int) -> int:  # where the field's new line is, after the header
        rows[row][2] = "two\nlines"  # an invalid username: rejected, by its first line
        return body().index("two\nlines") + 3

    two = 1000
    if at_boundary:
        # A row whose new line falls just short of a block's end (the reader reads
        # BLOCK_CHARS at a time and checks up to the last new line read), then an earlier
        # username padded until it is the block's last.
        for two in range(600, 2000):
            short = (inner(two) // BLOCK_CHARS + 1) * BLOCK_CHARS - 1 - inner(two)
            if short <= 100:
                break
            rows[two][2] = f"user_{two}"
        rows[two - 5][2] += "x" * short
        assert (inner(two) + 1) % BLOCK_CHARS == 0
    else:
        inner(two)
    rows[2500][1] = "not an email"
    path = tmp_path / "users.csv"
    path.write_text(header + body())
    result = initialised("users", "import", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"line {two + 2}" in result.stderr and "username" in result.stderr
    assert "line 2503" in result.stderr and "email" in result.stderr
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(ROWS - 2,)]
