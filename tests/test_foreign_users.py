"""Users brought over from other systems: Django, Auth0, Firebase; column mapping; their
hashes verified at the first login and replaced by Argon2id.

Django's export comes from a real Django site (tests/apps/django_site.py, Django's own
hashers); Auth0's and Firebase's are their documented export shapes, with hashes made by
bcrypt and by an independent implementation of Firebase's scrypt (firebase-scrypt, on
pycryptodome) plus the test vector Firebase publishes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from dbtool.users import passwords
from tests.apps.django_site import PASSWORDS as DJANGO_PASSWORDS
from tests.helpers import Dbtool, assert_clean_error, dbtool_executable, run_sql

ROOT = Path(__file__).resolve().parents[1]


def stored(
    dbtool: Dbtool, email: str, table: str = "users", column: str = "hashed_password"
) -> str:
    rows = run_sql(dbtool.url, f'SELECT "{column}" FROM "{table}" WHERE email = :e', {"e": email})
    assert len(rows) == 1, rows
    return str(rows[0][0])


def check(dbtool: Dbtool, email: str, password: str, *, upgrade: bool = False) -> int:
    """check-password's exit code; `upgrade`: with --upgrade, to Argon2id (chosen)."""
    args = ["--upgrade"] if upgrade else []
    env = {"DBTOOL_PASSWORD_HASH": "argon2"} if upgrade else None
    return dbtool("users", "check-password", email, "--password-stdin", *args, input=password,
                  env=env).exit_code  # fmt: skip


def as_json(dbtool: Dbtool, *args: str) -> object:
    result = dbtool(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- Django -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Django site's auth_user, exported to CSV and with dumpdata (made once)."""
    pytest.importorskip("django")
    directory = tmp_path_factory.mktemp("django")
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "apps" / "django_site.py"), str(directory)],
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return directory


@pytest.mark.parametrize("export", ["auth_user.csv", "auth_user.json"])
def test_a_django_sites_users_log_in_with_their_old_passwords(
    initialised: Dbtool, django_export: Path, export: str
) -> None:
    result = initialised("users", "import", str(django_export / export), "--from", "django")
    assert result.exit_code == 0, result.output
    assert "8 inserted" in result.stderr
    ignored = result.stderr.split("Ignored columns not in User: ")[1].split("\n")[0]
    assert {"first_name", "id", "is_staff", "last_login", "last_name"} <= set(ignored.split(", "))
    assert "ids are not kept" in result.stderr  # Django's integer ids, the built-in UUIDs
    for name, password in DJANGO_PASSWORDS.items():
        email = f"{name}@example.com"
        before = stored(initialised, email)
        assert not before.startswith("argon2$") and not before.startswith("bcrypt$$")
        assert check(initialised, email, "not " + password, upgrade=True) == 1, name
        assert stored(initialised, email) == before  # a failed check changes nothing
        assert check(initialised, email, password) == 0, name
        assert stored(initialised, email) == before  # nor does a check without --upgrade
        assert check(initialised, email, password, upgrade=True) == 0, name
        assert stored(initialised, email).startswith("$argon2id$"), name
        assert check(initialised, email, password) == 0, name  # and again, on Argon2id

    users = {user["email"]: user for user in as_json(initialised, "users", "list")}  # type: ignore[union-attr]
    assert users["pbkdf2_sha256@example.com"]["is_superuser"] is True
    assert users["md5@example.com"]["is_active"] is False
    assert users["md5@example.com"]["username"] == "jo"
    assert users["scrypt@example.com"]["username"] == "john+doe@corp"
    assert users["argon2@example.com"]["created_at"].endswith("+00:00")

    # The account with an unusable password: imported, listed, never logs in.
    no_password = as_json(initialised, "users", "list", "--no-password")
    assert [user["email"] for user in no_password] == ["nopw@example.com"]  # type: ignore[union-attr, index]
    refused = initialised("users", "check-password", "nopw@example.com", "--password-stdin",
                          input="anything at all")  # fmt: skip
    assert_clean_error(refused, 1, "no usable password", "set-password")
    changed = initialised("users", "set-password", "nopw@example.com", "--password-stdin",
                          input="a new password")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert check(initialised, "nopw@example.com", "a new password") == 0
    assert as_json(initialised, "users", "list", "--no-password") == []


def test_django_ids_are_kept_by_a_model_with_integer_ids(
    database_url: str, django_export: Path
) -> None:
    """The tutorial app: integer ids (kept), a required full_name (mapped from first_name)."""
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.intid_app:Base"})
    assert dbtool("init").exit_code == 0
    missing = dbtool("users", "import", str(django_export / "auth_user.csv"), "--from", "django")
    assert_clean_error(missing, 1, "8 invalid row")
    assert "full_name is missing" in missing.stderr
    result = dbtool("users", "import", str(django_export / "auth_user.csv"), "--from", "django",
                    "--map", "first_name=full_name")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ids are not kept" not in result.stderr
    rows = run_sql(database_url, "SELECT id, email, full_name FROM accounts ORDER BY id")
    assert [row[0] for row in rows] == list(range(1, 9))
    assert rows[0][1:] == ("pbkdf2_sha256@example.com", "Ada")
    # The id sequence moved past the imported ids: the next user gets 9.
    added = dbtool("users", "add", "new@example.com", "--password-stdin", "--set",
                   "full_name=New", input="brand new password")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert run_sql(database_url, "SELECT id FROM accounts WHERE email = 'new@example.com'") == [
        (9,)
    ]
    password = DJANGO_PASSWORDS["bcrypt_sha256"]
    assert check(dbtool, "bcrypt_sha256@example.com", password, upgrade=True) == 0
    assert stored(dbtool, "bcrypt_sha256@example.com", "accounts", "password_hash").startswith(
        "$argon2id$"
    )


# fastapi-users' own login, with LegacyHasher beside its default hashers.
FASTAPI_USERS_LOGIN = """
import asyncio, sys, uuid
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import BaseUserManager, UUIDIDMixin
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from dbtool.users.passwords import LegacyHasher
from tests.apps.fastapi_users_app import User

class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = verification_token_secret = "x"

async def main():
    engine = create_async_engine(sys.argv[1])
    helper = PasswordHelper(PasswordHash((Argon2Hasher(), BcryptHasher(), LegacyHasher())))
    async with async_sessionmaker(engine)() as session:
        manager = UserManager(SQLAlchemyUserDatabase(session, User), helper)
        for email, password in zip(sys.argv[2::2], sys.argv[3::2]):
            form = OAuth2PasswordRequestForm(username=email, password=password)
            user = await manager.authenticate(form)
            print(email, user is not None)
    await engine.dispose()

asyncio.run(main())
"""


def test_a_fastapi_users_app_logs_in_django_users_itself(
    database_url: str, django_export: Path
) -> None:
    """Done when: the application's own login (fastapi-users) lets Django's users in with
    their old passwords, and their hashes are then Argon2id."""
    pytest.importorskip("fastapi_users_db_sqlalchemy")
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.fastapi_users_app:Base"})
    assert dbtool("init").exit_code == 0
    result = dbtool("users", "import", str(django_export / "auth_user.csv"), "--from", "django")
    assert result.exit_code == 0, result.output
    assert "username" in result.stderr.split("Ignored columns not in User:")[1]
    credentials = [
        item
        for name, password in DJANGO_PASSWORDS.items()
        if name != "md5"  # inactive: fastapi-users refuses inactive users later, not here
        for item in (f"{name}@example.com", password)
    ]
    login = subprocess.run(
        [sys.executable, "-c", FASTAPI_USERS_LOGIN, database_url, *credentials,
         "nopw@example.com", "anything", "scrypt@example.com", "wrong password"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    answers = [tuple(line.split()) for line in login.stdout.splitlines()]
    assert answers[-2:] == [("nopw@example.com", "False"), ("scrypt@example.com", "False")]
    assert {answer for _, answer in answers[:-2]} == {"True"}, answers
    for name in DJANGO_PASSWORDS:
        if name != "md5":
            assert stored(dbtool, f"{name}@example.com", "user").startswith("$argon2id$"), name


# --- Auth0 ------------------------------------------------------------------------------------


def auth0_export(path: Path) -> dict[str, str]:
    """Auth0's password-hash export (NDJSON), as its support sends it; email -> password."""
    users = {"ada@example.com": "ada's password", "grace@example.com": "grace's password"}
    lines = []
    for number, (email, password) in enumerate(users.items()):
        lines.append({
            "_id": {"$oid": f"60425da93519d90068f8296{number}"},
            "email_verified": number == 0,
            "email": email,
            "passwordHash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode(),
            "password_set_date": {"$date": "2021-03-05T16:34:49.502Z"},
            "tenant": "dev-rwsbs6ym",
            "connection": "Username-Password-Authentication",
            "_tmp_is_unique": True,
        })  # fmt: skip
    lines.append({
        "_id": {"$oid": "60425da93519d90068f82969"}, "email": "social@example.com",
        "email_verified": True, "tenant": "dev-rwsbs6ym", "connection": "google-oauth2",
        "blocked": True,
    })  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return users


def test_an_auth0_tenants_users_log_in_with_their_old_passwords(
    database_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi_users_db_sqlalchemy")
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.fastapi_users_app:Base"})
    assert dbtool("init").exit_code == 0
    users = auth0_export(tmp_path / "auth0.json")  # NDJSON, named .json as Auth0's files are
    result = dbtool("users", "import", str(tmp_path / "auth0.json"), "--from", "auth0")
    assert result.exit_code == 0, result.output
    assert "3 inserted" in result.stderr
    # fastapi-users' user has no created_at: password_set_date has nowhere to go.
    assert "_id, _tmp_is_unique, connection, password_set_date, tenant" in result.stderr
    rows = run_sql(database_url, 'SELECT email, is_verified, is_active FROM "user" ORDER BY email')
    assert [(email, bool(verified), bool(active)) for email, verified, active in rows] == [
        ("ada@example.com", True, True),
        ("grace@example.com", False, True),
        ("social@example.com", True, False),  # blocked
    ]
    for email, password in users.items():
        assert stored(dbtool, email, "user").startswith("$2b$10$")
        assert check(dbtool, email, password, upgrade=True) == 0
        assert stored(dbtool, email, "user").startswith("$argon2id$")
    assert check(dbtool, "social@example.com", "anything") == 1

    # Into the built-in model: the password's date is the closest to a creation date.
    builtin = Dbtool(database_url)
    assert builtin("init").exit_code == 0
    assert (
        builtin("users", "import", str(tmp_path / "auth0.json"), "--from", "auth0").exit_code == 0
    )
    created = as_json(builtin, "users", "show", "ada@example.com")
    assert created["created_at"] == "2021-03-05T16:34:49.502000+00:00"  # type: ignore[index]
    assert check(builtin, "grace@example.com", users["grace@example.com"]) == 0


# --- Firebase ---------------------------------------------------------------------------------

# The test vector published with Firebase's scrypt (github.com/firebase/scrypt).
SIGNER_KEY = (
    "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
)
SEPARATOR, ROUNDS, MEM_COST = "Bw==", 8, 14
VECTOR = {
    "password": "user1password",
    "salt": "42xEC+ixf3L2lw==",
    "hash": "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198J"
    "AdRuid5lQ==",
}
CONSOLE_CONFIG = f"""hash_config {{
  algorithm: SCRYPT,
  base64_signer_key: {SIGNER_KEY},
  base64_salt_separator: {SEPARATOR},
  rounds: {ROUNDS},
  mem_cost: {MEM_COST},
}}
"""


def firebase_hash(password: str, salt: bytes) -> str:
    """Firebase's modified scrypt, by firebase-scrypt (independent of dbtool's code)."""
    firebase_scrypt = pytest.importorskip("firebase_scrypt")
    derived = firebase_scrypt.generate_derived_key(password, salt, SEPARATOR, ROUNDS, MEM_COST)
    signer = base64.b64decode(SIGNER_KEY)
    return base64.b64encode(firebase_scrypt.encrypt(signer, derived)).decode()


def firebase_export(path: Path) -> dict[str, str]:
    """`firebase auth:export users.json --format=json`; email -> password."""
    users = {"user1@example.com": VECTOR["password"], "lin@example.com": "lin's passphrase"}
    salt = os.urandom(12)
    records = [
        {"localId": "Ima4Gj0Ea1vV3vbnNzTQhpTRPCb2", "email": "User1@example.com",
         "emailVerified": True, "passwordHash": VECTOR["hash"], "salt": VECTOR["salt"],
         "createdAt": "1486838478000", "lastSignedInAt": "1486838478000", "disabled": False,
         "providerUserInfo": []},
        {"localId": "B9YDTXYvz8apgO1PScZz4jRUDAW2", "email": "lin@example.com",
         "emailVerified": False, "displayName": "Lin",
         "passwordHash": firebase_hash(users["lin@example.com"], salt),
         "salt": base64.b64encode(salt).decode(), "createdAt": "1700000000123", "disabled": True,
         "providerUserInfo": [{"providerId": "password", "rawId": "lin@example.com"}]},
        {"localId": "Xu3ijSZZvcUWF8sZcX2lhV4UM5G2", "email": "google@example.com",
         "emailVerified": True, "createdAt": "1700000000999",
         "providerUserInfo": [{"providerId": "google.com", "rawId": "1234"}]},
    ]  # fmt: skip
    # As firebase-tools writes it: one document, one user per line.
    path.write_text('{"users": [\n' + ",\n".join(json.dumps(r) for r in records) + "]}\n")
    return users


@pytest.mark.parametrize("config_format", ["console", "json"])
def test_a_firebase_projects_users_log_in_with_their_old_passwords(
    initialised: Dbtool, tmp_path: Path, config_format: str
) -> None:
    users = firebase_export(tmp_path / "users.json")
    config = tmp_path / "hash_config.txt"
    config.write_text(
        CONSOLE_CONFIG
        if config_format == "console"
        else json.dumps(
            {
                "algorithm": "SCRYPT",
                "hashKey": SIGNER_KEY,
                "saltSeparator": SEPARATOR,
                "rounds": ROUNDS,
                "memCost": MEM_COST,
            }
        )
    )
    without = initialised("users", "import", str(tmp_path / "users.json"), "--from", "firebase")
    assert_clean_error(without, 2, "--firebase-hash-config")
    assert SIGNER_KEY[:12] not in without.output
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]

    result = initialised("users", "import", str(tmp_path / "users.json"), "--from", "firebase",
                         "--firebase-hash-config", str(config))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 inserted" in result.stderr
    assert SIGNER_KEY[:12] not in result.output
    listed = {u["email"]: u for u in as_json(initialised, "users", "list")}  # type: ignore[union-attr]
    assert listed["lin@example.com"]["is_active"] is False  # disabled
    assert listed["lin@example.com"]["created_at"] == "2023-11-14T22:13:20.123000+00:00"
    for email, password in users.items():
        assert stored(initialised, email).startswith("$firebase-scrypt$r=8,m=14$")
        assert check(initialised, email, password + "!") == 1
        assert check(initialised, email, password, upgrade=True) == 0
        assert stored(initialised, email).startswith("$argon2id$")
    assert [u["email"] for u in as_json(initialised, "users", "list", "--no-password")] == [  # type: ignore[union-attr, index]
        "google@example.com"
    ]


def test_firebase_hashes_need_the_projects_parameters(initialised: Dbtool, tmp_path: Path) -> None:
    firebase_export(tmp_path / "users.json")
    bad = {
        "wrong algorithm": CONSOLE_CONFIG.replace("SCRYPT", "HMAC_SHA256"),
        "no signer key": CONSOLE_CONFIG.replace("base64_signer_key", "other"),
        "rounds out of bounds": CONSOLE_CONFIG.replace("rounds: 8", "rounds: 99"),
        "not base64": CONSOLE_CONFIG.replace(SIGNER_KEY, "***"),
    }
    config = tmp_path / "config.txt"
    for case, text in bad.items():
        config.write_text(text)
        result = initialised("users", "import", str(tmp_path / "users.json"), "--from",
                             "firebase", "--firebase-hash-config", str(config))  # fmt: skip
        assert_clean_error(result, 2)
        assert SIGNER_KEY[:12] not in result.output, case
    other_project = CONSOLE_CONFIG.replace(SIGNER_KEY, base64.b64encode(b"k" * 32).decode())
    (tmp_path / "config.txt").write_text(other_project)
    result = initialised("users", "import", str(tmp_path / "users.json"), "--from", "firebase",
                         "--firebase-hash-config", str(tmp_path / "config.txt"))  # fmt: skip
    assert_clean_error(result, 1, "2 invalid row")
    assert "does not fit the project's signer key" in result.stderr
    (tmp_path / "users.csv").write_text(
        "Xu3ij,a@example.com,true,,,,,,,,,,,,,,,,,,,,1700000000999\n"
    )
    csv_export = initialised("users", "import", str(tmp_path / "users.csv"), "--from", "firebase")
    assert_clean_error(csv_export, 2, "no header line", "--format=json")
    alone = initialised("users", "import", str(tmp_path / "users.json"),
                        "--firebase-hash-config", str(tmp_path / "config.txt"))  # fmt: skip
    assert_clean_error(alone, 2, "goes with --from firebase")
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


def test_a_scheme_this_installation_cannot_verify_is_refused_at_import(
    initialised: Dbtool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `cryptography` (the firebase extra), Firebase hashes are rejected, never
    stored unverifiable."""
    firebase_export(tmp_path / "users.json")
    (tmp_path / "config.txt").write_text(CONSOLE_CONFIG)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # as if it were not installed
    result = initialised("users", "import", str(tmp_path / "users.json"), "--from", "firebase",
                         "--firebase-hash-config", str(tmp_path / "config.txt"))  # fmt: skip
    assert_clean_error(result, 1, "2 invalid row")
    assert "install cryptography, dbtool's 'firebase' extra" in result.stderr
    assert run_sql(initialised.url, "SELECT count(*) FROM users") == [(0,)]


# --- foreign hashes: bounds and the library ---------------------------------------------------


def django_hash(template: str) -> str:
    return template.format(digest=base64.b64encode(b"d" * 32).decode())


HOSTILE_FOREIGN_HASHES = {
    "pbkdf2 with 100 million iterations": (
        django_hash("pbkdf2_sha256$100000000$salt${digest}"), "PBKDF2 iterations"),
    "scrypt with 4 GiB": (
        django_hash("scrypt$4194304$salt$8$1${digest}"), "MiB to check"),
    "scrypt n not a power of two": (django_hash("scrypt$1000$salt$8$1${digest}"), "power of two"),
    "scrypt with 64 lanes": (django_hash("scrypt$16384$salt$8$64${digest}"), "parallelism"),
    "bcrypt_sha256 with cost 31": (
        "bcrypt_sha256$" + bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode().replace("$04$", "$31$"),
        "bcrypt cost 31"),
    "pbkdf2 cut short": ("pbkdf2_sha256$1000000$salt", "cut short"),
    "firebase with 1 GiB": (
        "$firebase-scrypt$r=16,m=19$Bw$" + "a" * 86 + "$c2FsdA$" + "a" * 86, "MiB to check"),
    "an unknown scheme": ("sha512$$abcdef", "not a password hash dbtool knows"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE_FOREIGN_HASHES))
def test_hostile_foreign_hashes_are_refused_at_import(initialised: Dbtool, case: str) -> None:
    hashed, reason = HOSTILE_FOREIGN_HASHES[case]
    line = json.dumps({"email": "victim@example.com", "hashed_password": hashed}) + "\n"
    result = initialised("users", "import", "-", "--format", "jsonl", input=line)
    assert_clean_error(result, 1, "1 invalid row")
    assert reason in result.stderr, result.stderr
    with pytest.raises(passwords.HashRefusedError):
        passwords.verify_password("x", hashed)


def test_the_login_path_verifies_and_upgrades_foreign_hashes(
    initialised: Dbtool, django_export: Path
) -> None:
    import asyncio

    from dbtool.db import Database
    from dbtool.users.service import authenticate

    assert initialised("users", "import", str(django_export / "auth_user.csv"),
                       "--from", "django").exit_code == 0  # fmt: skip

    async def login(email: str, password: str) -> bool:
        async with Database.from_url(initialised.url) as db, db.session() as session:
            return await authenticate(session, email, password) is not None

    assert not asyncio.run(login("pbkdf2_sha1@example.com", "wrong"))
    assert stored(initialised, "pbkdf2_sha1@example.com").startswith("pbkdf2_sha1$")
    assert asyncio.run(login("pbkdf2_sha1@example.com", DJANGO_PASSWORDS["pbkdf2_sha1"]))
    assert stored(initialised, "pbkdf2_sha1@example.com").startswith("$argon2id$")
    assert not asyncio.run(login("nopw@example.com", ""))
    assert not asyncio.run(login("nopw@example.com", "!"))


# --- column mapping and JSON documents --------------------------------------------------------


def test_map_reaches_into_nested_json_and_ignore_extra_lists_what_it_dropped(
    initialised: Dbtool, tmp_path: Path
) -> None:
    hashed = bcrypt.hashpw(b"mapped password", bcrypt.gensalt(4)).decode()
    (tmp_path / "people.jsonl").write_text(
        json.dumps({"contact": {"mail": "Map@Example.com"}, "secret": {"hash": hashed},
                    "since": "2020-01-02 03:04:05", "nickname": "mappy", "shoe_size": 42})
        + "\n"
    )  # fmt: skip
    base = ["users", "import", str(tmp_path / "people.jsonl"), "--map", "contact.mail=email",
            "--map", "secret.hash=hashed_password", "--map", "since=created_at",
            "--map", "nickname=username"]  # fmt: skip
    unknown = initialised(*base)
    assert_clean_error(unknown, 2, "unknown column(s)", "shoe_size", "--ignore-extra")
    naive = initialised(*base, "--ignore-extra")
    assert_clean_error(naive, 1, "1 invalid row")
    assert "--assume-utc" in naive.stderr
    result = initialised(*base, "--ignore-extra", "--assume-utc", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ignored"] == ["shoe_size"]
    user = as_json(initialised, "users", "show", "map@example.com")
    assert user["username"] == "mappy"  # type: ignore[index]
    assert user["created_at"] == "2020-01-02T03:04:05+00:00"  # type: ignore[index]
    assert check(initialised, "map@example.com", "mapped password") == 0


def test_bad_maps_are_usage_errors(initialised: Dbtool, tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("mail,pw\na@example.com,long enough password\n")
    cases = {
        ("--map", "mail"): "expected SOURCE=COLUMN",
        ("--map", "mail=nope"): "nope is not an import column",
        ("--map", "mail=email", "--map", "pw=email"): "more than once",
        ("--map", "pw=password", "--ignore-extra"): "no email column (or a column mapped to it)",
    }
    for args, message in cases.items():
        result = initialised("users", "import", str(tmp_path / "u.csv"), *args)
        assert_clean_error(result, 2, message)
    result = initialised("users", "import", str(tmp_path / "u.csv"), "--map", "mail=email",
                         "--map", "pw=password")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert check(initialised, "a@example.com", "long enough password") == 0


def test_json_documents_are_read_as_a_stream(initialised: Dbtool, tmp_path: Path) -> None:
    """An array at the top, an object holding one, or JSON Lines in a .json file; broken
    documents are exit 2 with the line, and nothing is written."""
    records = [{"email": f"u{i}@example.com", "password": f"password number {i}"}
               for i in range(3)]  # fmt: skip
    shapes = {
        "array.json": json.dumps(records, indent=2),
        "object.json": json.dumps({"users": records}),
        "lines.json": "".join(json.dumps(r) + "\n" for r in records),
        "empty.json": "[]",
    }
    for name, text in shapes.items():
        (tmp_path / name).write_text(text)
        result = initialised("users", "import", str(tmp_path / name), "--on-conflict", "skip")
        assert result.exit_code == 0, (name, result.output)
    assert len(as_json(initialised, "users", "list")) == 3  # type: ignore[arg-type]

    broken = {
        "truncated.json": json.dumps(records)[:-30],
        "trailing.json": json.dumps(records) + " []",
        "comma.json": json.dumps(records)[:-1] + ",]",
    }
    for name, text in broken.items():
        (tmp_path / name).write_text(text)
        result = initialised("users", "import", str(tmp_path / name), "--on-conflict", "update")
        assert_clean_error(result, 2, "not valid JSON", "line")
    not_objects = initialised("users", "import", "-", "--format", "json", input='[1, "x"]')
    assert_clean_error(not_objects, 1, "2 invalid row")
    assert "not a JSON object" in not_objects.stderr


def test_export_as_one_json_array_imports_back(initialised: Dbtool, tmp_path: Path) -> None:
    for email in ("a@example.com", "b@example.com"):
        added = initialised("users", "add", email, "--password-stdin", input="long enough pw")
        assert added.exit_code == 0
    exported = initialised("users", "export", "--include-hashes", "-o", str(tmp_path / "u.json"))
    assert exported.exit_code == 0, exported.output
    document = json.loads((tmp_path / "u.json").read_text())
    assert [user["email"] for user in document] == ["a@example.com", "b@example.com"]
    empty = initialised("users", "export", "--format", "json", "--search", "nobody")
    assert json.loads(empty.stdout) == []
    target = Dbtool(initialised.url.replace("test.db", "other.db"))
    if target.url == initialised.url:  # PostgreSQL: the same database, so update in place
        result = initialised("users", "import", str(tmp_path / "u.json"), "--on-conflict", "update")
        assert "2 updated" in result.stderr
    else:
        assert target("init").exit_code == 0
        result = target("users", "import", str(tmp_path / "u.json"))
        assert "2 inserted" in result.stderr
    assert result.exit_code == 0, result.output


def test_the_real_cli_imports_a_django_export(django_export: Path, tmp_path: Path) -> None:
    """As installed: the console script in a subprocess, with the real Argon2 parameters."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBTOOL_")}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([dbtool_executable(), "--url", url, *args], input=stdin,
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    assert run("init").returncode == 0
    shutil.copy(django_export / "auth_user.csv", tmp_path / "auth_user.csv")
    imported = run("users", "import", "auth_user.csv", "--from", "django")
    assert imported.returncode == 0, imported.stderr
    checked = run("users", "check-password", "pbkdf2_sha256@example.com", "--password-stdin",
                  "--upgrade", stdin=DJANGO_PASSWORDS["pbkdf2_sha256"])  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert stored(Dbtool(url), "pbkdf2_sha256@example.com").startswith(
        "$argon2id$v=19$m=65536,t=3,p=4$"
    )


def test_a_preset_keeps_the_models_own_password_column_and_says_what_it_replaced(
    initialised: Dbtool, tmp_path: Path
) -> None:
    """`--from django` on a file with the model's own hashed_password column (a dbtool
    export): the hashes are imported, not replaced by "!" without a word; a row with no
    password at all is stored unusable, and the summary says how many."""
    assert initialised("users", "add", "ada@example.com", "--password-stdin",
                       input="long enough pw").exit_code == 0  # fmt: skip
    exported = tmp_path / "users.csv"
    assert initialised("users", "export", "--include-hashes", "-o", str(exported)).exit_code == 0
    initialised("users", "delete", "ada@example.com", "--yes")
    imported = initialised("users", "import", str(exported), "--from", "django")
    assert imported.exit_code == 0, imported.output
    checked = initialised("users", "check-password", "ada@example.com", "--password-stdin",
                          input="long enough pw")  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert "hashed_password" in exported.read_text().splitlines()[0]
    email_only = tmp_path / "no_password.csv"
    email_only.write_text("email,username\nbob@example.com,bob\n")
    summary = initialised("users", "import", str(email_only), "--from", "django")
    assert summary.exit_code == 0, summary.output
    assert "1 row has no password in the file: stored as unusable (!)" in summary.stderr
