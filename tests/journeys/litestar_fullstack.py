"""litestar-fullstack (litestar-org/litestar-fullstack) with dbtool, on an unmodified
checkout: its `.env` (DATABASE_URL built from `${DATABASE_USER}`-style references) read as
the app reads it, its migrations run through advanced-alchemy's env.py with its
`ddl_version` table, check clean, the first superuser, the app's own login route accepting
it, and drop taking `ddl_version` with the tables.

    python -m tests.journeys.litestar_fullstack PATH/TO/litestar-fullstack

The checkout is installed with its own dependencies into a new virtual environment, dbtool
beside it; the app's `.env` is its `.env.local.example` with the database settings filled
in, in a working directory of the journey's own (the checkout is not written to). Needs
PostgreSQL on 127.0.0.1:5432 (DBTOOL_TEST_POSTGRES_URL), Redis on 127.0.0.1:6379 (the app's
task queue starts with it) and the package index. Exit 0 when every step held.
"""

from __future__ import annotations

import base64
import json
import re
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
MODELS = "app.db.models._user:UUIDv7AuditBase"  # the package imports every model

LOGIN = """
import json, sys
from litestar.testing import TestClient
from app.server.asgi import create_app

with TestClient(app=create_app()) as client:
    form = {"username": sys.argv[1], "password": sys.argv[2]}
    answer = client.post("/api/access/login", data=form)
    print(json.dumps({"status": answer.status_code, "body": answer.json()}))
"""


def dotenv(example: str, database: str) -> str:
    """The app's own example .env, with this journey's database in its parts (the URL
    itself stays the example's `${...}` references)."""
    values = {"DATABASE_USER": "postgres", "DATABASE_PASSWORD": "", "DATABASE_HOST": "127.0.0.1",
              "DATABASE_PORT": "5432", "DATABASE_DB": database}  # fmt: skip
    for name, value in values.items():
        example = re.sub(rf"(?m)^{name}=.*$", f"{name}={value}", example)
    return example


def journey(checkout: Path, python: str) -> None:
    with (
        app_environment("-e", str(checkout), python=python) as venv,
        databases(1) as (target,),
        tempfile.TemporaryDirectory(prefix="dbtool-litestar-") as work,
    ):
        workdir = Path(work)
        example = (checkout / ".env.local.example").read_text()
        check("${DATABASE_USER}" in example, "the app's .env builds DATABASE_URL from parts")
        (workdir / ".env").write_text(dotenv(example, target))
        settings = {
            "DBTOOL_ALEMBIC_CONFIG": str(checkout / "src/py/app/db/migrations/alembic.ini"),
            "DBTOOL_MODELS": MODELS,
            "SAQ_REDIS_URL": "redis://127.0.0.1:6379/15",
            "SAQ_USE_SERVER_LIFESPAN": "false",
            "VITE_DEV_MODE": "false",
        }

        def dbtool(*args: str, stdin: str | None = None, **env: str) -> tuple[int, str, str]:
            done = run(venv, ["dbtool", *args], cwd=workdir, env={**settings, **env}, stdin=stdin)
            return done.returncode, done.stdout, done.stderr

        step("the app's .env, read as the app reads it")
        code, out, err = dbtool("config", "--json")
        check(code == 0, "config exits 0", err)
        url = json.loads(out)["DATABASE_URL"]
        check(url["value"].endswith(f"@127.0.0.1:5432/{target}"), "the references expanded",
              url["value"])  # fmt: skip
        check("${DATABASE_PORT} from .env" in url["source"], "config says where from",
              url["source"])  # fmt: skip

        step("advanced-alchemy's env.py needs the version table's name")
        code, _, err = dbtool("init")
        check(code == 2 and "DBTOOL_ALEMBIC_VERSION_TABLE" in err, "init exits 2 naming it", err)
        check(not tables(target), "nothing was created")
        settings["DBTOOL_ALEMBIC_VERSION_TABLE"] = "ddl_version"

        step("init through the app's migrations, check clean")
        code, _, err = dbtool("init")
        check(code == 0, "init exits 0", err)
        check("checked: ddl_version says head" in err, "it checked ddl_version", err)
        check({"user_account", "ddl_version"} <= tables(target), "the tables exist")
        check("alembic_version" not in tables(target), "no second version table")
        code, _, err = dbtool("check")
        check(code == 0, "check is clean", err)

        step("the first superuser, accepted by the app's own login route")
        code, _, err = dbtool("users", "add", "admin@example.com", "--superuser",
                              "--password-stdin", stdin=PASSWORD)  # fmt: skip
        check(code == 0, "users add --superuser exits 0", err)
        done = run(venv, ["python", "-c", LOGIN, "admin@example.com", PASSWORD], cwd=workdir,
                   env=settings)  # fmt: skip
        if done.returncode != 0:
            raise JourneyFailed(f"the app's login failed: {done.stderr[-2000:]}")
        login = json.loads(done.stdout.strip().splitlines()[-1])
        check(login["status"] == 201, "POST /api/access/login answers 201", str(login)[:300])
        payload = login["body"]["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        check(claims["extras"]["is_superuser"] is True, "its token says superuser", str(claims))

        step("drop takes ddl_version with the tables; init migrates again")
        code, _, err = dbtool("drop", "--yes")
        check(code == 0, "drop exits 0", err)
        check(not tables(target) & {"user_account", "ddl_version"}, "both are gone")
        code, _, err = dbtool("init")
        check(code == 0 and "applied" in err, "init applies the migrations again", err)
        rows = query(target, "SELECT version_num FROM ddl_version")
        check(len(rows) == 1, "ddl_version holds the head", str(rows))


if __name__ == "__main__":
    sys.exit(main(journey, __doc__ or "", "litestar-fullstack"))
