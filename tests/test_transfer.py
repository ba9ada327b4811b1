"""users import / export on both backends: formats, validation, conflicts, all-or-nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from dbtool.db import Database
from dbtool.formats import Format
from dbtool.transfer.importing import import_fields, import_users, read_records
from dbtool.users import passwords
from tests.helpers import Dbtool, Terminal, assert_clean_error, run_sql

HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("imported password")
PASSWORD = "long enough pw"


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def users_in(dbtool: Dbtool) -> dict[str, tuple[Any, ...]]:
    rows = run_sql(
        dbtool.url,
        "SELECT email, username, hashed_password, is_active, is_superuser FROM users",
    )
    return {row[0]: (row[1], row[2], bool(row[3]), bool(row[4])) for row in rows}


def many(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"email": f"user{n}@example.com", "hashed_password": HASH} for n in range(start, count)]


def test_csv_import_with_plain_and_hashed_passwords(initialised: Dbtool, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "users.csv",
        [
            {"email": "Ada@Example.com", "username": "", "password": PASSWORD,
             "hashed_password": "", "is_active": "", "is_superuser": "true"},
            {"email": "bob@example.com", "username": "bobby", "password": "",
             "hashed_password": HASH, "is_active": "no", "is_superuser": ""},
        ],
    )  # fmt: skip
    result = initialised("users", "import", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("rows", "inserted", "updated", "skipped", "rejected")} == {
        "rows": 2, "inserted": 2, "updated": 0, "skipped": 0, "rejected": 0,
    }  # fmt: skip
    users = users_in(initialised)
    ada_username, ada_hash, ada_active, ada_super = users["ada@example.com"]
    assert (ada_username, ada_active, ada_super) == ("ada", True, True)
    assert PasswordHasher().verify(ada_hash, PASSWORD)  # hashed on the way in
    assert users["bob@example.com"] == ("bobby", HASH, False, False)  # stored as given


def test_jsonl_from_stdin(initialised: Dbtool) -> None:
    lines = [
        {"email": "aaa1@example.com", "hashed_password": HASH, "is_superuser": True},
        {"email": "aaa2@example.com", "hashed_password": HASH, "username": "second"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines) + "\n"  # a blank line is fine
    assert_clean_error(initialised("users", "import", "-", input=data), 2, "--format")
    result = initialised("users", "import", "-", "--format", "jsonl", input=data)
    assert result.exit_code == 0, result.output
    users = users_in(initialised)
    assert users["aaa1@example.com"][3] is True
    assert users["aaa2@example.com"][0] == "second"


def test_unknown_columns_are_a_usage_error(initialised: Dbtool, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", [{"email": "a@example.com", "role": "admin", "age": 3}])
    assert_clean_error(initialised("users", "import", str(path)), 2, "age, role")
    jsonl = write_jsonl(tmp_path / "x.jsonl", [{"email": "a@example.com", "nickname": "x"}])
    assert_clean_error(initialised("users", "import", str(jsonl)), 2, "nickname")
    assert users_in(initialised) == {}


INVALID = [
    ({"email": "", "hashed_password": HASH}, "email is missing"),
    ({"email": "not-an-email", "hashed_password": HASH}, "invalid email address"),
    ({"email": "xavier@example.com", "password": "short"}, "too short"),
    ({"email": "yvonne@example.com", "hashed_password": "$argon2id$v=19$m=8"}, "not a complete"),
    ({"email": "zoe_z@example.com"}, "missing"),
    ({"email": "walter@example.com", "hashed_password": HASH, "is_active": "maybe"}, "true or"),
    ({"email": "v@example.com", "hashed_password": HASH, "username": "a b"}, "invalid username"),
]  # fmt: skip


def test_invalid_rows_are_reported_by_line_and_nothing_is_written(
    initialised: Dbtool, tmp_path: Path
) -> None:
    rows = [{"email": "fine@example.com", "hashed_password": HASH}] + [row for row, _ in INVALID]
    columns = ["email", "username", "password", "hashed_password", "is_active"]
    path = write_csv(tmp_path / "bad.csv", rows, columns)
    result = initialised("users", "import", str(path))
    assert_clean_error(result, 1, f"{len(INVALID)} invalid rows, nothing was imported")
    for line, (_, reason) in enumerate(INVALID, start=3):  # line 1 header, line 2 is fine
        assert any(
            text.startswith(f"line {line}:") and reason in text
            for text in result.stderr.splitlines()
        ), (line, reason, result.stderr)
    assert users_in(initialised) == {}


def test_only_the_first_20_problems_are_listed(initialised: Dbtool, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"email": f"bad{n}"} for n in range(25)])
    result = initialised("users", "import", str(path), "--batch-size", "7")
    assert_clean_error(result, 1, "25 invalid rows")
    assert sum(line.startswith("line ") for line in result.stderr.splitlines()) == 20
    assert "... and 5 more invalid rows" in result.stderr


def test_skip_invalid_writes_rejects(initialised: Dbtool, tmp_path: Path) -> None:
    rows = [
        {"email": "okay@example.com", "password": PASSWORD},
        {"email": "bad", "password": PASSWORD},
        {"email": "short@example.com", "password": "short"},
    ]
    path = write_csv(tmp_path / "in.csv", rows)
    rejects = tmp_path / "rejects.csv"
    result = initialised("users", "import", str(path), "--skip-invalid", "--rejects", str(rejects),
                         "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rejected"] == 2
    assert set(users_in(initialised)) == {"okay@example.com"}
    rejected = list(csv.DictReader(io.StringIO(rejects.read_text())))
    assert [row["line"] for row in rejected] == ["3", "4"]
    assert "invalid email address" in rejected[0]["reason"]
    assert "too short" in rejected[1]["reason"]
    assert {row["password"] for row in rejected} == {"(redacted)"}  # never the plain password
    assert PASSWORD not in rejects.read_text()


def test_conflicts_fail_by_default_and_name_the_first_ones(
    initialised: Dbtool, tmp_path: Path
) -> None:
    initialised("users", "add", "taken@example.com", "--password-stdin", input=PASSWORD + "\n")
    before = users_in(initialised)
    rows = [
        *many(5),
        {"email": "taken@example.com", "hashed_password": HASH},
        {"email": "user1@example.com", "hashed_password": HASH, "username": "again"},
    ]
    path = write_csv(tmp_path / "c.csv", rows, ["email", "username", "hashed_password"])
    result = initialised("users", "import", str(path), "--batch-size", "2")
    line = assert_clean_error(result, 4, "nothing was imported")
    assert "taken@example.com" in result.stderr or "user1@example.com" in result.stderr, line
    assert users_in(initialised) == before  # the first batches were rolled back too


def test_duplicates_inside_the_file_are_conflicts(initialised: Dbtool, tmp_path: Path) -> None:
    rows = [{"email": "dup@example.com", "hashed_password": HASH},
            {"email": "DUP@example.com", "hashed_password": HASH}]  # fmt: skip
    result = initialised("users", "import", str(write_csv(tmp_path / "d.csv", rows)))
    assert_clean_error(result, 4)
    assert "email 'dup@example.com' appears 2 times (first on line 2, last on 3)" in result.stderr
    assert users_in(initialised) == {}


def test_rows_with_ids_import_as_rows_without_them_and_conflict_the_same(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """Files that give every id (on PostgreSQL, copied straight into the table when no
    value is left for the database to make) end as the move makes them: a derived username,
    the flags' defaults, the creation time; batches with and without ids mix; conflicts are
    named by line and leave nothing behind."""
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(6)]
    rows = [
        {"id": ids[0], "email": "a@example.com", "username": "", "is_active": "",
         "hashed_password": HASH},
        {"id": ids[1], "email": "b@example.com", "username": "bee", "is_active": "false",
         "hashed_password": HASH},
        {"id": "", "email": "c@example.com", "username": "", "is_active": "",
         "hashed_password": HASH},  # no id: this batch goes through the staging table
        {"id": ids[3], "email": "d@example.com", "username": "", "is_active": "true",
         "hashed_password": HASH},
    ]  # fmt: skip
    path = write_csv(tmp_path / "ids.csv", rows)
    result = initialised("users", "import", str(path), "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 4
    assert users_in(initialised) == {
        "a@example.com": ("a", HASH, True, False),
        "b@example.com": ("bee", HASH, False, False),
        "c@example.com": ("c", HASH, True, False),
        "d@example.com": ("d", HASH, True, False),
    }
    stored = run_sql(initialised.url, "SELECT id, created_at, updated_at FROM users")
    assert len({str(row[0]).replace("-", "") for row in stored}) == 4
    assert all(row[1] is not None and row[1] == row[2] for row in stored)
    before = users_in(initialised)
    again = [
        {"id": ids[4], "email": "e@example.com", "username": "", "is_active": "",
         "hashed_password": HASH},
        {"id": ids[5], "email": "new@example.com", "username": "bee", "is_active": "",
         "hashed_password": HASH},
    ]  # fmt: skip
    clash = initialised("users", "import", str(write_csv(tmp_path / "clash.csv", again)))
    assert_clean_error(clash, 4, "nothing was imported")
    assert "username 'bee' (line 3) belongs to another user" in clash.stderr, clash.stderr
    assert users_in(initialised) == before


def test_skip_keeps_existing_users_untouched(initialised: Dbtool, tmp_path: Path) -> None:
    initialised("users", "add", "taken@example.com", "--password-stdin", input=PASSWORD + "\n")
    before = users_in(initialised)["taken@example.com"]
    rows = [
        {"email": "taken@example.com", "hashed_password": HASH, "is_superuser": "true"},
        {"email": "new@example.com", "hashed_password": HASH, "is_superuser": ""},
        {"email": "new@example.com", "hashed_password": HASH, "is_superuser": "true"},
    ]
    path = write_csv(tmp_path / "s.csv", rows)
    result = initialised("users", "import", str(path), "--on-conflict", "skip", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["skipped"]) == (1, 2)
    users = users_in(initialised)
    assert users["taken@example.com"] == before
    assert users["new@example.com"][3] is False  # the first line for an email wins


def test_update_overwrites_existing_users(initialised: Dbtool, tmp_path: Path) -> None:
    initialised("users", "add", "taken@example.com", "--password-stdin", input=PASSWORD + "\n")
    rows = [{"email": "taken@example.com", "username": "renamed", "hashed_password": HASH,
             "is_active": "false", "is_superuser": "true"},
            {"email": "fresh@example.com", "username": "", "hashed_password": HASH,
             "is_active": "", "is_superuser": ""}]  # fmt: skip
    path = write_csv(tmp_path / "u.csv", rows)
    result = initialised("users", "import", str(path), "--on-conflict", "update", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["updated"]) == (1, 1)
    users = users_in(initialised)
    assert users["taken@example.com"] == ("renamed", HASH, False, True)
    assert users["fresh@example.com"] == ("fresh", HASH, True, False)
    # A username that belongs to someone else cannot be resolved by updating: exit 4.
    clash_row = {"email": "fresh@example.com", "username": "renamed", "hashed_password": HASH}
    clash = write_csv(tmp_path / "clash.csv", [clash_row])
    assert_clean_error(initialised("users", "import", str(clash), "--on-conflict", "update"), 4)
    assert users_in(initialised)["fresh@example.com"][0] == "fresh"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_with_hashes_round_trips_to_identical_rows(
    initialised: Dbtool, tmp_path: Path, second_database_url: str, fmt: str
) -> None:
    initialised("users", "add", "ada@example.com", "--superuser", "--password-stdin",
                input=PASSWORD + "\n")  # fmt: skip
    initialised("users", "add", "o'brien@example.com", "--inactive", "--password-stdin",
                input=PASSWORD + "\n")  # fmt: skip
    initialised("users", "add", "用户名字@例子.广告", "--username", "yonghu", "--password-stdin",
                input=PASSWORD + "\n")  # fmt: skip
    exported = tmp_path / f"users.{fmt}"
    result = initialised("users", "export", "--include-hashes", "-o", str(exported))
    assert result.exit_code == 0, result.output
    assert "Exported 3 users" in result.stderr

    target = Dbtool(second_database_url)
    assert target("init").exit_code == 0
    imported = target("users", "import", str(exported))
    assert imported.exit_code == 0, imported.output
    query = (
        "SELECT id, email, username, hashed_password, is_active, is_superuser,"
        " created_at, updated_at FROM users ORDER BY email"
    )
    assert run_sql(target.url, query) == run_sql(initialised.url, query)


def test_export_formats_filters_and_no_hashes_by_default(initialised: Dbtool) -> None:
    for email, extra in (("a@example.com", "--superuser"), ("b@example.com", "--inactive")):
        initialised("users", "add", email, "--username", email[0] * 3, extra, "--password-stdin",
                    input=PASSWORD + "\n")  # fmt: skip
    as_csv = initialised("users", "export")
    assert as_csv.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["email"] for row in rows] == ["a@example.com", "b@example.com"]
    assert "hashed_password" not in rows[0] and "argon2" not in as_csv.stdout
    lines = initialised("users", "export", "--format", "jsonl", "--inactive").stdout.splitlines()
    assert [json.loads(line)["email"] for line in lines] == ["b@example.com"]
    superusers = initialised("users", "export", "--superuser", "--format", "jsonl").stdout
    assert [json.loads(line)["email"] for line in superusers.splitlines()] == ["a@example.com"]


def test_failed_export_leaves_no_file(initialised: Dbtool, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("previous contents\n")
    broken = Dbtool(initialised.url.replace("test.db", "missing.db")
                    if initialised.url.startswith("sqlite")
                    else "postgresql://postgres@127.0.0.1:1/none")  # fmt: skip
    assert_clean_error(broken("users", "export", "-o", str(target)), 3)
    assert target.read_text() == "previous contents\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
    # A file that cannot be written is exit 1 naming it (not "cannot connect", exit 3).
    missing_dir = initialised("users", "export", "-o", str(tmp_path / "no" / "x.csv"))
    assert_clean_error(missing_dir, 1, "cannot write", "x.csv")


def test_progress_only_on_a_terminal(initialised: Dbtool, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", many(50))
    piped = initialised.run("users", "import", str(path))
    assert piped.exit_code == 0, piped.stderr
    assert piped.stderr.strip().splitlines() == [piped.stderr.strip()]  # the summary alone
    assert "Imported 50 rows" in piped.stderr

    path = write_csv(tmp_path / "q.csv", many(100, start=50))
    terminal = Terminal(
        "--url", initialised.url, "users", "import", str(path), "--batch-size", "10"
    )
    assert terminal.wait() == 0, terminal.transcript
    assert "importing" in terminal.transcript and "rows/s" in terminal.transcript


def test_interrupted_import_leaves_the_table_as_it_was(initialised: Dbtool, tmp_path: Path) -> None:
    """Ctrl-C in the middle (real Argon2 hashing makes the import slow enough to catch)."""
    initialised("users", "add", "before@example.com", "--password-stdin", input=PASSWORD + "\n")
    before = users_in(initialised)
    rows = [{"email": f"slow{n}@example.com", "password": PASSWORD} for n in range(400)]
    path = write_csv(tmp_path / "slow.csv", rows)
    terminal = Terminal("--url", initialised.url, "users", "import", str(path), "--batch-size", "4")
    terminal.expect("of 400 rows")  # the progress bar is running...
    time.sleep(2.0)  # ...and some batches are in
    terminal.send_raw(b"\x03")
    assert terminal.wait() == 130, terminal.transcript
    assert "Traceback" not in terminal.transcript
    assert users_in(initialised) == before


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_lost_connection_mid_import_leaves_the_table_as_it_was(
    initialised: Dbtool, tmp_path: Path
) -> None:
    rows = [{"email": f"slow{n}@example.com", "password": PASSWORD} for n in range(400)]
    path = write_csv(tmp_path / "slow.csv", rows)
    terminal = Terminal("--url", initialised.url, "users", "import", str(path), "--batch-size", "4")
    terminal.expect("of 400 rows")
    database = initialised.url.rsplit("/", 1)[1]
    for _ in range(100):  # until the import's connection exists and has been cut
        time.sleep(0.1)
        if run_sql(
            initialised.url.replace(f"/{database}", "/postgres"),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :db AND application_name = 'dbtool'",
            {"db": database},
        ):
            break
    assert terminal.wait() == 3, terminal.transcript
    assert "the connection was lost" in terminal.transcript
    assert "Traceback" not in terminal.transcript
    assert users_in(initialised) == {}


def test_plain_passwords_are_hashed_on_several_threads(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    real = passwords.hash_password

    def recording(password: str, scheme: str = "argon2") -> str:
        threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for the pool to spread the work
        return real(password, scheme)

    monkeypatch.setattr(passwords, "hash_password", recording)
    records = [(n, {"email": f"person{n}@example.com", "password": PASSWORD}) for n in range(40)]

    async def run() -> int:
        async with Database.from_url(database_url, must_exist=False) as db:
            from dbtool.schema.tables import create_schema

            await create_schema(db)
            report = await import_users(db, records, batch_size=20)
            return report.inserted

    assert asyncio.run(run()) == 40
    assert len(threads) >= min(os.cpu_count() or 1, 2)  # spread over the cores
    assert all(name.startswith("dbtool-hash") for name in threads)


def test_memory_stays_flat_whatever_the_file_size(database_url: str, tmp_path: Path) -> None:
    """Peak Python memory of an import depends on the batch size, not on the row count."""

    def peak(count: int) -> int:
        path = write_csv(tmp_path / f"m{count}.csv", many(count))

        async def run() -> None:
            async with Database.from_url(database_url, must_exist=False) as db:
                from dbtool.schema.tables import create_schema, drop_schema

                await drop_schema(db)
                await create_schema(db)
                fields = import_fields(db.user_model)
                with path.open(newline="") as stream:
                    tracemalloc.start()
                    try:
                        records = read_records(stream, Format.CSV, fields)
                        await import_users(db, records, batch_size=500)
                        return_peak[0] = tracemalloc.get_traced_memory()[1]
                    finally:
                        tracemalloc.stop()

        return_peak = [0]
        asyncio.run(run())
        return return_peak[0]

    small, large = peak(2_000), peak(20_000)
    assert large < small * 1.5, (small, large)
