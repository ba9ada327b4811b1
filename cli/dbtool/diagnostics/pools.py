"""Connections: the client pool each process gets, what the server sees, and what PgBouncer
says (`dbtool pool-status`).

A command-line process starts with an empty pool, so the client side alone says little;
`pool_report` puts the pool this configuration gives every process beside what the server
sees from all of them (pg_stat_activity), and how many more such processes fit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import NullPool, QueuePool, StaticPool

from dbtool.config import Settings
from dbtool.db import Database
from dbtool.diagnostics.server import median, server_version

USAGE_WARNING_RATIO = 0.8
IDLE_IN_TRANSACTION_WARNING = 60.0


@dataclass(frozen=True)
class ClientPool:
    """The pool this configuration gives each process, and this process's live counters."""

    pool_class: str
    pool_size: int | None
    max_overflow: int | None
    pool_timeout: float | None
    pool_recycle: int | None
    pool_pre_ping: bool
    capacity: int | None
    counters: bool
    checked_in: int | None = None
    checked_out: int | None = None
    overflow: int | None = None
    note: str | None = None


def client_pool(db: Database) -> ClientPool:
    settings = db.settings
    pool = db.engine.pool
    name = type(pool).__name__
    if isinstance(pool, QueuePool):
        return ClientPool(
            pool_class=name,
            pool_size=pool.size(),
            max_overflow=settings.max_overflow,
            pool_timeout=pool.timeout(),
            pool_recycle=settings.pool_recycle,
            pool_pre_ping=settings.pool_pre_ping,
            capacity=pool.size() + settings.max_overflow,
            counters=True,
            checked_in=pool.checkedin(),
            checked_out=pool.checkedout(),
            # SQLAlchemy counts overflow from -pool_size upwards; only the part above the
            # pool size is overflow in the usual sense.
            overflow=max(pool.overflow(), 0),
        )
    notes = {
        StaticPool: "StaticPool shares one connection with everything; it keeps no counters",
        NullPool: "NullPool opens a new connection for every checkout; it keeps no counters",
    }
    return ClientPool(
        pool_class=name,
        pool_size=None,
        max_overflow=None,
        pool_timeout=None,
        pool_recycle=None,
        pool_pre_ping=settings.pool_pre_ping,
        capacity=1 if isinstance(pool, StaticPool) else None,
        counters=False,
        note=notes.get(type(pool), f"{name} keeps no counters"),
    )


@dataclass(frozen=True)
class Backend:
    pid: int
    application_name: str
    state: str
    age_seconds: float


@dataclass(frozen=True)
class ServerReport:
    product: str
    version: str
    database_name: str
    max_connections: int
    reserved_connections: int
    in_use: int
    available: int
    usage_percent: float
    headroom_processes: int | None
    database_connections: int
    by_application: list[dict[str, Any]]
    oldest_transaction: Backend | None
    longest_idle_in_transaction: Backend | None
    role: dict[str, Any] | None = None  # primary or standby, host reached, replay lag


@dataclass(frozen=True)
class ProbeReport:
    connections: int
    hold_seconds: float
    succeeded: int
    timed_out: int
    failed: int
    needed_overflow: int
    wait_p50_ms: float | None
    wait_p95_ms: float | None
    wait_max_ms: float | None
    checked_out_after: int | None
    seconds: float
    # From asking for a connection to the first query's answer: includes what the pool does
    # not see, such as waiting in PgBouncer for a server connection.
    first_query_p50_ms: float | None = None
    first_query_p95_ms: float | None = None
    first_query_max_ms: float | None = None


@dataclass
class PoolReport:
    database: str
    client: ClientPool
    server: ServerReport | None
    probe: ProbeReport | None = None
    pgbouncer: PgBouncerReport | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SETTINGS_SQL = text(
    "SELECT name, setting::int FROM pg_settings WHERE name IN "
    "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
)
_IN_USE_SQL = text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
_BY_APPLICATION_SQL = text(
    "SELECT coalesce(application_name, ''), coalesce(state, 'unknown'), count(*)"
    " FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_type = 'client backend'"
    " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
)
# The longest-running backend by `since`, among those matching `where` (both fixed below).
_BACKEND_SQL = (
    "SELECT pid, coalesce(application_name, ''), coalesce(state, 'unknown'),"
    " extract(epoch FROM clock_timestamp() - {since})::float8"
    " FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_type = 'client backend' AND {where}"
    " ORDER BY {since} LIMIT 1"
)


async def server_report(db: Database) -> ServerReport | None:
    """What PostgreSQL sees; None for SQLite (an embedded database has no server side)."""
    if db.dialect != "postgresql":
        return None
    product, version = await server_version(db)
    async with db.reading() as conn:
        settings = {name: int(value) for name, value in await conn.execute(_SETTINGS_SQL)}
        in_use = int(await conn.scalar(_IN_USE_SQL) or 0)
        database_name = str(await conn.scalar(text("SELECT current_database()")))
        by_application = [
            {"application_name": app, "state": state, "count": int(count)}
            for app, state, count in await conn.execute(_BY_APPLICATION_SQL)
        ]
        oldest = await _one_backend(
            conn, since="xact_start", where="xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )
        idle = await _one_backend(
            conn, since="state_change", where="state LIKE 'idle in transaction%'"
        )
    role = await db.server_role()
    max_connections = settings["max_connections"]
    reserved = settings.get("superuser_reserved_connections", 0) + settings.get(
        "reserved_connections", 0
    )
    available = max(max_connections - reserved - in_use, 0)
    capacity = db.settings.pool_capacity
    return ServerReport(
        product=product,
        version=version,
        database_name=database_name,
        max_connections=max_connections,
        reserved_connections=reserved,
        in_use=in_use,
        available=available,
        usage_percent=round(100 * in_use / max_connections, 1),
        headroom_processes=available // capacity if capacity > 0 else None,
        database_connections=sum(row["count"] for row in by_application),
        by_application=by_application,
        oldest_transaction=oldest,
        longest_idle_in_transaction=idle,
        role=None if role is None else role.as_dict(),
    )


async def _one_backend(conn: AsyncConnection, *, since: str, where: str) -> Backend | None:
    row = (await conn.execute(text(_BACKEND_SQL.format(since=since, where=where)))).first()
    if row is None:
        return None
    pid, application, state, age = row
    return Backend(int(pid), str(application), str(state), round(float(age), 1))


async def probe(db: Database, connections: int, *, hold: float = 0.05) -> ProbeReport:
    """Check out `connections` connections at once, each running a short query and keeping its
    connection for `hold` seconds; report how long checkouts waited and what came back."""
    pool = db.engine.pool
    waits: list[float] = []
    first_queries: list[float] = []
    outcome = {"succeeded": 0, "timed_out": 0, "failed": 0}
    peak = 0

    def on_checkout(*_: Any) -> None:
        nonlocal peak
        if isinstance(pool, QueuePool):
            peak = max(peak, pool.checkedout())

    async def one() -> None:
        start = time.perf_counter()
        try:
            # A connection rather than an ORM session, so the wait measured is the pool's
            # alone (on SQLite a session's BEGIN IMMEDIATE would add the write-lock wait).
            async with db.reading() as conn:
                waits.append(time.perf_counter() - start)
                await conn.exec_driver_sql("SELECT 1")
                first_queries.append(time.perf_counter() - start)
                await asyncio.sleep(hold)
            outcome["succeeded"] += 1
        except PoolTimeoutError:
            waits.append(time.perf_counter() - start)  # it waited the whole pool timeout
            outcome["timed_out"] += 1
        except Exception:
            outcome["failed"] += 1

    started = time.perf_counter()
    event.listen(pool, "checkout", on_checkout)
    try:
        await asyncio.gather(*(one() for _ in range(connections)))
    finally:
        event.remove(pool, "checkout", on_checkout)
    elapsed = time.perf_counter() - started

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    ordered = sorted(waits)
    answered = sorted(first_queries)
    return ProbeReport(
        connections=connections,
        hold_seconds=hold,
        **outcome,
        # Connections open at once beyond the pool size: what the probe drew from overflow.
        needed_overflow=max(peak - pool.size(), 0) if isinstance(pool, QueuePool) else 0,
        wait_p50_ms=ms(median(ordered)) if ordered else None,
        wait_p95_ms=ms(_p95(ordered)) if ordered else None,
        wait_max_ms=ms(ordered[-1]) if ordered else None,
        checked_out_after=pool.checkedout() if isinstance(pool, QueuePool) else None,
        seconds=round(elapsed, 3),
        first_query_p50_ms=ms(median(answered)) if answered else None,
        first_query_p95_ms=ms(_p95(answered)) if answered else None,
        first_query_max_ms=ms(answered[-1]) if answered else None,
    )


def _p95(ordered: list[float]) -> float:
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


# --- PgBouncer's admin console ---------------------------------------------------------------


@dataclass(frozen=True)
class PgBouncerReport:
    """PgBouncer's view: its limits, and the pool of dbtool's database in it."""

    admin: str  # the admin console's URL, password masked
    version: str
    database: str
    pool_mode: str
    max_client_conn: int
    default_pool_size: int
    clients_active: int
    clients_waiting: int
    servers_active: int
    servers_idle: int
    servers_other: int  # used, tested, logging in
    max_wait_seconds: float
    clients_total: int  # of every pool: what max_client_conn limits
    client_headroom: int
    server_headroom: int
    headroom_processes: int | None  # more processes with dbtool's pool that PgBouncer accepts


def _admin_rows(conninfo: str, query: str) -> list[dict[str, Any]]:
    """Rows from PgBouncer's admin console, which speaks only the simple query protocol:
    asyncpg cannot read its rows, psycopg (the `pgbouncer` extra) can."""
    try:
        import psycopg
    except ImportError:
        from dbtool.errors import ConfigError

        raise ConfigError(
            "reading PgBouncer's admin console needs psycopg: pip install 'dbtool[pgbouncer]'"
        ) from None
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        cursor = conn.execute(query)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


async def pgbouncer_report(settings: Settings, admin_url: str) -> PgBouncerReport:
    """Read SHOW POOLS / CONFIG / VERSION from PgBouncer's admin console (in a thread:
    psycopg's connection here is a blocking one). Take it before connecting through the
    pooler: dbtool's own first query may have to queue in it."""
    from sqlalchemy.engine import make_url

    from dbtool.config import mask_url
    from dbtool.errors import DatabaseUnavailableError

    url = make_url(admin_url).set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    try:
        pools, config, version = await asyncio.gather(
            asyncio.to_thread(_admin_rows, conninfo, "SHOW POOLS"),
            asyncio.to_thread(_admin_rows, conninfo, "SHOW CONFIG"),
            asyncio.to_thread(_admin_rows, conninfo, "SHOW VERSION"),
        )
    except OSError as exc:
        raise DatabaseUnavailableError(f"cannot read PgBouncer at {mask_url(url)}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseUnavailableError(
                f"cannot read PgBouncer at {mask_url(url)}: {first}"
            ) from None
        raise
    limits = {row["key"]: row["value"] for row in config}
    database = settings.url.database or ""
    ours = [row for row in pools if row["database"] == database]
    pool = {key: sum(int(row.get(key) or 0) for row in ours) for key in (
        "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"
    )}  # fmt: skip
    max_wait = max((int(row["maxwait"]) + int(row.get("maxwait_us") or 0) / 1e6
                    for row in ours), default=0.0)  # fmt: skip
    clients = sum(int(row["cl_active"]) + int(row["cl_waiting"]) for row in pools)
    max_clients = int(limits.get("max_client_conn", 0))
    pool_size = int(limits.get("default_pool_size", 0))
    servers = pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] + pool["sv_tested"]
    servers += pool["sv_login"]
    client_headroom = max(max_clients - clients, 0)
    capacity = settings.pool_capacity
    return PgBouncerReport(
        admin=mask_url(url),
        version=str(version[0].get("version", "")) if version else "",
        database=database,
        pool_mode=str(ours[0]["pool_mode"] if ours else limits.get("pool_mode", "")),
        max_client_conn=max_clients,
        default_pool_size=pool_size,
        clients_active=pool["cl_active"],
        clients_waiting=pool["cl_waiting"],
        servers_active=pool["sv_active"],
        servers_idle=pool["sv_idle"],
        servers_other=pool["sv_used"] + pool["sv_tested"] + pool["sv_login"],
        max_wait_seconds=round(max_wait, 3),
        clients_total=clients,
        client_headroom=client_headroom,
        server_headroom=max(pool_size - servers, 0),
        headroom_processes=client_headroom // capacity if capacity > 0 else None,
    )


async def pool_report(
    db: Database,
    *,
    probe_connections: int = 0,
    probe_hold: float = 0.05,
    idle_in_transaction_warning: float = IDLE_IN_TRANSACTION_WARNING,
    bouncer: PgBouncerReport | None = None,
) -> PoolReport:
    """The whole picture: client pool, server side, PgBouncer (its report, from
    pgbouncer_report), optional probe, and warnings."""
    probed = await probe(db, probe_connections, hold=probe_hold) if probe_connections else None
    server = await server_report(db)
    report = PoolReport(
        database=db.settings.masked_url,
        client=client_pool(db),
        server=server,
        probe=probed,
        pgbouncer=bouncer,
    )
    if bouncer is not None:
        if bouncer.clients_waiting:
            report.warnings.append(
                f"{bouncer.clients_waiting} client(s) are waiting in PgBouncer for a server "
                f"connection (longest {bouncer.max_wait_seconds:g}s): the pool for "
                f"{bouncer.database} (default_pool_size {bouncer.default_pool_size}) is full"
            )
        if bouncer.headroom_processes == 0:
            report.warnings.append(
                f"PgBouncer accepts only {bouncer.client_headroom} more client(s) "
                f"(max_client_conn {bouncer.max_client_conn}): no room for another process "
                f"with this pool ({db.settings.pool_capacity} connections)"
            )
    if server is None:
        report.notes.append(
            "SQLite is an embedded database: there is no server side, and connections are "
            "only those of the processes that have the file open"
        )
    else:
        if server.in_use > USAGE_WARNING_RATIO * server.max_connections:
            report.warnings.append(
                f"{server.in_use} of {server.max_connections} connections are in use "
                f"({server.usage_percent:g}%)"
            )
        idle = server.longest_idle_in_transaction
        if idle is not None and idle.age_seconds > idle_in_transaction_warning:
            report.warnings.append(
                f"pid {idle.pid} ({idle.application_name or 'no application name'}) has been "
                f"idle in transaction for {idle.age_seconds:g}s (more than "
                f"{idle_in_transaction_warning:g}s): it holds locks and a connection"
            )
        if server.headroom_processes == 0:
            report.warnings.append(
                f"no room for another process with this pool ({db.settings.pool_capacity} "
                f"connections): only {server.available} free"
            )
    if probed is not None:
        if probed.timed_out:
            report.warnings.append(
                f"{probed.timed_out} of {probed.connections} probe connections timed out waiting "
                f"{db.settings.pool_timeout:g}s for a connection"
            )
        if probed.checked_out_after:
            report.warnings.append(f"{probed.checked_out_after} connections were not returned")
    return report
