"""Shared fixtures: an isolated environment, and the same tests on SQLite, PostgreSQL and
MariaDB.

PostgreSQL comes from DBTOOL_TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432);
MariaDB is a private server the tests start once (tests.topology.MariaDB) and stop at the
end. Each test gets a database of its own, created and dropped here. Without a server the
tests of that backend skip, unless DBTOOL_REQUIRE_POSTGRES=1 or DBTOOL_REQUIRE_MARIADB=1
(CI), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from dbtool.users import passwords
from dbtool.users.passwords import LegacyHasher
from tests.helpers import (
    REQUIRE_POSTGRES,
    TEST_DB_PREFIX,
    Dbtool,
    pg_execute,
    postgres_problem,
    postgres_url,
)
from tests.topology import Cluster, MariaDB, TopologyError

REQUIRE_MARIADB = os.environ.get("DBTOOL_REQUIRE_MARIADB") == "1"
# As `init --create-database` makes MariaDB databases.
MARIADB_CHARSET = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"

# Settings the tool reads; a developer's own values must not leak into the tests.
TOOL_ENV_PREFIXES = ("DBTOOL_", "DATABASE_URL")


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"DBTOOL_REQUIRE_POSTGRES=1 but {problem}")
    pytest.skip(problem)


@pytest.fixture
def new_postgres_database(postgres_available: None) -> Iterator[str]:
    """The name of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:12]}"
    pg_execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def password_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server that checks passwords (scram-sha-256), for the
    authentication-failure paths; the shared server trusts local connections. Its URL's
    password is "right-pw"."""
    cluster = private_cluster(password="right-pw")
    try:
        yield cluster.url()
    finally:
        cluster.remove()


def private_cluster(**options: Any) -> Cluster:
    """A private server, or a skip (a failure under DBTOOL_REQUIRE_POSTGRES=1) saying why
    there can be none here."""
    try:
        return Cluster.create(**options)
    except TopologyError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"DBTOOL_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No tool settings from the developer's environment or .env; a fresh working directory."""
    for name in list(os.environ):
        if name.startswith(TOOL_ENV_PREFIXES) and name != "DBTOOL_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast Argon2 parameters in-process (subprocess tests hash with the real defaults)."""
    cheap, bcrypt = Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1), BcryptHasher(4)
    legacy = LegacyHasher()
    monkeypatch.setattr(
        passwords,
        "_hashers",
        {
            "argon2": PasswordHash((cheap, bcrypt, legacy)),
            "bcrypt": PasswordHash((bcrypt, cheap, legacy)),
        },
    )


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDB]:
    """One private MariaDB server for the whole run, or a skip (a failure under
    DBTOOL_REQUIRE_MARIADB=1) saying why there can be none here."""
    try:
        server = MariaDB.create()
    except TopologyError as exc:
        if REQUIRE_MARIADB:
            pytest.fail(f"DBTOOL_REQUIRE_MARIADB=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Makes another empty database on the backend under test, dropped after the test;
    each call, a URL to a new one."""
    dropped: list[Callable[[], None]] = []
    made: list[str] = []

    def make() -> str:
        name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":  # the first is test.db, where tests look for it
            made.append(name)
            return f"sqlite+aiosqlite:///{tmp_path / ('test' if len(made) == 1 else name)}.db"
        if backend == "mariadb":
            server: MariaDB = request.getfixturevalue("mariadb_server")
            server.admin(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            dropped.append(lambda: server.admin(f"DROP DATABASE IF EXISTS `{name}`", check=False))
            return server.url(name)
        request.getfixturevalue("postgres_available")
        pg_execute(f'CREATE DATABASE "{name}"')
        dropped.append(lambda: pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return postgres_url(name)

    try:
        yield make
    finally:
        for drop in dropped:
            drop()


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """A URL to an empty database (no tables yet) on the backend under test."""
    return new_database()


@pytest.fixture
def second_database_url(new_database: Callable[[], str]) -> str:
    """Another empty database on the same backend (a copy's target, say)."""
    return new_database()


@pytest.fixture
def dbtool(database_url: str) -> Dbtool:
    return Dbtool(database_url)


@pytest.fixture
def initialised(dbtool: Dbtool) -> Dbtool:
    """The CLI against a database where `dbtool init` has run."""
    result = dbtool("init")
    assert result.exit_code == 0, result.output
    return dbtool
