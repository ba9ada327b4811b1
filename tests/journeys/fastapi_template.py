"""The FastAPI full-stack template (fastapi/full-stack-fastapi-template) with dbtool, on an
unmodified checkout: init on an empty database through the template's own Alembic project,
check clean, the first superuser, and the template's own login route accepting it; the
template's own `crud.create_user` writing a mixed-case email, and dbtool keeping one
account for that person; and an env.py pointed elsewhere reported, never a success.

    python -m tests.journeys.fastapi_template PATH/TO/full-stack-fastapi-template

The checkout's backend is installed with its own dependencies into a new virtual
environment, dbtool beside it. Needs PostgreSQL on 127.0.0.1:5432 (DBTOOL_TEST_POSTGRES_URL)
and the package index. The template's releases up to 95a7a61c (June 2026) run on Python
3.10+ and build their URL from POSTGRES_* settings; later ones need Python 3.14 (give it
with --python). Exit 0 when every step held.
"""

from __future__ import annotations

import json
import sys
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
    with app_environment(str(backend), python=python) as venv, databases(2) as (target, other):
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


if __name__ == "__main__":
    sys.exit(main(journey, __doc__ or "", "FastAPI template"))
