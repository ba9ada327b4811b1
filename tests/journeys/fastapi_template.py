"""The FastAPI full-stack template (fastapi/full-stack-fastapi-template) with dbtool, on an
unmodified checkout: init on an empty database through the template's own Alembic project,
check clean, the first superuser, and the template's own login route accepting it; the
template's own `crud.create_user` writing a mixed-case email, and dbtool keeping one
account for that person; an env.py pointed elsewhere reported, never a success; and the
CI recipe of docs/guides/ci.md (schema, seed fixtures and an admin in one line) run twice
in a row and twice at once, with the same rows every way.

    python -m tests.journeys.fastapi_template PATH/TO/full-stack-fastapi-template

The checkout's backend is installed with its own dependencies into a new virtual
environment, dbtool beside it. Needs PostgreSQL on 127.0.0.1:5432 (DBTOOL_TEST_POSTGRES_URL)
and the package index. The template's releases up to 95a7a61c (June 2026) run on Python
3.10+ and build their URL from POSTGRES_* settings; later ones need Python 3.14 (give it
with --python). Exit 0 when every step held.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.journeys.common import (
    JourneyFailed,
    app_environment,
    check,
    databases,
    main,
    query,
    run,
    step,
    tables,
)

PASSWORD = "a long enough password"

LOGIN = """
import json, sys
from fastapi.testclient import TestClient
from app.main import app

client = TestClient(app)
form = {"username": sys.argv[1], "password": sys.argv[2]}
answer = client.post("/api/v1/login/access-token", data=form)
if answer.status_code != 200:
    print(json.dumps({"status": answer.status_code, "body": answer.text}))
    sys.exit(0)
token = answer.json()["access_token"]
me = client.post("/api/v1/login/test-token", headers={"Authorization": f"Bearer {token}"})
print(json.dumps({"status": answer.status_code, "me": me.json()}))
"""

CREATE_USER = """
import sys
from sqlmodel import Session
from app import crud
from app.core.db import engine
from app.models import UserCreate

with Session(engine) as session:
    user = crud.create_user(session=session, user_create=UserCreate(email=sys.argv[1],
                            password=sys.argv[2]))
    print(user.email)
"""


def journey(checkout: Path, python: str) -> None:
    backend = checkout / "backend"
    with (
        app_environment(str(backend), python=python) as venv,
        databases(4) as (target, other, in_a_row, at_once),
    ):
        from tests.journeys.common import server_url

        settings = {
            "PROJECT_NAME": "journey", "SECRET_KEY": "journey-secret-key-" + "x" * 20,
            "ENVIRONMENT": "local", "FIRST_SUPERUSER": "first@example.com",
            "FIRST_SUPERUSER_PASSWORD": PASSWORD, "POSTGRES_SERVER": "127.0.0.1",
            "POSTGRES_PORT": "5432", "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "",
        }  # fmt: skip
        dbtool_env = {
            "DATABASE_URL": server_url(target),
            "DBTOOL_MODELS": "app.models:SQLModel",
        }

        def dbtool(*args: str, db: str = target, stdin: str | None = None) -> tuple[int, str]:
            env = {**settings, "POSTGRES_DB": db, **dbtool_env}
            done = run(venv, ["dbtool", *args], cwd=backend, env=env, stdin=stdin)
            return done.returncode, done.stdout + done.stderr

        def app(code: str, *args: str) -> str:
            env = {**settings, "POSTGRES_DB": target}
            done = run(venv, ["python", "-c", code, *args], cwd=backend, env=env)
            if done.returncode != 0:
                raise JourneyFailed(f"the template's code failed: {done.stderr[-2000:]}")
            return done.stdout.strip()

        step("env.py pointed at another database (POSTGRES_DB) than dbtool's DATABASE_URL")
        code, output = dbtool("init", db=other)
        check(code == 1, "init exits 1", output)
        check("env.py ignores the URL dbtool passes" in output, "it names the cause", output)
        check("✓" not in output, "no success is claimed", output)
        check(not tables(target) & {"user", "item"}, "dbtool's database is still empty")

        step("init on the empty database, through the template's own Alembic project")
        code, output = dbtool("init")
        check(code == 0, "init exits 0", output)
        check("checked: alembic_version says head" in output, "it checked the head", output)
        check({"user", "item", "alembic_version"} <= tables(target), "the tables exist")
        code, output = dbtool("check")
        check(code == 0, "check is clean", output)

        step("the first superuser, accepted by the template's own login route")
        admin = ["admin@example.com", "--superuser", "--set", "full_name=Admin"]
        code, output = dbtool("users", "add", *admin, "--password-stdin", stdin=PASSWORD)
        check(code == 0, "users add --superuser exits 0", output)
        login = json.loads(app(LOGIN, "admin@example.com", PASSWORD))
        check(login["status"] == 200, "POST /api/v1/login/access-token answers 200", str(login))
        check(login["me"]["is_superuser"] is True, "the token's user is a superuser", str(login))

        step("a mixed-case email written by the template's own crud.create_user")
        stored = app(CREATE_USER, "Bob.Smith@Example.COM", PASSWORD)
        check(stored == "Bob.Smith@example.com", "the template stored it as typed", stored)
        code, output = dbtool("users", "add", "bob.smith@example.com", "--if-not-exists",
                              "--password-stdin", stdin=PASSWORD)  # fmt: skip
        check(code == 0 and "already exists" in output, "--if-not-exists finds that person",
              output)  # fmt: skip
        code, output = dbtool("users", "add", "BOB.SMITH@example.com", "--password-stdin",
                              stdin=PASSWORD)  # fmt: skip
        check(code == 4 and "Bob.Smith@example.com" in output, "a variant is exit 4", output)
        rows = query(
            target, "SELECT email FROM \"user\" WHERE lower(email) = 'bob.smith@example.com'"
        )
        check(rows == [["Bob.Smith@example.com"]], "one row for that person", str(rows))
        code, output = dbtool("users", "update", "Bob.Smith@example.com", "--superuser")
        check(code == 0, "update by the stored spelling promotes", output)
        login = json.loads(app(LOGIN, "Bob.Smith@example.com", PASSWORD))
        check(login["status"] == 200 and login["me"]["is_superuser"] is True,
              "the template logs Bob in, a superuser", str(login))  # fmt: skip

        step("check-password reads, and writes nothing")
        before = query(target, 'SELECT hashed_password FROM "user" ORDER BY email')
        code, output = dbtool("users", "check-password", "admin@example.com",
                              "--password-stdin", stdin=PASSWORD)  # fmt: skip
        check(code == 0, "the password matches", output)
        check(query(target, "SELECT hashed_password FROM \"user\" ORDER BY email") == before,
              "no hash was rewritten")  # fmt: skip

        step("the CI recipe: schema, seed fixtures and an admin in one line")
        with tempfile.TemporaryDirectory(prefix="dbtool-seed-") as folder:
            (Path(folder) / "demo.jsonl").write_text(SEED)
            states = []
            for database, parallel in ((in_a_row, False), (at_once, True)):
                env = {**settings, "POSTGRES_DB": database, **dbtool_env,
                       "DATABASE_URL": server_url(database), "DBTOOL_SEED": folder}  # fmt: skip
                runs: list[subprocess.Popen[str]] = []
                outputs = []
                for _ in range(2):  # at once: both started before either is waited for
                    runs.append(recipe(venv, backend, env))
                    if not parallel:
                        outputs.append(runs[-1].communicate(PASSWORD, timeout=600)[0])
                if parallel:
                    outputs = [process.communicate(PASSWORD, timeout=600)[0] for process in runs]
                for process, output in zip(runs, outputs, strict=True):
                    check(process.returncode == 0, "the recipe exits 0", output)
                states.append(seeded_state(database))
            check(states[0] == states[1], "the same rows twice in a row and twice at once",
                  f"{states[0]} != {states[1]}")  # fmt: skip
            check(len(states[0]["items"]) == 3 and states[0]["admins"] == [["admin@example.com",
                  "t"]], "the seed's items and one admin", str(states[0]))  # fmt: skip


# The seed: a demo user (no hash in fixtures: it cannot log in) and the items it owns.
DEMO = "00000000-0000-4000-8000-00000000de00"
SEED = "".join(
    json.dumps(record) + "\n"
    for record in [
        {"table": "item", "row": {"id": f"00000000-0000-4000-8000-00000000000{n}",
         "owner_id": DEMO, "title": f"Demo item {n}", "description": None}}
        for n in range(1, 4)
    ] + [{"table": "user", "row": {"id": DEMO, "email": "demo@example.com",
          "is_active": True, "is_superuser": False, "full_name": "Demo"}}]
)  # fmt: skip
RECIPE = (
    "dbtool init --wait 60 --create-database --seed && "
    "dbtool users add admin@example.com --superuser --if-not-exists --password-stdin"
)


def recipe(venv: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The recipe as a CI step runs it: one shell line, the password on stdin."""
    path = f"{venv / 'bin'}:{os.environ.get('PATH', '')}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DBTOOL_", "DATA"))}
    return subprocess.Popen(
        ["sh", "-c", RECIPE], cwd=cwd, env={**environment, **env, "PATH": path},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def seeded_state(database: str) -> dict[str, list[list[str]]]:
    return {
        "users": query(database, 'SELECT email, hashed_password FROM "user" WHERE '
                       "email <> 'admin@example.com' ORDER BY email"),
        "items": query(database, "SELECT id, title, owner_id FROM item ORDER BY id"),
        "admins": query(database, 'SELECT email, is_superuser FROM "user" WHERE is_superuser'),
        "alembic": query(database, "SELECT version_num FROM alembic_version"),
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(journey, __doc__ or "", "FastAPI template"))
