"""Connections: the client pool each process gets, what the server sees, and what PgBouncer
says (`dbtool pool-status`).

A command-line process starts with an empty pool, so the client side alone says little;
`pool_report` puts the pool this configuration gives every process beside what the server
sees from all of them (pg_stat_activity), and how many more such processes fit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import NullPool, QueuePool, StaticPool

from dbtool.backends.base import ServerProcess
from dbtool.db import Database
from dbtool.diagnostics.server import median, server_version
from dbtool.wording import agreeing, counted

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
    oldest_transaction: ServerProcess | None
    longest_idle_in_transaction: ServerProcess | None
    role: dict[str, Any] | None = None  # primary or standby, host reached, replay lag
    read_at: str = ""  # ISO time: behind a pooler, its half is read apart


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
    pgbouncer: Any = None  # the backend's pooler report (PgBouncer's: pgbouncer.py)
    pgpool: Any = None  # a pooler found in between (pgpool-II's: pgpool.py)
    # The tightest limit on more processes with this pool: {"processes", "limited_by"}.
    headroom: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def server_report(db: Database) -> ServerReport | None:
    """What the server sees of every client; None for an embedded database (no server)."""
    async with db.reading() as conn:
        seen = await db.backend.server_connections(conn)
    if seen is None:
        return None
    product, version = await server_version(db)
    role = await db.server_role()
    available = max(seen.max_connections - seen.reserved_connections - seen.in_use, 0)
    capacity = db.settings.pool_capacity
    return ServerReport(
        product=product,
        version=version,
        database_name=seen.database_name,
        max_connections=seen.max_connections,
        reserved_connections=seen.reserved_connections,
        in_use=seen.in_use,
        available=available,
        usage_percent=round(100 * seen.in_use / seen.max_connections, 1),
        headroom_processes=available // capacity if capacity > 0 else None,
        database_connections=sum(row["count"] for row in seen.by_application),
        by_application=seen.by_application,
        oldest_transaction=seen.oldest_transaction,
        longest_idle_in_transaction=seen.longest_idle_in_transaction,
        role=None if role is None else role.as_dict(),
        read_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )


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


def _without_cache(server: ServerReport, pooler: Any) -> list[dict[str, Any]]:
    """The server's connections by application, the pooler's cached ones in a row of their
    own rather than counted as idle sessions of the application that last used them."""
    rows = [dict(row) for row in server.by_application]
    for cached in pooler.cached_by_application:
        for row in rows:
            same = (row["application_name"], row["state"]) == (
                cached["application_name"], cached["state"])  # fmt: skip
            if same:
                row["count"] -= cached["count"]
    rows = [row for row in rows if row["count"] > 0]
    total = sum(cached["count"] for cached in pooler.cached_by_application)
    if total:
        rows.append({"application_name": "(pgpool-II cache)", "state": "idle", "count": total})
    return rows


def _tightest(server: ServerReport | None, pooler: Any, capacity: int) -> dict[str, Any] | None:
    """How many more processes with this pool fit, by the tightest of the limits known:
    behind a pooler, the clients it accepts (it shares its server connections, so the
    server's max_connections does not bound the processes); else the server's."""
    if pooler is not None and pooler.headroom_processes is not None:
        processes, limited_by = pooler.headroom_processes, pooler.limit
    elif server is not None and server.headroom_processes is not None:
        processes = server.headroom_processes
        limited_by = f"the server's max_connections ({server.max_connections})"
    else:
        return None
    return {"processes": processes, "per_process": capacity, "limited_by": limited_by}


def _p95(ordered: list[float]) -> float:
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


async def pool_report(
    db: Database,
    *,
    probe_connections: int = 0,
    probe_hold: float = 0.05,
    idle_in_transaction_warning: float = IDLE_IN_TRANSACTION_WARNING,
    bouncer: Any = None,
    server_deadline: float | None = None,
) -> PoolReport:
    """The whole picture: client pool, server side, PgBouncer (its report, from
    pgbouncer_report), optional probe, the tightest headroom, and warnings.

    Behind a pooler (`bouncer` given) the server side is read within `server_deadline`
    seconds: when the pooler's pool is full, dbtool's own query queues with the others, and
    a report of one moment beats a late one of two; the warning says what was not read."""
    probed = await probe(db, probe_connections, hold=probe_hold) if probe_connections else None
    # A pooler that answers on the database's own connection (pgpool-II), read first: the
    # server's view then includes what reading it changed (its connection, now cached).
    pgpool = await db.backend.pooler_in_between(db) if bouncer is None else None
    unread = None
    try:
        server = await asyncio.wait_for(server_report(db), server_deadline)
    except TimeoutError:
        server, unread = None, server_deadline
    report = PoolReport(
        database=db.settings.masked_url,
        client=client_pool(db),
        server=server,
        probe=probed,
        pgbouncer=bouncer,
        pgpool=pgpool,
        headroom=_tightest(server, bouncer or pgpool, db.settings.pool_capacity),
    )
    if pgpool is not None and server is not None:
        report.server = replace(server, by_application=_without_cache(server, pgpool))
        if pgpool.cached_connections:
            report.notes.append(
                f"{counted(pgpool.cached_connections, 'idle connection')} on the server "
                f"{agreeing(pgpool.cached_connections, 'is', 'are')} pgpool-II's cache "
                "(children without a client keep their backend connections): no running "
                "process holds them"
            )
        if pgpool.headroom_processes == 0:
            report.warnings.append(
                f"pgpool-II accepts only {counted(pgpool.client_headroom, 'more client')} "
                f"(num_init_children {pgpool.num_init_children}): no room for another "
                f"process with this pool ({db.settings.pool_capacity} connections)"
            )
    if unread is not None:
        report.warnings.append(
            f"the server side was not read: dbtool's own query found no server connection "
            f"within {unread:g}s (it queued behind the pooler's full pool)"
        )
    if bouncer is not None:
        if bouncer.full:
            report.warnings.append(
                f"PgBouncer's pool for {bouncer.database} is full: "
                f"{counted(bouncer.clients_waiting, 'client')} "
                f"{agreeing(bouncer.clients_waiting, 'is', 'are')} waiting for a server "
                f"connection (longest {bouncer.max_wait_seconds:g}s; default_pool_size "
                f"{bouncer.default_pool_size}): more processes queue there, they are not refused"
            )
        elif bouncer.clients_waiting:
            report.warnings.append(
                f"{counted(bouncer.clients_waiting, 'client')} "
                f"{agreeing(bouncer.clients_waiting, 'is', 'are')} waiting in PgBouncer for a "
                f"server connection (longest {bouncer.max_wait_seconds:g}s)"
            )
        if server is not None and server.available < bouncer.server_headroom:
            report.warnings.append(
                f"PgBouncer may open {bouncer.server_headroom} more server connections for "
                f"{bouncer.database}, but the server has only {server.available} free: its "
                "pool cannot grow to default_pool_size"
            )
        if bouncer.headroom_processes == 0:
            report.warnings.append(
                f"PgBouncer accepts only {counted(bouncer.client_headroom, 'more client')} "
                f"(max_client_conn {bouncer.max_client_conn}): no room for another process "
                f"with this pool ({db.settings.pool_capacity} connections)"
            )
    if server is None:
        report.notes.append(
            f"{db.backend.product} is an embedded database: there is no server side, and "
            "connections are only those of the processes that have the file open"
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
            report.warnings.append(
                f"{counted(probed.checked_out_after, 'connection')} "
                f"{agreeing(probed.checked_out_after, 'was', 'were')} not returned"
            )
    return report
