"""What is MySQL's and MariaDB's own: URLs and drivers, creating the database, UTC
timestamps with microseconds, case-insensitive emails, read-only servers, the schema lock
across DDL, and the server's view in pool-status. The behaviour every backend shares runs
on MariaDB through the `backend` fixture in the other modules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import Dbtool, assert_clean_error, run_sql, table_names
from tests.topology import MariaDB

pytestmark = pytest.mark.mariadb
PASSWORD = "long enough pw"
on_mariadb = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)


@pytest.fixture
def server(mariadb_server: MariaDB) -> MariaDB:
    return mariadb_server


@pytest.mark.parametrize(
    ("scheme", "driver"),
    [
        ("mysql", "asyncmy"),
        ("mariadb", "asyncmy"),
        ("mysql+pymysql", "asyncmy"),
        ("mysql+aiomysql", "aiomysql"),
        ("mariadb+aiomysql", "aiomysql"),
    ],
)
@on_mariadb
def test_every_url_form_reaches_the_server(
    server: MariaDB, database_url: str, scheme: str, driver: str
) -> None:
    url = database_url.replace("mysql+asyncmy", scheme, 1)
    dbtool = Dbtool(url)
    pinged = dbtool("ping", "--json")
    assert pinged.exit_code == 0, pinged.output
    data = json.loads(pinged.stdout)
    assert data["server"] == "MariaDB" and data["version"][:2].isdigit()
    assert data["database"].split("://")[0].endswith(f"+{driver}")
    assert dbtool("init").exit_code == 0
    added = dbtool("users", "add", "ada@example.com", "--password-stdin", input=PASSWORD)
    assert added.exit_code == 0, added.output


def test_create_database_makes_utf8mb4_once_under_concurrency(server: MariaDB) -> None:
    name = f"dbtool_test_{uuid.uuid4().hex[:12]}"
    dbtool = Dbtool(server.url(name))
    try:
        assert_clean_error(dbtool("init"), 3, f"database '{name}' does not exist",
                           "--create-database")  # fmt: skip
        processes = [dbtool.spawn("init", "--create-database", "--json") for _ in range(4)]
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in processes]
        assert [code for code, _, _ in outcomes] == [0] * 4, outcomes
        reports = [json.loads(out) for _, out, _ in outcomes]
        assert sum(report["database_created"] for report in reports) == 1
        assert sum(len(report["created"]) for report in reports) == 1  # users, once
        charset = server.admin(
            "SELECT default_character_set_name, default_collation_name FROM"
            f" information_schema.schemata WHERE schema_name = '{name}'"
        ).stdout.split()
        assert charset == ["utf8mb4", "utf8mb4_unicode_ci"]
    finally:
        server.admin(f"DROP DATABASE IF EXISTS `{name}`", check=False)


@on_mariadb
def test_timestamps_are_utc_with_microseconds(initialised: Dbtool) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    for email in ("a@example.com", "b@example.com"):
        assert initialised("users", "add", email, "--password-stdin", input=PASSWORD).exit_code == 0
    stored = run_sql(initialised.url, "SELECT created_at FROM users ORDER BY created_at")
    assert all(value.microsecond for (value,) in stored) or stored[0][0] != stored[1][0]
    naive = [value.replace(tzinfo=UTC) for (value,) in stored]  # DATETIME: UTC, no zone
    assert all(before <= value <= datetime.now(UTC) + timedelta(seconds=2) for value in naive)
    listed = json.loads(initialised("users", "list", "--json").stdout)
    assert [user["created_at"] for user in listed] == [v.isoformat() for v in naive]
    column = run_sql(initialised.url, "SELECT column_type FROM information_schema.columns"
                     " WHERE table_schema = DATABASE() AND table_name = 'users'"
                     " AND column_name = 'created_at'")  # fmt: skip
    assert column == [("datetime(6)",)]


@on_mariadb
def test_emails_are_one_identity_and_hold_any_character(initialised: Dbtool) -> None:
    email = "名字.ü@例子.广告"
    assert initialised("users", "add", email, "--password-stdin", input=PASSWORD).exit_code == 0
    shown = json.loads(initialised("users", "show", email.upper(), "--json").stdout)
    assert shown["email"] == email.lower()
    again = initialised("users", "add", email.upper(), "--password-stdin", input=PASSWORD)
    assert_clean_error(again, 4, "already exists")


@on_mariadb
def test_a_read_only_server_refuses_writes_and_says_so(server: MariaDB, database_url: str) -> None:
    """read_only binds users without the privilege to bypass it, as an application's is."""
    Dbtool(database_url)("init")
    name = database_url.rsplit("/", 1)[1]
    user = f"reader_{uuid.uuid4().hex[:6]}"
    server.admin(f"CREATE USER '{user}'@'127.0.0.1'; GRANT SELECT, INSERT, UPDATE, DELETE ON"
                 f" `{name}`.* TO '{user}'@'127.0.0.1'")  # fmt: skip
    plain = Dbtool(database_url.replace("dbtool@", f"{user}@"))
    server.admin("SET GLOBAL read_only = 1")
    try:
        pinged = json.loads(plain("ping", "--json").stdout)
        assert pinged["role"]["role"] == "standby"
        refused = plain("users", "add", "a@example.com", "--password-stdin", input=PASSWORD)
        assert_clean_error(refused, 5, "standby")
        assert plain("users", "list").exit_code == 0
    finally:
        server.admin("SET GLOBAL read_only = 0")
        server.admin(f"DROP USER '{user}'@'127.0.0.1'", check=False)


def test_a_refused_connection_is_exit_3_and_waited_for(server: MariaDB) -> None:
    from tests.topology import free_port

    url = f"mysql://dbtool@127.0.0.1:{free_port()}/nothing"
    result = Dbtool(url)("ping", "--wait", "1")
    assert_clean_error(result, 3, "connection refused", "127.0.0.1:")
    unknown = Dbtool("mysql://dbtool@no-such-host.invalid/x")("ping")
    assert_clean_error(unknown, 3, "unknown host")


@on_mariadb
def test_the_schema_lock_is_named_and_bounded(server: MariaDB, database_url: str) -> None:
    """A second init waits for the first's lock (GET_LOCK, held across DDL), gives up after
    DBTOOL_LOCK_TIMEOUT naming the holder, and created nothing meanwhile."""
    import pymysql

    name = database_url.rsplit("/", 1)[1]
    holder = pymysql.connect(host="127.0.0.1", port=server.port, user="dbtool", database=name)
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"SELECT GET_LOCK('dbtool schema {name}', 1)")
        result = Dbtool(database_url)("init", env={"DBTOOL_LOCK_TIMEOUT": "1"})
        assert_clean_error(result, 1, "not granted within 1s", "held by connection")
        assert "users" not in table_names(database_url)
    finally:
        holder.close()
    assert Dbtool(database_url)("init").exit_code == 0


@on_mariadb
def test_pool_status_reads_the_processlist(initialised: Dbtool) -> None:
    report = json.loads(initialised("pool-status", "--json").stdout)
    server = report["server"]
    assert server["max_connections"] >= 100 and server["in_use"] >= 1
    assert server["available"] == (
        server["max_connections"] - server["reserved_connections"] - server["in_use"]
    )


def test_the_driver_sends_no_file_but_the_one_dbtool_loads() -> None:
    """LOAD DATA LOCAL lets the server name the client file to send; outside dbtool's own
    load, and for any other file, the (real) driver's sender refuses, ending the request as
    the protocol wants (an empty file), so a hostile server reads nothing."""
    import asyncio

    from dbtool.backends.mysql import load

    assert load._guard("asyncmy.connection")
    from asyncmy import connection

    sent: list[bytes] = []

    class Wire:
        loop = None
        connected = True
        _max_allowed_packet = 1 << 20

        def write_packet(self, data: bytes) -> None:
            sent.append(data)

        class _proto:
            @staticmethod
            async def drain() -> None:
                return None

    async def ask(name: bytes, allowed: str | None) -> None:
        wire: Any = Wire()
        wire.loop = asyncio.get_running_loop()
        token = load._allowed.set(allowed)
        try:
            await connection.LoadLocalFile(name, wire).send_data()
        finally:
            load._allowed.reset(token)

    with pytest.raises(PermissionError, match="refused to send '/etc/passwd'"):
        asyncio.run(ask(b"/etc/passwd", None))
    assert sent == [b""]  # nothing but the empty packet that ends the request
    sent.clear()
    with pytest.raises(PermissionError):
        asyncio.run(ask(b"/etc/passwd", "/tmp/dbtool-load-abc.tsv"))
    assert sent == [b""]
