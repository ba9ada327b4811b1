"""Beyond one server: PgBouncer (transaction and session pooling), a hot standby, multi-host
URLs and a failover, all real: private PostgreSQL clusters and PgBouncer instances started
here (tests/topology.py), never the shared server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import bcrypt
import pytest

from dbtool.db import Database
from dbtool.diagnostics.pools import ProbeReport, probe
from tests.helpers import REQUIRE_POSTGRES, Dbtool, assert_clean_error, dbtool_executable
from tests.topology import Cluster, PgBouncer, Pgpool, TopologyError

pytestmark = pytest.mark.postgres
PASSWORD = "long enough pw"


def _or_skip(make: object) -> object:
    try:
        return make()  # type: ignore[operator]
    except TopologyError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"DBTOOL_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))


def _or_pgpool_skip(make: object) -> Pgpool:
    try:
        return make()  # type: ignore[operator,no-any-return]
    except TopologyError as exc:
        if os.environ.get("DBTOOL_REQUIRE_PGPOOL") == "1":
            pytest.fail(f"DBTOOL_REQUIRE_PGPOOL=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def primary() -> Iterator[Cluster]:
    cluster: Cluster = _or_skip(Cluster.create)  # type: ignore[assignment]
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def standby(primary: Cluster) -> Iterator[Cluster]:
    cluster: Cluster = _or_skip(primary.standby)  # type: ignore[assignment]
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def transaction_pooler(primary: Cluster) -> Iterator[PgBouncer]:
    bouncer: PgBouncer = _or_skip(lambda: PgBouncer.start(primary, mode="transaction"))  # type: ignore[assignment]
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="module")
def session_pooler(primary: Cluster) -> Iterator[PgBouncer]:
    bouncer: PgBouncer = _or_skip(lambda: PgBouncer.start(primary, mode="session"))  # type: ignore[assignment]
    yield bouncer
    bouncer.stop()


def sql(cluster: Cluster, statement: str, database: str = "postgres") -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/{database}")
        try:
            return list(await conn.fetch(statement))
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def database(primary: Cluster) -> str:
    name = f"app_{uuid.uuid4().hex[:10]}"
    sql(primary, f'CREATE DATABASE "{name}"')
    return name


def wait_replayed(standby: Cluster, database: str, table: str | None = None) -> None:
    """Until the standby has the database (and the table) the primary made."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            # Connecting to the database proves the standby has it; then the table, if asked.
            query = "SELECT true" if table is None else f"SELECT to_regclass('{table}')"
            if sql(standby, query, database)[0][0]:
                return
        except (asyncpg.InvalidCatalogNameError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the standby did not replay {database}.{table}")


def spawn(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([dbtool_executable(), "--url", url, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip


# --- PgBouncer in transaction mode ---------------------------------------------------------


def test_transaction_pooling_without_the_setting_says_what_to_set(
    transaction_pooler: PgBouncer, database: str
) -> None:
    dbtool = Dbtool(transaction_pooler.url(database))
    # Separate processes, as in real use: asyncpg numbers its statements per process.
    results = [dbtool.run("ping") for _ in range(4)]
    failed = [result for result in results if result.exit_code != 0]
    assert failed, "asyncpg's named statements should collide through transaction pooling"
    assert_clean_error(failed[0], 2, "PgBouncer in transaction mode", "DBTOOL_PGBOUNCER=true")


def test_create_database_through_transaction_pooling_on_every_run(
    transaction_pooler: PgBouncer, primary: Cluster
) -> None:
    """The maintenance connection of --create-database is built like every other: through
    PgBouncer in transaction mode its prepared statements never meet another run's
    (before, every run after the first failed: "__asyncpg_stmt_1__" already exists)."""
    name = f"created_{uuid.uuid4().hex[:10]}"
    dbtool = Dbtool(transaction_pooler.url(name), env={"DBTOOL_PGBOUNCER": "true"})
    try:
        # Separate processes, as in CI: asyncpg numbers its statements per process.
        results = [dbtool.run("init", "--create-database") for _ in range(4)]
        assert [result.exit_code for result in results] == [0] * 4, results[-1].stderr
        assert "Created database" in results[0].stderr or "created" in results[0].stderr.lower()
        assert sql(primary, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'")[0][0] == 1
    finally:
        sql(primary, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("how", ["setting", "url"])
def test_every_command_through_transaction_pooling(
    transaction_pooler: PgBouncer, database: str, tmp_path: Path, how: str
) -> None:
    url = transaction_pooler.url(database)
    env = {"DBTOOL_PGBOUNCER": "true"}
    if how == "url":
        url, env = url + "?prepared_statement_cache_size=0", {}
    dbtool = Dbtool(url, env=env)
    inits = [spawn(url, "init", "--json", env=env) for _ in range(4)]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in inits]
    assert [code for code, _, _ in outcomes] == [0] * 4, outcomes
    assert sum(json.loads(out)["created"] == ["users"] for _, out, _ in outcomes) == 1
    exercise_every_command(dbtool, tmp_path)
    report = json.loads(
        dbtool("pool-status", "--pgbouncer", transaction_pooler.admin_url, "--json").stdout
    )
    assert report["pgbouncer"]["pool_mode"] == "transaction"
    # Piped, the same report as plain lines, PgBouncer's part among them.
    lines = dbtool("pool-status", "--pgbouncer", transaction_pooler.admin_url).stdout.splitlines()
    part = lines[lines.index("PgBouncer") + 1 : lines.index("PgBouncer") + 6]
    assert [line.split()[0] for line in part] == ["pgbouncer", "pool", "clients", "servers",
                                                  "headroom"], lines  # fmt: skip
    assert part[1].split() == ["pool", "mode", "transaction"]


def exercise_every_command(dbtool: Dbtool, tmp_path: Path) -> None:
    """Each command once, checking its result: what a CI job and an operator would run."""

    def ok(*args: str, stdin: str | None = None) -> str:
        result = dbtool(*args, input=stdin)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    ok("ping")
    ok("users", "add", "ada@example.com", "--superuser", "--password-stdin", stdin=PASSWORD)
    rows = "".join(json.dumps({"email": f"p{n}@example.com", "password": PASSWORD}) + "\n"
                   for n in range(30))  # fmt: skip
    (tmp_path / "in.jsonl").write_text(rows)
    imported = json.loads(ok("users", "import", str(tmp_path / "in.jsonl"), "--batch-size", "7",
                             "--json"))  # fmt: skip
    assert imported["inserted"] == 30
    assert len(json.loads(ok("users", "list", "--all", "--json"))) == 31
    assert json.loads(ok("users", "show", "ada@example.com", "--json"))["is_superuser"] is True
    ok("users", "update", "ada@example.com", "--inactive")
    ok("users", "set-password", "ada@example.com", "--password-stdin", stdin="another one pw")
    ok("users", "check-password", "ada@example.com", "--password-stdin", stdin="another one pw")
    exported = ok("users", "export", "--include-hashes")
    assert len(exported.splitlines()) == 32
    ok("users", "delete", "p0@example.com", "--yes")
    # An export read back: plain blocks, through the staging table (skip) here, and into
    # an empty table with its indexes built after the load (below, after reset).
    (tmp_path / "export.csv").write_text(exported)
    again = json.loads(ok("users", "import", str(tmp_path / "export.csv"), "--on-conflict",
                          "skip", "--json"))  # fmt: skip
    assert (again["inserted"], again["skipped"]) == (1, 30)
    ok("info")
    ok("check")
    ok("pool-status", "--probe", "3")
    ok("ping", "--require", "primary")
    assert [m["role"] for m in json.loads(ok("cluster", "--json"))["members"]] == ["primary"]
    assert '"table": "users"' in ok("dump")
    ok("config")
    ok("reset", "--yes")
    assert json.loads(ok("users", "list", "--json")) == []
    loaded = json.loads(ok("users", "import", str(tmp_path / "export.csv"), "--json"))
    assert (loaded["inserted"], loaded["indexes_built_after_load"]) == (31, 4)
    ok("drop", "--yes")


def test_session_pooling_needs_no_setting(
    session_pooler: PgBouncer, database: str, tmp_path: Path
) -> None:
    dbtool = Dbtool(session_pooler.url(database))
    assert dbtool("init").exit_code == 0
    exercise_every_command(dbtool, tmp_path)
    report = json.loads(
        dbtool("pool-status", "--pgbouncer", session_pooler.admin_url, "--json").stdout
    )
    assert report["pgbouncer"]["pool_mode"] == "session"


def test_pool_status_sees_clients_waiting_in_pgbouncer(primary: Cluster, database: str) -> None:
    bouncer: PgBouncer = _or_skip(  # type: ignore[assignment]
        lambda: PgBouncer.start(primary, mode="transaction", pool_size=1)
    )
    try:
        url = bouncer.url(database)
        dbtool = Dbtool(url, env={"DBTOOL_PGBOUNCER": "true"})

        async def hold_and_report() -> tuple[dict[str, object], dict[str, object]]:
            dsn = f"postgresql://postgres@127.0.0.1:{bouncer.port}/{database}"
            holders = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(3)]
            busy = [asyncio.create_task(c.execute("SELECT pg_sleep(3)")) for c in holders]
            await asyncio.sleep(0.5)  # one runs, two queue in PgBouncer
            process = await asyncio.create_subprocess_exec(
                dbtool_executable(), "--url", url, "pool-status", "--json",
                "--pgbouncer", bouncer.admin_url, "--probe", "2",
                env={**os.environ, "DBTOOL_PGBOUNCER": "true"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await process.communicate()
            await asyncio.gather(*busy)
            for conn in holders:
                await conn.close()
            report = json.loads(out)
            return report["pgbouncer"], report

        pooler, report = asyncio.run(hold_and_report())
        assert int(pooler["clients_waiting"]) >= 2, pooler  # type: ignore[call-overload]
        assert pooler["default_pool_size"] == 1 and pooler["max_client_conn"] == 200
        assert any("for a server connection" in w for w in report["warnings"])  # type: ignore[attr-defined]
        assert dbtool("ping").exit_code == 0

        async def probe_behind_a_busy_pooler() -> ProbeReport:
            db = Database.from_url(url, pgbouncer=True)
            async with db:  # connected: its connection waits, idle, in dbtool's own pool
                dsn = f"postgresql://postgres@127.0.0.1:{bouncer.port}/{database}"
                holder = await asyncpg.connect(dsn, statement_cache_size=0)
                busy = asyncio.create_task(holder.execute("SELECT pg_sleep(2)"))
                await asyncio.sleep(0.3)
                report = await probe(db, 1, hold=0)
                await busy
                await holder.close()
            return report

        probed = asyncio.run(probe_behind_a_busy_pooler())
        # The pool hands its connection out at once; the answer waited in PgBouncer.
        assert probed.wait_max_ms is not None and probed.first_query_max_ms is not None
        assert probed.first_query_max_ms > probed.wait_max_ms + 1000, probed
    finally:
        bouncer.stop()


def test_pool_status_behind_a_full_pgbouncer_pool_answers_at_once(
    primary: Cluster, database: str
) -> None:
    """PgBouncer's pool full (one server connection, three clients on it): pool-status does
    not queue behind them; it says the pool is full, that the server half was not read,
    gives one verdict, PgBouncer's server states and totals, and OpenMetrics that parse."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    bouncer: PgBouncer = _or_skip(  # type: ignore[assignment]
        lambda: PgBouncer.start(primary, mode="transaction", pool_size=1)
    )
    try:
        url = bouncer.url(database)
        env = {**os.environ, "DBTOOL_PGBOUNCER": "true"}

        async def while_full(*args: str) -> tuple[float, str]:
            dsn = f"postgresql://postgres@127.0.0.1:{bouncer.port}/{database}"
            holders = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(3)]
            busy = [asyncio.create_task(c.execute("SELECT pg_sleep(6)")) for c in holders]
            await asyncio.sleep(0.5)  # one runs, two queue in PgBouncer
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                dbtool_executable(), "--url", url, "pool-status", "--pgbouncer",
                bouncer.admin_url, *args, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await process.communicate()
            took = time.monotonic() - started
            for task in busy:
                task.cancel()
            for conn in holders:
                conn.terminate()
            assert process.returncode == 0, err.decode()
            return took, out.decode()

        took, out = asyncio.run(while_full("--json"))
        report = json.loads(out)
        assert took < 10, took  # the 3 s deadline and start-up, not the queue (17.5 s)
        pooler = report["pgbouncer"]
        assert pooler["clients_waiting"] >= 2 and pooler["server_headroom"] == 0
        assert {"servers_used", "servers_tested", "servers_login"} <= set(pooler)
        assert pooler["stats"]["transactions"] >= 0 and pooler["read_at"]
        assert report["server"] is None
        assert any("pool for" in w and "is full" in w for w in report["warnings"])
        assert any("server side was not read" in w for w in report["warnings"])
        assert report["headroom"]["limited_by"].startswith("PgBouncer's max_client_conn")
        assert report["headroom"]["processes"] == (200 - pooler["clients_total"]) // 15

        _, metrics = asyncio.run(while_full("--format", "openmetrics"))
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        waiting = {s.labels["state"]: s.value for s in families["dbtool_pgbouncer_clients"].samples}
        assert waiting["waiting"] >= 2
        assert families["dbtool_pgbouncer_transactions"].type == "counter"
        assert families["dbtool_pgbouncer_wait_seconds"].unit == "seconds"

        # With room in the pool, both halves are read, each with its time.
        calm = json.loads(Dbtool(url, env={"DBTOOL_PGBOUNCER": "true"})(
            "pool-status", "--json", "--pgbouncer", bouncer.admin_url).stdout)  # fmt: skip
        assert calm["server"]["read_at"] and calm["pgbouncer"]["read_at"]
        assert not any("not read" in w for w in calm["warnings"])
    finally:
        bouncer.stop()


def test_every_command_through_pgpool(primary: Cluster, database: str, tmp_path: Path) -> None:
    pool: Pgpool = _or_pgpool_skip(lambda: Pgpool.start(primary, children=16))
    try:
        dbtool = Dbtool(pool.url(database))
        assert dbtool("init").exit_code == 0
        exercise_every_command(dbtool, tmp_path)
        assert json.loads(dbtool("pool-status", "--json").stdout)["pgpool"] is not None
    finally:
        pool.stop()


def test_pool_status_behind_pgpool(primary: Cluster, database: str) -> None:
    """pgpool-II (connection cache on, 8 children) is recognised on the database connection:
    the headroom comes from its num_init_children, and the backend connections its idle
    children keep are shown as its cache, not as idle sessions of dbtool."""
    pool: Pgpool = _or_pgpool_skip(lambda: Pgpool.start(primary, children=8))
    try:
        dbtool = Dbtool(pool.url(database))
        for _ in range(3):  # each run leaves its backend connection in a child's cache
            assert dbtool("ping").exit_code == 0
        report = json.loads(dbtool("pool-status", "--json").stdout)
        found = report["pgpool"]
        assert found is not None, report
        assert found["num_init_children"] == 8 and found["children_with_client"] >= 1
        assert found["cached_connections"] >= 1
        assert report["headroom"]["limited_by"] == "pgpool-II's num_init_children (8)"
        assert report["headroom"]["processes"] == found["client_headroom"] // 15
        rows = {(r["application_name"], r["state"]): r["count"]
                for r in report["server"]["by_application"]}  # fmt: skip
        assert rows[("(pgpool-II cache)", "idle")] == found["cached_connections"]
        assert ("dbtool", "idle") not in rows  # the cache is not dbtool's sessions
        assert any("pgpool-II's cache" in note for note in report["notes"])
        assert "pgpool-II" in dbtool("pool-status").stdout
        direct = json.loads(Dbtool(primary.url(database))("pool-status", "--json").stdout)
        assert direct["pgpool"] is None
        assert direct["headroom"]["limited_by"].startswith("the server's max_connections")
    finally:
        pool.stop()


# --- a hot standby ----------------------------------------------------------------------------


@pytest.fixture
def replicated(primary: Cluster, standby: Cluster, database: str) -> tuple[Dbtool, Dbtool]:
    """(the primary, the standby), with dbtool's users table and one user from the primary."""
    on_primary = Dbtool(primary.url(database))
    assert on_primary("init").exit_code == 0
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    sql(primary, "INSERT INTO users VALUES (gen_random_uuid(), 'old@example.com', 'old', "
                 f"'{legacy}', true, false, now(), now())", database)  # fmt: skip
    wait_replayed(standby, database, "users")
    deadline = time.monotonic() + 30
    while not sql(standby, "SELECT 1 FROM users", database) and time.monotonic() < deadline:
        time.sleep(0.1)
    return on_primary, Dbtool(standby.url(database))


WRITES = [
    ("init",),
    ("drop", "--yes"),
    ("reset", "--yes"),
    ("users", "add", "new@example.com", "--password-stdin"),
    ("users", "set-password", "old@example.com", "--password-stdin"),
    ("users", "update", "old@example.com", "--inactive"),
    ("users", "delete", "old@example.com", "--yes"),
    ("users", "import", "-", "--format", "jsonl"),
]


@pytest.mark.parametrize("args", WRITES, ids=lambda args: " ".join(args[:2]))
def test_writes_are_refused_on_a_standby_before_anything(
    replicated: tuple[Dbtool, Dbtool], standby: Cluster, args: tuple[str, ...]
) -> None:
    _, on_standby = replicated
    stdin = PASSWORD if "--password-stdin" in args else '{"email": "x@example.com"}\n'
    result = on_standby(*args, input=stdin)
    line = assert_clean_error(result, 5, "read-only standby", f"127.0.0.1:{standby.port}")
    assert "primary" in line
    assert result.stdout == "" and "table users" not in result.stderr  # no plan shown first


def test_reads_on_a_standby_say_where_they_read(replicated: tuple[Dbtool, Dbtool]) -> None:
    _, on_standby = replicated
    for args in (("users", "list"), ("users", "show", "old@example.com"), ("users", "export")):
        result = on_standby(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "reading from a read-only standby" in result.stderr
    ping = json.loads(on_standby("ping", "--json").stdout)
    assert ping["role"]["role"] == "standby" and ping["role"]["replay_lag_bytes"] is not None
    assert "read-only standby" in on_standby("ping").stderr
    info = json.loads(on_standby("info", "--json").stdout)
    assert info["role"]["role"] == "standby"
    status = json.loads(on_standby("pool-status", "--json").stdout)
    assert status["server"]["role"]["role"] == "standby"
    assert "read-only standby" in on_standby("info").stdout


def test_check_password_on_a_standby_verifies_without_upgrading(
    replicated: tuple[Dbtool, Dbtool], primary: Cluster, database: str
) -> None:
    _, on_standby = replicated
    result = on_standby("users", "check-password", "old@example.com", "--password-stdin",
                        input=PASSWORD)  # fmt: skip
    assert result.exit_code == 0, result.output
    upgrade = on_standby("users", "check-password", "old@example.com", "--password-stdin",
                         "--upgrade", input=PASSWORD)  # fmt: skip
    assert_clean_error(upgrade, 5, "read-only standby")
    stored = sql(primary, "SELECT hashed_password FROM users WHERE username = 'old'", database)
    assert stored[0][0].startswith("$2b$")


def test_waiting_on_a_standby_that_is_never_promoted(replicated: tuple[Dbtool, Dbtool]) -> None:
    _, on_standby = replicated
    started = time.monotonic()
    result = on_standby("init", "--wait", "2")
    assert_clean_error(result, 3, "still a read-only standby after 2s")
    assert 2 <= time.monotonic() - started < 20


def test_a_stopped_receiver_shows_its_true_lag(primary: Cluster, standby: Cluster) -> None:
    """A standby whose WAL receiver stopped, 20 MB behind: `cluster` measures it against the
    primary's position (received-minus-replayed would say 0) and warns; `ping --max-lag` on
    the standby fails with 7, since from there how far behind it is cannot be known."""
    conninfo = sql(standby, "SHOW primary_conninfo")[0][0]  # pg_basebackup -R's, in auto.conf
    sql(standby, "ALTER SYSTEM SET primary_conninfo = ''")
    sql(standby, "SELECT pg_reload_conf()")
    try:
        deadline = time.monotonic() + 30
        while sql(standby, "SELECT count(*) FROM pg_stat_wal_receiver")[0][0]:
            assert time.monotonic() < deadline, "the WAL receiver did not stop"
            time.sleep(0.2)
        sql(primary, "CREATE TABLE ballast AS SELECT repeat('x', 1000) AS filler "
                     "FROM generate_series(1, 20000)")  # fmt: skip
        hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        view = json.loads(
            Dbtool(f"postgresql://postgres@{hosts}/postgres")("cluster", "--json").stdout
        )
        member = next(m for m in view["members"] if m["host"] == f"127.0.0.1:{standby.port}")
        assert member["role"] == "standby" and member["state"] == "stopped"
        assert member["receive_lag_bytes"] > 20_000_000
        assert member["replay_lag_bytes"] >= member["receive_lag_bytes"]
        assert any("WAL receiver is stopped" in warning for warning in view["warnings"])
        on_standby = Dbtool(f"postgresql://postgres@127.0.0.1:{standby.port}/postgres")
        lagging = on_standby("ping", "--require", "standby", "--max-lag", "100MB")
        assert_clean_error(lagging, 7, "cannot be known")
        assert on_standby("ping", "--require", "standby").exit_code == 0
    finally:
        quoted = conninfo.replace("'", "''")
        sql(standby, f"ALTER SYSTEM SET primary_conninfo = '{quoted}'")
        sql(standby, "SELECT pg_reload_conf()")
        sql(primary, "DROP TABLE IF EXISTS ballast")
    deadline = time.monotonic() + 30
    while not sql(standby, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")[
        0
    ][0]:
        assert time.monotonic() < deadline, "the WAL receiver did not start again"
        time.sleep(0.2)
    caught_up = json.loads(
        Dbtool(f"postgresql://postgres@{hosts}/postgres")("cluster", "--json").stdout
    )
    assert caught_up["warnings"] == []


def test_cluster_on_one_server_and_without_replication() -> None:
    """One server is a cluster of one; a URL that reaches nothing is exit 3."""
    alone = Dbtool("postgresql://postgres@127.0.0.1:5432/postgres")("cluster", "--json")
    assert alone.exit_code == 0, alone.output
    view = json.loads(alone.stdout)
    assert [m["role"] for m in view["members"]] == ["primary"]
    dead = Dbtool("postgresql://postgres@127.0.0.1:1,127.0.0.1:2/postgres")("cluster")
    assert_clean_error(dead, 3, "no member", "127.0.0.1:1", "127.0.0.1:2")


# --- multi-host URLs ----------------------------------------------------------------------


def test_multi_host_urls_in_both_forms(
    replicated: tuple[Dbtool, Dbtool], primary: Cluster, standby: Cluster, database: str
) -> None:
    hosts = f"127.0.0.1:{standby.port},127.0.0.1:{primary.port}"
    libpq = f"postgresql://postgres@{hosts}/{database}"
    alchemy = (f"postgresql://postgres@/{database}?host=127.0.0.1:{standby.port}"
               f"&host=127.0.0.1:{primary.port}")  # fmt: skip
    for base in (libpq, alchemy):
        joiner = "&" if "?" in base else "?"
        writer = Dbtool(f"{base}{joiner}target_session_attrs=read-write")
        reached = json.loads(writer("ping", "--json").stdout)["role"]
        assert reached == {**reached, "role": "primary", "host": f"127.0.0.1:{primary.port}"}
        assert writer("users", "add", "multi@example.com", "--password-stdin",
                      input=PASSWORD).exit_code == 0  # fmt: skip
        assert writer("users", "delete", "multi@example.com", "--yes").exit_code == 0
        reader = Dbtool(f"{base}{joiner}target_session_attrs=standby")
        assert json.loads(reader("ping", "--json").stdout)["role"]["host"] == (
            f"127.0.0.1:{standby.port}"
        )
        shown = reader("info")
        assert f"127.0.0.1:{standby.port}" in shown.stdout
    masked = Dbtool(f"postgresql://postgres:s3cret@{hosts}/{database}")("config", "--json")
    assert "s3cret" not in masked.stdout and "***" in masked.stdout
    bad = Dbtool(f"{libpq}?target_session_attrs=writable")("ping")
    assert_clean_error(bad, 2, "target_session_attrs", "read-write")


def test_connection_errors_name_every_host() -> None:
    dead = Dbtool("postgresql://postgres@127.0.0.1:1,127.0.0.1:2/app")("ping")
    assert_clean_error(dead, 3, "127.0.0.1:1", "127.0.0.1:2")


def test_no_host_matching_is_retried_then_named(
    replicated: tuple[Dbtool, Dbtool], standby: Cluster, database: str
) -> None:
    url = (f"postgresql://postgres@127.0.0.1:{standby.port}/{database}"
           "?target_session_attrs=read-write")  # fmt: skip
    started = time.monotonic()
    result = Dbtool(url)("ping", "--wait", "2")
    assert_clean_error(result, 3, "is read-write")
    assert time.monotonic() - started >= 2  # it was retried, as a failover would need


def test_a_wait_says_what_each_host_is(replicated: tuple[Dbtool, Dbtool], standby: Cluster) -> None:
    """No read-write host yet: the wait names what each host is, not "connection refused on
    any of" (which the standby does not)."""
    url = (f"postgresql://postgres@127.0.0.1:1,127.0.0.1:{standby.port}/postgres"
           "?target_session_attrs=read-write")  # fmt: skip
    result = Dbtool(url)("ping", "--wait", "1")
    line = assert_clean_error(result, 3, "no read-write host among 2")
    assert f"1 standby (127.0.0.1:{standby.port})" in line
    assert "1 refusing connections (127.0.0.1:1)" in line
    assert "retrying" in result.stderr and "1 standby" in result.stderr.splitlines()[0]


def test_init_rides_through_a_failover(tmp_path: Path) -> None:
    """Primary down, standby promoted while `init --wait 30` is waiting: init succeeds on the
    new primary."""
    old: Cluster = _or_skip(Cluster.create)  # type: ignore[assignment]
    try:
        new: Cluster = _or_skip(old.standby)  # type: ignore[assignment]
        try:
            sql(old, "CREATE DATABASE shop")
            wait_replayed(new, "shop")
            url = (f"postgresql://postgres@127.0.0.1:{old.port},127.0.0.1:{new.port}/shop"
                   "?target_session_attrs=read-write")  # fmt: skip
            old.stop("immediate")
            process = spawn(url, "init", "--wait", "30", "--json")
            time.sleep(2)
            if process.poll() is not None:  # it should still be waiting: no host is read-write
                out, err = process.communicate()
                raise AssertionError(f"init ended early ({process.returncode}): {err}")
            new.promote()
            code = process.wait(timeout=60)
            out, err = process.communicate()
            assert code == 0, err
            assert json.loads(out)["created"] == ["users"]
            assert sql(new, "SELECT to_regclass('users') IS NOT NULL", "shop")[0][0] is True
        finally:
            new.remove()
    finally:
        old.remove()
