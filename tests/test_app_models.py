"""Applications' own models (DBTOOL_MODELS): every schema and users command on their tables.

The shapes are real ones: fastapi-users' own base class, the FastAPI full-stack template's
SQLModel models, and a tutorial model with integer ids and a required column dbtool does not
know, beside dbtool's built-in model. Each password dbtool writes is checked with the
application's own verifier.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest
from argon2 import PasswordHasher
from passlib.context import CryptContext
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from tests.helpers import (
    Dbtool,
    Terminal,
    assert_clean_error,
    column_type,
    dbtool_executable,
    run_sql,
    table_names,
)

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new secret"


def template_verify(password: str, hashed: str) -> bool:
    """backend/app/core/security.py of the full-stack template."""
    ok, _ = PasswordHash((Argon2Hasher(), BcryptHasher())).verify_and_update(password, hashed)
    return ok


def fastapi_users_verify(password: str, hashed: str) -> bool:
    from fastapi_users.password import PasswordHelper

    ok, _ = PasswordHelper().verify_and_update(password, hashed)
    return ok


def argon2_verify(password: str, hashed: str) -> bool:
    try:
        return PasswordHasher().verify(hashed, password)
    except Exception:
        return False


@dataclass(frozen=True)
class Shape:
    name: str
    models: str | None
    tables: set[str]
    user_table: str
    hash_column: str
    verify: Callable[[str, str], bool]
    username: bool = False
    superuser: bool = True
    required: dict[str, str] = field(default_factory=dict)  # --set values a user needs
    integer_id: bool = False

    @property
    def env(self) -> dict[str, str]:
        env = {"PYTHONPATH": str(ROOT)}  # for subprocesses; in-process `tests` is importable
        if self.models:
            env["DBTOOL_MODELS"] = self.models
        return env

    def stored(self, email: str) -> str:
        """`email` as this shape stores it: dbtool's own table lower case, an application's
        as its EmailStr does (the domain lower case, the local part as typed)."""
        local, domain = email.rsplit("@", 1)
        return email.lower() if self.models is None else f"{local}@{domain.lower()}"

    def set_args(self) -> list[str]:
        return [
            arg for name, value in self.required.items() for arg in ("--set", f"{name}={value}")
        ]


SHAPES = {
    "builtin": Shape("builtin", None, {"users"}, "users", "hashed_password", argon2_verify,
                     username=True),
    "fastapi_users": Shape("fastapi_users", "tests.apps.fastapi_users_app:Base", {"user"},
                           "user", "hashed_password", fastapi_users_verify),
    "template": Shape("template", "tests.apps.template_app:SQLModel", {"user", "item"}, "user",
                      "hashed_password", template_verify),
    "intid": Shape("intid", "tests.apps.intid_app:Base", {"accounts", "posts"}, "accounts",
                   "password_hash", argon2_verify, required={"full_name": "Ada Lovelace"},
                   integer_id=True, superuser=False),
}  # fmt: skip


@pytest.fixture(params=sorted(SHAPES))
def shape(request: pytest.FixtureRequest) -> Shape:
    if request.param == "fastapi_users":
        pytest.importorskip("fastapi_users_db_sqlalchemy")
    return SHAPES[str(request.param)]


@pytest.fixture
def app_dbtool(shape: Shape, database_url: str) -> Dbtool:
    return Dbtool(database_url, env=shape.env)


def stored_hash(dbtool: Dbtool, shape: Shape, email: str) -> str:
    rows = run_sql(
        dbtool.url,
        f'SELECT "{shape.hash_column}" FROM "{shape.user_table}" WHERE email = :e',
        {"e": email},
    )
    assert len(rows) == 1, rows
    return str(rows[0][0])


def add(dbtool: Dbtool, shape: Shape, email: str, *args: str) -> dict[str, object]:
    result = dbtool("users", "add", email, "--password-stdin", "--json", *shape.set_args(),
                    *args, input=PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_every_command_works_on_the_apps_own_tables(app_dbtool: Dbtool, shape: Shape) -> None:
    dbtool = app_dbtool
    created = dbtool("init", "--json")
    assert created.exit_code == 0, created.output
    assert set(json.loads(created.stdout)["created"]) == shape.tables
    present = table_names(dbtool.url)
    assert present >= shape.tables
    if shape.models:
        assert "users" not in present  # no second, built-in users table beside the app's

    info = json.loads(dbtool("info", "--json").stdout)
    assert info["schema_complete"] is True
    assert {table["name"] for table in info["tables"]} == shape.tables

    # add: the first superuser, in the application's own table, with a hash its login accepts
    admin = add(dbtool, shape, "Admin@Example.com", *["--superuser"] * shape.superuser)
    # stored as the app's own EmailStr stores it; found below by any spelling
    admin_email = shape.stored("Admin@Example.com")
    assert admin["email"] == admin_email
    assert admin.get("is_superuser", False) is shape.superuser
    assert shape.hash_column not in admin
    assert ("username" in admin) is shape.username
    hashed = stored_hash(dbtool, shape, admin_email)
    assert hashed.startswith("$argon2id$")
    assert shape.verify(PASSWORD, hashed)
    assert not shape.verify(PASSWORD + "x", hashed)
    add(dbtool, shape, "second@example.com")

    # list / show, by email and by id (UUID or integer)
    listed = json.loads(dbtool("users", "list", "--json").stdout)
    # by creation time where the model has one, else by id (random for UUIDs)
    assert sorted(row["email"] for row in listed) == [admin_email, "second@example.com"]
    assert all(shape.hash_column not in row for row in listed)
    table = dbtool("users", "list")
    assert table.exit_code == 0 and admin_email in table.stdout
    for ident in ("admin@example.com", str(admin["id"])):
        shown = dbtool("users", "show", ident, "--json")
        assert shown.exit_code == 0, (ident, shown.output)
        assert json.loads(shown.stdout)["id"] == admin["id"]
    if shape.integer_id:
        assert isinstance(admin["id"], int)

    # update, set-password, check-password (which the app's verifier agrees with)
    updated = dbtool("users", "update", "second@example.com", "--inactive", "--json")
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["is_active"] is False
    if "full_name" in shape.required:
        renamed = dbtool("users", "update", "admin@example.com", "--set", "full_name=Grace H",
                         "--json")  # fmt: skip
        assert json.loads(renamed.stdout)["full_name"] == "Grace H"
    changed = dbtool("users", "set-password", "admin@example.com", "--password-stdin",
                     input=NEW_PASSWORD + "\n")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert shape.verify(NEW_PASSWORD, stored_hash(dbtool, shape, admin_email))
    assert dbtool("users", "check-password", "admin@example.com", "--password-stdin",
                  input=NEW_PASSWORD).exit_code == 0  # fmt: skip
    assert_clean_error(
        dbtool("users", "check-password", "admin@example.com", "--password-stdin", input=PASSWORD),
        1,
        "does not match",
    )

    # export with hashes, delete, import back: the same rows again
    exported = dbtool("users", "export", "--include-hashes")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(row["email"] for row in rows) == [admin_email, "second@example.com"]
    before = dbtool("users", "export", "--include-hashes", "--format", "jsonl").stdout
    for email in ("admin@example.com", "second@example.com"):
        assert dbtool("users", "delete", email, "--yes").exit_code == 0
    assert run_sql(dbtool.url, f'SELECT count(*) FROM "{shape.user_table}"') == [(0,)]
    imported = dbtool("users", "import", "-", "--format", "csv", input=exported.stdout)
    assert imported.exit_code == 0, imported.output
    after = dbtool("users", "export", "--include-hashes", "--format", "jsonl").stdout
    assert sorted(after.splitlines()) == sorted(before.splitlines())
    # after importing explicit ids, new users still get fresh ones
    third = add(dbtool, shape, "third@example.com")
    assert third["id"] not in (row["id"] for row in rows)

    # plain-text passwords in an import are hashed the same way
    plain = dbtool("users", "import", "-", "--format", "jsonl", input=json.dumps(
        {"email": "plain@example.com", "password": PASSWORD, **shape.required}) + "\n")  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert shape.verify(PASSWORD, stored_hash(dbtool, shape, "plain@example.com"))

    # drop takes every table of the models; a second init brings them back
    dropped = dbtool("drop", "--yes", "--json")
    assert dropped.exit_code == 0, dropped.output
    assert {row["table"] for row in json.loads(dropped.stdout)["dropped"]} == shape.tables
    assert not table_names(dbtool.url) & shape.tables
    assert dbtool("init").exit_code == 0
    assert table_names(dbtool.url) >= shape.tables


def test_required_columns_dbtool_does_not_know(database_url: str) -> None:
    dbtool = Dbtool(database_url, env=SHAPES["intid"].env)
    assert dbtool("init").exit_code == 0
    missing = dbtool("users", "add", "ada@example.com", "--password-stdin", input=PASSWORD)
    assert_clean_error(missing, 2, "requires full_name", "--set full_name=")
    bad = dbtool("users", "add", "ada@example.com", "--set", "full_name=" + "x" * 101,
                 "--password-stdin", input=PASSWORD)  # fmt: skip
    assert_clean_error(bad, 2, "full_name", "longer than the column allows")
    unknown = dbtool("users", "add", "ada@example.com", "--set", "nickname=x",
                     "--password-stdin", input=PASSWORD)  # fmt: skip
    assert_clean_error(unknown, 2, "no column 'nickname'")
    typed = dbtool("users", "add", "ada@example.com", "--set", "full_name=Ada",
                   "--set", "is_active=maybe", "--password-stdin", input=PASSWORD)  # fmt: skip
    assert_clean_error(typed, 2, "is_active", "true or false")
    no_username = dbtool("users", "add", "ada@example.com", "--username", "ada",
                         "--set", "full_name=Ada", "--password-stdin", input=PASSWORD)  # fmt: skip
    assert_clean_error(no_username, 2, "--username", "no username column")
    assert run_sql(database_url, "SELECT count(*) FROM accounts") == [(0,)]
    missing_in_file = dbtool(
        "users",
        "import",
        "-",
        "--format",
        "jsonl",
        input='{"email": "b@example.com", "password": "long enough 1"}\n',
    )
    assert_clean_error(missing_in_file, 1, "1 invalid row")
    assert "full_name is missing" in missing_in_file.stderr


def test_a_terminal_asks_for_required_columns(database_url: str) -> None:
    shape = SHAPES["intid"]
    dbtool = Dbtool(database_url, env=shape.env)
    assert dbtool("init").exit_code == 0
    terminal = Terminal("--url", database_url, "users", "add", "ada@example.com",
                        env=shape.env)  # fmt: skip
    terminal.expect("full_name: ")
    terminal.send("Ada Lovelace")
    terminal.expect("Password (at least 8 characters): ")
    terminal.send(PASSWORD)
    terminal.expect("Password (again): ")
    terminal.send(PASSWORD)
    assert terminal.wait() == 0, terminal.transcript
    assert run_sql(database_url, "SELECT full_name FROM accounts") == [("Ada Lovelace",)]


def test_a_foreign_users_table_is_reported_and_never_dropped(
    database_url: str, backend: str
) -> None:
    """An application's own `users` table of another shape, under the built-in models."""
    run_sql(database_url, "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100),"
                          " hashed_password VARCHAR(200), nickname VARCHAR(20))")  # fmt: skip
    run_sql(database_url, "INSERT INTO users VALUES (1, 'a@x.org', 'h', 'n')")
    dbtool = Dbtool(database_url)
    init = dbtool("init")
    assert_clean_error(init, 1, "users exists but lacks username", "has extra nickname")
    info = json.loads(dbtool("info", "--json").stdout)
    assert info["schema_complete"] is False
    [mismatch] = info["mismatched_tables"]
    assert mismatch["name"] == "users" and "is_superuser" in mismatch["missing_columns"]
    assert "incomplete" in dbtool("info").stdout
    dropped = dbtool("drop", "--yes")
    assert_clean_error(dropped, 5, "kept users", "--force")
    assert run_sql(database_url, "SELECT count(*) FROM users") == [(1,)]
    reset = dbtool("reset", "--yes")
    assert_clean_error(reset, 5, "--force")
    assert run_sql(database_url, "SELECT count(*) FROM users") == [(1,)]
    users_list = dbtool("users", "list")
    assert users_list.exit_code != 0 and "Traceback" not in users_list.output
    forced = dbtool("drop", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert "users" not in table_names(database_url)


def test_drop_names_an_outside_table_that_references_the_models(
    database_url: str, backend: str
) -> None:
    dbtool = Dbtool(database_url)
    assert dbtool("init").exit_code == 0
    id_type = column_type(database_url, "users", "id")
    run_sql(database_url, "CREATE TABLE audit_log (id INTEGER PRIMARY KEY,"
                          f" user_id {id_type} REFERENCES users(id))")  # fmt: skip
    refused = dbtool("drop", "--yes")
    assert_clean_error(refused, 5, "audit_log (not in the models) references users", "--force")
    assert "users" in table_names(database_url)
    forced = dbtool("drop", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert table_names(database_url) & {"users", "audit_log"} == {"audit_log"}


def test_user_model_and_fields_settings(database_url: str) -> None:
    env = {"DBTOOL_MODELS": "tests.apps.unusual_app:Base"}
    dbtool = Dbtool(database_url, env=env)
    assert dbtool("init").exit_code == 0
    assert {"members", "staff", "notes"} <= table_names(database_url)
    # Only staff has an email and a conventionally named hash column: it is the one.
    guessed = dbtool("users", "list", "--json")
    assert guessed.exit_code == 0, guessed.output
    no_id = dbtool("users", "add", "s@example.com", "--password-stdin", input=PASSWORD)
    assert_clean_error(no_id, 2, "requires id", "--set id=")
    made = dbtool("users", "add", "s@example.com", "--set", "id=S-1", "--password-stdin",
                  "--json", input=PASSWORD)  # fmt: skip
    assert json.loads(made.stdout)["id"] == "S-1"
    assert json.loads(dbtool("users", "show", "S-1", "--json").stdout)["email"] == "s@example.com"

    # Naming members' hash column makes two candidates: dbtool asks which one.
    digest = {**env, "DBTOOL_USER_FIELDS": "password=pw_digest"}
    several = dbtool("users", "list", env=digest)
    assert_clean_error(several, 2, "several user tables", "Member (table members)",
                       "Staff (table staff)", "DBTOOL_USER_MODEL")  # fmt: skip

    members = {**env, "DBTOOL_USER_MODEL": "tests.apps.unusual_app:Member"}
    no_hash = dbtool("users", "list", env=members)
    assert_clean_error(no_hash, 2, "no password column", "DBTOOL_USER_FIELDS")
    fields = {**members, "DBTOOL_USER_FIELDS": "password=secret,superuser=is_admin,username=handle"}
    added = dbtool("users", "add", "mem@example.com", "--superuser", "--password-stdin", "--json",
                   input=PASSWORD, env=fields)  # fmt: skip
    assert added.exit_code == 0, added.output
    member = json.loads(added.stdout)
    assert member["is_admin"] is True and member["handle"] == "mem"
    stored = run_sql(database_url, "SELECT pw_digest FROM members")[0][0]
    assert argon2_verify(PASSWORD, stored)
    wrong = {**members, "DBTOOL_USER_FIELDS": "password=nope"}
    assert_clean_error(dbtool("users", "list", env=wrong), 2, "password=nope is not a column")
    bad_role = {**members, "DBTOOL_USER_FIELDS": "pasword=secret"}
    assert_clean_error(dbtool("users", "list", env=bad_role), 2, "is not ROLE=COLUMN")

    # A MetaData without any user table: the schema commands work, the users ones explain.
    catalog = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.unusual_app:catalog"})
    assert catalog("init").exit_code == 0
    assert "products" in table_names(database_url)
    assert_clean_error(catalog("users", "list"), 2, "no user table", "DBTOOL_USER_MODEL")


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("nowhere_at_all:Base", ("cannot import nowhere_at_all (ModuleNotFoundError",)),
        ("tests.apps.intid_app:Nope", ("has no attribute 'Nope'",)),
        ("tests.apps.intid_app:Account", ("is a mapped class", "DBTOOL_USER_MODEL")),
        ("tests.apps.intid_app:func", ("not a declarative base class, a MetaData or SQLModel",)),
        ("tests.apps.intid_app", ("must look like package.module:attribute",)),
    ],
)
def test_bad_models_setting_is_exit_2(
    database_url: str, spec: str, fragments: tuple[str, ...]
) -> None:
    for args, env in ((("--models", spec, "init"), {}), (("init",), {"DBTOOL_MODELS": spec})):
        result = Dbtool(database_url, env=env)(*args)
        assert_clean_error(result, 2, *fragments)
    assert not table_names(database_url) & {"accounts", "users"}


def test_models_option_wins_and_config_shows_it(database_url: str) -> None:
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.unusual_app:Base"})
    shown = json.loads(dbtool("--models", "tests.apps.intid_app:Base", "config", "--json").stdout)
    assert shown["DBTOOL_MODELS"] == {"value": "tests.apps.intid_app:Base", "source": "option"}
    assert dbtool("--models", "tests.apps.intid_app:Base", "init").exit_code == 0
    assert {"accounts", "posts"} <= table_names(database_url)
    assert "members" not in table_names(database_url)
    assert_clean_error(dbtool("--models", " ", "init"), 2, "--models is empty")


@pytest.mark.parametrize("scheme_env", ["bcrypt"])
def test_bcrypt_for_applications_that_verify_only_bcrypt(
    database_url: str, scheme_env: str
) -> None:
    env = {**SHAPES["template"].env, "DBTOOL_PASSWORD_HASH": scheme_env}
    dbtool = Dbtool(database_url, env=env)
    assert dbtool("init").exit_code == 0
    assert dbtool("users", "add", "b@example.com", "--password-stdin",
                  input=PASSWORD).exit_code == 0  # fmt: skip
    hashed = run_sql(database_url, 'SELECT hashed_password FROM "user"')[0][0]
    assert hashed.startswith("$2b$")
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    assert CryptContext(schemes=["bcrypt"]).verify(PASSWORD, hashed)  # passlib-style apps
    assert template_verify(PASSWORD, hashed)
    too_long = dbtool("users", "add", "c@example.com", "--password-stdin", input="é" * 40)
    assert_clean_error(too_long, 2, "too long for bcrypt", "72 bytes")


def test_a_composite_primary_key_is_addressed_by_its_unique_column(
    database_url: str, backend: str
) -> None:
    """FastAPI-boilerplate's user: primary key (id, uuid), `id` unique on its own. dbtool
    addresses users by `id`, fills `uuid` (its default is the dataclass's only), and its
    bcrypt-only login accepts the superuser. SQLite cannot create the table at all
    (SQLAlchemy refuses an auto-numbered column in a composite key): one clear line."""
    env = {"DBTOOL_MODELS": "tests.apps.boilerplate_app:Base", "DBTOOL_PASSWORD_HASH": "bcrypt"}
    dbtool = Dbtool(database_url, env=env)
    init = dbtool("init")
    if backend == "sqlite":
        assert_clean_error(init, 1, "cannot be used on this database", "composite primary keys")
        return
    if backend == "mariadb":  # the app's `hashed_password: Mapped[str] = mapped_column(String)`
        assert_clean_error(init, 1, "cannot be used on this database", "VARCHAR requires a length")
        return
    assert init.exit_code == 0, init.output
    added = dbtool("users", "add", "Ada@Example.com", "--superuser", "--password-stdin",
                   "--set", "name=Ada", "--json", input=PASSWORD)  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["id"] == 1
    importing = dbtool("users", "import", "-", "--format", "jsonl",
                       input=json.dumps({"email": "b@example.com", "password": PASSWORD,
                                         "name": "Bee"}) + "\n")  # fmt: skip
    assert importing.exit_code == 0, importing.output
    rows = run_sql(database_url, 'SELECT id, uuid, email, hashed_password FROM "user" ORDER BY id')
    assert [row[0] for row in rows] == [1, 2] and all(row[1] is not None for row in rows)
    assert bcrypt.checkpw(PASSWORD.encode(), rows[0][3].encode())  # the app's verify_password
    shown = json.loads(dbtool("users", "show", "1", "--json").stdout)
    assert shown["email"] == "Ada@example.com" and shown["is_superuser"] is True
    updated = dbtool("users", "update", "2", "--set", "is_deleted=true")
    assert updated.exit_code == 0, updated.output
    assert dbtool("users", "delete", "b@example.com", "--yes").exit_code == 0
    assert [row[0] for row in run_sql(database_url, 'SELECT id FROM "user"')] == [1]


@pytest.mark.sqlite
def test_a_fastapi_users_app_gets_its_first_superuser(tmp_path: Path) -> None:
    """The README's promise, as a new user runs it: `.env` with DBTOOL_MODELS in the project,
    `dbtool init`, `dbtool users add ... --superuser`, then fastapi-users' own login."""
    pytest.importorskip("fastapi_users_db_sqlalchemy")
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "apps" / "fastapi_users_app.py", project / "app" / "models.py")
    (project / ".env").write_text(
        f"DATABASE_URL=sqlite:///{project / 'app.db'}\nDBTOOL_MODELS=app.models:Base\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBTOOL_", "DATABASE_URL"))}
    env.pop("PYTHONPATH", None)

    def dbtool(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([dbtool_executable(), *args], cwd=project, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    init = dbtool("init")
    assert init.returncode == 0, init.stderr
    added = dbtool("users", "add", "admin@example.com", "--superuser", "--password-stdin",
                   stdin=PASSWORD)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert table_names(f"sqlite:///{project / 'app.db'}") == {"user"}

    login = subprocess.run(
        [os.environ.get("PYTHON", shutil.which("python") or "python"), "-c", FASTAPI_USERS_LOGIN,
         str(project / "app.db"), PASSWORD],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert login.stdout.split() == ["admin@example.com", "True", "True"]


# fastapi-users' own authentication: its SQLAlchemy user database and UserManager.
FASTAPI_USERS_LOGIN = """
import asyncio, sys, uuid
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import BaseUserManager, UUIDIDMixin
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from app.models import User

class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = verification_token_secret = "x"

async def main():
    engine = create_async_engine("sqlite+aiosqlite:///" + sys.argv[1])
    async with async_sessionmaker(engine)() as session:
        manager = UserManager(SQLAlchemyUserDatabase(session, User))
        form = OAuth2PasswordRequestForm(username="admin@example.com", password=sys.argv[2])
        user = await manager.authenticate(form)
        print(user.email, user.is_superuser, user.is_active)
    await engine.dispose()

asyncio.run(main())
"""


def test_library_takes_an_explicit_model(database_url: str) -> None:
    """Applications can hand the services their own mapped class."""
    from dbtool.db import Database
    from dbtool.models.user_model import user_model_for
    from dbtool.schema.tables import create_schema
    from dbtool.users.service import add_user, check_password, get_user
    from tests.apps.intid_app import Account

    model = user_model_for(Account)

    async def run() -> tuple[int, bool]:
        async with Database.from_url(
            database_url, must_exist=False, models="tests.apps.intid_app:Base"
        ) as db:
            await create_schema(db)
            async with db.session() as session:
                user = await add_user(session, email="lib@example.com", password=PASSWORD,
                                      values={"full_name": "Lib"}, model=model)  # fmt: skip
            async with db.session() as session:
                found = await get_user(session, str(user.id), model=model)
                checked = await check_password(session, "lib@example.com", PASSWORD, model=model)
                return int(found.id), checked.matches

    ident, ok = asyncio.run(run())
    assert ident >= 1 and ok


# fastapi-users' own code, driving the application's table: `create` is its registration
# (which looks the email up first), `insert` its user database's bare create (as any other
# path of the app that writes rows would), `login` its authentication.
FASTAPI_USERS_ACTIONS = """
import asyncio, sys, uuid
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import BaseUserManager, UUIDIDMixin, schemas
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from tests.apps.fastapi_users_app import User

class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = verification_token_secret = "x"

async def main(url, action, email, password):
    engine = create_async_engine(url)
    async with async_sessionmaker(engine)() as session:
        manager = UserManager(SQLAlchemyUserDatabase(session, User))
        try:
            if action == "create":
                user = await manager.create(schemas.BaseUserCreate(email=email, password=password))
            elif action == "insert":
                user = await manager.user_db.create(
                    {"email": email, "hashed_password": manager.password_helper.hash(password)}
                )
            else:
                form = OAuth2PasswordRequestForm(username=email, password=password)
                user = await manager.authenticate(form)
            print(None if user is None else user.email)
        except Exception as error:
            print(type(error).__name__)
    await engine.dispose()

asyncio.run(main(*sys.argv[1:]))
"""


def fastapi_users(url: str, action: str, email: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", FASTAPI_USERS_ACTIONS, url, action, email, PASSWORD],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def emails(url: str) -> list[str]:
    return sorted(row[0] for row in run_sql(url, 'SELECT email FROM "user"'))


def test_one_account_per_person_whatever_the_letter_case(database_url: str, backend: str) -> None:
    """fastapi-users stores an email as typed under a case-sensitive unique index and logs in
    by it in any case: dbtool finds, refuses and updates by the same rule, so it never makes
    a second account a login cannot tell apart, and never acts on a guess between two."""
    pytest.importorskip("fastapi_users_db_sqlalchemy")
    shape = SHAPES["fastapi_users"]
    dbtool = Dbtool(database_url, env=shape.env)
    assert dbtool("init").exit_code == 0
    assert fastapi_users(database_url, "create", "Bob.Smith@Example.com") == "Bob.Smith@example.com"

    # the person exists, in whatever case the email is typed
    again = dbtool("users", "add", "bob.smith@example.com", "--if-not-exists",
                   "--password-stdin", input=PASSWORD)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "already exists" in again.stderr and "Created" not in again.stderr
    assert_clean_error(
        dbtool("users", "add", "BOB.SMITH@example.com", "--password-stdin", input=PASSWORD),
        4, "'Bob.Smith@example.com' already exists", "letter case",
    )  # fmt: skip
    assert emails(database_url) == ["Bob.Smith@example.com"]
    shown = dbtool("users", "show", "bob.smith@EXAMPLE.com", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["email"] == "Bob.Smith@example.com"
    assert fastapi_users(database_url, "login", "bob.smith@example.com") == "Bob.Smith@example.com"

    # a new account, or another one renamed, cannot take a variant of it either
    added = dbtool("users", "add", "Carol@Example.com", "--password-stdin", input=PASSWORD)
    assert added.exit_code == 0, added.output
    assert_clean_error(
        dbtool("users", "update", "carol@example.com", "--email", "bob.SMITH@example.com"),
        4, "'Bob.Smith@example.com' already exists",
    )  # fmt: skip
    renamed = dbtool("users", "update", "carol@example.com", "--email", "CAROL@example.com")
    assert renamed.exit_code == 0, renamed.output  # her own address in another case is hers
    assert emails(database_url) == ["Bob.Smith@example.com", "CAROL@example.com"]
    assert fastapi_users(database_url, "login", "carol@example.com") == "CAROL@example.com"

    # two accounts the app wrote under its case-sensitive index: the exact spelling (or the
    # id) picks one; any other spelling is a clear refusal naming both, never a guess
    if backend == "mariadb":  # its unique index ignores case: the app cannot write a second
        return
    assert fastapi_users(database_url, "insert", "bob.smith@example.com") == "bob.smith@example.com"
    before = run_sql(database_url, 'SELECT email, is_superuser FROM "user" ORDER BY email')
    for command in (("show", "BOB.SMITH@example.com"),
                    ("update", "Bob.smith@example.com", "--superuser"),
                    ("delete", "BOB.smith@example.com", "--yes")):  # fmt: skip
        assert_clean_error(
            dbtool("users", *command), 4,
            "'Bob.Smith@example.com', 'bob.smith@example.com'", "exact stored spelling or the id",
        )  # fmt: skip
    assert run_sql(database_url, 'SELECT email, is_superuser FROM "user" ORDER BY email') == before
    promoted = dbtool("users", "update", "Bob.Smith@example.com", "--superuser", "--json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["email"] == "Bob.Smith@example.com"
    superusers = run_sql(database_url, 'SELECT email FROM "user" WHERE is_superuser')
    assert superusers == [("Bob.Smith@example.com",)]
    assert dbtool("users", "check-password", "bob.smith@example.com",
                  "--password-stdin", input=PASSWORD).exit_code == 0  # fmt: skip


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
    indirect=True,
)
def test_a_login_by_an_ambiguous_spelling_lets_nobody_in(database_url: str) -> None:
    """The library's `authenticate` (an application's login path) never picks one of two
    accounts that differ only in letter case; the exact spelling still logs in. (MariaDB's
    unique index ignores case: there cannot be two such accounts.)"""
    from dbtool.db import Database
    from dbtool.users.service import authenticate

    dbtool = Dbtool(database_url, env=SHAPES["template"].env)
    assert dbtool("init").exit_code == 0
    for email in ("Ann@example.com", "ann@example.com"):
        run_sql(
            database_url,
            'INSERT INTO "user" (id, email, hashed_password, is_active, is_superuser) '
            "VALUES (:id, :email, :hashed, true, false)",
            {
                "id": uuid.uuid4().hex,
                "email": email,
                "hashed": PasswordHash((Argon2Hasher(),)).hash(PASSWORD),
            },
        )

    async def login(ident: str) -> str | None:
        models = SHAPES["template"].models
        async with Database.from_url(database_url, models=models) as db, db.session() as session:
            user = await authenticate(session, ident, PASSWORD)
            return None if user is None else user.email

    assert asyncio.run(login("ANN@example.com")) is None
    assert asyncio.run(login("ann@example.com")) == "ann@example.com"
    assert asyncio.run(login("Ann@example.com")) == "Ann@example.com"


def test_an_import_matches_existing_accounts_whatever_the_letter_case(
    database_url: str, tmp_path: Path
) -> None:
    """`users import` follows the same rule as `users add`: a row whose email is a case
    variant of a stored one is that account (skipped, updated or a conflict), and two
    variants in one file are one person."""
    shape = SHAPES["template"]
    dbtool = Dbtool(database_url, env=shape.env)
    assert dbtool("init").exit_code == 0
    add(dbtool, shape, "Bob.Smith@example.com")
    path = tmp_path / "users.jsonl"
    path.write_text(
        json.dumps({"email": "bob.smith@example.com", "password": PASSWORD,
                    "is_superuser": True}) + "\n"
        + json.dumps({"email": "New.Person@example.com", "password": PASSWORD}) + "\n"
    )  # fmt: skip

    assert_clean_error(dbtool("users", "import", str(path)), 4, "Bob.Smith@example.com")
    assert emails(database_url) == ["Bob.Smith@example.com"]
    skipped = dbtool("users", "import", str(path), "--on-conflict", "skip")
    assert skipped.exit_code == 0, skipped.output
    assert emails(database_url) == ["Bob.Smith@example.com", "New.Person@example.com"]
    assert run_sql(database_url, 'SELECT email FROM "user" WHERE is_superuser') == []
    updated = dbtool("users", "import", str(path), "--on-conflict", "update")
    assert updated.exit_code == 0, updated.output
    assert emails(database_url) == ["Bob.Smith@example.com", "New.Person@example.com"]
    superusers = run_sql(database_url, 'SELECT email FROM "user" WHERE is_superuser')
    assert superusers == [("Bob.Smith@example.com",)]

    twice = tmp_path / "twice.jsonl"
    twice.write_text(
        json.dumps({"email": "Carol@example.com", "password": PASSWORD}) + "\n"
        + json.dumps({"email": "carol@example.com", "password": PASSWORD}) + "\n"
    )  # fmt: skip
    result = dbtool("users", "import", str(twice), "--on-conflict", "skip")
    assert result.exit_code == 0, result.output
    assert [e for e in emails(database_url) if e.lower() == "carol@example.com"] == [
        "Carol@example.com"
    ]
