"""What the journeys share: an application's own environment with dbtool installed into
it, throw-away PostgreSQL databases, and steps that say what they checked."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # this repository: dbtool
SERVER = os.environ.get("DBTOOL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class JourneyFailed(Exception):
    """A step of the journey did not hold."""


def step(title: str) -> None:
    print(f"--- {title}", flush=True)


def check(condition: bool, what: str, detail: str = "") -> None:
    if not condition:
        raise JourneyFailed(f"{what}{': ' + detail if detail else ''}")
    print(f"    ok: {what}", flush=True)


@contextmanager
def app_environment(*installs: str, python: str = sys.executable) -> Iterator[Path]:
    """A virtual environment holding the application (`installs`: pip arguments) and then
    dbtool from this repository, as a user installs it beside their app."""
    with tempfile.TemporaryDirectory(prefix="dbtool-journey-") as directory:
        venv = Path(directory) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *installs], check=True)
        subprocess.run([*pip, str(ROOT)], check=True)
        yield venv


def server_url(database: str, driver: str = "postgresql") -> str:
    from sqlalchemy.engine import make_url

    url = make_url(SERVER).set(drivername=driver, database=database)
    return url.render_as_string(hide_password=False)


@contextmanager
def databases(count: int) -> Iterator[list[str]]:
    """`count` new, empty databases on the test server, dropped afterwards."""
    names = [f"dbtool_journey_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for name in names:
        _admin(f'CREATE DATABASE "{name}"')
    try:
        yield names
    finally:
        for name in names:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    subprocess.run(["psql", server_url("postgres"), "-q", "-c", sql], check=True,
                   capture_output=True)  # fmt: skip


def tables(database: str) -> set[str]:
    done = subprocess.run(
        ["psql", server_url(database), "-At", "-c",
         "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return set(done.stdout.split())


def query(database: str, sql: str) -> list[list[str]]:
    done = subprocess.run(["psql", server_url(database), "-At", "-F", "\t", "-c", sql],
                          check=True, capture_output=True, text=True)  # fmt: skip
    return [line.split("\t") for line in done.stdout.splitlines()]


def run(venv: Path, argv: list[str], *, cwd: Path, env: dict[str, str],
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """A command of the application's environment (`dbtool ...`, `python -c ...`)."""
    program = str(venv / "bin" / argv[0])
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DBTOOL_", "DATABASE"))}
    return subprocess.run([program, *argv[1:]], cwd=cwd, env={**environment, **env},
                          input=stdin, capture_output=True, text=True, timeout=600)  # fmt: skip


def main(journey: Callable[[Path, str], None], doc: str, name: str) -> int:
    """A journey's command line: the checkout, and the Python to run the app with."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help=f"a checkout of {name}")
    parser.add_argument("--python", default=sys.executable, help="the Python to run it with")
    arguments = parser.parse_args()
    try:
        journey(arguments.checkout.resolve(), arguments.python)
    except JourneyFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"the {name} journey held", flush=True)
    return 0
