"""Hostile input and faults, through the real CLI on both backends.

Each section is one numbered finding of the adversarial pass (hostile hashes, leaked
passwords, path mix-ups, exit codes, per-row problems, concurrency and faults, the library
on a login path, passwords in argv). README's "Reliability" section counts these cases.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import bcrypt
import pytest
from argon2 import PasswordHasher

from dbtool.users import bounds, passwords
from tests.helpers import (
    Dbtool,
    Result,
    assert_clean_error,
    column_type,
    dbtool_executable,
    raw_uuid,
    run_sql,
    table_names,
)

PASSWORD = "long enough pw"
GOOD = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
SALT, DIGEST = GOOD.split("$")[4], GOOD.split("$")[5]


def argon2(
    params: str, *, salt: str = SALT, digest: str = DIGEST, variant: str = "argon2id"
) -> str:
    return f"${variant}$v=19${params}${salt}${digest}"


def bcrypt_cost(cost: int) -> str:
    real = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return f"$2b${cost:02d}${real[7:]}"


# --- 1. hashes: admission and verification within documented bounds -------------------------

HOSTILE_HASHES = {
    "bcrypt cost 31 (minutes per check)": (bcrypt_cost(31), "bcrypt cost 31"),
    "bcrypt cost 99 (never verifies)": (bcrypt_cost(99), "bcrypt cost 99"),
    "bcrypt cost 03 (never verifies)": (bcrypt_cost(3), "bcrypt cost 3"),
    "argon2 4 GiB (16 s and 4 GiB per check)": (argon2("m=4194304,t=3,p=4"), "memory"),
    "argon2 m=0,t=0,p=0": (argon2("m=0,t=0,p=0"), "outside"),
    "argon2 t=1000": (argon2("m=1024,t=1000,p=1"), "time cost"),
    "argon2 digest cut by 20": (argon2("m=1024,t=1,p=1", digest=DIGEST[:-20]), "cut short"),
    "argon2 salt cut to 2 bytes": (argon2("m=1024,t=1,p=1", salt="YWI"), "salt"),
    "argon2d": (argon2("m=1024,t=1,p=1", variant="argon2d"), "Argon2d"),
    "bcrypt $2x$": ("$2x$10$" + bcrypt_cost(10)[7:], "$2x$"),
    "truncated bcrypt": (bcrypt_cost(10)[:-5], "not a complete"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HASHES))
def test_hostile_hashes_are_refused_at_import(initialised: Dbtool, case: str) -> None:
    hashed, reason = HOSTILE_HASHES[case]
    line = json.dumps({"email": "victim@example.com", "hashed_password": hashed}) + "\n"
    result = initialised("users", "import", "-", "--format", "jsonl", input=line)
    assert_clean_error(result, 1, "1 invalid row")
    assert reason in result.stderr, result.stderr
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


def plant(dbtool: Dbtool, email: str, hashed: str, *, active: bool = True) -> None:
    """A row written behind dbtool's back (an attacker with write access, or an old system)."""

    run_sql(
        dbtool.url,
        "INSERT INTO users (id, email, username, hashed_password, is_active, is_superuser,"
        " created_at, updated_at) VALUES (:id, :email, :username, :hashed, :active, :f,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        {
            "id": raw_uuid(dbtool.url),
            "email": email,
            "username": email.split("@")[0],
            "hashed": hashed,
            "active": active,
            "f": False,
        },
    )


def test_argon2_salt_and_digest_lengths_are_admitted_exactly_within_bounds() -> None:
    """Real hashes at each bound are admitted and verify; one byte past it is refused."""
    import base64

    def b64(size: int) -> str:
        return base64.b64encode(bytes(range(size))).decode().rstrip("=")

    for salt_bytes, digest_bytes in ((8, 32), (64, 64), (16, 33)):
        hasher = PasswordHasher(
            time_cost=1, memory_cost=1024, parallelism=1, salt_len=salt_bytes, hash_len=digest_bytes
        )
        real = hasher.hash(PASSWORD)
        assert passwords.hash_problem(real) is None, real
        assert passwords.verify_password(PASSWORD, real)[0]
    for size in (7, 65):
        problem = passwords.hash_problem(argon2("m=1024,t=1,p=1", salt=b64(size)))
        assert problem is not None and "salt" in problem, (size, problem)
    for size in (31, 65):
        problem = passwords.hash_problem(argon2("m=1024,t=1,p=1", digest=b64(size)))
        assert problem is not None and "digest" in problem, (size, problem)
    # Base64 of no whole number of bytes (4n + 1 characters) is refused whatever its length.
    assert passwords.hash_problem(argon2("m=1024,t=1,p=1", salt=b64(12) + "A")) is not None


def test_check_password_refuses_out_of_bounds_hashes_quickly(initialised: Dbtool) -> None:
    plant(initialised, "slow@example.com", bcrypt_cost(31))
    plant(initialised, "huge@example.com", argon2("m=4194304,t=3,p=4"))
    for email in ("slow@example.com", "huge@example.com"):
        started = time.monotonic()
        result = initialised("users", "check-password", email, "--password-stdin", input=PASSWORD)
        assert time.monotonic() - started < 5
        assert_clean_error(result, 1, "not verified")


def test_the_bounds_table_in_the_readme_matches_the_code() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "guides" / "users.md").read_text()
    section = docs.split("## Password hashes", 1)[1].split("\n# ", 1)[0]
    for fragment in (
        f"{bounds.BCRYPT_COST[0]} to {bounds.BCRYPT_COST[1]}",
        f"{passwords.ARGON2_MEMORY_KIB[1]:,} KiB",
        f"{passwords.ARGON2_TIME[0]} to {passwords.ARGON2_TIME[1]}",
        f"{passwords.ARGON2_LANES[0]} to {passwords.ARGON2_LANES[1]}",
        f"{passwords.ARGON2_WORK_KIB:,}",
        f"{passwords.ARGON2_DIGEST_BYTES[0]} to {passwords.ARGON2_DIGEST_BYTES[1]} bytes",
    ):
        assert fragment in section, fragment


# --- 2. plain passwords never reach an output ---------------------------------------------


def test_a_headerless_csv_does_not_echo_its_data(initialised: Dbtool, tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    path.write_text("nh1@example.com,Passw0rd-xyz1\nnh2@example.com,Passw0rd-xyz2\n")
    result = initialised("users", "import", str(path))
    assert_clean_error(result, 2, "no header line")
    assert "Passw0rd" not in result.output and "nh1@example.com" not in result.output


def test_a_misquoted_csv_never_shows_the_passwords_it_swallowed(
    initialised: Dbtool, tmp_path: Path
) -> None:
    secrets = [f"Secret-{n}-pass" for n in range(5)]
    lines = ["email,password", f'"a0@example.com,{secrets[0]}']  # the quote never closes
    lines += [f"a{n}@example.com,{secret}" for n, secret in enumerate(secrets[1:], start=1)]
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.csv"
    result = initialised("users", "import", str(path), "--skip-invalid", "--rejects",
                         str(rejects))  # fmt: skip
    assert "never closed" in result.stderr
    written = rejects.read_text()
    for secret in secrets:
        assert secret not in result.output and secret not in written
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


def test_rejected_plain_passwords_are_redacted_and_the_file_private(
    initialised: Dbtool, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text("old\n")
    rejects.chmod(0o644)
    line = json.dumps({"email": "not-an-email,Hunter2-long", "password": "Hunter2-long"})
    result = initialised("users", "import", "-", "--format", "jsonl", "--skip-invalid",
                         "--rejects", str(rejects), input=line + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Hunter2" not in result.output  # the message quotes the email only up to the comma
    [written] = [json.loads(row) for row in rejects.read_text().splitlines()]
    assert written["password"] == "(redacted)" and written["line"] == 1
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


MISPLACED_SECRET = "Hunter2Secret!"


@pytest.mark.parametrize(
    "content",
    [
        # The file's header names its columns in the wrong order: the password lands
        # under another header, where that column's rule fails.
        "password,email\nbob@example.com,Hunter2Secret!\n",
        "email,password,username\nbob@example.com,long enough pw,Hunter2Secret!\n",
        "email,password,is_active\nbob@example.com,long enough pw,Hunter2Secret!\n",
        "id,email,password\nHunter2Secret!,bob@example.com,long enough pw\n",
    ],
    ids=["email", "username", "is_active", "id"],
)
def test_a_password_under_the_wrong_header_is_never_echoed(
    initialised: Dbtool, tmp_path: Path, content: str
) -> None:
    path, rejects = tmp_path / "in.csv", tmp_path / "rejects.csv"
    path.write_text(content)
    result = initialised("users", "import", str(path), "--skip-invalid", "--rejects",
                         str(rejects))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output, result.output
    assert MISPLACED_SECRET not in result.output
    written = rejects.read_text()
    assert MISPLACED_SECRET not in written and "(redacted)" in written, written


# --- 3. path mix-ups ----------------------------------------------------------------------


def test_rejects_file_cannot_be_the_input_or_the_database(
    initialised: Dbtool, tmp_path: Path, backend: str
) -> None:
    path = tmp_path / "in.csv"
    content = f'email,hashed_password\nokay@example.com,"{GOOD}"\nbad,"{GOOD}"\n'
    path.write_text(content)
    same = initialised("users", "import", str(path), "--skip-invalid", "--rejects", str(path))
    assert_clean_error(same, 2, "--rejects", "the input file")
    assert path.read_text() == content
    relative = initialised("users", "import", str(path), "--skip-invalid", "--rejects",
                           os.path.relpath(path))  # fmt: skip
    assert_clean_error(relative, 2, "the input file")
    if backend == "sqlite":
        database = Path(initialised.url.split("///", 1)[1])
        before = database.read_bytes()
        for target in (database, Path(f"{database}-wal")):
            clash = initialised("users", "import", str(path), "--skip-invalid",
                                "--rejects", str(target))  # fmt: skip
            assert_clean_error(clash, 2, "SQLite database")
        export = initialised("users", "export", "-o", str(database))
        assert_clean_error(export, 2, "-o", "SQLite database in use")
        assert database.read_bytes() == before
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


# Every spelling of one SQLite file: (URL of the file at PATH, relative to the current
# directory where it says so).
SQLITE_URL_FORMS = {
    "path": "sqlite+aiosqlite:///{path}",
    "relative path": "sqlite+aiosqlite:///{relative}",
    "file: URI": "sqlite+aiosqlite:///file:{path}?uri=true",
    "file:/// URI": "sqlite+aiosqlite:///file://{path}?uri=true",
    "URI with a mode": "sqlite+aiosqlite:///file:{relative}?mode=rwc&uri=true",
    "symlink": "sqlite+aiosqlite:///{link}",
}


@pytest.mark.sqlite
@pytest.mark.parametrize("form", sorted(SQLITE_URL_FORMS))
def test_the_sqlite_database_is_never_an_output_whatever_the_url_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """One rule for "is this path the database?", from the file any SQLite URL resolves
    to: an export or a rejects file onto it is refused (exit 2) and it stays as it was."""
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "t.db"
    (tmp_path / "link.db").symlink_to(database)
    url = SQLITE_URL_FORMS[form].format(path=database, relative="t.db", link=tmp_path / "link.db")
    dbtool = Dbtool(url)
    assert dbtool("init").exit_code == 0
    assert (
        dbtool("users", "add", "ada@example.com", env={"DBTOOL_USER_PASSWORD": PASSWORD}).exit_code
        == 0
    )
    before = database.read_bytes()
    source = tmp_path / "in.csv"
    source.write_text("email,password\nbad,short\n")
    for target in (database, Path(f"{database}-wal"), tmp_path / "link.db", Path("t.db")):
        export = dbtool("users", "export", "-o", str(target))
        assert_clean_error(export, 2, "-o", "SQLite database")
        rejects = dbtool("users", "import", str(source), "--skip-invalid", "--rejects", str(target))
        assert_clean_error(rejects, 2, "--rejects", "SQLite database")
    assert database.read_bytes() == before
    assert run_sql(f"sqlite+aiosqlite:///{database}", "SELECT email FROM users") == [
        ("ada@example.com",)
    ]


@pytest.mark.sqlite
@pytest.mark.parametrize("form", sorted(SQLITE_URL_FORMS))
def test_only_init_creates_the_sqlite_file_whatever_the_url_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "t.db"
    (tmp_path / "link.db").symlink_to(database)
    url = SQLITE_URL_FORMS[form].format(path=database, relative="t.db", link=tmp_path / "link.db")
    for command in (["info"], ["ping"], ["users", "list"], ["check"]):
        result = Dbtool(url)(*command)
        assert_clean_error(result, 3, "does not exist", "dbtool init")
        assert not database.exists(), command
    assert Dbtool(url)("init").exit_code == 0 and database.is_file()


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_url_option_is_an_error_not_another_database(tmp_path: Path, blank: str) -> None:
    from tests.test_config import run

    other = tmp_path / "other.db"
    result = run("--url", blank, "reset", "--yes", env={"DATABASE_URL": f"sqlite:///{other}"})
    assert_clean_error(result, 2, "--url is empty")
    assert not other.exists()


# --- 4. exit codes and one-line errors ------------------------------------------------------


def _failures(dbtool: Dbtool) -> list[tuple[tuple[str, ...], str | None, int]]:
    """(args, stdin, documented exit code) for one failure of each kind."""
    return [
        (("--url", "oracle://x@h/db", "ping"), None, 2),
        (("--url", "postgresql://postgres@127.0.0.1:1/x", "ping"), None, 3),
        (("users", "add", "dup@example.com", "--password-stdin"), PASSWORD, 4),
        (("drop",), None, 5),
        (("users", "show", "nobody@example.com"), None, 1),
        (("users", "list", "--limit", "-1"), None, 2),
    ]


def test_debug_keeps_every_exit_code_and_adds_a_traceback(initialised: Dbtool) -> None:
    initialised("users", "add", "dup@example.com", "--password-stdin", input=PASSWORD)
    for args, stdin, code in _failures(initialised):
        plain = initialised(*args, input=stdin)
        assert plain.exit_code == code, (args, plain.output)
        assert "Traceback" not in plain.output
        debug = initialised("--debug", *args, input=stdin)
        assert debug.exit_code == code, (args, debug.output)


def test_debug_shows_the_traceback(initialised: Dbtool) -> None:
    result = initialised("--debug", "users", "show", "nobody@example.com")
    assert result.exit_code == 1 and "Traceback" in result.stderr
    assert "error: no user matches" in result.stderr


USAGE_CASES = [
    (("users", "list", "--limit", "99999999999999999999"), "--limit"),
    (("users", "list", "--limit", "-1"), "--limit"),
    (("users", "list", "--offset", "-5"), "--offset"),
    (("pool-status", "--interval", "nan"), "--interval"),
    (("pool-status", "--interval", "inf"), "--interval"),
    (("pool-status", "--probe-hold", "-1"), "--probe-hold"),
    (("pool-status", "--idle-warning", "nan"), "--idle-warning"),
    (("ping", "--wait", "nan"), "--wait"),
    (("init", "--wait", "inf"), "--wait"),
    (("users", "import", "-", "--batch-size", "0"), "--batch-size"),
    (("users", "list", "--format", "xml"), "--format"),
    (("nosuchcommand",), "No such command"),
    (("users", "list", "--bogus"), "--bogus"),
]


@pytest.mark.parametrize(("args", "fragment"), USAGE_CASES)
def test_usage_errors_are_one_line_and_a_hint(
    initialised: Dbtool, args: tuple[str, ...], fragment: str
) -> None:
    result = initialised(*args)
    assert_clean_error(result, 2, fragment)
    assert "╭" not in result.output  # no boxed panel
    assert "for help." in result.stderr.splitlines()[-1]


URL_CASES = [
    ("postgresql://u@localhost:99999/db", "port 99999"),
    ("postgresql://u@localhost/da%00ta", "NUL"),
    ("postgresql://u@localhost:0/db", "port 0"),
    # Readable files that are not what they are named for: a setting error naming the
    # file, at load, not "SSL error: None" at the first connection.
    ("postgresql://u@localhost/db?sslcert=/etc/passwd", "sslcert=/etc/passwd is not a PEM"),
    ("postgresql://u@localhost/db?sslrootcert=/etc/passwd", "no usable PEM certificate"),
    ("postgresql://u@localhost/db?sslkey=/etc/passwd", "sslkey needs sslcert"),
]


@pytest.mark.parametrize(("url", "fragment"), URL_CASES)
def test_malformed_urls_are_exit_2(url: str, fragment: str) -> None:
    from tests.test_config import run

    result = run("ping", env={"DATABASE_URL": url})
    assert "None" not in assert_clean_error(result, 2, fragment)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_real_certificate_and_key_pass_the_load_check(tmp_path: Path) -> None:
    """The load-time check of sslcert/sslkey accepts what asyncpg would use."""
    from tests.test_config import run

    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=dbtool", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    url = f"postgresql://u@localhost/db?sslcert={cert}&sslkey={key}&sslrootcert={cert}"
    result = run("config", env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    alone = run("config", env={"DATABASE_URL": f"postgresql://u@localhost/db?sslcert={cert}"})
    assert_clean_error(alone, 2, f"sslcert={cert} is not a PEM certificate and its unencrypted")


def test_invalid_utf8_anywhere_is_exit_2_with_one_line(initialised: Dbtool, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBTOOL_", "DATABASE_URL"))}
    script = dbtool_executable().encode()
    cases = [
        ([script, b"--url", initialised.url.encode(), b"users", b"list", b"--search", b"\xff"],
         None, env),
        ([script, b"--url", initialised.url.encode(), b"users", b"add", b"abc@example.com",
          b"--password-stdin"], b"pass\xffword-long\n", env),
        ([script, b"ping"], None, {**env, "DATABASE_URL": "sqlite:///x\udcff.db"}),
    ]  # fmt: skip
    assert len(cases) == UTF8_CASES
    for argv, stdin, environment in cases:
        done = subprocess.run(argv, input=stdin, capture_output=True, env=environment,
                              timeout=60)  # fmt: skip
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode == 2, (argv, stderr)
        assert "Traceback" not in stderr and "UTF-8" in stderr, stderr
        assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.sqlite
def test_a_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    result = Dbtool(f"sqlite:///{tmp_path / 'dir.db'}").run("users", "list")
    assert_clean_error(result, 3, "is a directory")
    assert "Traceback" not in result.output


def _as_a_plain_user() -> list[str]:
    """A prefix that runs a command without root's power to ignore file permissions (as
    root: setpriv drops CAP_DAC_OVERRIDE; otherwise the permissions apply anyway)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.sqlite
def test_a_database_the_user_cannot_write_is_one_clear_line(tmp_path: Path) -> None:
    """A WAL database in a folder this user cannot write to cannot even be read (its -shm
    file cannot be made): exit 3 saying so. A read-only file in a writable folder can be
    read, and a write is refused (exit 5, as on a standby); nothing changes."""
    folder = tmp_path / "shared"
    folder.mkdir()
    database = folder / "app.db"
    owner = Dbtool(f"sqlite:///{database}")
    assert owner("init").exit_code == 0
    assert owner("users", "add", "a@example.com", "--password-stdin",
                 input="correct-horse-9\n").exit_code == 0  # fmt: skip
    before = database.read_bytes()

    def as_reader(*args: str, input: str | None = None) -> Result:
        done = subprocess.run(
            [*_as_a_plain_user(), dbtool_executable(), "--url", owner.url, *args],
            input=input, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return Result(done.returncode, done.stdout, done.stderr)

    database.chmod(0o444)
    listed = as_reader("users", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [user["email"] for user in json.loads(listed.stdout)] == ["a@example.com"]
    added = as_reader("users", "add", "b@example.com", "--password-stdin",
                      input="correct-horse-9\n")  # fmt: skip
    assert_clean_error(added, 5, f"{database} is read-only for this user")

    for extra in folder.glob("app.db-*"):
        extra.unlink()
    folder.chmod(0o555)
    try:
        for args in (("users", "list"), ("check",), ("info",)):
            assert_clean_error(as_reader(*args), 3, "needs to create app.db-shm",
                               f"cannot write to {folder}")  # fmt: skip
    finally:
        folder.chmod(0o755)
    database.chmod(0o600)
    assert database.read_bytes() == before
    assert [row[0] for row in run_sql(owner.url, "SELECT email FROM users")] == ["a@example.com"]


def test_export_file_errors_are_exit_1_naming_the_file(initialised: Dbtool, tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    result = initialised("users", "export", "-o", str(target))
    assert_clean_error(result, 1, "cannot write", "a-directory")
    if Path("/dev/full").is_char_device():  # disk full, on a device it must not replace
        full = initialised.run("users", "export", "-o", "/dev/full")
        assert_clean_error(full, 1, "cannot write", "No space left")
        assert Path("/dev/full").is_char_device()


# --- 5. every per-row problem is a row error --------------------------------------------------


UTF8_CASES = 3  # --search, a password on stdin, DATABASE_URL
ROW_PROBLEMS = 7  # the broken rows of the next two tests


def test_every_row_problem_is_skippable_with_its_line(initialised: Dbtool, tmp_path: Path) -> None:
    rows = [
        {"email": "fine@example.com", "hashed_password": GOOD},
        {"email": "future@example.com", "hashed_password": GOOD,
         "created_at": "9999-12-31T23:59:59-14:00"},
        {"email": "long" * 100 + "@example.com", "hashed_password": GOOD},
        {"email": "hash@example.com", "hashed_password": GOOD + "A" * 300},
        {"email": "user@example.com", "hashed_password": GOOD, "username": "x" * 300},
        {"email": "fine2@example.com", "hashed_password": GOOD},
    ]  # fmt: skip
    text = "".join(json.dumps(row) + "\n" for row in rows)
    text += "[" * 200_000 + "]" * 200_000 + "\n"  # nested 200k deep
    text += json.dumps({"email": "big@example.com", "hashed_password": "x" * (2 << 20)}) + "\n"
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    strict = initialised("users", "import", str(path))
    assert_clean_error(strict, 1, "6 invalid rows")
    for line in (2, 3, 4, 5, 7, 8):  # line 6 is fine
        assert f"line {line}:" in strict.stderr, (line, strict.stderr)
    assert "out of range" in strict.stderr and "nested too deeply" in strict.stderr
    assert "longer than 1,048,576 characters" in strict.stderr
    assert "x" * 100 not in strict.stderr  # no value echoed in full
    skipped = initialised("users", "import", str(path), "--skip-invalid", "--json")
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.stdout)["inserted"] == 2


def test_oversized_csv_fields_and_duplicate_columns(initialised: Dbtool, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text(f"email,hashed_password\nbig@example.com,{'y' * 200_000}\n"
                    f'okay@example.com,"{GOOD}"\n')  # fmt: skip
    result = initialised("users", "import", str(path), "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rejected"] == 1 and "line 2:" in result.stderr
    duplicated = tmp_path / "dup.csv"
    duplicated.write_text(f'email,email,hashed_password\na@example.com,b@example.com,"{GOOD}"\n')
    assert_clean_error(initialised("users", "import", str(duplicated)), 2, "repeats column")


def test_a_byte_order_mark_works_from_stdin_too(initialised: Dbtool) -> None:
    data = f'\ufeffemail,hashed_password\nbom@example.com,"{GOOD}"\n'
    result = initialised("users", "import", "-", "--format", "csv", input=data)
    assert result.exit_code == 0, result.output
    assert run_sql(initialised.url, "SELECT email FROM users") == [("bom@example.com",)]


QUOTED_FIELDS = "email=Email,password=PasswordHash,active=IsActive"


def test_names_that_need_quoting_work_in_every_command(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    """A mixed-case user table with mixed-case columns, in a schema with a space on
    PostgreSQL: every statement quotes them (the id sequence and COPY included)."""
    env = {"DBTOOL_MODELS": "tests.apps.quoted_app:Base", "DBTOOL_USER_FIELDS": QUOTED_FIELDS,
           "PYTHONPATH": str(Path(__file__).parents[1])}  # fmt: skip
    if backend == "postgres":
        env["QUOTED_APP_SCHEMA"] = "Auth Schema"
        run_sql(database_url, 'CREATE SCHEMA "Auth Schema"')
    dbtool = Dbtool(database_url, env=env)
    assert dbtool("init").exit_code == 0
    added = dbtool("users", "add", "a@example.com", "--password-stdin", input=PASSWORD)
    assert added.exit_code == 0, added.output
    without_ids, with_ids = tmp_path / "new.csv", tmp_path / "ids.csv"
    without_ids.write_text(f"Email,password\nb@example.com,{PASSWORD}\n")
    with_ids.write_text(f"ID,Email,password\n50,c@example.com,{PASSWORD}\n")
    for path, *options in [(without_ids,), (with_ids,), (with_ids, "--on-conflict", "skip"),
                           (with_ids, "--on-conflict", "update")]:  # fmt: skip
        imported = dbtool("users", "import", str(path), *options)
        assert imported.exit_code == 0, imported.output
    next_one = dbtool("users", "add", "d@example.com", "--password-stdin", "--json",
                      input=PASSWORD)  # fmt: skip
    assert json.loads(next_one.stdout)["ID"] == 51  # the sequence moved past the file's ids
    listed = dbtool("users", "list", "--json")
    assert [user["Email"] for user in json.loads(listed.stdout)] == [
        "a@example.com", "b@example.com", "c@example.com", "d@example.com"]  # fmt: skip
    exported = dbtool("users", "export", "-o", str(tmp_path / "out.csv"))
    assert exported.exit_code == 0 and "c@example.com" in (tmp_path / "out.csv").read_text()
    checked = dbtool("check")
    assert checked.exit_code == 0, checked.output
    assert dbtool("users", "delete", "50", "--yes").exit_code == 0
    assert dbtool("reset", "--yes").exit_code == 0
    assert dbtool("drop", "--yes").exit_code == 0


# --- 6. concurrency and faults --------------------------------------------------------------


@pytest.mark.parametrize("policy", ["skip", "update"])
def test_overlapping_imports_in_reverse_order_never_deadlock(
    initialised: Dbtool, tmp_path: Path, policy: str
) -> None:
    emails = [f"user{n}@example.com" for n in range(3000)]
    forward = tmp_path / "forward.csv"
    backward = tmp_path / "backward.csv"
    for path, order in ((forward, emails), (backward, emails[::-1])):
        path.write_text(
            "email,hashed_password,is_superuser\n"
            + "".join(
                f'{email},"{GOOD}",{"true" if path is backward else "false"}\n' for email in order
            )
        )
    processes = [
        initialised.spawn("users", "import", str(path), "--on-conflict", policy, "--json",
                          "--batch-size", "200")
        for path in (forward, backward)
    ]  # fmt: skip
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    summaries = [json.loads(out) for _, out, _ in outcomes]
    assert sum(s["inserted"] for s in summaries) == 3000
    if policy == "update":  # the second import updates every row the first inserted
        assert sorted(s["updated"] for s in summaries) == [0, 3000]
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(3000,)]


def test_reset_is_one_transaction(initialised: Dbtool, database_url: str, backend: str) -> None:
    """If re-creating fails after the drop, the drop is undone too: nothing is lost. On
    MySQL, whose DDL commits statement by statement, it fails with what is in the way, and
    the next init completes the schema (docs/reliability.md)."""
    initialised("users", "add", "keep@example.com", "--password-stdin", input=PASSWORD)
    env = {"DBTOOL_MODELS": "tests.apps.intid_app:Base"}
    app = Dbtool(database_url, env=env)
    assert app("init").exit_code == 0
    app("users", "add", "a@example.com", "--set", "full_name=A", "--password-stdin",
        input=PASSWORD)  # fmt: skip
    run_sql(database_url, "DROP TABLE posts")
    # Something in the way of re-creating posts: an index (SQLite) or a type (PostgreSQL)
    # of that name, which the schema inspection does not see as a table.
    blocker = {
        "postgres": "CREATE TYPE posts AS (x int)",
        "sqlite": "CREATE INDEX posts ON users (email)",
        # InnoDB's foreign key names are the database's: posts' own (posts_ibfk_1) taken.
        "mariadb": f"CREATE TABLE blocker (a {column_type(database_url, 'users', 'id')},"
        " CONSTRAINT posts_ibfk_1 FOREIGN KEY (a) REFERENCES users (id))",
    }[backend]
    run_sql(database_url, blocker)
    result = app("reset", "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert run_sql(database_url, "SELECT email FROM users") == [("keep@example.com",)]
    if backend == "mariadb":
        run_sql(database_url, "DROP TABLE blocker")
        assert app("init").exit_code == 0 and {"accounts", "posts"} <= table_names(database_url)
        return
    assert run_sql(database_url, "SELECT email FROM accounts") == [("a@example.com",)]


def test_sigterm_during_export_leaves_no_partial_file(initialised: Dbtool, tmp_path: Path) -> None:
    rows = "".join(f"{{\"email\": \"sig{n}@example.com\", \"hashed_password\": \"{GOOD}\"}}\n"
                   for n in range(20000))  # fmt: skip
    assert initialised("users", "import", "-", "--format", "jsonl", input=rows).exit_code == 0
    target = tmp_path / "out.csv"
    process = initialised.spawn("users", "export", "--include-hashes", "-o", str(target),
                                env={"PYTHONUNBUFFERED": "1"})  # fmt: skip
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".out.csv.*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    _, stderr = process.communicate()
    if code == 0:  # it finished first: then the whole file is there
        assert len(target.read_text().splitlines()) == 20001
    else:
        assert code == 130, stderr
        assert "Traceback" not in stderr
        assert not target.exists()
    assert not list(tmp_path.glob(".out.csv.*"))


# A step of a command in the event loop, stopped by SIGTERM through dbtool's handler.
SIGTERM_IN_A_STEP = """
import asyncio, os, signal
from dbtool.app import _terminated
signal.signal(signal.SIGTERM, _terminated)
seen = []
async def step():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise
try:
    asyncio.Runner().run(step())
except KeyboardInterrupt:
    seen.append("KeyboardInterrupt")
print(seen)
"""


def test_sigterm_cancels_the_running_step_as_ctrl_c_does() -> None:
    """SIGTERM is not raised as KeyboardInterrupt wherever the process happens to be (inside
    the driver's or the event loop's code, which crashed or hung about one export in a
    hundred): the running step is cancelled, as asyncio does for Ctrl-C, and unwinds."""
    done = subprocess.run([sys.executable, "-c", SIGTERM_IN_A_STEP], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.stdout.strip() == "['cancelled', 'KeyboardInterrupt']", done.stderr


@pytest.mark.sqlite
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_readers_never_wait_for_a_writer(initialised: Dbtool) -> None:
    path = initialised.url.split("///", 1)[1]
    initialised("users", "add", "reader@example.com", "--password-stdin", input=PASSWORD)
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE users SET username = 'changed'")
    release = threading.Timer(40, lambda: None)  # the writer would hold its lock for 40 s
    release.start()
    try:
        for args in (("users", "list"), ("users", "show", "reader@example.com"), ("info",),
                     ("ping",), ("users", "export")):  # fmt: skip
            started = time.monotonic()
            result = initialised.run(*args)
            assert result.exit_code == 0, (args, result.stderr)
            assert time.monotonic() - started < 10, args
            assert "changed" not in result.stdout  # it read the committed state
    finally:
        release.cancel()
        writer.execute("ROLLBACK")
        writer.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"  # init switched the file to write-ahead logging


# --- 7. the library on a login path --------------------------------------------------------


def test_authenticate_takes_the_same_time_for_unknown_users(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the real Argon2 parameters: an unknown email costs what a wrong password costs."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher
    from pwdlib.hashers.bcrypt import BcryptHasher

    from dbtool.db import Database
    from dbtool.schema.tables import create_schema
    from dbtool.users.service import add_user, authenticate, update_user

    real = {"argon2": PasswordHash((Argon2Hasher(), BcryptHasher()))}
    monkeypatch.setattr(passwords, "_hashers", real)
    monkeypatch.setattr("dbtool.users.service._dummy_hashes", {})

    async def run() -> tuple[float, float, object, object, object, object]:
        async with Database.from_url(database_url, must_exist=False) as db:
            await create_schema(db)
            async with db.session() as session:
                await add_user(session, email="known@example.com", password=PASSWORD)
                await add_user(session, email="off@example.com", password=PASSWORD)
                await update_user(session, "off@example.com", is_active=False)

            async def timed(ident: str, password: str) -> float:
                started = time.perf_counter()
                async with db.session() as session:
                    await authenticate(session, ident, password)
                return time.perf_counter() - started

            await timed("warm@example.com", "x")  # the dummy hash is made once per process
            known = sorted([await timed("known@example.com", "wrong") for _ in range(5)])[2]
            unknown = sorted([await timed("nobody@example.com", "wrong") for _ in range(5)])[2]
            async with db.session() as session:
                ok = await authenticate(session, "known@example.com", PASSWORD)
                wrong = await authenticate(session, "known@example.com", "wrong")
                inactive = await authenticate(session, "off@example.com", PASSWORD)
                missing = await authenticate(session, "nobody@example.com", PASSWORD)
            return known, unknown, ok, wrong, inactive, missing

    known, unknown, ok, wrong, inactive, missing = asyncio.run(run())
    assert 0.5 < unknown / known < 2, (known, unknown)
    assert ok is not None and wrong is None and inactive is None and missing is None


def test_authenticate_upgrades_old_hashes_and_survives_hostile_ones(
    initialised: Dbtool,
) -> None:
    from dbtool.db import Database
    from dbtool.users.service import authenticate

    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    plant(initialised, "old@example.com", legacy)
    plant(initialised, "evil@example.com", bcrypt_cost(31))

    async def run(**settings: str) -> tuple[object, object]:
        db = Database.from_url(initialised.url, **settings)
        async with db, db.session() as session:
            return (
                await authenticate(session, "old@example.com", PASSWORD),
                await authenticate(session, "evil@example.com", PASSWORD),
            )

    def stored() -> str:
        return str(run_sql(initialised.url, "SELECT hashed_password FROM users WHERE email = :e",
                           {"e": "old@example.com"})[0][0])  # fmt: skip

    kept, evil = asyncio.run(run())
    assert kept is not None and evil is None
    assert stored() == legacy  # no scheme chosen: a bcrypt hash (of the current cost) stays
    upgraded, evil = asyncio.run(run(password_hash="argon2"))  # chosen: replaced
    assert upgraded is not None and evil is None
    assert stored().startswith("$argon2id$")


def test_add_user_applies_the_settings_policy(initialised: Dbtool) -> None:
    from dbtool.db import Database
    from dbtool.errors import InvalidInputError
    from dbtool.users.service import add_user

    async def run() -> None:
        db = Database.from_url(initialised.url, password_min_length=20)
        async with db, db.session() as session:
            await add_user(session, email="pol@example.com", password="only-15-chars!!")

    with pytest.raises(InvalidInputError, match="at least 20"):
        asyncio.run(run())


def test_engine_options_reach_the_engine(database_url: str) -> None:
    from sqlalchemy.pool import NullPool

    from dbtool.db import Database

    async def run() -> str:
        db = Database.from_url(database_url, must_exist=False,
                               engine_options={"poolclass": NullPool})  # fmt: skip
        async with db:
            return type(db.engine.pool).__name__

    assert asyncio.run(run()) == "NullPool"


# --- 8. a password on the command line ------------------------------------------------------


def test_a_password_in_the_url_option_draws_a_warning(tmp_path: Path) -> None:
    from tests.test_config import run

    result = run("--url", "postgresql://u:s3cret@localhost/db", "config")
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "DATABASE_URL" in result.stderr
    assert "s3cret" not in result.output
    quiet = run("--url", f"sqlite:///{tmp_path / 'x.db'}", "config")
    assert "warning" not in quiet.stderr


# --- the README example under real HTTP keep-alive --------------------------------------------


def test_the_readme_application_under_keep_alive(database_url: str, tmp_path: Path) -> None:
    """The README's FastAPI example behind uvicorn: 100 requests on one kept-alive
    connection, conflicts and invalid input mixed in, every one answered; identifiers no
    user can have (a NUL character) are "not found" or a failed login, never a 500."""
    import re
    import socket

    import httpx

    section = (Path(__file__).parents[1] / "docs" / "guides" / "application.md").read_text()
    code = re.search(r"```python\n(.+?)\n```", section, re.DOTALL)
    assert code
    (tmp_path / "readme_app.py").write_text(code.group(1))
    assert Dbtool(database_url)("init").exit_code == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(tmp_path)}
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(dbtool_executable()), "python"), "-m", "uvicorn",
         "readme_app:app", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          limits=httpx.Limits(max_connections=1)) as client:  # fmt: skip
            for _ in range(100):
                try:
                    client.get("/users/nobody")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            statuses: list[int] = []
            for n in range(25):
                body = {"email": f"user{n}@example.com", "password": PASSWORD}
                statuses.append(client.post("/users", json=body).status_code)
                statuses.append(client.post("/users", json=body).status_code)  # conflict
                statuses.append(client.post("/users", json={"email": "bad", "password": PASSWORD})
                                .status_code)  # fmt: skip
                statuses.append(client.get(f"/users/nobody{n}").status_code)
            logins = [
                client.post("/login", json={"email": "user1@example.com", "password": PASSWORD}),
                client.post("/login", json={"email": "user1@example.com", "password": "nope"}),
                client.post("/login", json={"email": "a\u0000@x", "password": PASSWORD}),
                client.post("/login", json={"email": "user1\u0000", "password": PASSWORD}),
            ]
            lookups = [client.get(path).status_code for path in ("/users/a%00x", "/users/%00")]
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert statuses == [201, 409, 422, 404] * 25
    assert [response.status_code for response in logins] == [200, 401, 401, 401]
    assert lookups == [404, 404]
    assert "Traceback" not in errors


def test_the_readme_tally_counts_these_cases() -> None:
    """README's Reliability section: the bad inputs these tests cover."""
    headerless_misquoted_blank_url = 3
    total = (
        len(HOSTILE_HASHES)
        + len(USAGE_CASES)
        + len(URL_CASES)
        + UTF8_CASES
        + ROW_PROBLEMS
        + headerless_misquoted_blank_url
    )
    reliability = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    assert f"**Bad inputs covered by tests: {total}**" in reliability


@pytest.mark.sqlite
def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """It holds password hashes: mode 0600 whatever the umask, and SQLite gives its -wal and
    -shm files the same mode."""
    import sqlite3

    database = tmp_path / "private.db"
    previous = os.umask(0o022)
    try:
        assert Dbtool(f"sqlite:///{database}")("init").exit_code == 0
    finally:
        os.umask(previous)
    with sqlite3.connect(database) as conn:  # a writer in WAL mode: -wal and -shm exist
        conn.execute("DELETE FROM users")
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in tmp_path.iterdir()
            if path.name.startswith("private.db")
        }
    assert modes == {"private.db": 0o600, "private.db-wal": 0o600, "private.db-shm": 0o600}


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DBTOOL_LOCK_TIMEOUT", "1e12", "at most 2147483"),
        ("DBTOOL_LOCK_TIMEOUT", "0", "above 0"),
        ("DATABASE_URL", "sqlite:///a.db\nsqlite:///b.db", "line break"),
        ("DATABASE_URL", "sqlite:///a\tb.db", "line break or a tab"),
    ],
)
def test_a_bad_setting_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    """A setting's error is exit 2 when the settings are read (config included), in one
    line, before anything connects or runs."""
    monkeypatch.chdir(tmp_path)
    from tests.test_config import run

    for command in (["config"], ["init"]):
        result = run(*command, env={name: value})
        assert_clean_error(result, 2, name, fragment)
    assert not list(tmp_path.iterdir())


def test_an_error_is_one_line_of_bounded_length_and_whole_with_debug(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """10,000 unknown columns: one line of about 300 characters saying what was left out;
    --debug shows every name."""
    names = [f"extra{number}" for number in range(10_000)]
    source = tmp_path / "wide.csv"
    source.write_text(
        "email," + ",".join(names) + "\nada@example.com," + ",".join("1" * 10_000) + "\n"
    )
    line = assert_clean_error(initialised("users", "import", str(source)), 2, "unknown column")
    assert len(line) < 400 and "more characters; --debug shows them" in line
    whole = initialised("--debug", "users", "import", str(source))
    assert whole.exit_code == 2 and all(name in whole.stderr for name in names[:100])
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize(
    "content",
    [
        "DATABASE_URL=postgresql://app:Hunter2Secret@db/app\nOTHER=1\n",  # a .env given by mistake
        "[alembic]\nscript_location = Hunter2Secret\n[x\n",  # unparsable past its first line
        "[alembic]\nscript_location = %(Hunter2Secret)s\n",  # a broken interpolation
    ],
)
def test_errors_quote_no_file_content(
    dbtool: Dbtool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    """A file that is not the Alembic project it is named as: the error names the file
    (and the line), never what it holds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prod.env").write_text(content)
    result = dbtool("init", env={"DBTOOL_ALEMBIC_CONFIG": "prod.env"})
    line = assert_clean_error(result, 2, "prod.env", "cannot be read")
    assert "Hunter2Secret" not in result.output and "DATABASE_URL=" not in line


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ("password=email", "email and password roles of User are both column email"),
        ("superuser=is_active", "active and superuser roles"),
        ("email=email,email=username", "the email role is given more than once"),
        ("username=email", "email and username roles"),
    ],
)
def test_a_field_map_gives_each_role_its_own_column(
    initialised: Dbtool, fields: str, fragment: str
) -> None:
    """Validated as a whole, before anything is read or written: two roles on one column
    would show hashes as emails, or store a superuser flag in is_active."""
    initialised("users", "add", "ada@example.com", env={"DBTOOL_USER_PASSWORD": PASSWORD})
    for command in (["users", "list"], ["users", "add", "bob@example.com", "--superuser"]):
        result = initialised(*command, env={"DBTOOL_USER_FIELDS": fields,
                                            "DBTOOL_USER_PASSWORD": PASSWORD})  # fmt: skip
        line = assert_clean_error(result, 2, "DBTOOL_USER_FIELDS", fragment)
        assert "$argon2" not in result.output and "$argon2" not in line
    assert run_sql(initialised.url, "SELECT email, is_superuser FROM users") == [
        ("ada@example.com", False)
    ]


# A window-title change (OSC), clear-screen (CSI) and a colour, as an application's data.
HOSTILE_NAME = "ada\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x9b"


@pytest.mark.parametrize("command", [["users", "list"], ["users", "show", "ada@example.com"]])
def test_control_characters_in_data_are_shown_not_obeyed_on_a_terminal(
    initialised: Dbtool, command: list[str]
) -> None:
    """On a terminal every control character of a value is escaped (markup already is
    shown as typed); piped, the bytes are written as they are, for scripts."""
    from tests.helpers import Terminal

    assert initialised("users", "add", "ada@example.com",
                       env={"DBTOOL_USER_PASSWORD": PASSWORD}).exit_code == 0  # fmt: skip
    run_sql(initialised.url, "UPDATE users SET username = :name", {"name": HOSTILE_NAME})
    terminal = Terminal("--url", initialised.url, *command)
    assert terminal.wait() == 0, terminal.transcript
    for raw in ("\x1b]0;", "\x1b[2J", "\x1b[31m", "\x07", "\x9b"):
        assert raw not in terminal.transcript, (raw, terminal.transcript)
    assert "ada\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x9b" in terminal.transcript.replace(
        "\r\n", "\n"
    )
    piped = initialised(*command)
    assert HOSTILE_NAME in piped.stdout


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_pipe_is_read_once_even_with_a_progress_bar(
    initialised: Dbtool, tmp_path: Path, fmt: str
) -> None:
    """On a terminal the progress bar counts a regular file's lines first; a FIFO (as a
    pipe or a process substitution) can be read only once, so it is not counted: every
    row is imported, and a writer that has finished does not leave the import waiting."""
    import threading

    from tests.helpers import Terminal

    rows = [f"pipe{number}@example.com" for number in range(3)]
    if fmt == "csv":
        content = "email,hashed_password\n" + "".join(f'{email},"{GOOD}"\n' for email in rows)
    else:
        content = "".join(json.dumps({"email": e, "hashed_password": GOOD}) + "\n" for e in rows)
    fifo = tmp_path / "users.pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as stream:  # blocks until the import opens it
            stream.write(content)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    terminal = Terminal("--url", initialised.url, "users", "import", str(fifo), "--format", fmt)
    assert terminal.wait(timeout=60) == 0, terminal.transcript
    writer.join(timeout=10)
    assert "Imported 3" in terminal.transcript
    found = run_sql(initialised.url, "SELECT email FROM users ORDER BY email")
    assert [email for (email,) in found] == rows


def test_rejects_is_opened_only_for_the_first_rejected_row(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """An import that stops at the header (an unknown column) leaves an existing rejects
    file as it was; one with a rejected row replaces it, readable by its owner only."""
    rejects = tmp_path / "rejects.csv"
    rejects.write_text("yesterday's rejects\n")
    source = tmp_path / "in.csv"
    source.write_text(f'email,hashed_password,nickname\nada@example.com,"{GOOD}",ada\n')
    stopped = initialised("users", "import", str(source), "--rejects", str(rejects))
    assert_clean_error(stopped, 2, "unknown column")
    assert rejects.read_text() == "yesterday's rejects\n"
    source.write_text(f'email,hashed_password\nada@example.com,"{GOOD}"\nnot-an-email,"{GOOD}"\n')
    written = initialised(
        "users", "import", str(source), "--skip-invalid", "--rejects", str(rejects)
    )
    assert written.exit_code == 0, written.output
    header, rejected = rejects.read_text().splitlines()
    assert header.startswith("line,reason,") and rejected.startswith("3,")
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


def test_an_unfinished_export_is_a_visible_partial_file(tmp_path: Path) -> None:
    """The export writes beside its target under a name `ls` shows, mode 0600, and renames
    it only when complete: what a SIGKILL leaves behind is seen, never hidden."""
    from dbtool.transfer.files import replace_when_done

    target = tmp_path / "users.csv"
    with replace_when_done(target) as stream:
        stream.write("email\n")
        (partial,) = tmp_path.iterdir()
        assert partial.name.startswith("users.csv.partial-") and not target.exists()
        assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["users.csv"]
    assert target.read_text() == "email\n"


def test_an_empty_string_round_trips_through_export_and_import(
    database_url: str, tmp_path: Path
) -> None:
    """What `users add --set full_name=` stores ("" in a NOT NULL column), `users export`
    writes and `users import` takes back: an empty field of a required text column is the
    empty string, not a missing value."""
    app = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.intid_app:Base"})
    assert app("init").exit_code == 0
    added = app("users", "add", "ada@example.com", "--set", "full_name=",
                env={"DBTOOL_USER_PASSWORD": PASSWORD})  # fmt: skip
    assert added.exit_code == 0, added.output
    exported = tmp_path / "accounts.csv"
    assert app("users", "export", "--include-hashes", "-o", str(exported)).exit_code == 0
    assert app("users", "delete", "ada@example.com", "--yes").exit_code == 0
    imported = app("users", "import", str(exported))
    assert imported.exit_code == 0, imported.output
    assert run_sql(database_url, "SELECT email, full_name FROM accounts") == [
        ("ada@example.com", "")
    ]
    missing = tmp_path / "missing.csv"
    missing.write_text(f'email,password_hash\nbob@example.com,"{GOOD}"\n')
    refused = app("users", "import", str(missing))
    assert refused.exit_code != 0 and "full_name is missing" in refused.stderr


def test_numbers_out_of_range_are_row_errors(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    """An id the column cannot hold (above PostgreSQL's integer, above 64 bits anywhere),
    a JSON number too long to read: a row error with its line, skippable; ids of 0 or
    below import, and the id sequence is left alone for them."""
    app = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.intid_app:Base"})
    assert app("init").exit_code == 0
    too_big = 2**63 if backend == "sqlite" else 2**31
    lines = [
        {"id": too_big, "email": "big@example.com"},
        {"id": 2**63 + 1, "email": "bigger@example.com"},
        {"id": 0, "email": "zero@example.com"},
        {"id": -5, "email": "negative@example.com"},
    ]
    rows = [json.dumps({**line, "password_hash": GOOD, "full_name": "N"}) for line in lines]
    rows.append('{"id": ' + "9" * 5000 + ', "email": "long@example.com"}')
    source = tmp_path / "ids.jsonl"
    source.write_text("\n".join(rows) + "\n")
    strict = app("users", "import", str(source))
    assert strict.exit_code == 1 and "line 1: id is out of the column's range" in strict.stderr
    assert "line 2: id is out of the column's range" in strict.stderr
    assert "line 5: not valid JSON here (a number too long)" in strict.stderr
    assert "Traceback" not in strict.output and "unexpected" not in strict.output
    skipped = app("users", "import", str(source), "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert sorted(run_sql(database_url, "SELECT id FROM accounts")) == [(-5,), (0,)]
    added = app("users", "add", "new@example.com", "--set", "full_name=New",
                env={"DBTOOL_USER_PASSWORD": PASSWORD})  # fmt: skip
    assert added.exit_code == 0, added.output


@pytest.mark.sqlite
@pytest.mark.parametrize("command", [["reset", "--yes"], ["reset", "--sql"], ["drop", "--yes"]])
def test_reset_and_drop_never_create_the_sqlite_file(tmp_path: Path, command: list[str]) -> None:
    database = tmp_path / "missing.db"
    result = Dbtool(f"sqlite:///{database}")(*command)
    assert_clean_error(result, 3, "does not exist", "dbtool init")
    assert not database.exists()


# An application's models module that takes its time to import (a slow network mount, an
# import-time query): it says when it has started, then blocks.
SLOW_MODELS = """
import pathlib, time
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
pathlib.Path("import-started").touch()
time.sleep(60)
class Base(DeclarativeBase):
    pass
class User(Base):
    __tablename__ = "slow_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    hashed_password: Mapped[str]
"""


@pytest.mark.parametrize(
    ("command", "stop"),
    [
        (["init"], signal.SIGINT),
        (["init"], signal.SIGTERM),
        (["users", "list"], signal.SIGINT),
        (["reset", "--yes"], signal.SIGTERM),
        (["check"], signal.SIGINT),
    ],
    ids=["init-INT", "init-TERM", "list-INT", "reset-TERM", "check-INT"],
)
def test_the_first_signal_stops_a_command_while_the_models_import(
    dbtool: Dbtool, database_url: str, tmp_path: Path, command: list[str], stop: signal.Signals
) -> None:
    """The import blocks for a minute: the signal must end the command there and then, with
    exit 130 and nothing created (no SQLite file, no table), not once the import is over."""
    (tmp_path / "slow_models.py").write_text(SLOW_MODELS)
    process = dbtool.spawn(*command, env={"DBTOOL_MODELS": "slow_models:Base"})
    deadline = time.monotonic() + 30
    while not (tmp_path / "import-started").exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(stop)
    try:
        _, stderr = process.communicate(timeout=20)  # the import alone would take 60 s
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"{stop.name} was not honoured during the import") from None
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "cancelled" in stderr
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "test.db").exists()
    else:
        assert table_names(database_url) == set()
