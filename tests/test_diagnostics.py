"""pool-status and info: the client pool, the server's view, the probe, watch mode."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from typing import Any

import asyncpg
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.helpers import (
    PRODUCTS,
    Dbtool,
    Terminal,
    assert_clean_error,
    dbtool_executable,
    postgres_dsn,
    postgres_url,
    run_sql,
)


def pool_status(dbtool: Dbtool, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = dbtool("pool-status", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_client_side_reports_the_configured_pool(initialised: Dbtool) -> None:
    env = {"DBTOOL_POOL_SIZE": "4", "DBTOOL_MAX_OVERFLOW": "6", "DBTOOL_POOL_TIMEOUT": "7"}
    client = pool_status(initialised, env=env)["client"]
    assert client["pool_class"] == "AsyncAdaptedQueuePool"
    assert (client["pool_size"], client["max_overflow"], client["capacity"]) == (4, 6, 10)
    assert client["pool_timeout"] == 7 and client["pool_pre_ping"] is False
    assert client["counters"] is True
    assert client["checked_out"] == 0 and client["overflow"] == 0  # never negative
    assert client["checked_in"] >= 1


@pytest.mark.sqlite
def test_sqlite_has_no_server_side(tmp_path: Any) -> None:
    dbtool = Dbtool(f"sqlite:///{tmp_path / 'x.db'}")
    assert dbtool("init").exit_code == 0
    report = pool_status(dbtool)
    assert report["server"] is None
    assert any("no server side" in note for note in report["notes"])
    text = dbtool("pool-status").stdout
    assert "Client pool" in text and "no server side" in text


@pytest.mark.sqlite
def test_pools_without_counters_say_so() -> None:
    client = pool_status(Dbtool("sqlite://"))["client"]  # in memory: a StaticPool
    assert client["pool_class"] == "StaticPool"
    assert client["counters"] is False and client["checked_out"] is None
    assert "no counters" in client["note"]


def test_probe_beyond_capacity_times_out_and_returns_every_connection(
    initialised: Dbtool,
) -> None:
    env = {"DBTOOL_POOL_SIZE": "2", "DBTOOL_MAX_OVERFLOW": "1", "DBTOOL_POOL_TIMEOUT": "0.2"}
    report = pool_status(initialised, "--probe", "10", "--probe-hold", "0.6", env=env)
    probe = report["probe"]
    assert probe["connections"] == 10
    assert probe["succeeded"] == 3  # pool size + overflow
    assert probe["needed_overflow"] == 1
    assert probe["timed_out"] == 7
    assert probe["failed"] == 0
    assert probe["checked_out_after"] == 0
    assert probe["wait_max_ms"] >= 200  # the ones that timed out waited the pool timeout
    assert any("7 of 10 probe connections timed out" in w for w in report["warnings"])
    assert report["client"]["checked_out"] == 0


def test_probe_within_capacity(initialised: Dbtool) -> None:
    probe = pool_status(initialised, "--probe", "8")["probe"]
    assert (probe["succeeded"], probe["timed_out"], probe["needed_overflow"]) == (8, 0, 3)
    assert probe["checked_out_after"] == 0
    assert 0 <= probe["wait_p50_ms"] <= probe["wait_p95_ms"] <= probe["wait_max_ms"]


class HeldConnections:
    """Connections of the test's own, under a distinct application name, held open in a
    background event loop while the CLI looks at the server."""

    def __init__(self, database: str, application_name: str) -> None:
        self.dsn = postgres_dsn(database)
        self.application_name = application_name
        self.connections: list[asyncpg.Connection] = []
        self.pids: list[int] = []

    async def open(self, idle: int, idle_in_transaction: int) -> None:
        for number in range(idle + idle_in_transaction):
            conn = await asyncpg.connect(
                self.dsn, server_settings={"application_name": self.application_name}
            )
            self.connections.append(conn)
            self.pids.append(conn.get_server_pid())
            if number >= idle:
                await conn.execute("BEGIN; SELECT 1")  # then left idle in the transaction

    async def close(self) -> None:
        for conn in self.connections:
            await conn.close()


async def pool_status_while_held(database: str, *args: str) -> dict[str, Any]:
    """`pool-status --json` from the installed CLI, while this event loop holds connections
    (`database`: a database of the shared server, or a URL)."""
    url = database if "://" in database else postgres_url(database)
    process = await asyncio.create_subprocess_exec(
        dbtool_executable(), "--url", url, "pool-status", "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    report: dict[str, Any] = json.loads(stdout)
    return report


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_server_side_shows_exactly_who_holds_connections(
    new_postgres_database: str,
) -> None:
    application = f"probe-{uuid.uuid4().hex[:6]}"
    held = HeldConnections(new_postgres_database, application)
    await held.open(idle=3, idle_in_transaction=1)
    try:
        await asyncio.sleep(1.2)  # longer than the idle-in-transaction limit below
        report = await pool_status_while_held(new_postgres_database, "--idle-warning", "1")
    finally:
        await held.close()
    server = report["server"]
    ours = {
        row["state"]: row["count"]
        for row in server["by_application"]
        if row["application_name"] == application
    }
    assert ours == {"idle": 3, "idle in transaction": 1}
    idle = server["longest_idle_in_transaction"]
    assert idle["application_name"] == application and idle["pid"] == held.pids[-1]
    assert idle["age_seconds"] >= 1
    assert server["oldest_transaction"]["pid"] == held.pids[-1]
    assert server["database_connections"] >= 4 and server["in_use"] >= 4
    assert server["available"] == (
        server["max_connections"] - server["reserved_connections"] - server["in_use"]
    )
    capacity = report["client"]["capacity"]
    assert server["headroom_processes"] == server["available"] // capacity
    assert any(
        f"pid {held.pids[-1]} ({application}) has been idle in transaction" in warning
        for warning in report["warnings"]
    )


@pytest.mark.postgres
def test_usage_above_80_percent_warns(postgres_available: None) -> None:
    """On a private server, where no other client can come or go between the count and
    the report (on the shared one, a client leaving made it exactly 80%)."""
    from tests.conftest import private_cluster

    cluster = private_cluster()
    try:

        async def fill_and_report() -> dict[str, Any]:
            dsn = cluster.url().replace("+asyncpg", "")
            first = await asyncpg.connect(dsn)
            max_connections = int(await first.fetchval("SHOW max_connections"))
            # 90% with the CLI's own connection: far from the 80% line either way.
            extra = int(0.9 * max_connections) - 2
            held = [first, *[await asyncpg.connect(dsn) for _ in range(extra)]]
            try:
                return await pool_status_while_held(cluster.url())
            finally:
                for connection in held:
                    await connection.close()

        report = asyncio.run(fill_and_report())
    finally:
        cluster.remove()
    server = report["server"]
    assert server["in_use"] == int(0.9 * server["max_connections"]), server
    assert server["usage_percent"] > 85
    assert any("connections are in use" in warning for warning in report["warnings"])


def test_human_report(initialised: Dbtool, backend: str) -> None:
    result = initialised("pool-status", "--probe", "3")
    assert result.exit_code == 0, result.output
    assert "Client pool" in result.stdout and "Probe" in result.stdout
    assert "all connections returned" in result.stdout
    if backend == "postgres":
        assert "Server" in result.stdout and "more processes with this pool" in result.stdout


def test_piped_report_is_plain_aligned_lines(initialised: Dbtool, backend: str) -> None:
    """Piped (a log, grep), the report is the terminal's, without the boxes: a title line
    per part and its name/value lines indented, values in one column."""
    lines = initialised("pool-status", "--probe", "2").stdout.splitlines()
    assert not any(set(line) & set("│╭╰┃━") for line in lines), lines
    assert lines[0] == f"Database {initialised.url}"  # no password in it to mask
    # The verdict first, where there is a server to leave room on.
    titles = (["Client pool", "Probe"] if backend == "sqlite"
              else ["Headroom", "Client pool", "Server", "Probe"])  # fmt: skip
    assert [
        line for line in lines if line and not line.startswith((" ", "Database", "note"))
    ] == titles
    client = lines[lines.index("Client pool") + 1 : lines.index("Client pool") + 5]
    assert [line.split()[0] for line in client] == ["class", "configured", "per", "this"]
    value_column = {len(line) - len(line.split("  ")[-1].lstrip()) for line in client}
    assert len(value_column) == 1, client  # the values line up
    if backend == "postgres":
        table = lines[lines.index("  In database " + initialised.url.rsplit("/", 1)[1] + ":") + 1]
        assert table.split() == ["application", "state", "connections"]


def test_watch_refreshes_until_ctrl_c_on_a_terminal(initialised: Dbtool) -> None:
    terminal = Terminal("--url", initialised.url, "pool-status", "--watch", "--interval", "0.3")
    terminal.expect("Client pool")
    terminal.expect("Client pool")  # refreshed
    terminal.send_raw(b"\x03")
    assert terminal.wait() == 0, terminal.transcript
    assert "Traceback" not in terminal.transcript


def test_watch_json_streams_until_interrupted(initialised: Dbtool) -> None:
    process = initialised.spawn("pool-status", "--watch", "--json", "--interval", "0.2")
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    reports = [json.loads(line) for line in stdout.splitlines()]
    assert len(reports) >= 2
    assert all(report["client"]["checked_out"] == 0 for report in reports)


def test_info(initialised: Dbtool, backend: str) -> None:
    initialised("users", "add", "alice@example.com", "--password-stdin", input="long enough pw\n")
    result = initialised("info", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["server"] == PRODUCTS[backend]
    assert data["tables"] == [{"name": "users", "rows": 1}]
    assert data["schema_complete"] is True and data["missing_tables"] == []
    assert data["size_bytes"] > 0
    assert "complete" in initialised("info").stdout


def test_info_before_init_reports_the_missing_tables(database_url: str, backend: str) -> None:
    dbtool = Dbtool(database_url)
    if backend == "sqlite":
        assert dbtool("init").exit_code == 0
        assert dbtool("drop", "--yes").exit_code == 0
    data = json.loads(dbtool("info", "--json").stdout)
    assert data["schema_complete"] is False and data["missing_tables"] == ["users"]
    assert "run `dbtool init`" in dbtool("info").stdout


@pytest.mark.postgres
def test_info_finds_each_table_where_the_models_put_it(new_postgres_database: str) -> None:
    """What `info` says of each table (present, its columns) is what SQLAlchemy's inspector
    says, across schemas: a table of the same name in another schema, a view of the name,
    dropped and added columns, a mixed-case name."""
    from sqlalchemy import inspect
    from sqlalchemy.ext.asyncio import create_async_engine

    url = postgres_url(new_postgres_database)
    dbtool = Dbtool(url, env={"DBTOOL_MODELS": "tests.apps.schemas_app:metadata"})
    tables = (("things", None), ("entries", "audit"), ("MixedCase", None))

    def inspect_all(sync: Any) -> dict[str, list[str] | None]:
        inspector = inspect(sync)
        return {
            (f"{schema}.{name}" if schema else name): (
                sorted(c["name"] for c in inspector.get_columns(name, schema))
                if name in inspector.get_table_names(schema)  # tables, not views
                else None
            )
            for name, schema in tables
        }

    def inspector_says() -> dict[str, list[str] | None]:
        async def go() -> dict[str, list[str] | None]:
            engine = create_async_engine(url)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(inspect_all)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def info_says() -> dict[str, list[str] | None]:
        result = dbtool("info", "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        wanted = {"things": ["id", "name"], "audit.entries": ["id", "note"], "MixedCase": ["id"]}
        said: dict[str, list[str] | None] = dict.fromkeys(data["missing_tables"])
        mismatched = {table["name"]: table for table in data["mismatched_tables"]}
        for table in data["tables"]:
            name = table["name"]
            differences = mismatched.get(name, {})
            missing = differences.get("missing_columns", [])
            extra = differences.get("extra_columns", [])
            said[name] = sorted([c for c in wanted[name] if c not in missing] + extra)
        return said

    steps = [
        "CREATE SCHEMA audit",
        # Same names, other places: not the models' tables.
        'CREATE TABLE audit.things (id int); CREATE TABLE "mixedcase" (id int)',
        "CREATE VIEW entries AS SELECT 1 AS id",
        "CREATE VIEW things AS SELECT 1 AS id, 'x'::text AS name",
        "DROP VIEW things; CREATE TABLE things (id int, name text, extra int)",
        "ALTER TABLE things DROP COLUMN extra",
        "CREATE TABLE audit.entries (id int, gone int, note text)",
        'CREATE TABLE "MixedCase" (id int)',
        "ALTER TABLE audit.entries DROP COLUMN gone; ALTER TABLE audit.entries ADD COLUMN more int",
    ]
    assert (
        info_says() == inspector_says() == dict.fromkeys(["things", "audit.entries", "MixedCase"])
    )
    for sql in steps:
        for statement in sql.split(";"):
            run_sql(url, statement)
        assert info_says() == inspector_says(), sql
    assert info_says() == {"things": ["id", "name"], "audit.entries": ["id", "more", "note"],
                           "MixedCase": ["id"]}  # fmt: skip


# --- probes and metrics on every backend ----------------------------------------------------


def test_ping_gates_on_role_on_every_backend(initialised: Dbtool) -> None:
    """A server without replication takes writes: a primary to --require."""
    assert initialised("ping", "--require", "primary", "--max-lag", "10s").exit_code == 0
    wrong = initialised("ping", "--require", "standby")
    assert_clean_error(wrong, 6, "standby required")
    answer = json.loads(initialised("ping", "--require", "standby", "--json").stdout)
    assert answer["ok"] is False and answer["problem"].startswith("standby required")
    for bad in (("--require", "leader"), ("--max-lag", "10 parsecs"), ("--max-lag", "-1s")):
        assert_clean_error(initialised("ping", *bad), 2)


def test_cluster_of_one_server_on_every_backend(initialised: Dbtool) -> None:
    result = initialised("cluster", "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert [member["role"] for member in view["members"]] == ["primary"]
    assert view["leader"] == view["members"][0]["name"]
    metrics = initialised("cluster", "--format", "openmetrics").stdout
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert families["dbtool_cluster_primaries"].samples[0].value == 1
    assert_clean_error(initialised("cluster", "--format", "xml"), 2)


def test_cluster_watch_on_a_terminal_fits_and_stops_on_ctrl_c(initialised: Dbtool) -> None:
    terminal = Terminal("--url", initialised.url, "cluster", "--watch", "--interval", "0.3",
                        env={"COLUMNS": "80"})  # fmt: skip
    terminal.expect("Ctrl-C to quit")
    terminal.expect("leader")
    terminal.send_raw(b"\x03")
    assert terminal.wait() == 0, terminal.transcript
    assert "Traceback" not in terminal.transcript and "…" not in terminal.transcript


def test_json_and_another_format_are_one_choice_too_many(initialised: Dbtool) -> None:
    for command in ("cluster", "pool-status"):
        both = initialised(command, "--json", "--format", "openmetrics")
        assert_clean_error(both, 2, "choose one of --json and --format openmetrics")
        assert initialised(command, "--json", "--format", "json").exit_code == 0


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def serving(dbtool: Dbtool, *args: str) -> tuple[Any, int]:
    """dbtool serving /metrics on a free port, once it answers."""
    from tests.topology import free_port

    port = free_port()
    process = dbtool.spawn(*args, "--listen", f"127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            scrape(port, "/")
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(process.communicate()[1])


@pytest.mark.parametrize("command", ["cluster", "pool-status"])
def test_listen_serves_fresh_openmetrics_until_ctrl_c(initialised: Dbtool, command: str) -> None:
    process, port = serving(initialised, command)
    try:
        readings = [scrape(port) for _ in range(2)]
        for status, kind, body in readings:
            assert status == 200 and kind.startswith("application/openmetrics-text")
            assert {f.name for f in text_string_to_metric_families(body)}
        assert scrape(port, "/other")[0] == 404
    finally:
        process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "serving OpenMetrics on http://127.0.0.1:" in err and "Traceback" not in err


@pytest.mark.postgres
def test_listen_answers_503_while_the_server_is_down_and_recovers() -> None:
    from tests.topology import Cluster, TopologyError

    try:
        server = Cluster.create()
    except TopologyError as exc:
        pytest.skip(str(exc))
    try:
        process, port = serving(Dbtool(server.url("postgres")), "pool-status")
        try:
            assert scrape(port)[0] == 200
            server.stop()
            status, _, reason = scrape(port)
            assert status == 503, reason
            assert "cannot connect" in reason or "lost" in reason
            server.start()
            assert scrape(port)[0] == 200
        finally:
            process.send_signal(signal.SIGINT)
        assert process.communicate(timeout=30) and process.returncode == 0
    finally:
        server.remove()


@pytest.mark.postgres
def test_watch_rides_out_a_server_restart_and_says_so() -> None:
    """pool-status --watch through a restart of its server: the gap is said on stderr, the
    reports go on once it is back, Ctrl-C still ends it with 0."""
    from tests.topology import Cluster, TopologyError

    try:
        server = Cluster.create()
    except TopologyError as exc:
        pytest.skip(str(exc))
    try:
        process = Dbtool(server.url("postgres")).spawn(
            "pool-status", "--watch", "--interval", "0.3", "--json"
        )
        assert process.stdout is not None
        try:
            assert json.loads(process.stdout.readline())["server"]
            server.stop()
            time.sleep(1.5)
            server.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # reports again after the restart
                report = json.loads(process.stdout.readline())
                if report["server"]["in_use"] >= 1:
                    break
            time.sleep(1)
        finally:
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "lost the database at" in err and "the database is back after" in err
        assert "Traceback" not in err
    finally:
        server.remove()
