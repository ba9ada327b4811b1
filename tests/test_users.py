"""users add / list / show / set-password / check-password / update / delete, on both backends."""

from __future__ import annotations

import csv
import io
import json

import bcrypt
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from tests.helpers import Dbtool, Terminal, assert_clean_error, raw_uuid, run_sql

PASSWORD = "correct horse battery"


def add(dbtool: Dbtool, email: str, *args: str, password: str = PASSWORD) -> dict[str, object]:
    result = dbtool(
        "users", "add", email, "--password-stdin", "--json", *args, input=password + "\n"
    )
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def stored_hash(dbtool: Dbtool, email: str) -> str:
    rows = run_sql(dbtool.url, "SELECT hashed_password FROM users WHERE email = :e", {"e": email})
    assert len(rows) == 1
    return str(rows[0][0])


def insert_raw_user(dbtool: Dbtool, *, email: str, username: str, hashed: str) -> None:
    """A row written by the application itself (its rules may differ from dbtool's)."""
    run_sql(
        dbtool.url,
        "INSERT INTO users (id, email, username, hashed_password, is_active, is_superuser,"
        " created_at, updated_at) VALUES (:id, :email, :username, :hashed, :t, :f,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        {
            "id": raw_uuid(dbtool.url),
            "email": email,
            "username": username,
            "hashed": hashed,
            "t": True,
            "f": False,
        },
    )


# --- add ---------------------------------------------------------------------------------


def test_add_stores_a_normalised_user_with_a_real_argon2id_hash(initialised: Dbtool) -> None:
    user = add(initialised, "  Ada.Lovelace@Example.COM ", "--superuser")
    assert user["email"] == "ada.lovelace@example.com"
    assert user["username"] == "ada.lovelace"
    assert user["is_superuser"] is True and user["is_active"] is True
    assert user["created"] is True
    assert "hashed_password" not in user
    hashed = stored_hash(initialised, "ada.lovelace@example.com")
    assert hashed.startswith("$argon2id$")
    # argon2-cffi's own verifier (note its order: hash first) accepts it...
    assert PasswordHasher().verify(hashed, PASSWORD)
    # ...and rejects another password.
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(hashed, PASSWORD + "x")


def test_add_with_real_hashing_parameters_end_to_end(initialised: Dbtool) -> None:
    """The installed console script, in its own process: Argon2id at the library defaults."""
    result = initialised.run("users", "add", "root@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 0, result.stderr
    hashed = stored_hash(initialised, "root@example.com")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PasswordHasher().verify(hashed, PASSWORD)


def test_add_options(initialised: Dbtool) -> None:
    user = add(initialised, "grace@example.com", "--username", "Grace_H", "--inactive")
    assert user["username"] == "Grace_H"
    assert user["is_active"] is False and user["is_superuser"] is False
    result = initialised("users", "add", "bob@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 0
    assert "Created user bob@example.com" in result.stderr


def test_default_username_is_the_local_part_by_djangos_rule(initialised: Dbtool) -> None:
    """1-150 letters, digits and @ . + - _ (Django's rule): every email gives a username."""
    assert add(initialised, "john.o'neil+news@example.com")["username"] == "john.o_neil+news"
    assert add(initialised, "jo@example.com")["username"] == "jo"
    assert add(initialised, "x@example.org")["username"] == "x"
    assert add(initialised, "new@example.com", "--username", "john+doe@corp")["username"] == (
        "john+doe@corp"
    )
    # Another domain, the same local part: the derived username is taken; say how to choose.
    taken = initialised("users", "add", "jo@other.org", "--password-stdin", input=PASSWORD)
    assert_clean_error(taken, 4, "username 'jo' already exists", "--username")


@pytest.mark.parametrize(
    ("email", "extra", "fragment"),
    [
        ("not-an-email", (), "invalid email address"),
        ("a@b", (), "invalid email address"),
        ("x" * 250 + "@example.com", (), "invalid email address"),
        ("ok@example.com", ("--username", "a b"), "invalid username"),
        ("ok@example.com", ("--username", "x" * 151), "invalid username"),
        ("ok@example.com", ("--username", "semi;colon"), "invalid username"),
    ],
)
def test_add_rejects_bad_emails_and_usernames(
    initialised: Dbtool, email: str, extra: tuple[str, ...], fragment: str
) -> None:
    result = initialised("users", "add", email, *extra, "--password-stdin", input=PASSWORD)
    assert_clean_error(result, 2, fragment)
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


def test_duplicate_email_is_case_insensitive_and_exit_4(initialised: Dbtool) -> None:
    add(initialised, "Admin@Example.com")
    result = initialised("users", "add", "ADMIN@example.COM", "--username", "other",
                         "--password-stdin", input=PASSWORD)  # fmt: skip
    assert_clean_error(result, 4, "email 'admin@example.com' already exists")
    # Both taken: the email is what gets reported.
    result = initialised("users", "add", "admin@example.com", "--password-stdin", input=PASSWORD)
    assert_clean_error(result, 4, "email")


def test_duplicate_username_is_exit_4_and_named(initialised: Dbtool) -> None:
    add(initialised, "admin@example.com")
    result = initialised("users", "add", "admin@other.org", "--password-stdin", input=PASSWORD)
    assert_clean_error(result, 4, "username 'admin' already exists")
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(1,)]


def test_if_not_exists_never_changes_the_existing_user(initialised: Dbtool) -> None:
    first = add(initialised, "admin@example.com", "--superuser")
    before = stored_hash(initialised, "admin@example.com")
    again = initialised("users", "add", "Admin@example.com", "--if-not-exists",
                        "--password-stdin", input="a different password\n")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "already exists, unchanged" in again.stderr
    assert stored_hash(initialised, "admin@example.com") == before
    as_json = add(initialised, "admin@example.com", "--if-not-exists")
    assert as_json["created"] is False and as_json["id"] == first["id"]
    # A username clash is still a conflict: --if-not-exists is about the email.
    clash = initialised("users", "add", "admin@other.org", "--if-not-exists",
                        "--password-stdin", input=PASSWORD)  # fmt: skip
    assert_clean_error(clash, 4, "username")


def test_concurrent_adds_of_one_email_create_exactly_one_user(initialised: Dbtool) -> None:
    processes = [
        initialised.spawn("users", "add", "race@example.com", "--password-stdin") for _ in range(8)
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(PASSWORD + "\n")
        process.stdin.close()
    codes = sorted(process.wait(timeout=120) for process in processes)
    for process in processes:
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
        process.stdout and process.stdout.close()  # type: ignore[func-returns-value]
        process.stderr.close()
    assert codes == [0] + [4] * 7
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(1,)]


# --- where passwords come from ------------------------------------------------------------


def test_password_from_environment(initialised: Dbtool) -> None:
    result = initialised("users", "add", "env@example.com", env={"DBTOOL_USER_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    assert PasswordHasher().verify(stored_hash(initialised, "env@example.com"), PASSWORD)


def test_stdin_takes_the_first_line_exactly(initialised: Dbtool) -> None:
    result = initialised("users", "add", "lines@example.com", "--password-stdin",
                         input="  spaces kept  \nsecond line\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PasswordHasher().verify(stored_hash(initialised, "lines@example.com"), "  spaces kept  ")


def test_no_terminal_and_no_password_source_is_exit_2(initialised: Dbtool) -> None:
    result = initialised("users", "add", "nobody@example.com")
    assert_clean_error(result, 2, "--password-stdin", "DBTOOL_USER_PASSWORD")
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


def test_empty_stdin_is_exit_2(initialised: Dbtool) -> None:
    result = initialised("users", "add", "nobody@example.com", "--password-stdin", input="")
    assert_clean_error(result, 2, "standard input is empty")


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least 8 characters"),
        ("x" * 4097, "at most 4096"),
        ("nul\x00inside-it", "NUL"),
        ("policy@example.com", "same as the email"),
        ("Policy", "too short"),
        ("policyuser", "same as the username"),
    ],
)
def test_password_policy_applies_in_scripted_mode(
    initialised: Dbtool, password: str, fragment: str
) -> None:
    result = initialised("users", "add", "policy@example.com", "--username", "policyuser",
                         "--password-stdin", input=password + "\n")  # fmt: skip
    assert_clean_error(result, 2, fragment)
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


def test_minimum_length_is_a_setting(initialised: Dbtool) -> None:
    env = {"DBTOOL_PASSWORD_MIN_LENGTH": "20"}
    result = initialised("users", "add", "long@example.com", "--password-stdin",
                         input="only-15-chars!!\n", env=env)  # fmt: skip
    assert_clean_error(result, 2, "at least 20 characters")


def test_terminal_prompt_confirms_and_retries(initialised: Dbtool) -> None:
    terminal = Terminal("--url", initialised.url, "users", "add", "tty@example.com")
    terminal.expect("Password (at least 8 characters): ")
    terminal.send("short")  # policy: asks again
    terminal.expect("at least 8 characters")
    terminal.expect("Password (at least 8 characters): ")
    terminal.send(PASSWORD)
    terminal.expect("Password (again): ")
    terminal.send(PASSWORD + "typo")  # mismatch: asks again
    terminal.expect("do not match")
    terminal.expect("Password (at least 8 characters): ")
    terminal.send(PASSWORD)
    terminal.expect("Password (again): ")
    terminal.send(PASSWORD)
    assert terminal.wait() == 0, terminal.transcript
    assert PASSWORD not in terminal.transcript  # hidden input is never echoed
    assert PasswordHasher().verify(stored_hash(initialised, "tty@example.com"), PASSWORD)


def test_terminal_prompt_gives_up_after_three_attempts(initialised: Dbtool) -> None:
    terminal = Terminal("--url", initialised.url, "users", "add", "tty@example.com")
    for attempt in range(3):
        terminal.expect("Password (at least 8 characters): ")
        terminal.send(PASSWORD)
        terminal.expect("Password (again): ")
        terminal.send(f"mismatch {attempt}")
        terminal.expect("do not match")
    assert terminal.wait() == 1, terminal.transcript
    assert "after 3 attempts" in terminal.transcript
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


# --- list / show --------------------------------------------------------------------------


def test_list_filters_and_pages(initialised: Dbtool) -> None:
    add(initialised, "alice@example.com", "--superuser")
    add(initialised, "bob@example.com", "--inactive")
    add(initialised, "carol@sample.org")

    def emails(*args: str) -> list[str]:
        result = initialised("users", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [row["email"] for row in json.loads(result.stdout)]

    assert emails() == ["alice@example.com", "bob@example.com", "carol@sample.org"]
    assert emails("--active") == ["alice@example.com", "carol@sample.org"]
    assert emails("--inactive") == ["bob@example.com"]
    assert emails("--superuser") == ["alice@example.com"]
    assert emails("--search", "EXAMPLE") == ["alice@example.com", "bob@example.com"]
    assert emails("--search", "%") == []  # LIKE wildcards are matched literally
    assert emails("--limit", "1", "--offset", "1") == ["bob@example.com"]


def test_list_json_and_csv_never_show_hashes(initialised: Dbtool) -> None:
    add(initialised, "alice@example.com")
    rows = json.loads(initialised("users", "list", "--json").stdout)
    assert list(rows[0]) == [
        "id", "email", "username", "is_active", "is_superuser", "created_at", "updated_at",
    ]  # fmt: skip
    as_csv = initialised("users", "list", "--csv").stdout
    parsed = list(csv.DictReader(io.StringIO(as_csv)))
    assert parsed[0]["email"] == "alice@example.com" and parsed[0]["is_active"] == "true"
    table = initialised("users", "list").stdout
    assert "alice@example.com" in table
    for output in (json.dumps(rows), as_csv, table):
        assert "argon2" not in output and "hashed" not in output
    assert_clean_error(initialised("users", "list", "--json", "--csv"), 2, "choose one")


def test_hostile_values_are_stored_and_shown_verbatim(initialised: Dbtool) -> None:
    add(initialised, "o'brien@example.com")
    add(initialised, "用户名字@例子.广告")
    add(initialised, "josé@exämple.com")
    insert_raw_user(initialised, email="markup@example.com", username="[bold]x[/bold]",
                    hashed="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")  # fmt: skip
    insert_raw_user(initialised, email="sql@example.com", username="'; DROP TABLE users; --",
                    hashed="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")  # fmt: skip
    rows = json.loads(initialised("users", "list", "--json").stdout)
    assert {row["email"] for row in rows} == {
        "o'brien@example.com",
        "用户名字@例子.广告",
        "josé@exämple.com",
        "markup@example.com",
        "sql@example.com",
    }
    table = initialised("users", "list").stdout
    assert "[bold]x[/bold]" in table
    assert "'; DROP TABLE users; --" in table
    shown = initialised("users", "show", "[bold]x[/bold]")
    assert shown.exit_code == 0 and "[bold]x[/bold]" in shown.stdout
    assert (
        json.loads(initialised("users", "show", "o'brien@example.com", "--json").stdout)["username"]
        == "o_brien"
    )


def test_show_by_email_username_or_id(initialised: Dbtool) -> None:
    user = add(initialised, "alice@example.com")
    for ident in ("alice@example.com", "ALICE@example.com", "alice", str(user["id"])):
        result = initialised("users", "show", ident, "--json")
        assert result.exit_code == 0, (ident, result.output)
        assert json.loads(result.stdout)["id"] == user["id"]
    assert_clean_error(initialised("users", "show", "nobody"), 1, "no user matches 'nobody'")


# --- passwords ----------------------------------------------------------------------------


def test_set_password_and_check_password(initialised: Dbtool) -> None:
    add(initialised, "alice@example.com")
    check = initialised("users", "check-password", "alice", "--password-stdin", input=PASSWORD)
    assert check.exit_code == 0 and "matches" in check.stderr
    wrong = initialised("users", "check-password", "alice", "--password-stdin", input="nope-nope")
    assert_clean_error(wrong, 1, "does not match")

    changed = initialised("users", "set-password", "alice", "--password-stdin",
                          input="a brand new secret\n")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert initialised("users", "check-password", "alice", "--password-stdin",
                       input="a brand new secret").exit_code == 0  # fmt: skip
    assert initialised("users", "check-password", "alice", "--password-stdin",
                       input=PASSWORD).exit_code == 1  # fmt: skip
    policy = initialised("users", "set-password", "alice", "--password-stdin", input="short\n")
    assert_clean_error(policy, 2, "at least 8")
    missing = initialised("users", "set-password", "nobody", "--password-stdin", input=PASSWORD)
    assert_clean_error(missing, 1, "no user matches")


def test_check_password_only_checks_unless_asked_to_upgrade(initialised: Dbtool) -> None:
    """FastAPI-boilerplate verifies with `bcrypt.checkpw` only: a check that turned its
    hashes into Argon2id locked its users out. A check writes nothing; --upgrade keeps a
    bcrypt hash bcrypt (at dbtool's cost) unless DBTOOL_PASSWORD_HASH says otherwise."""
    # Cost 5: outdated next to the tests' bcrypt cost (4; dbtool's own is 12).
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    insert_raw_user(initialised, email="old@example.com", username="old", hashed=legacy)
    wrong = initialised("users", "check-password", "old", "--password-stdin", input="wrong-one")
    assert wrong.exit_code == 1
    right = initialised("users", "check-password", "old", "--password-stdin", input=PASSWORD)
    assert right.exit_code == 0, right.output
    assert "outdated; --upgrade replaces it (nothing was written)" in right.stderr
    assert stored_hash(initialised, "old@example.com") == legacy
    upgraded = initialised("users", "check-password", "old", "--password-stdin", "--upgrade",
                           input=PASSWORD)  # fmt: skip
    assert upgraded.exit_code == 0, upgraded.output
    assert "Replaced its outdated hash with a new bcrypt hash" in upgraded.stderr
    rehashed = stored_hash(initialised, "old@example.com")
    assert rehashed.startswith("$2b$04$") and bcrypt.checkpw(PASSWORD.encode(), rehashed.encode())
    chosen = initialised("users", "check-password", "old", "--password-stdin", "--upgrade",
                         input=PASSWORD, env={"DBTOOL_PASSWORD_HASH": "argon2"})  # fmt: skip
    assert "with a new Argon2id hash" in chosen.stderr
    argon2 = stored_hash(initialised, "old@example.com")
    assert argon2.startswith("$argon2id$") and PasswordHasher().verify(argon2, PASSWORD)


# --- update / delete ----------------------------------------------------------------------


def test_update_changes_fields_and_updated_at(initialised: Dbtool) -> None:
    user = add(initialised, "alice@example.com")
    result = initialised("users", "update", "alice", "--email", "Alice@New.org",
                         "--username", "alice2", "--inactive", "--superuser", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    updated = json.loads(result.stdout)
    assert updated["email"] == "alice@new.org" and updated["username"] == "alice2"
    assert updated["is_active"] is False and updated["is_superuser"] is True
    assert updated["changed"] is True
    assert updated["updated_at"] > user["updated_at"]  # type: ignore[operator]
    assert updated["created_at"] == user["created_at"]
    same = initialised("users", "update", "alice2", "--inactive", "--json")
    assert json.loads(same.stdout)["changed"] is False


def test_update_validation_and_conflicts(initialised: Dbtool) -> None:
    add(initialised, "alice@example.com")
    add(initialised, "bob@example.com")
    assert_clean_error(initialised("users", "update", "bob", "--email", "ALICE@example.com"), 4,
                       "email 'alice@example.com' already exists")  # fmt: skip
    assert_clean_error(initialised("users", "update", "bob", "--username", "alice"), 4, "username")
    assert_clean_error(initialised("users", "update", "bob", "--email", "nope"), 2, "invalid email")
    assert_clean_error(initialised("users", "update", "bob"), 2, "nothing to update")
    assert_clean_error(initialised("users", "update", "carol", "--active"), 1, "no user matches")
    rows = run_sql(initialised.url, "SELECT email, username FROM users ORDER BY email")
    assert rows == [("alice@example.com", "alice"), ("bob@example.com", "bob")]


def test_delete(initialised: Dbtool) -> None:
    add(initialised, "alice@example.com")
    assert_clean_error(initialised("users", "delete", "alice"), 5, "--yes")
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(1,)]
    result = initialised("users", "delete", "alice", "--yes")
    assert result.exit_code == 0 and "Deleted user alice@example.com" in result.stderr
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]
    assert_clean_error(initialised("users", "delete", "alice", "--yes"), 1, "no user matches")


def test_delete_asks_on_a_terminal(initialised: Dbtool) -> None:
    add(initialised, "alice@example.com")
    declined = Terminal("--url", initialised.url, "users", "delete", "alice")
    declined.expect("Delete user alice@example.com")
    declined.send("n")
    assert declined.wait() == 130, declined.transcript
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(1,)]
    accepted = Terminal("--url", initialised.url, "users", "delete", "alice")
    accepted.expect("Delete user alice@example.com")
    accepted.send("y")
    assert accepted.wait() == 0, accepted.transcript
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


# --- before init --------------------------------------------------------------------------

USER_COMMANDS = [
    ("users", "add", "alice@example.com", "--password-stdin"),
    ("users", "list"),
    ("users", "show", "alice"),
    ("users", "set-password", "alice", "--password-stdin"),
    ("users", "check-password", "alice", "--password-stdin"),
    ("users", "update", "alice", "--inactive"),
    ("users", "delete", "alice", "--yes"),
]


def test_every_users_command_says_to_run_init_first(database_url: str, backend: str) -> None:
    dbtool = Dbtool(database_url)
    if backend == "sqlite":  # an existing but empty database file
        run_sql(database_url, "CREATE TABLE unrelated (x INTEGER)")
    for args in USER_COMMANDS:
        result = dbtool(*args, input=PASSWORD + "\n")
        assert_clean_error(result, 1, "run `dbtool init` first")


# Many users in one statement per backend, then the statistics the estimate reads.
MANY_USERS = {
    "postgres": [
        "INSERT INTO users SELECT gen_random_uuid(), 'u' || n || '@example.com', 'u' || n, '!',"
        " true, n % 2 = 0, now(), now() FROM generate_series(1, 120000) AS n",
        "ANALYZE users",
    ],
    "mariadb": [
        "INSERT INTO users SELECT replace(uuid(), '-', ''), concat('u', seq, '@example.com'),"
        " concat('u', seq), '!', true, seq % 2 = 0, now(), now() FROM seq_1_to_120000",
        "ANALYZE TABLE users",
    ],
    "sqlite": [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120000)"
        " INSERT INTO users SELECT lower(hex(randomblob(16))), 'u' || i || '@example.com',"
        " 'u' || i, '!', 1, i % 2 = 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM n",
    ],
}


def test_list_totals_on_a_large_table_cost_no_full_count(initialised: Dbtool, backend: str) -> None:
    """From 100,000 users (the planner's statistics), the total of a page is the estimate,
    or with a filter a count that stops past 10,000; --exact and --json --count count all.
    SQLite keeps no statistics to estimate from: it counts."""
    for statement in MANY_USERS[backend]:
        run_sql(initialised.url, statement)
    plain = initialised("users", "list", "--limit", "5")
    assert plain.exit_code == 0, plain.output
    exact = initialised("users", "list", "--limit", "5", "--exact")
    assert "of 120,000 users" in exact.stderr and "estimated" not in exact.stderr
    assert (
        json.loads(initialised("users", "list", "--json", "--count", "--limit", "1").stdout)[
            "total"
        ]
        == 120_000
    )
    filtered = initialised("users", "list", "--limit", "5", "--superuser")
    if backend == "sqlite":
        assert "of 120,000 users" in plain.stderr and "estimated" not in plain.stderr
        assert "of 60,000 users" in filtered.stderr
        return
    assert "of about " in plain.stderr and "the total is estimated" in plain.stderr
    assert "of more than 10,000 users" in filtered.stderr and "bounded" in filtered.stderr
    assert "of 60,000 users" in initialised("users", "list", "--superuser", "--exact").stderr
